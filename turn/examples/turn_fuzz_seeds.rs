//! Writes the seed corpus of the TURN fuzz targets (`turn/fuzz/corpus/{message,server}/`): real requests of
//! every method, signed where they must be, and whole sessions for the server target.
//!
//! `cargo run -p sluice-turn --example turn_fuzz_seeds`

use std::net::SocketAddr;
use std::path::Path;

use sluice_turn::auth::{self, Nonces};
use sluice_turn::fuzz::{FUZZ_CLIENT, FUZZ_NONCE_KEY, FUZZ_SECRET, FUZZ_UNIX};
use sluice_turn::proto::{Writer, attr, msg};

fn message(msg_type: u16, txid: u8, attrs: &[(u16, &[u8])], peer: Option<SocketAddr>, signed: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut w = Writer::new(&mut buf, msg_type, [txid; 12]).unwrap();
    if let Some(peer) = peer {
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
    }
    for (t, v) in attrs {
        w.attr(*t, v).unwrap();
    }
    if signed {
        let username = format!("{}:fuzz", FUZZ_UNIX + 3600);
        let password = auth::rest_password(FUZZ_SECRET, &username);
        let nonce = Nonces::new(FUZZ_NONCE_KEY, std::time::Duration::from_secs(600)).issue(FUZZ_CLIENT.ip(), FUZZ_UNIX);
        w.attr(attr::USERNAME, username.as_bytes()).unwrap();
        w.attr(attr::REALM, b"sluice").unwrap();
        w.attr(attr::NONCE, &nonce).unwrap();
        w.integrity(&auth::long_term_key(&username, "sluice", &password)).unwrap();
    }
    if txid.is_multiple_of(2) {
        w.fingerprint().unwrap();
    }
    let len = w.len();
    buf.truncate(len);
    buf
}

fn session(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&(m.len() as u16).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

fn main() {
    let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
    let denied: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let udp: &[u8] = &[17, 0, 0, 0];
    let allocate = message(msg::ALLOCATE_REQUEST, 1, &[(attr::REQUESTED_TRANSPORT, udp)], None, true);
    let reserve =
        message(msg::ALLOCATE_REQUEST, 2, &[(attr::REQUESTED_TRANSPORT, udp), (attr::EVEN_PORT, &[0x80])], None, true);
    let permission = message(msg::CREATE_PERMISSION_REQUEST, 3, &[], Some(peer), true);
    let bind = message(msg::CHANNEL_BIND_REQUEST, 4, &[(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0])], Some(peer), true);
    let bad_bind =
        message(msg::CHANNEL_BIND_REQUEST, 5, &[(attr::CHANNEL_NUMBER, &[0x40, 1, 0, 0])], Some(denied), true);
    let send = message(msg::SEND_INDICATION, 6, &[(attr::DATA, b"hello")], Some(peer), false);
    let refresh = message(msg::REFRESH_REQUEST, 7, &[(attr::LIFETIME, &[0, 0, 0, 0])], None, true);
    let binding = message(msg::BINDING_REQUEST, 8, &[], None, false);
    let unauth = message(msg::ALLOCATE_REQUEST, 9, &[(attr::REQUESTED_TRANSPORT, udp)], None, false);
    let channel_data = vec![0x40, 0x00, 0x00, 0x05, b'w', b'o', b'r', b'l', b'd', 0, 0, 0];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus");
    let singles =
        [&allocate, &reserve, &permission, &bind, &bad_bind, &send, &refresh, &binding, &unauth, &channel_data];
    let sessions = [
        session(&[allocate.clone(), permission.clone(), send.clone(), refresh.clone()]),
        session(&[allocate.clone(), bind.clone(), channel_data.clone(), bad_bind.clone(), refresh.clone()]),
        session(&[reserve.clone(), binding.clone(), unauth.clone(), allocate.clone()]),
        session(&[unauth.clone(), unauth.clone(), channel_data.clone()]),
        {
            let mut tcp = session(&[allocate.clone(), bind.clone(), channel_data.clone()]);
            tcp.insert(0, 0x80);
            tcp.insert(1, 0);
            tcp
        },
    ];
    for (dir, seeds) in
        [("message", singles.iter().map(|s| (*s).clone()).collect::<Vec<_>>()), ("server", sessions.to_vec())]
    {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
}
