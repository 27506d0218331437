//! DTLS-SRTP (RFC 5764) around `dimpl`'s sans-IO DTLS 1.2: the server's identity, certificate fingerprints as
//! SDP carries them (RFC 8122), and the split of exported keying material into SRTP keys.

use std::fmt;
use std::sync::Arc;

use crate::srtp::Profile;

/// A SHA-256 certificate fingerprint, as in SDP's `a=fingerprint:sha-256 AB:CD:...`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of_certificate(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Fingerprint(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))
    }

    /// Parses `AB:CD:...` (32 colon-separated hex bytes), with or without the `sha-256 ` prefix.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let hex = text.trim().strip_prefix("sha-256 ").unwrap_or(text.trim());
        let mut out = [0u8; 32];
        let mut parts = hex.split(':');
        for byte in out.iter_mut() {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha-256 {self}")
    }
}

/// The server's DTLS certificate (ECDSA P-256, self-signed, as WebRTC expects) and its fingerprint for SDP.
#[derive(Clone)]
pub struct DtlsIdentity {
    pub(crate) certificate: dimpl::DtlsCertificate,
    pub(crate) config: Arc<dimpl::Config>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsIdentity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot generate the DTLS certificate: {0}")]
    Certificate(String),
    #[error("cannot configure DTLS: {0}")]
    Config(String),
}

impl DtlsIdentity {
    /// A fresh key pair and self-signed certificate. Every worker of a node may share one.
    pub fn generate() -> Result<DtlsIdentity, IdentityError> {
        DtlsIdentity::build(None)
    }

    /// For deterministic simulations only: the handshake's randomness (ECDHE keys, randoms) comes from `seed`.
    /// Never in production: a predictable handshake is a broken one.
    pub fn generate_for_simulation(seed: u64) -> Result<DtlsIdentity, IdentityError> {
        DtlsIdentity::build(Some(seed))
    }

    fn build(seed: Option<u64>) -> Result<DtlsIdentity, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec!["sluice".to_string()])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let cert = params.self_signed(&key).map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let certificate = dimpl::DtlsCertificate { certificate: cert.der().to_vec(), private_key: key.serialize_der() };
        // dimpl's own crypto, with a signature verifier that also takes RSA peers (`peer_signature.rs`).
        let provider = dimpl::crypto::CryptoProvider {
            signature_verification: &super::peer_signature::PEER_SIGNATURES,
            ..dimpl::crypto::rust_crypto::default_provider()
        };
        let mut builder = dimpl::Config::builder().with_crypto_provider(provider);
        if let Some(seed) = seed {
            builder = builder.dangerously_set_rng_seed(seed);
        }
        let config = builder.build().map_err(|e| IdentityError::Config(e.to_string()))?;
        Ok(DtlsIdentity {
            fingerprint: Fingerprint::of_certificate(&certificate.certificate),
            certificate,
            config: Arc::new(config),
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A DTLS endpoint in the server (passive) role: the browser, as `a=setup:active`, is the client.
    pub fn server(&self, now: std::time::Instant) -> dimpl::Dtls {
        dimpl::Dtls::new_12(self.config.clone(), self.certificate.clone(), now)
    }

    /// A DTLS endpoint in the client role, for test peers.
    pub fn client(&self, now: std::time::Instant) -> dimpl::Dtls {
        let mut dtls = dimpl::Dtls::new_12(self.config.clone(), self.certificate.clone(), now);
        dtls.set_active(true);
        dtls
    }
}

/// Our profile for dimpl's negotiated one.
pub fn profile_of(profile: dimpl::SrtpProfile) -> Option<Profile> {
    match profile {
        dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(Profile::AeadAes128Gcm),
        dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(Profile::AeadAes256Gcm),
        dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(Profile::Aes128CmHmacSha1_80),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// One direction's SRTP master key and salt.
pub type MasterKey<'a> = (&'a [u8], &'a [u8]);

/// Master keys for both directions from DTLS-SRTP's exported material: client key, server key, client salt,
/// server salt (RFC 5764 section 4.2). Returns `(client, server)`.
pub fn split_keying_material(profile: Profile, material: &[u8]) -> Option<(MasterKey<'_>, MasterKey<'_>)> {
    let (k, s) = (profile.master_key_len(), profile.master_salt_len());
    if material.len() != 2 * (k + s) {
        return None;
    }
    let (client_key, rest) = material.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_salt, server_salt) = rest.split_at(s);
    Some(((client_key, client_salt), (server_key, server_salt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_through_sdp_text() {
        let fp = Fingerprint::of_certificate(b"not really a certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), 32 * 3 - 1);
        assert_eq!(Fingerprint::parse(&text), Some(fp));
        assert_eq!(Fingerprint::parse(&format!("sha-256 {text}")), Some(fp));
        assert_eq!(Fingerprint::parse(&text[..text.len() - 3]), None, "31 bytes");
        assert_eq!(Fingerprint::parse(&format!("{text}:00")), None, "33 bytes");
        assert_eq!(Fingerprint::parse("zz"), None);
    }

    #[test]
    fn keying_material_splits_per_rfc5764() {
        let material: Vec<u8> = (0..60).collect();
        let ((ck, cs), (sk, ss)) = split_keying_material(Profile::Aes128CmHmacSha1_80, &material).unwrap();
        assert_eq!((ck[0], sk[0], cs[0], ss[0]), (0, 16, 32, 46));
        assert!(split_keying_material(Profile::AeadAes128Gcm, &material).is_none(), "GCM needs 56 bytes");
    }

    #[test]
    fn identities_differ_and_fingerprint_their_certificate() {
        let a = DtlsIdentity::generate().unwrap();
        let b = DtlsIdentity::generate().unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Fingerprint::of_certificate(&a.certificate.certificate));
    }
}
