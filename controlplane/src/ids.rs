//! Identifiers people see (meeting ids in links) and those they do not (user, connection, recording ids).

use rand::RngExt;

/// Letters only, no vowels: ids are typed from links and read aloud, and carry no accidental words.
const MEETING_ALPHABET: &[u8] = b"bcdfghjkmnpqrstvwxz";
const TOKEN_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// `xxx-xxxx-xxx`: 19^10, about 6e12 ids, enough that guessing one is hopeless at any request rate we allow.
pub fn meeting_id() -> String {
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n).map(|_| MEETING_ALPHABET[rng.random_range(0..MEETING_ALPHABET.len())] as char).collect()
    };
    format!("{}-{}-{}", pick(3), pick(4), pick(3))
}

/// Whether a path segment could be a meeting id (checked before touching the store).
pub fn is_meeting_id(s: &str) -> bool {
    (3..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A random id with a readable prefix: `u_...` users, `c_...` connections, `r_...` recordings.
pub fn prefixed(prefix: &str) -> String {
    format!("{prefix}_{}", random_token(16))
}

pub fn random_token(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_ids_have_the_documented_shape() {
        for _ in 0..100 {
            let id = meeting_id();
            assert_eq!(id.len(), 12);
            assert!(is_meeting_id(&id));
            assert_eq!(id.matches('-').count(), 2);
        }
        assert!(!is_meeting_id("../etc"));
        assert!(!is_meeting_id("ab"));
    }
}
