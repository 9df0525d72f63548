//! Opaque tokens (tickets, RPTs, PCTs, PATs, refresh tokens, registration access tokens): random
//! 256-bit values, shown to their holder once and stored only as their SHA-256 digest, so a copy of
//! the database hands out no usable token. `Debug` never prints a token.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A bearer secret as issued to (or presented by) a client.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken(String);

impl OpaqueToken {
    /// 32 random bytes from the OS generator, base64url without padding (43 characters).
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)?;
        Ok(OpaqueToken(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A token presented by a client. Nothing is checked here: an unknown token simply has a digest
    /// that matches no row.
    pub fn presented(value: impl Into<String>) -> Self {
        OpaqueToken(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.0)
    }
}

impl std::fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueToken(<redacted>)")
    }
}

/// The SHA-256 of a token, hex-encoded: what the store keeps and looks tokens up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenDigest(String);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in d.as_ref() {
            hex.push_str(&format!("{b:02x}"));
        }
        TokenDigest(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = OpaqueToken::generate().unwrap();
        let b = OpaqueToken::generate().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(TokenDigest::of("abc").as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let t = OpaqueToken::presented("abc");
        assert_eq!(t.digest(), TokenDigest::of("abc"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = OpaqueToken::presented("secret-value");
        assert!(!format!("{t:?}").contains("secret-value"));
    }
}
