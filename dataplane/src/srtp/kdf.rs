//! The SRTP key derivation function (RFC 3711 section 4.3, AES-CM PRF) with key derivation rate 0, which is
//! what DTLS-SRTP uses.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Aes256};

/// The PRF runs AES with the master key, so its size picks the cipher (RFC 6188 for 256-bit keys).
// Lives only while a context is built; its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Prf {
    Aes128(Aes128),
    Aes256(Aes256),
}

pub struct Kdf {
    aes: Prf,
    /// The master salt, left-aligned in 14 bytes (a 12-byte AEAD salt is padded with zeros, RFC 7714 section 11).
    salt: [u8; 14],
}

impl Kdf {
    pub fn new(master_key: &[u8], master_salt: &[u8]) -> Kdf {
        let mut salt = [0u8; 14];
        salt[..master_salt.len()].copy_from_slice(master_salt);
        let aes = match master_key.len() {
            32 => Prf::Aes256(Aes256::new_from_slice(master_key).expect("32 bytes")),
            _ => Prf::Aes128(Aes128::new_from_slice(master_key).expect("callers pass a 16- or 32-byte key")),
        };
        Kdf { aes, salt }
    }

    /// `N` bytes of AES-CM keystream under the master key, from IV = (salt XOR (label << 48)) << 16.
    pub fn derive<const N: usize>(&self, label: u8) -> [u8; N] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        // key_id = label || r (48 bits of zero), right-aligned against the 112-bit salt: the label is byte 7.
        iv[7] ^= label;
        let mut out = [0u8; N];
        for (counter, chunk) in out.chunks_mut(16).enumerate() {
            let mut block = iv;
            block[14..].copy_from_slice(&(counter as u16).to_be_bytes());
            let mut block: aes::Block = block.into();
            match &self.aes {
                Prf::Aes128(aes) => aes.encrypt_block(&mut block),
                Prf::Aes256(aes) => aes.encrypt_block(&mut block),
            }
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        out
    }
}
