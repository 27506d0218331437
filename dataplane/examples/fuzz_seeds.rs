//! Writes the seed corpus for the fuzz targets into `dataplane/fuzz/corpus/<target>/`: real packets of every
//! kind the core handles, from the RFC vectors and the test peer, with fixed keys so the files are reproducible.
//!
//!     cargo run -p sluice-dataplane --example fuzz_seeds

use std::path::Path;

use sluice_dataplane::srtp::Profile;
use sluice_dataplane::testpeer::{Keys, TestPeer};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A `core` input: source selector, length, datagram.
fn framed(items: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![];
    for (source, d) in items {
        out.push(*source);
        out.extend_from_slice(&(d.len() as u16).to_be_bytes());
        out.extend_from_slice(d);
    }
    out
}

fn main() {
    // RFC 5769 sample request and response.
    let request = hex(
        "00010058 2112a442 b7e7a701 bc34d686 fa87dfae 80220010 5354554e 20746573 7420636c 69656e74 00240004 6e0001ff
         80290008 932ff9b1 51263b36 00060009 6576746a 3a683676 59202020 00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249
         c1b571a2 80280004 e57a3bcf",
    );
    let response = hex(
        "0101003c 2112a442 b7e7a701 bc34d686 fa87dfae 8022000b 74657374 20766563 746f7220 00200008 0001a147 e112a643
         00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7 80280004 c07d4c96",
    );
    write("stun", "rfc5769-request", &request);
    write("stun", "rfc5769-response", &response);

    let rtp_with_extensions =
        hex("9180 1234 000003e8 deadbeef 01020304 bede0003 10850032 aabbcc51 01020000 7061796c6f6164");
    write("rtp", "extensions-csrc", &rtp_with_extensions);
    write("rtp", "two-byte-extensions", &hex("9060 0001 00000001 00000009 10000002 07030909 09000000"));
    write("rtp", "padding", &hex("a060 0001 00000001 00000009 01020302"));

    let mut sr = hex("81c8000c deadbeef 01020304 05060708 00000009 0000000a 0000000b");
    sr.extend(hex("00000063 19fffffd 00011170 00000005 00000006 00000007"));
    sr.extend(hex("81ce0002 00000007 00000063"));
    write("rtcp", "sr-pli", &sr);
    write("rtcp", "nack", &hex("81cd0004 00000001 00000002 0064000f 01f40001"));
    write("rtcp", "remb", &hex("8fce0006 00000001 00000000 52454d42 020eddac 0000000a 0000000b"));
    write("rtcp", "fir", &hex("84ce0004 00000001 00000000 00000002 05000000"));
    let mut twcc = vec![0u8; 256];
    let n = sluice_dataplane::packet::twcc::write(
        &mut twcc,
        1,
        2,
        65_530,
        3,
        &[Some(1_000), None, Some(900), Some(200_000), None, Some(200_250), Some(200_500), None, Some(201_000)],
    )
    .unwrap();
    write("rtcp", "transport-feedback", &twcc[..n]);

    for (i, profile) in Profile::ALL.into_iter().enumerate() {
        // The fuzz target's own fixed keys, so these are packets it can open.
        let keys = Keys { key: vec![7u8; profile.master_key_len()], salt: vec![9u8; profile.master_salt_len()] };
        let mut peer = TestPeer::new(1, "u", "p", profile, &keys, &keys);
        write("srtp", &format!("media-{i}"), &peer.media(200, 1));
        write("srtp", &format!("pli-{i}"), &peer.pli(5));
    }

    // The core target's publisher (source 0) and subscriber (source 1), with its keys (see fuzz::core).
    let pub_keys = Keys { key: vec![0u8; 16], salt: vec![1u8; 12] };
    let sub_profile = Profile::ALL[1];
    let sub_keys =
        Keys { key: vec![1u8; sub_profile.master_key_len()], salt: vec![1u8; sub_profile.master_salt_len()] };
    let mut publisher = TestPeer::new(0, "u0", "password-password-0", Profile::ALL[0], &pub_keys, &pub_keys);
    let mut subscriber = TestPeer::new(1, "u1", "password-password-1", sub_profile, &sub_keys, &sub_keys);
    // The core's track SSRC for the publisher is 0x1000_0000, which is the test peer 0's SSRC.
    let media: Vec<Vec<u8>> = (0..3).map(|t| publisher.media(300, t)).collect();
    let check = subscriber.binding_request(false);
    let pli = subscriber.pli(0x2000);
    let client_hello_like = hex("16fefd 0000 000000000000 0020 01000014 0000 000000000014 fefd 00000000");
    write(
        "core",
        "media-check-pli-dtls",
        &framed(&[
            (0, &media[0]),
            (0, &media[1]),
            (1, &check),
            (1, &pli),
            (0, &media[2]),
            (1, &client_hello_like),
            (2, &media[0]),
        ]),
    );
    write("core", "stun-request", &framed(&[(1, &request)]));
    // A real DTLS 1.2 ClientHello flight from a client endpoint, and a truncated one.
    let client = sluice_dataplane::core::DtlsIdentity::generate_for_simulation(3).unwrap();
    let mut endpoint = client.client(std::time::Instant::now());
    let _ = endpoint.handle_timeout(std::time::Instant::now());
    let mut scratch = vec![0u8; 4096];
    let mut flight = vec![];
    while let dimpl::Output::Packet(p) = endpoint.poll_output(&mut scratch) {
        flight.extend_from_slice(&(p.len() as u16).to_be_bytes());
        flight.extend_from_slice(p);
    }
    write("dtls", "client-hello", &flight);
    write("dtls", "truncated", &flight[..flight.len().min(40)]);
    println!("seeds written under {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").display());
}
