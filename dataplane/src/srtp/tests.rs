use proptest::prelude::*;

use super::*;

const KEY: [u8; 16] = *b"0123456789abcdef";

fn contexts(profile: Profile) -> (Context, Context) {
    let salt = &b"saltsaltsalts!"[..profile.master_salt_len()];
    let key = &[KEY, KEY].concat()[..profile.master_key_len()];
    (Context::new(profile, key, salt).unwrap(), Context::new(profile, key, salt).unwrap())
}

/// An RTP packet: 12-byte header with SSRC 0xcafebabe, one-byte-extension block of 8 bytes, then payload.
fn rtp_packet(seq: u16, payload_len: usize) -> (Vec<u8>, usize) {
    let mut p = vec![0x90, 96, (seq >> 8) as u8, seq as u8, 0, 0, 0x10, 0, 0xca, 0xfe, 0xba, 0xbe];
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xab, 0, 0]);
    let header_len = p.len();
    p.extend((0..payload_len).map(|i| i as u8));
    (p, header_len)
}

fn both() -> [Profile; 3] {
    Profile::ALL
}

#[test]
fn rtp_round_trips_and_encrypts_only_the_payload() {
    for profile in both() {
        let (tx, rx) = contexts(profile);
        let (plain, header_len) = rtp_packet(7, 1200);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtp_overhead(), 0);
        let n = tx.protect_rtp(&mut buf, plain.len(), header_len, 7).unwrap();
        assert_eq!(n, plain.len() + profile.rtp_overhead());
        assert_eq!(buf[..header_len], plain[..header_len], "{profile:?}: the header stays in the clear");
        assert_ne!(buf[header_len..plain.len()], plain[header_len..], "{profile:?}: the payload is encrypted");
        let m = rx.unprotect_rtp(&mut buf[..n], header_len, 7).unwrap();
        assert_eq!(buf[..m], plain[..], "{profile:?}");
    }
}

#[test]
fn any_flipped_bit_or_wrong_index_fails_authentication() {
    for profile in both() {
        let (tx, rx) = contexts(profile);
        let (plain, header_len) = rtp_packet(9, 100);
        let mut sealed = plain.clone();
        sealed.resize(plain.len() + profile.rtp_overhead(), 0);
        let n = tx.protect_rtp(&mut sealed, plain.len(), header_len, 9).unwrap();
        for bit in [0, 8 * 3, 8 * header_len + 5, 8 * (n - 1)] {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(rx.unprotect_rtp(&mut bad, header_len, 9), Err(SrtpError::AuthFailed), "{profile:?} bit {bit}");
        }
        let mut other_roc = sealed.clone();
        assert_eq!(rx.unprotect_rtp(&mut other_roc, header_len, (1 << 16) | 9), Err(SrtpError::AuthFailed));
        let mut short = sealed[..header_len + 2].to_vec();
        assert!(rx.unprotect_rtp(&mut short, header_len, 9).is_err());
    }
}

#[test]
fn rtcp_round_trips_with_its_index() {
    for profile in both() {
        let (tx, rx) = contexts(profile);
        // A receiver report with one block, plus a PLI: a compound packet.
        let mut plain = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
        plain.extend((0..24).map(|i| i as u8));
        plain.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 1, 0xca, 0xfe, 0xba, 0xbe]);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtcp_overhead(), 0);
        let n = tx.protect_rtcp(&mut buf, plain.len(), 0x7fff_fffe).unwrap();
        assert_eq!(n, plain.len() + profile.rtcp_overhead());
        assert_ne!(buf[8..plain.len()], plain[8..]);
        let (m, index) = rx.unprotect_rtcp(&mut buf[..n]).unwrap();
        assert_eq!((&buf[..m], index), (&plain[..], 0x7fff_fffe), "{profile:?}");

        let mut tampered = buf[..n].to_vec();
        tx.protect_rtcp(&mut tampered, plain.len(), 3).ok();
        tampered[n - 1] ^= 0x80;
        assert_eq!(rx.unprotect_rtcp(&mut tampered), Err(SrtpError::AuthFailed));
    }
}

#[test]
fn too_small_buffers_and_bad_keys_are_errors_not_panics() {
    let (tx, _) = contexts(Profile::AeadAes128Gcm);
    let (plain, header_len) = rtp_packet(1, 10);
    let mut exact = plain.clone();
    assert_eq!(tx.protect_rtp(&mut exact, plain.len(), header_len, 1), Err(SrtpError::NoRoom));
    assert_eq!(tx.protect_rtp(&mut exact, 4, 12, 1), Err(SrtpError::TooShort));
    assert!(matches!(Context::new(Profile::AeadAes128Gcm, &KEY, &[0; 14]), Err(SrtpError::BadKeyLength { .. })));
    assert!(matches!(
        Context::new(Profile::Aes128CmHmacSha1_80, &KEY[..8], &[0; 14]),
        Err(SrtpError::BadKeyLength { .. })
    ));
    assert_eq!(Profile::from_dtls_id(7), Some(Profile::AeadAes128Gcm));
    assert_eq!(Profile::from_dtls_id(0x0002), None);
}

#[test]
fn replay_window_refuses_duplicates_and_stale_packets() {
    let mut w = ReplayWindow::default();
    assert_eq!(w.check(1000), Ok(()));
    w.record(1000);
    assert_eq!(w.check(1000), Err(ReplayError::Duplicate));
    assert_eq!(w.check(999), Ok(()), "late but inside the window");
    w.record(999);
    assert_eq!(w.check(999), Err(ReplayError::Duplicate));
    w.record(1000 + WINDOW_LEN);
    assert_eq!(w.check(1000), Err(ReplayError::TooOld));
    assert_eq!(w.check(1001), Ok(()));
    w.record(1_000_000);
    assert_eq!(w.check(1000 + WINDOW_LEN), Err(ReplayError::TooOld), "a jump clears the window");
}

#[test]
fn index_estimation_follows_sequence_wrap() {
    assert_eq!(estimate_index(0xfffe, 2), 0x1_0002, "wrapped forward");
    assert_eq!(estimate_index(0x1_0002, 0xfffe), 0xfffe, "late packet from before the wrap");
    assert_eq!(estimate_index(5, 0xfff0), 0xfff0, "no negative rollover counter");
    assert_eq!(estimate_index(0x3_1000, 0x1001), 0x3_1001);
}

proptest! {
    /// Any packet within half the sequence space of the highest index is given its true index.
    #[test]
    fn estimate_recovers_the_true_index(highest in 0x8000u64..(1 << 47), delta in -0x7fffi64..0x7fff) {
        let truth = (highest as i64 + delta) as u64;
        prop_assert_eq!(estimate_index(highest, truth as u16), truth);
    }

    /// The window accepts each index once, whatever the arrival order inside the window.
    #[test]
    fn window_accepts_each_index_exactly_once(order in proptest::collection::vec(0u64..200, 1..400)) {
        let mut w = ReplayWindow::default();
        let mut accepted = std::collections::HashSet::new();
        for i in order {
            if w.check(i).is_ok() {
                prop_assert!(accepted.insert(i), "index {} accepted twice", i);
                w.record(i);
            }
        }
    }

    /// Protect then unprotect is the identity for any payload, index and suite.
    #[test]
    fn protect_unprotect_is_identity(payload in proptest::collection::vec(any::<u8>(), 0..1400), index in 0u64..(1 << 48), which in 0usize..3) {
        let profile = Profile::ALL[which];
        let (tx, rx) = contexts(profile);
        let mut p = vec![0x80, 111, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
        p[2..4].copy_from_slice(&(index as u16).to_be_bytes());
        p.extend_from_slice(&payload);
        let plain = p.clone();
        p.resize(plain.len() + profile.rtp_overhead(), 0);
        let n = tx.protect_rtp(&mut p, plain.len(), 12, index).unwrap();
        let m = rx.unprotect_rtp(&mut p[..n], 12, index).unwrap();
        prop_assert_eq!(&p[..m], &plain[..]);
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

impl Context {
    /// RFC 7714's vectors give session keys directly.
    fn gcm_from_session_keys(key: &[u8], salt: &[u8; 12]) -> Context {
        let t = || Transform::Gcm(gcm::Gcm::new(key, salt));
        let profile = if key.len() == 32 { Profile::AeadAes256Gcm } else { Profile::AeadAes128Gcm };
        Context { profile, rtp: t(), rtcp: t() }
    }
}

/// RFC 3711 Appendix B.3.
#[test]
fn rfc3711_key_derivation_vectors() {
    let kdf = kdf::Kdf::new(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"), &hex("0EC675AD498AFEEBB6960B3AABE6"));
    assert_eq!(kdf.derive::<16>(label::RTP_ENCRYPTION).to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    assert_eq!(kdf.derive::<14>(label::RTP_SALT).to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let auth = hex("CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE E049646C43D9327AD175578EF7227098
         6371C10C9A369AC2F94A8C5FBCDDDC25 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2");
    assert_eq!(kdf.derive::<94>(label::RTP_AUTH).to_vec(), auth);
}

/// RFC 3711 Appendix B.2: with SSRC, ROC and SEQ zero, encrypting zeros yields the keystream.
#[test]
fn rfc3711_aes_cm_keystream_vectors() {
    let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let t = cm::Cm::new(&key, &salt, &[0; 20]);
    let mut buf = vec![0u8; 12 + 48 + cm::TAG_LEN];
    buf[0] = 0x80;
    t.protect_rtp(&mut buf, 60, 12, 0, 0).unwrap();
    let keystream =
        hex("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0");
    assert_eq!(buf[12..60], keystream[..]);
}

/// RFC 7714 section 16.1.1.
#[test]
fn rfc7714_srtp_gcm_vector() {
    let ctx = Context::gcm_from_session_keys(
        &hex("000102030405060708090a0b0c0d0e0f"),
        &hex("517569642070726f2071756f").try_into().unwrap(),
    );
    let plain = hex(
        "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573",
    );
    let expected = hex(
        "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf
         8833899d 7f27beb1 6a9152cf 765ee439 0cce",
    );
    let mut buf = plain.clone();
    buf.resize(plain.len() + 16, 0);
    let n = ctx.protect_rtp(&mut buf, plain.len(), 12, 0xf17b).unwrap();
    assert_eq!(buf[..n], expected[..]);
    let m = ctx.unprotect_rtp(&mut buf[..n], 12, 0xf17b).unwrap();
    assert_eq!(buf[..m], plain[..]);
}

/// RFC 7714 section 17.1: the E/index word follows the tag.
#[test]
fn rfc7714_srtcp_gcm_vector() {
    let ctx = Context::gcm_from_session_keys(
        &hex("000102030405060708090a0b0c0d0e0f"),
        &hex("517569642070726f2071756f").try_into().unwrap(),
    );
    let plain = hex(
        "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef",
    );
    let expected = hex(
        "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded
         0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4",
    );
    let mut buf = plain.clone();
    buf.resize(plain.len() + 20, 0);
    let n = ctx.protect_rtcp(&mut buf, plain.len(), 0x5d4).unwrap();
    assert_eq!(buf[..n], expected[..]);
    let (m, index) = ctx.unprotect_rtcp(&mut buf[..n]).unwrap();
    assert_eq!((&buf[..m], index), (&plain[..], 0x5d4));
}

/// RFC 7714 section 16.2.1: AEAD_AES_256_GCM.
#[test]
fn rfc7714_srtp_gcm256_vector() {
    let ctx = Context::gcm_from_session_keys(
        &hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
        &hex("517569642070726f2071756f").try_into().unwrap(),
    );
    let plain = hex(
        "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573",
    );
    let expected = hex(
        "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799
         b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
    );
    let mut buf = plain.clone();
    buf.resize(plain.len() + 16, 0);
    let n = ctx.protect_rtp(&mut buf, plain.len(), 12, 0xf17b).unwrap();
    assert_eq!(buf[..n], expected[..]);
}
