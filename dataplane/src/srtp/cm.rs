//! AES_CM_128_HMAC_SHA1_80 for SRTP and SRTCP (RFC 3711 sections 4.1.1 and 4.2.1), in place.

use aes::Aes128;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{RTCP_HEADER_LEN, SRTCP_E_FLAG, SRTCP_INDEX_LEN, SrtpError, read_u32};

pub const TAG_LEN: usize = 10;
pub const SALT_LEN: usize = 14;
pub const AUTH_KEY_LEN: usize = 20;

type AesCtr = ctr::Ctr128BE<Aes128>;

pub struct Cm {
    /// The expanded key schedule, cloned per packet instead of re-expanded.
    aes: Aes128,
    salt: [u8; SALT_LEN],
    /// Keyed once; cloned per packet (a copy of the hash state on the stack, no allocation).
    mac: Hmac<Sha1>,
}

impl Cm {
    pub fn new(key: &[u8; 16], salt: &[u8; SALT_LEN], auth_key: &[u8; AUTH_KEY_LEN]) -> Cm {
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_key).expect("HMAC takes any key length");
        Cm { aes: Aes128::new(key.into()), salt: *salt, mac }
    }

    /// IV = (salt << 16) XOR (SSRC << 64) XOR (index << 16).
    fn cipher(&self, ssrc: u32, index: u64) -> AesCtr {
        let mut iv = [0u8; 16];
        iv[..SALT_LEN].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
            *b ^= s;
        }
        AesCtr::from_core(ctr::CtrCore::inner_iv_init(self.aes.clone(), &iv.into()))
    }

    /// HMAC-SHA1 over `parts`, truncated to 80 bits.
    fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    pub fn protect_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        self.cipher(ssrc, index).apply_keystream(&mut buf[header_len..len]);
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.tag(&[&buf[..len], &roc]);
        buf[len..len + TAG_LEN].copy_from_slice(&tag);
        Ok(len + TAG_LEN)
    }

    pub fn unprotect_rtp(&self, buf: &mut [u8], header_len: usize, ssrc: u32, index: u64) -> Result<usize, SrtpError> {
        let len = buf.len() - TAG_LEN;
        let roc = ((index >> 16) as u32).to_be_bytes();
        let expected = self.tag(&[&buf[..len], &roc]);
        if !constant_time_eq(&expected, &buf[len..]) {
            return Err(SrtpError::AuthFailed);
        }
        self.cipher(ssrc, index).apply_keystream(&mut buf[header_len..len]);
        Ok(len)
    }

    /// Output: header (8) || ciphertext || E-flag and index (4) || tag (10).
    pub fn protect_rtcp(&self, buf: &mut [u8], len: usize, ssrc: u32, index: u32) -> Result<usize, SrtpError> {
        self.cipher(ssrc, u64::from(index)).apply_keystream(&mut buf[RTCP_HEADER_LEN..len]);
        buf[len..len + SRTCP_INDEX_LEN].copy_from_slice(&(SRTCP_E_FLAG | index).to_be_bytes());
        let authenticated = len + SRTCP_INDEX_LEN;
        let tag = self.tag(&[&buf[..authenticated]]);
        buf[authenticated..authenticated + TAG_LEN].copy_from_slice(&tag);
        Ok(authenticated + TAG_LEN)
    }

    pub fn unprotect_rtcp(&self, buf: &mut [u8], ssrc: u32) -> Result<(usize, u32), SrtpError> {
        let authenticated = buf.len() - TAG_LEN;
        let expected = self.tag(&[&buf[..authenticated]]);
        if !constant_time_eq(&expected, &buf[authenticated..]) {
            return Err(SrtpError::AuthFailed);
        }
        let len = authenticated - SRTCP_INDEX_LEN;
        let word = read_u32(buf, len);
        if word & SRTCP_E_FLAG == 0 {
            return Err(SrtpError::AuthFailed);
        }
        let index = word & !SRTCP_E_FLAG;
        self.cipher(ssrc, u64::from(index)).apply_keystream(&mut buf[RTCP_HEADER_LEN..len]);
        Ok((len, index))
    }
}

/// Compares tags without an early exit, so timing does not reveal how many leading bytes matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
