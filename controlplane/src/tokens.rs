//! JWT meeting tokens: scoped to one meeting, with a role and grants, `exp` and `nbf` enforced.
//! HS256 with a configured (or generated and persisted) secret.

use std::collections::HashSet;
use std::path::Path;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::store::Role;

/// Shorter secrets make HS256 guessable offline.
pub const SECRET_LEN_MIN: usize = 32;
/// Clock skew allowed between nodes and clients when checking `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("auth.token_secret must be at least {SECRET_LEN_MIN} bytes, got {0}")]
    SecretTooShort(usize),
    #[error("cannot read or create the token secret at {path}: {reason}")]
    SecretFile { path: String, reason: String },
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another meeting")]
    WrongMeeting,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("auth.algorithm {0:?} is not supported: use HS256 or EdDSA")]
    Algorithm(String),
    #[error("cannot use the EdDSA key {path}: {reason}")]
    EdKey { path: String, reason: String },
}

/// What a participant may do. The role implies defaults; a host may change them during the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "GrantsWire")]
pub struct Grants {
    /// Publish a microphone.
    pub microphone: bool,
    /// Publish a camera.
    pub camera: bool,
    /// Share a screen.
    pub screen: bool,
    pub subscribe: bool,
    pub chat: bool,
    /// Run the meeting: admit, mute, remove, record (a host or co-host).
    pub host: bool,
}

/// Grants as tokens carry them: also the earlier form, one `publish` for every source (tokens minted before
/// per-source grants, and share links, keep working).
#[derive(Deserialize)]
struct GrantsWire {
    #[serde(default)]
    publish: Option<bool>,
    microphone: Option<bool>,
    camera: Option<bool>,
    screen: Option<bool>,
    subscribe: bool,
    chat: bool,
    host: bool,
}

impl From<GrantsWire> for Grants {
    fn from(w: GrantsWire) -> Grants {
        let legacy = w.publish.unwrap_or(false);
        Grants {
            microphone: w.microphone.unwrap_or(legacy),
            camera: w.camera.unwrap_or(legacy),
            screen: w.screen.unwrap_or(legacy),
            subscribe: w.subscribe,
            chat: w.chat,
            host: w.host,
        }
    }
}

impl Grants {
    pub fn for_role(role: Role) -> Grants {
        let all = Grants { microphone: true, camera: true, screen: true, subscribe: true, chat: true, host: true };
        match role {
            Role::Host | Role::CoHost => all,
            Role::Participant => Grants { host: false, ..all },
            Role::Viewer => Grants { microphone: false, camera: false, screen: false, host: false, ..all },
            Role::Recorder => {
                Grants { microphone: false, camera: false, screen: false, subscribe: true, chat: false, host: false }
            }
        }
    }

    /// Whether any media may be published.
    pub fn publishes(&self) -> bool {
        self.microphone || self.camera || self.screen
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The meeting id this token admits to.
    pub mid: String,
    /// Display name.
    pub name: String,
    pub role: Role,
    pub grants: Grants,
    /// The holder waits in the meeting's waiting room until a host admits them, whatever the meeting's own
    /// setting (tokens handed out by link under `access.join_by_link = "waiting_room"`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting_room: bool,
    /// Handed out for a meeting's link (`POST /meetings/{id}/join` without an application's key): the holder
    /// is anonymous, so once a host has removed anyone, such newcomers go through the waiting room.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

/// A creator token: lets its holder create meetings under `access.create_meetings = "creator_token"`. It admits
/// to no meeting (it has no `mid`), and a meeting token is no creator token (it has no `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatorClaims {
    pub iss: String,
    /// Who the application vouches for; written into the meetings' logs.
    pub sub: String,
    /// Always [`CREATOR_KIND`].
    pub kind: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

pub const CREATOR_KIND: &str = "creator";
/// An operator token: reads the analytics of every meeting (`sluice token --operator`). Same claims as a creator
/// token, another kind.
pub const OPERATOR_KIND: &str = "operator";

/// What to put in a new token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub meeting_id: String,
    pub user_id: String,
    pub name: String,
    pub role: Role,
    /// Overrides the configured lifetime.
    pub ttl_secs: Option<u64>,
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl_secs: u64,
    algorithm: Algorithm,
    /// Signs download links (chat files): derived from the token key, so every node that mints tokens signs
    /// links the others accept.
    links: ring::hmac::Key,
}

/// The link key: HMAC-SHA256 of a fixed label under the token key material, so a link's signature never
/// doubles as a token's.
fn link_key(material: &[u8]) -> ring::hmac::Key {
    let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, material);
    let derived = ring::hmac::sign(&root, b"sluice download links v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("issuer", &self.issuer).field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Uses `auth.token_secret`, or the secret kept in `<data_dir>/token_secret` (created on first start).
    pub fn from_config(config: &AuthConfig, data_dir: &Path) -> Result<Tokens, TokenError> {
        match config.algorithm.as_str() {
            "HS256" => {}
            "EdDSA" => {
                let private = read_key(&config.eddsa_private_key_file)?;
                let public = read_key(&config.eddsa_public_key_file)?;
                return Tokens::eddsa(&private, &public, &config.issuer, config.token_ttl_secs).map_err(|reason| {
                    TokenError::EdKey { path: config.eddsa_private_key_file.display().to_string(), reason }
                });
            }
            other => return Err(TokenError::Algorithm(other.to_string())),
        }
        let secret = if config.token_secret.is_empty() {
            load_or_create_secret(&data_dir.join("token_secret"))?
        } else {
            config.token_secret.as_bytes().to_vec()
        };
        Tokens::new(&secret, &config.issuer, config.token_ttl_secs)
    }

    pub fn new(secret: &[u8], issuer: &str, ttl_secs: u64) -> Result<Tokens, TokenError> {
        if secret.len() < SECRET_LEN_MIN {
            return Err(TokenError::SecretTooShort(secret.len()));
        }
        Ok(Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256, issuer),
            issuer: issuer.to_string(),
            ttl_secs,
            algorithm: Algorithm::HS256,
            links: link_key(secret),
        })
    }

    /// EdDSA (Ed25519) with PEM keys: nodes that only check tokens need only the public key's holder to mint.
    pub fn eddsa(private_pem: &[u8], public_pem: &[u8], issuer: &str, ttl_secs: u64) -> Result<Tokens, String> {
        let encoding = EncodingKey::from_ed_pem(private_pem).map_err(|e| format!("private key: {e}"))?;
        let decoding = DecodingKey::from_ed_pem(public_pem).map_err(|e| format!("public key: {e}"))?;
        let tokens = Tokens {
            encoding,
            decoding,
            validation: validation(Algorithm::EdDSA, issuer),
            issuer: issuer.to_string(),
            ttl_secs,
            algorithm: Algorithm::EdDSA,
            links: link_key(private_pem),
        };
        // A private key that does not match the public one would mint tokens nobody accepts: refuse at start.
        let probe = tokens.mint(&TokenRequest {
            meeting_id: "probe".into(),
            user_id: "probe".into(),
            name: "probe".into(),
            role: Role::Viewer,
            ttl_secs: Some(60),
        });
        tokens.verify(&probe, "probe").map_err(|_| "the private and public keys are not a pair".to_string())?;
        Ok(tokens)
    }

    /// The signature of a download link's fields (hex).
    pub fn sign_link(&self, fields: &str) -> String {
        let tag = ring::hmac::sign(&self.links, fields.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `signature` (hex) signs `fields`, in constant time.
    pub fn verify_link(&self, fields: &str, signature: &str) -> bool {
        let Some(bytes) = decode_hex(signature) else { return false };
        ring::hmac::verify(&self.links, fields.as_bytes(), &bytes).is_ok()
    }

    pub fn mint(&self, request: &TokenRequest) -> String {
        self.mint_claims(request, false, false)
    }

    /// A token handed out for a meeting's link; with `waiting_room` its holder waits until a host admits them.
    pub fn mint_link(&self, request: &TokenRequest, waiting_room: bool) -> String {
        self.mint_claims(request, waiting_room, true)
    }

    fn mint_claims(&self, request: &TokenRequest, waiting_room: bool, link: bool) -> String {
        let now = Utc::now().timestamp();
        let ttl = request.ttl_secs.unwrap_or(self.ttl_secs).min(i64::MAX as u64 / 2) as i64;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: request.user_id.clone(),
            mid: request.meeting_id.clone(),
            name: request.name.clone(),
            role: request.role,
            grants: Grants::for_role(request.role),
            waiting_room,
            link,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl),
        };
        // Encoding our own serialisable struct with an HMAC key cannot fail.
        encode(&Header::new(self.algorithm), &claims, &self.encoding).expect("signing our own Claims")
    }

    /// Checks the signature, issuer, `exp`, `nbf` and that the token is for `meeting_id`.
    pub fn verify(&self, token: &str, meeting_id: &str) -> Result<Claims, TokenError> {
        let claims: Claims = self.decode(token)?;
        if claims.mid != meeting_id {
            return Err(TokenError::WrongMeeting);
        }
        Ok(claims)
    }
}

impl Tokens {
    /// Signature, issuer, `exp` and `nbf` checked, and the claims read as `T`.
    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        decode::<T>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            _ => TokenError::Invalid(e.to_string()),
        })
    }

    /// A creator token for `user_id`, valid for `ttl_secs` (or the configured lifetime).
    pub fn mint_creator(&self, user_id: &str, ttl_secs: Option<u64>) -> String {
        self.mint_kind(CREATOR_KIND, user_id, ttl_secs)
    }

    pub fn mint_operator(&self, user_id: &str, ttl_secs: Option<u64>) -> String {
        self.mint_kind(OPERATOR_KIND, user_id, ttl_secs)
    }

    /// Checks an operator token's signature, issuer, times and kind.
    pub fn verify_operator(&self, token: &str) -> Result<CreatorClaims, TokenError> {
        let claims: CreatorClaims = self.decode(token)?;
        if claims.kind != OPERATOR_KIND {
            return Err(TokenError::Invalid("not an operator token".into()));
        }
        Ok(claims)
    }

    fn mint_kind(&self, kind: &str, user_id: &str, ttl_secs: Option<u64>) -> String {
        let now = Utc::now().timestamp();
        let ttl = ttl_secs.unwrap_or(self.ttl_secs).min(i64::MAX as u64 / 2) as i64;
        let claims = CreatorClaims {
            iss: self.issuer.clone(),
            sub: user_id.to_string(),
            kind: kind.to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl),
        };
        encode(&Header::new(self.algorithm), &claims, &self.encoding).expect("signing our own CreatorClaims")
    }

    /// Checks a creator token's signature, issuer, times and kind.
    pub fn verify_creator(&self, token: &str) -> Result<CreatorClaims, TokenError> {
        let claims: CreatorClaims = self.decode(token)?;
        if claims.kind != CREATOR_KIND {
            return Err(TokenError::Invalid("not a creator token".into()));
        }
        Ok(claims)
    }
}

fn validation(algorithm: Algorithm, issuer: &str) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.leeway = LEEWAY_SECS;
    validation.required_spec_claims = HashSet::from(["exp", "nbf", "iss", "sub"].map(String::from));
    validation
}

fn read_key(path: &Path) -> Result<Vec<u8>, TokenError> {
    std::fs::read(path).map_err(|e| TokenError::EdKey { path: path.display().to_string(), reason: e.to_string() })
}

fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, TokenError> {
    let fail = |reason: String| TokenError::SecretFile { path: path.display().to_string(), reason };
    match std::fs::read(path) {
        Ok(secret) => {
            let secret: Vec<u8> = secret.trim_ascii().to_vec();
            if secret.len() < SECRET_LEN_MIN {
                return Err(fail(format!("it holds {} bytes; at least {SECRET_LEN_MIN} are needed", secret.len())));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = crate::ids::random_token(48).into_bytes();
            write_private(path, &secret).map_err(|e| fail(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated a new token secret");
            Ok(secret)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Writes a file only the owner can read.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[7u8; 32], "sluice", 3600).unwrap()
    }

    fn request(role: Role) -> TokenRequest {
        TokenRequest { meeting_id: "m1".into(), user_id: "u1".into(), name: "Ada".into(), role, ttl_secs: None }
    }

    /// A throwaway Ed25519 pair (openssl genpkey -algorithm ed25519), for tests only.
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILfDYRwgFFUfGKATCVfpVOYrOTqo8LC2KkdLFLyxqiS9\n-----END PRIVATE KEY-----\n";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAbF5MBkQf/7xmIhcnRcCVmib2bRSuCATPeuY2sLHfp/E=\n-----END PUBLIC KEY-----\n";
    const ED_OTHER_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAUzxJvf5cIk6BxOLv/UFlTaZ5pHfPhZGRS5CnPsfR1DM=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn eddsa_tokens_verify_with_the_public_key_and_not_across_algorithms() {
        let ed = Tokens::eddsa(ED_PRIVATE.as_bytes(), ED_PUBLIC.as_bytes(), "sluice", 3600).unwrap();
        let token = ed.mint(&request(Role::Host));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(ed.verify(&token, "m1").unwrap().role, Role::Host);
        assert!(matches!(tokens().verify(&token, "m1"), Err(TokenError::Invalid(_))), "HS256 refuses EdDSA");
        assert!(matches!(ed.verify(&tokens().mint(&request(Role::Host)), "m1"), Err(TokenError::Invalid(_))));
        let mismatch = Tokens::eddsa(ED_PRIVATE.as_bytes(), ED_OTHER_PUBLIC.as_bytes(), "sluice", 3600).unwrap_err();
        assert!(mismatch.contains("not a pair"), "{mismatch}");
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("ed.pem"), dir.path().join("ed.pub"));
        std::fs::write(&private, ED_PRIVATE).unwrap();
        std::fs::write(&public, ED_PUBLIC).unwrap();
        let config = AuthConfig {
            algorithm: "EdDSA".into(),
            eddsa_private_key_file: private,
            eddsa_public_key_file: public,
            ..AuthConfig::default()
        };
        let from_config = Tokens::from_config(&config, dir.path()).unwrap();
        assert!(from_config.verify(&token, "m1").is_ok());
        let bad = AuthConfig { algorithm: "RS256".into(), ..AuthConfig::default() };
        assert!(Tokens::from_config(&bad, dir.path()).unwrap_err().to_string().contains("HS256 or EdDSA"));
    }

    #[test]
    fn grants_in_the_earlier_form_still_read() {
        let old: Grants =
            serde_json::from_str(r#"{"publish":true,"subscribe":true,"chat":true,"host":false}"#).unwrap();
        assert_eq!(old, Grants::for_role(Role::Participant));
        let viewer: Grants =
            serde_json::from_str(r#"{"publish":false,"subscribe":true,"chat":true,"host":false}"#).unwrap();
        assert_eq!(viewer, Grants::for_role(Role::Viewer));
        let now = serde_json::to_string(&Grants::for_role(Role::Host)).unwrap();
        assert_eq!(serde_json::from_str::<Grants>(&now).unwrap(), Grants::for_role(Role::Host));
    }

    #[test]
    fn creator_and_meeting_tokens_are_not_interchangeable() {
        let t = tokens();
        let creator = t.mint_creator("app-user-7", None);
        assert_eq!(t.verify_creator(&creator).unwrap().sub, "app-user-7");
        assert!(matches!(t.verify(&creator, "m1"), Err(TokenError::Invalid(_))), "a creator token admits nowhere");
        let meeting = t.mint(&request(Role::Host));
        assert!(matches!(t.verify_creator(&meeting), Err(TokenError::Invalid(_))), "a host token creates nothing");
        let other = Tokens::new(&[8u8; 32], "sluice", 3600).unwrap();
        assert!(other.verify_creator(&creator).is_err(), "signed with another secret");
    }

    #[test]
    fn a_minted_token_verifies_for_its_meeting_only() {
        let t = tokens();
        let token = t.mint(&request(Role::Host));
        let claims = t.verify(&token, "m1").unwrap();
        assert_eq!((claims.sub.as_str(), claims.role, claims.grants.host), ("u1", Role::Host, true));
        assert!(matches!(t.verify(&token, "m2"), Err(TokenError::WrongMeeting)));
    }

    #[test]
    fn expired_forged_and_short_secrets_are_refused() {
        let t = tokens();
        let expired = Tokens { ttl_secs: 0, ..t.clone() };
        let mut req = request(Role::Viewer);
        req.ttl_secs = Some(0);
        let token = expired.mint(&req);
        // exp = now: still inside the leeway, so forge one well in the past instead.
        let now = Utc::now().timestamp();
        let old = Claims {
            iss: "sluice".into(),
            sub: "u".into(),
            mid: "m1".into(),
            name: "x".into(),
            role: Role::Viewer,
            grants: Grants::for_role(Role::Viewer),
            waiting_room: false,
            link: false,
            iat: now - 7200,
            nbf: now - 7200,
            exp: now - 3600,
        };
        let old = encode(&Header::new(Algorithm::HS256), &old, &t.encoding).unwrap();
        assert!(matches!(t.verify(&old, "m1"), Err(TokenError::Expired)));
        assert!(t.verify(&token, "m1").is_ok(), "inside the leeway");
        let other = Tokens::new(&[8u8; 32], "sluice", 3600).unwrap();
        assert!(matches!(other.verify(&token, "m1"), Err(TokenError::Invalid(_))));
        assert!(matches!(Tokens::new(b"short", "sluice", 1), Err(TokenError::SecretTooShort(5))));
    }

    #[test]
    fn the_generated_secret_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuthConfig::default();
        let a = Tokens::from_config(&config, dir.path()).unwrap();
        let token = a.mint(&request(Role::Participant));
        let b = Tokens::from_config(&config, dir.path()).unwrap();
        assert!(b.verify(&token, "m1").is_ok());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("token_secret")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
