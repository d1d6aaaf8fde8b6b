//! Passwords: the policy for new ones, and Argon2id hashing off the async reactor.
//!
//! Hashing runs on one dedicated thread per core, each reusing its own 19 MiB of Argon2 memory: the reactor threads
//! stay free to answer session checks while logins hash, a flood of logins queues instead of allocating 19 MiB per
//! request, and the memory stays bounded at cores × 19 MiB. (Allocating per hash on tokio's blocking pool let the
//! allocator keep every thread's freed 19 MiB: the server grew past 700 MiB under a burst of logins.)

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;
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
    #[error("the password hashing threads have stopped")]
    Stopped,
}

impl From<argon2::Error> for HashError {
    fn from(error: argon2::Error) -> Self {
        Self::Argon2(error.to_string())
    }
}

impl From<argon2::password_hash::Error> for HashError {
    fn from(error: argon2::password_hash::Error) -> Self {
        Self::Argon2(error.to_string())
    }
}

/// Work for a hashing thread, with where to send the answer.
enum Job {
    Hash(Password, oneshot::Sender<Result<String, HashError>>),
    Verify(Password, Arc<str>, oneshot::Sender<Result<bool, HashError>>),
}

/// Verified against when the user does not exist, so that an unknown username costs the same time as a wrong
/// password: a hash, with the production parameters, of a random password that was thrown away. Whatever it matches,
/// an unknown user's answer is "wrong password".
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$KTtOM6j78EGifboY+9qkow$BEERkEbSQztFs5t6NjQ7yWS/2gP5zhicixnGswIfLyE";

/// Hashes and verifies passwords on its own threads, one per core. Clones share the threads; they stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
}

impl PasswordHasher {
    /// Starts the hashing threads. Each takes its Argon2 memory at its first hash and keeps it.
    pub fn new() -> Result<Self, HashError> {
        let (jobs, queue) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        for n in 0..cores {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || Worker::default().run(&queue))
                .map_err(|e| HashError::Argon2(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self { jobs })
    }

    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Hash(password, reply))
            .map_err(|_| HashError::Stopped)?;
        answer.await.map_err(|_| HashError::Stopped)?
    }

    /// True when `password` matches `stored`; with no stored hash, checks the dummy and answers false.
    pub async fn verify(&self, password: Password, stored: Option<String>) -> Result<bool, HashError> {
        let known = stored.is_some();
        let phc: Arc<str> = stored.map_or_else(|| Arc::from(DUMMY_HASH), Arc::from);
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Verify(password, phc, reply))
            .map_err(|_| HashError::Stopped)?;
        let matches = answer.await.map_err(|_| HashError::Stopped)??;
        Ok(known && matches)
    }
}

fn params() -> Params {
    // The constants are a valid parameter set (checked by the test below), so this never falls back.
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).unwrap_or_default()
}

/// One hashing thread and the Argon2 memory it keeps between hashes.
#[derive(Default)]
struct Worker {
    memory: Vec<Block>,
}

impl Worker {
    /// Takes jobs until every [`PasswordHasher`] is gone. A requester that stopped waiting is no error.
    fn run(mut self, queue: &Mutex<mpsc::Receiver<Job>>) {
        loop {
            // Held only while taking a job, not while hashing it. A poisoned lock still guards a valid receiver.
            let job = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
            match job {
                Ok(Job::Hash(password, reply)) => {
                    let _ = reply.send(self.hash(&password));
                }
                Ok(Job::Verify(password, phc, reply)) => {
                    let _ = reply.send(self.verify(&password, &phc));
                }
                Err(mpsc::RecvError) => return,
            }
        }
    }

    /// Argon2 of `password` and `salt` into `out`, in this thread's memory (grown if `argon2` needs more).
    fn argon2_into(
        &mut self,
        argon2: &Argon2,
        password: &Password,
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), HashError> {
        let blocks = argon2.params().block_count();
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        Ok(argon2.hash_password_into_with_memory(password.bytes(), salt, out, &mut self.memory[..blocks])?)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `password` with a fresh salt.
    fn hash(&mut self, password: &Password) -> Result<String, HashError> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let raw_salt = salt.as_salt().decode_b64(&mut salt_bytes)?;
        let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            self.argon2_into(&argon2, password, raw_salt, out)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(argon2.params())?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string `phc`, with the algorithm, version and parameters written in it (so
    /// hashes made under older parameters keep working). Compared in constant time.
    fn verify(&mut self, password: &Password, phc: &str) -> Result<bool, HashError> {
        let parsed = PasswordHash::new(phc)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(HashError::Argon2("the stored hash has no salt or no output".into()));
        };
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let argon2 = Argon2::new(algorithm, version, Params::try_from(&parsed)?);
        let mut salt_bytes = [0u8; 64];
        let raw_salt = salt.decode_b64(&mut salt_bytes)?;
        let computed = Output::init_with(expected.len(), |out| {
            self.argon2_into(&argon2, password, raw_salt, out)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })?;
        // `Output`'s equality is constant-time.
        Ok(computed == expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_owasps() {
        assert!(Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).is_ok());
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(dummy.algorithm, Algorithm::Argon2id.ident());
        assert_eq!(dummy.version, Some(Version::V0x13.into()));
        assert_eq!(dummy.params, ParamsString::try_from(&params()).unwrap());
        assert_eq!(dummy.hash.unwrap().len(), Params::DEFAULT_OUTPUT_LEN);
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
        let hasher = PasswordHasher::new().unwrap();
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

    /// Hashes written by another implementation (argon2-cffi) under other parameters, smaller and larger than the
    /// production ones, still verify: the parameters come from the stored string and a thread's memory grows to fit.
    #[tokio::test]
    async fn hashes_with_other_parameters_verify() {
        let hasher = PasswordHasher::new().unwrap();
        for stored in [
            "$argon2id$v=19$m=8192,t=3,p=1$yK32LUCodDYki3iWEvi9wg$rWg9KbbTKzc0dI7mLNGMbkHZJw67rRLfVTZpxj//ncY",
            "$argon2id$v=19$m=32768,t=1,p=1$BlqET1bKqthnsMTTI7o/lA$inBLwbhU/2cIHqWHcN0Ashk/jTY9fxCPwXzvm0mRnbo",
        ] {
            let right = Password::new("an older passphrase").unwrap();
            assert!(hasher.verify(right, Some(stored.into())).await.unwrap(), "{stored}");
            let wrong = Password::new("an older passphrasE").unwrap();
            assert!(!hasher.verify(wrong, Some(stored.into())).await.unwrap(), "{stored}");
        }
        let garbage = hasher
            .verify(Password::new("x").unwrap(), Some("$argon2id$nonsense".into()))
            .await;
        assert!(matches!(garbage, Err(HashError::Argon2(_))));
    }

    /// Many more requests than threads: each gets its own answer.
    #[tokio::test]
    async fn concurrent_requests_get_their_own_answers() {
        let hasher = PasswordHasher::new().unwrap();
        let phc = hasher
            .hash(Password::new("the one right password").unwrap())
            .await
            .unwrap();
        let checks = (0..6).map(|n| {
            let (hasher, phc) = (hasher.clone(), phc.clone());
            let typed = if n % 2 == 0 {
                "the one right password"
            } else {
                "a wrong password"
            };
            async move {
                (
                    n,
                    hasher.verify(Password::new(typed).unwrap(), Some(phc)).await.unwrap(),
                )
            }
        });
        for (n, matched) in futures::future::join_all(checks).await {
            assert_eq!(matched, n % 2 == 0, "request {n}");
        }
    }
}
