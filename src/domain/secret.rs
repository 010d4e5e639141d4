//! Secret values: no `Debug`, no `Display`, zeroized on drop.
//!
//! Everything that holds key material goes through [`Secret`], so the compiler refuses to put a
//! secret in a log line or an error message by accident.

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// A secret string (an API key). Deliberately not `Debug`, `Display` or `Serialize`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself. Call sites are few and easy to audit: grep for `expose`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A short, stable, non-reversible name for the secret, safe to show and log.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut out = String::from("sha256:");
        for byte in &digest[..6] {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Constant-time comparison, so the emulator does not leak a key through timing.
    pub fn ct_eq(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other.expose())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut raw = String::deserialize(d)?;
        let secret = Secret::new(raw.as_str());
        raw.zeroize();
        Ok(secret)
    }
}

/// Serialize a secret explicitly (`#[serde(serialize_with = "secret::serialize")]`): only the
/// wire types that must carry a key opt in, field by field.
pub fn serialize<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

/// Like [`serialize`], for optional secrets.
pub fn serialize_opt<S: serde::Serializer>(
    secret: &Option<Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_str(secret.expose()),
        None => s.serialize_none(),
    }
}

/// A random alphanumeric string of `len` characters from the OS-seeded CSPRNG.
pub fn random_alphanumeric(len: usize) -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_short_and_not_the_secret() {
        let s = Secret::new("abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(s.fingerprint(), Secret::new(s.expose()).fingerprint());
        assert_ne!(s.fingerprint(), Secret::new("other").fingerprint());
        assert_eq!(s.fingerprint().len(), "sha256:".len() + 12);
        assert!(!s.fingerprint().contains("abcdef"));
    }

    #[test]
    fn comparison_is_exact() {
        let s = Secret::new("key-1");
        assert!(s.ct_eq("key-1"));
        assert!(!s.ct_eq("key-2"));
        assert!(!s.ct_eq("key-1 "));
    }

    #[test]
    fn random_strings_are_alphanumeric_and_distinct() {
        let a = random_alphanumeric(64);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_alphanumeric(64));
    }
}
