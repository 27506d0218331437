//! Our SRTP against Debian's libsrtp2 (2.5), all three suites, RTP and RTCP, across a sequence-number wrap: what one
//! protects the other unprotects, and both produce the same bytes for the same key, packet and index.
//! Needs `libsrtp2-dev` (tests/run.sh installs it).

use std::ffi::{c_int, c_uint, c_ulong, c_void};

use sluice_dataplane::srtp::{Context, Profile, ReplayWindow};

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CryptoPolicy {
    cipher_type: u32,
    cipher_key_len: c_int,
    auth_type: u32,
    auth_key_len: c_int,
    auth_tag_len: c_int,
    sec_serv: c_int,
}

#[repr(C)]
struct Policy {
    ssrc_type: c_int,
    ssrc_value: c_uint,
    rtp: CryptoPolicy,
    rtcp: CryptoPolicy,
    key: *const u8,
    keys: *mut c_void,
    num_master_keys: c_ulong,
    deprecated_ekt: *mut c_void,
    window_size: c_ulong,
    allow_repeat_tx: c_int,
    enc_xtn_hdr: *mut c_int,
    enc_xtn_hdr_count: c_int,
    next: *mut Policy,
}

type Session = *mut c_void;

#[link(name = "srtp2")]
unsafe extern "C" {
    fn srtp_init() -> c_int;
    fn srtp_create(session: *mut Session, policy: *const Policy) -> c_int;
    fn srtp_dealloc(session: Session) -> c_int;
    fn srtp_protect(session: Session, packet: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect(session: Session, packet: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_protect_rtcp(session: Session, packet: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect_rtcp(session: Session, packet: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_crypto_policy_set_aes_gcm_128_16_auth(policy: *mut CryptoPolicy);
    fn srtp_crypto_policy_set_aes_gcm_256_16_auth(policy: *mut CryptoPolicy);
    /// AES_CM_128_HMAC_SHA1_80 (`srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80` is a macro for it).
    fn srtp_crypto_policy_set_rtp_default(policy: *mut CryptoPolicy);
}

const SSRC_ANY_INBOUND: c_int = 2;
const SSRC_ANY_OUTBOUND: c_int = 3;

/// A libsrtp2 session for one direction.
struct Libsrtp(Session);

impl Libsrtp {
    fn new(profile: Profile, key_and_salt: &[u8], outbound: bool) -> Libsrtp {
        let key = key_and_salt.to_vec();
        let mut crypto = CryptoPolicy::default();
        // libsrtp's global init is not thread-safe; tests run in parallel.
        static INIT: std::sync::Once = std::sync::Once::new();
        // SAFETY: called once, before any session exists.
        INIT.call_once(|| assert_eq!(unsafe { srtp_init() }, 0, "srtp_init"));
        // SAFETY: the setters only write the struct they are given.
        unsafe {
            match profile {
                Profile::AeadAes128Gcm => srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut crypto),
                Profile::AeadAes256Gcm => srtp_crypto_policy_set_aes_gcm_256_16_auth(&mut crypto),
                Profile::Aes128CmHmacSha1_80 => srtp_crypto_policy_set_rtp_default(&mut crypto),
            }
        }
        let policy = Policy {
            ssrc_type: if outbound { SSRC_ANY_OUTBOUND } else { SSRC_ANY_INBOUND },
            ssrc_value: 0,
            rtp: crypto,
            rtcp: crypto,
            key: key.as_ptr(),
            keys: std::ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: std::ptr::null_mut(),
            window_size: 128,
            allow_repeat_tx: 0,
            enc_xtn_hdr: std::ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: std::ptr::null_mut(),
        };
        let mut session: Session = std::ptr::null_mut();
        // SAFETY: the policy and key outlive the call; libsrtp copies what it keeps.
        assert_eq!(unsafe { srtp_create(&mut session, &policy) }, 0, "srtp_create");
        Libsrtp(session)
    }

    fn call(
        &self,
        f: unsafe extern "C" fn(Session, *mut c_void, *mut c_int) -> c_int,
        buf: &mut Vec<u8>,
        len: usize,
    ) -> Result<usize, c_int> {
        buf.resize(len + 64, 0);
        let mut n = len as c_int;
        // SAFETY: the buffer has 64 spare bytes, more than any tag and trailer.
        let status = unsafe { f(self.0, buf.as_mut_ptr().cast(), &mut n) };
        if status == 0 { Ok(n as usize) } else { Err(status) }
    }
}

impl Drop for Libsrtp {
    fn drop(&mut self) {
        // SAFETY: created by srtp_create, freed once.
        unsafe { srtp_dealloc(self.0) };
    }
}

fn key_and_salt(profile: Profile) -> Vec<u8> {
    (0..profile.master_key_len() + profile.master_salt_len()).map(|i| (i * 7 + 3) as u8).collect()
}

fn rtp(seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0x90, 111, (seq >> 8) as u8, seq as u8, 0x12, 0x34, 0x56, 0x78, 0xde, 0xad, 0xbe, 0xef];
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x22, 0x01, 0x02, 0x03]);
    p.extend((0..len).map(|i| (i as u8).wrapping_mul(31)));
    p
}

const HEADER_LEN: usize = 20;

/// Sequence numbers that cross the 16-bit wrap, so the rollover counter must advance on both sides.
fn sequence() -> impl Iterator<Item = u16> {
    (0xfff0u16..=0xffff).chain(0..16)
}

fn check_rtp(profile: Profile) {
    let ks = key_and_salt(profile);
    let (mk, ms) = ks.split_at(profile.master_key_len());
    let ours = Context::new(profile, mk, ms).unwrap();
    let theirs_tx = Libsrtp::new(profile, &ks, true);
    let theirs_rx = Libsrtp::new(profile, &ks, false);
    let mut roc = 0u64;
    let mut window = ReplayWindow::default();
    for (i, seq) in sequence().enumerate() {
        if seq == 0 && i > 0 {
            roc += 1;
        }
        let index = (roc << 16) | u64::from(seq);
        let plain = rtp(seq, 100 + i * 37);

        let mut by_them = plain.clone();
        let n = theirs_tx.call(srtp_protect, &mut by_them, plain.len()).expect("libsrtp protects");
        let mut by_us = plain.clone();
        by_us.resize(plain.len() + profile.rtp_overhead(), 0);
        let m = ours.protect_rtp(&mut by_us, plain.len(), HEADER_LEN, index).unwrap();
        assert_eq!(by_us[..m], by_them[..n], "{profile:?} seq {seq}: same bytes as libsrtp");

        // Theirs → ours, estimating the index from the sequence number as a receiver does.
        let estimated = window.index_for(seq);
        assert_eq!(estimated, index, "index estimation across the wrap");
        let k = ours.unprotect_rtp(&mut by_them[..n], HEADER_LEN, estimated).unwrap();
        assert_eq!(by_them[..k], plain[..]);
        window.record(estimated);

        // Ours → theirs.
        let k = theirs_rx.call(srtp_unprotect, &mut by_us, m).expect("libsrtp unprotects ours");
        assert_eq!(by_us[..k], plain[..]);
    }
}

fn check_rtcp(profile: Profile) {
    let ks = key_and_salt(profile);
    let (mk, ms) = ks.split_at(profile.master_key_len());
    let ours = Context::new(profile, mk, ms).unwrap();
    let theirs_tx = Libsrtp::new(profile, &ks, true);
    let theirs_rx = Libsrtp::new(profile, &ks, false);
    // libsrtp2 numbers the first SRTCP packet 1.
    for index in 1..=20u32 {
        // Sender report with one report block and an SDES chunk.
        let mut plain = vec![0x81, 200, 0, 12, 0xde, 0xad, 0xbe, 0xef];
        plain.extend((0..44).map(|i| (i as u8) ^ index as u8));
        plain.extend_from_slice(&[0x81, 202, 0, 3, 0xde, 0xad, 0xbe, 0xef, 1, 4, b'a', b'b', b'c', b'd', 0, 0]);

        let mut by_them = plain.clone();
        let n = theirs_tx.call(srtp_protect_rtcp, &mut by_them, plain.len()).expect("libsrtp protects RTCP");
        let mut by_us = plain.clone();
        by_us.resize(plain.len() + profile.rtcp_overhead(), 0);
        let m = ours.protect_rtcp(&mut by_us, plain.len(), index).unwrap();
        assert_eq!(by_us[..m], by_them[..n], "{profile:?} SRTCP index {index}");

        let (k, got) = ours.unprotect_rtcp(&mut by_them[..n]).unwrap();
        assert_eq!((&by_them[..k], got), (&plain[..], index));
        let k = theirs_rx.call(srtp_unprotect_rtcp, &mut by_us, m).expect("libsrtp unprotects our RTCP");
        assert_eq!(by_us[..k], plain[..]);
    }
}

#[test]
fn gcm_rtp_matches_libsrtp2() {
    check_rtp(Profile::AeadAes128Gcm);
}

#[test]
fn cm_hmac_rtp_matches_libsrtp2() {
    check_rtp(Profile::Aes128CmHmacSha1_80);
}

#[test]
fn gcm_rtcp_matches_libsrtp2() {
    check_rtcp(Profile::AeadAes128Gcm);
}

#[test]
fn cm_hmac_rtcp_matches_libsrtp2() {
    check_rtcp(Profile::Aes128CmHmacSha1_80);
}

#[test]
fn gcm256_rtp_matches_libsrtp2() {
    check_rtp(Profile::AeadAes256Gcm);
}

#[test]
fn gcm256_rtcp_matches_libsrtp2() {
    check_rtcp(Profile::AeadAes256Gcm);
}
