//! API keys for applications, as LiveKit's key and secret: `sk_<id>_<secret>`, created and revoked with
//! `sluice apikey`, each with a name and scopes. The store keeps the id, the name, the scopes and a SHA-256 of
//! the secret; the key itself is shown once, when it is created. A key is looked up on every use, so a
//! revocation (by any process sharing the database) stops it at the next request.
//!
//! The secret is 256 bits from the operating system's generator, so a fast hash is enough: there is nothing to
//! guess offline, unlike a password.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::store::{ApiKeyRow, Store, StoreError, now};

const PREFIX: &str = "sk_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 43;
pub const NAME_LEN_MAX: usize = 64;

/// What a key allows. Stored and shown by these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /meetings` under any `access.create_meetings` policy.
    CreateMeetings,
    /// Participant and host tokens for any meeting (`POST /meetings/{id}/tokens`, `/join` under
    /// `access.join_by_link = "token_only"`) and creator tokens (`POST /creator-tokens`).
    MintTokens,
    /// The analytics API.
    ReadAnalytics,
    /// `/metrics` and other operational endpoints on the public listener.
    Operate,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::CreateMeetings, Scope::MintTokens, Scope::ReadAnalytics, Scope::Operate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CreateMeetings => "create_meetings",
            Scope::MintTokens => "mint_tokens",
            Scope::ReadAnalytics => "read_analytics",
            Scope::Operate => "operate",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, String> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown scope {s:?}: use {}", known.join(", "))
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that was presented and found valid: who is calling, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl ApiKey {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a presented key was refused; the text is for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the API key is malformed: keys look like sk_<12 characters>_<43 characters>")]
    Malformed,
    #[error("the API key {0} is unknown")]
    Unknown(String),
    #[error("the API key {0} was revoked")]
    Revoked(String),
    #[error("the API key could not be checked: {0}")]
    Store(String),
}

/// Whether a bearer credential is meant as an API key (meeting tokens are JWTs and never start like this).
pub fn is_api_key(bearer: &str) -> bool {
    bearer.starts_with(PREFIX)
}

/// A new key: the row to store and the whole key, to show once.
#[derive(Debug)]
pub struct NewKey {
    pub key: String,
    pub row: ApiKeyRow,
}

/// Makes a key named `name` with `scopes`. The caller stores `row` and shows `key`.
pub fn generate(name: &str, scopes: &[Scope]) -> Result<NewKey, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_LEN_MAX || name.chars().any(char::is_control) {
        return Err(format!("a key's name must be 1 to {NAME_LEN_MAX} characters without control characters"));
    }
    if scopes.is_empty() {
        return Err("a key needs at least one scope".into());
    }
    let id = crate::ids::random_token(ID_LEN);
    let secret = crate::ids::random_token(SECRET_LEN);
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let row = ApiKeyRow {
        id: id.clone(),
        name: name.to_string(),
        secret_hash: hash(&secret),
        scopes: scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        created_at: now(),
        revoked_at: None,
    };
    Ok(NewKey { key: format!("{PREFIX}{id}_{secret}"), row })
}

/// Splits `sk_<id>_<secret>`.
fn parse(key: &str) -> Result<(&str, &str), KeyError> {
    let rest = key.strip_prefix(PREFIX).ok_or(KeyError::Malformed)?;
    let (id, secret) = rest.split_at_checked(ID_LEN).ok_or(KeyError::Malformed)?;
    let secret = secret.strip_prefix('_').ok_or(KeyError::Malformed)?;
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    if secret.len() != SECRET_LEN || !alnum(id) || !alnum(secret) {
        return Err(KeyError::Malformed);
    }
    Ok((id, secret))
}

fn hash(secret: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `key` against the store: it must exist, be unrevoked, and its secret must match.
pub async fn verify(store: &dyn Store, key: &str) -> Result<ApiKey, KeyError> {
    let (id, secret) = parse(key)?;
    let row = store.api_key(id).await.map_err(|e: StoreError| KeyError::Store(e.to_string()))?;
    let row = row.ok_or_else(|| KeyError::Unknown(id.to_string()))?;
    if !bool::from(hash(secret).as_bytes().ct_eq(row.secret_hash.as_bytes())) {
        // Same words as an unknown id: a caller learns nothing about which ids exist.
        return Err(KeyError::Unknown(id.to_string()));
    }
    if row.revoked_at.is_some() {
        return Err(KeyError::Revoked(id.to_string()));
    }
    Ok(ApiKey { id: row.id, name: row.name, scopes: scopes_of(&row.scopes) })
}

/// The scopes of a stored row; names this binary does not know (from a newer version) are ignored.
pub fn scopes_of(stored: &str) -> Vec<Scope> {
    stored.split_whitespace().filter_map(|s| Scope::parse(s).ok()).collect()
}

/// A key as `sluice apikey list` shows it.
#[derive(Debug, Serialize)]
pub struct KeyListing {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for KeyListing {
    fn from(row: ApiKeyRow) -> KeyListing {
        KeyListing {
            scopes: scopes_of(&row.scopes),
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_its_hash_matches() {
        let new = generate("billing app", &[Scope::MintTokens, Scope::CreateMeetings, Scope::MintTokens]).unwrap();
        assert!(is_api_key(&new.key));
        let (id, secret) = parse(&new.key).unwrap();
        assert_eq!(id, new.row.id);
        assert_eq!(hash(secret), new.row.secret_hash);
        assert_eq!(new.row.scopes, "create_meetings mint_tokens");
        assert!(!new.key.contains(&new.row.secret_hash));
    }

    #[test]
    fn malformed_keys_and_names_are_refused() {
        for bad in ["", "sk_", "sk_abc", "sk_abcdefghijkl", "sk_abcdefghijkl_short", "xx_abcdefghijkl_x"] {
            assert_eq!(parse(bad), Err(KeyError::Malformed), "{bad}");
        }
        let long = format!("sk_abcdefghijkl_{}", "a".repeat(SECRET_LEN + 1));
        assert_eq!(parse(&long), Err(KeyError::Malformed));
        let odd = format!("sk_abcdefghij/l_{}", "a".repeat(SECRET_LEN));
        assert_eq!(parse(&odd), Err(KeyError::Malformed));
        assert!(generate(" ", &[Scope::Operate]).is_err());
        assert!(generate("x", &[]).is_err());
        assert!(generate(&"n".repeat(NAME_LEN_MAX + 1), &[Scope::Operate]).is_err());
        assert!(Scope::parse("admin").unwrap_err().contains("create_meetings"));
    }
}
