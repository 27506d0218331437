//! Verifying a DTLS peer's signature (its CertificateVerify) whatever its key: ECDSA through dimpl's own
//! verifier, RSA (PKCS#1 v1.5 with SHA-256 or SHA-384, and RSA-PSS-RSAE with SHA-256) through `ring`. Browsers
//! use ECDSA; GStreamer's webrtcbin, OpenSSL-based stacks and many hardware encoders default to RSA. The
//! certificate itself is checked against the fingerprint the peer's SDP named (`handshake.rs`), so this only
//! proves the peer holds the certificate's key.

use dimpl::CryptoError;
use dimpl::crypto::{HashAlgorithm, SignatureAlgorithm, SignatureVerifier};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::der::Decode;

/// rsaEncryption (RFC 8017 appendix A.1): the only RSA public key form WebRTC certificates use.
const OID_RSA_ENCRYPTION: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// The TLS 1.2 code point of rsa_pss_rsae_sha256 (0x0804) read as (hash, signature).
const PSS_RSAE_SHA256: (u8, u8) = (8, 4);

#[derive(Debug)]
pub(crate) struct PeerSignatures;

pub(crate) static PEER_SIGNATURES: PeerSignatures = PeerSignatures;

impl PeerSignatures {
    fn rsa_algorithm(hash: HashAlgorithm, sig: SignatureAlgorithm) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match (hash.as_u8(), sig.as_u8()) {
            (h, 1) if h == HashAlgorithm::SHA256.as_u8() => &signature::RSA_PKCS1_2048_8192_SHA256,
            (h, 1) if h == HashAlgorithm::SHA384.as_u8() => &signature::RSA_PKCS1_2048_8192_SHA384,
            PSS_RSAE_SHA256 => &signature::RSA_PSS_2048_8192_SHA256,
            _ => return None,
        })
    }
}

impl SignatureVerifier for PeerSignatures {
    fn verify_signature(
        &self,
        cert_der: &[u8],
        data: &[u8],
        sig: &[u8],
        hash: HashAlgorithm,
        sig_alg: SignatureAlgorithm,
    ) -> Result<(), CryptoError> {
        let Some(algorithm) = Self::rsa_algorithm(hash, sig_alg) else {
            // ECDSA, and anything else, as dimpl decides.
            let default = dimpl::crypto::rust_crypto::default_provider();
            return default.signature_verification.verify_signature(cert_der, data, sig, hash, sig_alg);
        };
        let cert = x509_cert::Certificate::from_der(cert_der).map_err(|_| CryptoError::CertificateParseFailed)?;
        let spki = &cert.tbs_certificate().subject_public_key_info();
        if spki.algorithm.oid != OID_RSA_ENCRYPTION {
            return Err(CryptoError::UnsupportedPublicKeyAlgorithm);
        }
        let key = spki.subject_public_key.as_bytes().ok_or(CryptoError::InvalidSubjectPublicKey)?;
        // ring does not say whether the signature was malformed or wrong; either way the handshake fails.
        UnparsedPublicKey::new(algorithm, key).verify(data, sig).map_err(|_| CryptoError::InvalidSignatureFormat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway RSA 2048 key (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`), tests only.
    const RSA_KEY: &str = include_str!("../../tests/fixtures/rsa2048.pem");

    fn rsa_certificate() -> (Vec<u8>, ring::rsa::KeyPair) {
        let der = x509_cert::der::pem::decode_vec(RSA_KEY.as_bytes()).expect("a PEM key").1;
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der.clone().into(), &rcgen::PKCS_RSA_SHA256)
            .expect("an RSA key rcgen can sign with");
        let cert = rcgen::CertificateParams::new(vec!["gstreamer".into()]).unwrap().self_signed(&key).unwrap();
        (cert.der().to_vec(), ring::rsa::KeyPair::from_pkcs8(&der).expect("ring reads it"))
    }

    fn sign(key: &ring::rsa::KeyPair, padding: &'static dyn ring::signature::RsaEncoding, data: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(padding, &ring::rand::SystemRandom::new(), data, &mut sig).unwrap();
        sig
    }

    #[test]
    fn rsa_pkcs1_and_pss_signatures_verify_and_forgeries_do_not() {
        let (cert, key) = rsa_certificate();
        let data = b"the handshake messages so far";
        let pkcs1 = sign(&key, &signature::RSA_PKCS1_SHA256, data);
        let ok = PEER_SIGNATURES.verify_signature(&cert, data, &pkcs1, HashAlgorithm::SHA256, SignatureAlgorithm::RSA);
        assert!(ok.is_ok(), "{ok:?}");
        let pss = sign(&key, &signature::RSA_PSS_SHA256, data);
        let (h, s) = (HashAlgorithm::from_u8(8), SignatureAlgorithm::from_u8(4));
        assert!(PEER_SIGNATURES.verify_signature(&cert, data, &pss, h, s).is_ok());
        let other = PEER_SIGNATURES.verify_signature(
            &cert,
            b"other data",
            &pkcs1,
            HashAlgorithm::SHA256,
            SignatureAlgorithm::RSA,
        );
        assert!(other.is_err(), "a signature over other data");
        let wrong_hash =
            PEER_SIGNATURES.verify_signature(&cert, data, &pkcs1, HashAlgorithm::SHA384, SignatureAlgorithm::RSA);
        assert!(wrong_hash.is_err(), "the hash it names is the one checked");
    }

    #[test]
    fn ecdsa_still_verifies_through_dimpl_and_rsa_claims_on_ec_keys_fail() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["browser".into()]).unwrap().self_signed(&key).unwrap();
        let data = b"transcript";
        let pkcs8 = key.serialize_der();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let sig = signer.sign(&ring::rand::SystemRandom::new(), data).unwrap();
        let ok = PEER_SIGNATURES.verify_signature(
            cert.der(),
            data,
            sig.as_ref(),
            HashAlgorithm::SHA256,
            SignatureAlgorithm::ECDSA,
        );
        assert!(ok.is_ok(), "{ok:?}");
        let rsa_claim = PEER_SIGNATURES.verify_signature(
            cert.der(),
            data,
            sig.as_ref(),
            HashAlgorithm::SHA256,
            SignatureAlgorithm::RSA,
        );
        assert!(matches!(rsa_claim, Err(CryptoError::UnsupportedPublicKeyAlgorithm)), "{rsa_claim:?}");
    }
}
