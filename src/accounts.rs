//! Resource owners as local accounts: argon2id password hashes (human passwords, unlike the
//! high-entropy secrets elsewhere, need a slow hash) and browser sessions. A session records how the
//! owner signed in, so federated sign-in through a partner OpenID provider can add a second way in
//! without changing what a session is.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde_json::{Map, Value};

use crate::clock::UnixTime;
use crate::oauth::OAuthError;
use crate::oauth::tokens::OpaqueToken;
use crate::store::{AccountRecord, Store};

/// At most this many argon2 computations at once, per node.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Failed sign-ins allowed on one pending authorization request before it is dropped.
pub const MAX_SIGN_IN_FAILURES: i64 = 5;

/// How long a browser stays signed in.
pub const SESSION_LIFETIME: i64 = 8 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account id `{0}` must be 1 to 64 letters, digits or `._@-`")]
    InvalidId(String),
    #[error("account `{0}` already exists")]
    Exists(String),
    #[error("the password must have at least 8 characters")]
    WeakPassword,
    #[error("cannot hash the password")]
    Hash,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub fn valid_account_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < 8 {
        return Err(AccountError::WeakPassword);
    }
    let hash: PasswordHash = Argon2::default().hash_password(password.as_bytes()).map_err(|_| AccountError::Hash)?;
    Ok(hash.to_string())
}

/// A hash of a password nobody has, verified when the account is unknown so that the answer takes as
/// long as for a known account.
fn decoy_hash() -> Option<String> {
    static DECOY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy-password-never-used").ok()).clone()
}

fn verify(stored: &str, password: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

pub async fn add_account(
    store: &Store,
    account_id: &str,
    password: Option<&str>,
    attributes: Map<String, Value>,
    now: UnixTime,
) -> Result<(), AccountError> {
    if !valid_account_id(account_id) {
        return Err(AccountError::InvalidId(account_id.to_owned()));
    }
    let password_hash = match password {
        Some(p) => {
            let p = p.to_owned();
            Some(tokio::task::spawn_blocking(move || hash_password(&p)).await.map_err(|_| AccountError::Hash)??)
        }
        None => None,
    };
    let rec = AccountRecord {
        account_id: account_id.to_owned(),
        password_hash,
        attributes: Value::Object(attributes).to_string(),
        created_at: now,
    };
    if !store.insert_account(&rec).await? {
        return Err(AccountError::Exists(account_id.to_owned()));
    }
    Ok(())
}

/// Checks a password sign-in. `None` for an unknown account, an account without a password, or a
/// wrong password: the caller cannot tell which, and neither can the person signing in.
pub async fn check_password(store: &Store, account_id: &str, password: &str) -> Result<Option<String>, OAuthError> {
    let rec = if valid_account_id(account_id) { store.find_account(account_id).await? } else { None };
    let stored = rec.as_ref().and_then(|r| r.password_hash.clone());
    let known = stored.is_some();
    let stored = stored.or_else(decoy_hash);
    let password = password.to_owned();
    // Each check costs ~19 MiB and a core for tens of milliseconds: bound how many run at once, so a
    // flood of sign-ins queues instead of exhausting memory.
    let _permit = HASHING.acquire().await.map_err(|_| OAuthError::server_error("password check failed"))?;
    let ok = tokio::task::spawn_blocking(move || stored.is_some_and(|s| verify(&s, &password)))
        .await
        .map_err(|_| OAuthError::server_error("password check failed"))?;
    Ok((known && ok).then(|| account_id.to_owned()))
}

/// Starts a browser session; returns the cookie value (shown once; only its digest is stored).
pub async fn start_session(
    store: &Store,
    account_id: &str,
    auth_method: &str,
    now: UnixTime,
) -> Result<OpaqueToken, OAuthError> {
    let token = OpaqueToken::generate().map_err(|_| OAuthError::server_error("the random generator failed"))?;
    store.insert_session(token.digest().as_str(), account_id, auth_method, now, now + SESSION_LIFETIME).await?;
    Ok(token)
}

/// The account signed in with this session cookie, if any.
pub async fn session_account(store: &Store, cookie: Option<&str>, now: UnixTime) -> Result<Option<String>, OAuthError> {
    match cookie {
        Some(c) if !c.is_empty() => Ok(store.session_account(OpaqueToken::presented(c).digest().as_str(), now).await?),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse battery"));
        assert!(!verify(&h, "wrong"));
        assert!(!verify("not a hash", "x"));
        assert!(matches!(hash_password("short"), Err(AccountError::WeakPassword)));
    }

    #[test]
    fn account_ids_are_plain() {
        assert!(valid_account_id("alice"));
        assert!(valid_account_id("dr.alice@clinic-1"));
        assert!(!valid_account_id(""));
        assert!(!valid_account_id("a b"));
        assert!(!valid_account_id("<script>"));
        assert!(!valid_account_id(&"a".repeat(65)));
    }
}
