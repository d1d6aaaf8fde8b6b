//! Passwords: the policy for new ones, and Argon2id hashing off the async reactor.
//!
//! Hashing runs on tokio's blocking pool behind a semaphore with one permit per core: the reactor threads stay free
//! to answer session checks while logins hash, and a flood of logins queues instead of allocating 19 MiB per request.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

/// OWASP's Argon2id row: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 1024;

const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// A password as typed, NFKC-normalised (so "ﬁ" and "fi" are one password), never printed by `Debug`.
pub struct Password(SecretString);

impl Password {
    /// `None` when it is empty or longer than [`MAX_LENGTH`] characters: no stored password can be either.
    pub fn new(raw: &str) -> Option<Self> {
        let normalised: String = raw.nfkc().collect();
        let length = normalised.chars().count();
        (1..=MAX_LENGTH)
            .contains(&length)
            .then(|| Self(SecretString::from(normalised)))
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Why a new password was refused; the text is shown to the person choosing it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WeakPassword {
    #[error("the password must be at least {MIN_LENGTH} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_LENGTH} characters long")]
    TooLong,
    #[error("this password is one of the most common passwords; choose another")]
    Common,
    #[error("the password must not be the username or contain the service name")]
    Contextual,
}

/// The rules for a new password (NIST SP 800-63B): a length range, no composition rules, and not a common or
/// context-specific one.
pub fn check_new_password(raw: &str, username: &str, issuer: &str) -> Result<Password, WeakPassword> {
    let normalised: String = raw.nfkc().collect();
    let length = normalised.chars().count();
    if length < MIN_LENGTH {
        return Err(WeakPassword::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(WeakPassword::TooLong);
    }
    let lower = normalised.to_lowercase();
    if COMMON_PASSWORDS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .any(|common| common == lower)
    {
        return Err(WeakPassword::Common);
    }
    let issuer = issuer.to_lowercase();
    if lower == username.to_lowercase() || (issuer.len() >= 4 && lower.contains(&issuer)) {
        return Err(WeakPassword::Contextual);
    }
    Ok(Password(SecretString::from(normalised)))
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Argon2(String),
    #[error("the password hashing task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords on the blocking pool.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the user does not exist so that an unknown username costs
    /// the same time as a wrong password.
    dummy: Arc<str>,
}

impl PasswordHasher {
    /// Computes the dummy hash, so call it once at start (it takes one hash's time).
    pub async fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let permits = Arc::new(Semaphore::new(cores));
        let dummy_password = Password(SecretString::from(crate::crypto::flow_id()));
        let dummy: Arc<str> = tokio::task::spawn_blocking(move || hash_now(&dummy_password))
            .await??
            .into();
        Ok(Self { permits, dummy })
    }

    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await;
        tokio::task::spawn_blocking(move || hash_now(&password)).await?
    }

    /// True when `password` matches `stored`; with no stored hash, checks the dummy and answers false.
    pub async fn verify(&self, password: Password, stored: Option<String>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await;
        let known = stored.is_some();
        let phc: Arc<str> = stored.map_or_else(|| self.dummy.clone(), Arc::from);
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc).map_err(|e| HashError::Argon2(e.to_string()))?;
            Ok::<_, HashError>(argon2().verify_password(password.bytes(), &parsed).is_ok())
        })
        .await??;
        Ok(known && matches)
    }
}

fn argon2() -> Argon2<'static> {
    // The constants are a valid parameter set (checked by the test below), so this never falls back.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &Password) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_owasps() {
        assert!(Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).is_ok());
    }

    #[test]
    fn policy() {
        assert_eq!(
            check_new_password("short", "a", "Twofold").unwrap_err(),
            WeakPassword::TooShort
        );
        assert_eq!(
            check_new_password("ééééééé", "a", "Twofold").unwrap_err(),
            WeakPassword::TooShort
        );
        assert_eq!(
            check_new_password("Password123", "a", "Twofold").unwrap_err(),
            WeakPassword::Common
        );
        assert_eq!(
            check_new_password("aliceliddell", "AliceLiddell", "Twofold").unwrap_err(),
            WeakPassword::Contextual
        );
        assert_eq!(
            check_new_password("mytwofoldpass", "a", "Twofold").unwrap_err(),
            WeakPassword::Contextual
        );
        assert_eq!(
            check_new_password(&"x".repeat(1025), "a", "Twofold").unwrap_err(),
            WeakPassword::TooLong
        );
        assert!(check_new_password("correct horse battery staple", "alice", "Twofold").is_ok());
        assert!(check_new_password("lowercase only passphrase", "alice", "Twofold").is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_fail() {
        let hasher = PasswordHasher::new().await.unwrap();
        let phc = hasher.hash(Password::new("ﬁne password").unwrap()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher
            .verify(Password::new("fine password").unwrap(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify(Password::new("Fine password").unwrap(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify(Password::new("ﬁne passwor").unwrap(), Some(phc))
            .await
            .unwrap());
        assert!(!hasher.verify(Password::new("anything").unwrap(), None).await.unwrap());
        assert!(Password::new("").is_none());
        assert!(Password::new(&"x".repeat(1025)).is_none());
    }
}
