//! AEAD_AES_128_GCM for SRTP and SRTCP (RFC 7714), through `ring`, in place.

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::{RTCP_HEADER_LEN, SRTCP_E_FLAG, SRTCP_INDEX_LEN, SrtpError, read_u32};

pub const TAG_LEN: usize = 16;
pub const SALT_LEN: usize = 12;

pub struct Gcm {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl Gcm {
    /// A 16-byte key selects AES-128-GCM, a 32-byte key AES-256-GCM.
    pub fn new(key: &[u8], salt: &[u8; SALT_LEN]) -> Gcm {
        let algorithm = if key.len() == 32 { &AES_256_GCM } else { &AES_128_GCM };
        let key =
            LessSafeKey::new(UnboundKey::new(algorithm, key).expect("the caller derived a key of the right size"));
        Gcm { key, salt: *salt }
    }

    /// IV = (0x0000 || SSRC || ROC || SEQ) XOR salt (RFC 7714 section 8.1).
    fn rtp_nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..8]);
        xor_salt(iv, &self.salt)
    }

    /// IV = (0x0000 || SSRC || 0x0000 || 0 || SRTCP index) XOR salt (RFC 7714 section 9.1).
    fn rtcp_nonce(&self, ssrc: u32, index: u32) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[8..12].copy_from_slice(&index.to_be_bytes());
        xor_salt(iv, &self.salt)
    }

    pub fn seal_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let (header, rest) = buf.split_at_mut(header_len);
        let tag = self.seal(self.rtp_nonce(ssrc, index), header, &mut rest[..len - header_len])?;
        rest[len - header_len..len - header_len + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(len + TAG_LEN)
    }

    pub fn open_rtp(&self, buf: &mut [u8], header_len: usize, ssrc: u32, index: u64) -> Result<usize, SrtpError> {
        let (header, rest) = buf.split_at_mut(header_len);
        let plain = self
            .key
            .open_in_place(self.rtp_nonce(ssrc, index), Aad::from(&*header), rest)
            .map_err(|_| SrtpError::AuthFailed)?;
        Ok(header_len + plain.len())
    }

    /// Output: header (8) || ciphertext || tag (16) || E-flag and index (4); the AAD is the header and the
    /// E/index word (RFC 7714 section 9.2).
    pub fn seal_rtcp(&self, buf: &mut [u8], len: usize, ssrc: u32, index: u32) -> Result<usize, SrtpError> {
        let trailer = (SRTCP_E_FLAG | index).to_be_bytes();
        let mut aad = [0u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN];
        aad[..RTCP_HEADER_LEN].copy_from_slice(&buf[..RTCP_HEADER_LEN]);
        aad[RTCP_HEADER_LEN..].copy_from_slice(&trailer);
        let tag = self.seal(self.rtcp_nonce(ssrc, index), &aad, &mut buf[RTCP_HEADER_LEN..len])?;
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        buf[len + TAG_LEN..len + TAG_LEN + SRTCP_INDEX_LEN].copy_from_slice(&trailer);
        Ok(len + TAG_LEN + SRTCP_INDEX_LEN)
    }

    pub fn open_rtcp(&self, buf: &mut [u8], ssrc: u32) -> Result<(usize, u32), SrtpError> {
        let trailer_at = buf.len() - SRTCP_INDEX_LEN;
        let word = read_u32(buf, trailer_at);
        if word & SRTCP_E_FLAG == 0 {
            // Unencrypted SRTCP is allowed by RFC 3711 but never sent by browsers; we do not accept it.
            return Err(SrtpError::AuthFailed);
        }
        let index = word & !SRTCP_E_FLAG;
        let mut aad = [0u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN];
        aad[..RTCP_HEADER_LEN].copy_from_slice(&buf[..RTCP_HEADER_LEN]);
        aad[RTCP_HEADER_LEN..].copy_from_slice(&word.to_be_bytes());
        let plain = self
            .key
            .open_in_place(self.rtcp_nonce(ssrc, index), Aad::from(&aad), &mut buf[RTCP_HEADER_LEN..trailer_at])
            .map_err(|_| SrtpError::AuthFailed)?;
        Ok((RTCP_HEADER_LEN + plain.len(), index))
    }

    fn seal(&self, nonce: Nonce, aad: &[u8], plaintext: &mut [u8]) -> Result<Tag, SrtpError> {
        // ring fails only for inputs beyond GCM's 64 GiB limit, which no datagram reaches.
        self.key.seal_in_place_separate_tag(nonce, Aad::from(aad), plaintext).map_err(|_| SrtpError::TooShort)
    }
}

fn xor_salt(mut iv: [u8; 12], salt: &[u8; SALT_LEN]) -> Nonce {
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    Nonce::assume_unique_for_key(iv)
}
