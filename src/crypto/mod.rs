//! Keys and the cryptography built on them: the server key file, secrets sealed at rest (AEAD), session tokens and
//! their stored digests, keyed hashes of recovery codes, the tokens that protect the pages' forms against cross-site
//! request forgery, and password hashing (in [`password`]).
//!
//! One 32-byte server key lives in `secret_key_file`. Each use gets its own subkey, derived with HMAC-SHA-256 under a
//! fixed label, so a key used for sealing never doubles as a MAC key.

pub mod password;

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the secret key file {path}: {source}. Check its permissions, or set secret_key_file to a file Twofold can read.")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("cannot create the secret key file {path}: {source}. Check that its folder exists and is writable, or set secret_key_file.")]
    Uncreatable { path: PathBuf, source: std::io::Error },
    #[error("the secret key file {path} does not hold a key (expected 64 hexadecimal characters). Restore it from your backup; a new key cannot open the secrets already stored.")]
    Malformed { path: PathBuf },
}

/// The server key and the subkeys derived from it. `Debug` shows nothing secret.
pub struct Keys {
    sealing: XChaCha20Poly1305,
    recovery_codes: [u8; KEY_BYTES],
    form_tokens: [u8; KEY_BYTES],
    sms_codes: [u8; KEY_BYTES],
    sms_destinations: [u8; KEY_BYTES],
    audit: [u8; KEY_BYTES],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Reads the key file, or creates it (mode 0600) with a fresh random key if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(KeyError::Unreadable {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes a new key to a private temporary file beside `path`, then links it into place, so the file appears
    /// complete or not at all: instances starting together never read a half-written key. If another process linked
    /// its key first, that one is used, so all agree on one key.
    fn create(path: &Path) -> Result<Self, KeyError> {
        let mut key = [0u8; KEY_BYTES];
        OsRng.fill_bytes(&mut key);
        let uncreatable = |source| KeyError::Uncreatable {
            path: path.to_owned(),
            source,
        };
        let mut suffix = [0u8; 8];
        OsRng.fill_bytes(&mut suffix);
        let temporary = path.with_extension(format!("new-{}", hex::encode(suffix)));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
                file.sync_all()
            })
            .map_err(uncreatable)?;
        let linked = std::fs::hard_link(&temporary, path);
        // The temporary name has served its purpose either way; a leftover would only be clutter.
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok(Self::from_master(&key)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
            Err(source) => Err(uncreatable(source)),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed { path: path.to_owned() };
        let bytes = hex::decode(text.trim()).map_err(|_| malformed())?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| malformed())?;
        Ok(Self::from_master(&key))
    }

    /// Keys derived from a given master key; tests use this to skip the file.
    pub fn from_master(master: &[u8; KEY_BYTES]) -> Self {
        Self {
            sealing: XChaCha20Poly1305::new(&derive(master, b"twofold seal v1").into()),
            recovery_codes: derive(master, b"twofold recovery codes v1"),
            form_tokens: derive(master, b"twofold form tokens v1"),
            sms_codes: derive(master, b"twofold sms codes v1"),
            sms_destinations: derive(master, b"twofold sms destinations v1"),
            audit: derive(master, b"twofold audit v1"),
        }
    }

    /// Encrypts `plaintext` with a fresh random nonce. `context` (e.g. `totp:42`) is bound as associated data, so a
    /// sealed value copied to another user's row does not open there.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // XChaCha20-Poly1305 encryption only fails for messages over 256 GiB.
        let sealed = self
            .sealing
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Keys::seal`] produced under the same context; `None` if it was altered or sealed elsewhere.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        self.sealing.decrypt(XNonce::from_slice(nonce), payload).ok()
    }

    /// Which browser a request came from, as far as the server can tell without a cookie of its own: SHA-256 over
    /// its address and user agent, each length-prefixed so that no two pairs run together.
    pub fn browser_digest(client_addr: Option<&str>, user_agent: Option<&str>) -> Vec<u8> {
        let mut hasher = Sha256::new();
        for part in [client_addr, user_agent] {
            let bytes = part.unwrap_or_default().as_bytes();
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().to_vec()
    }

    /// HMAC-SHA-256 of a normalised recovery code: what the database stores instead of the code.
    pub fn recovery_code_digest(&self, normalised_code: &str) -> Vec<u8> {
        mac(&self.recovery_codes, &[normalised_code.as_bytes()])
    }

    /// HMAC-SHA-256 under the audit key, over `parts` in order (the audit chain's MACs).
    pub fn audit_mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        mac(&self.audit, parts)
    }

    /// HMAC-SHA-256 of an SMS code bound to its user: six digits have too few values to store plainly hashed.
    pub fn sms_code_digest(&self, user: i64, code: &str) -> Vec<u8> {
        mac(&self.sms_codes, &[&user.to_be_bytes(), code.as_bytes()])
    }

    /// A phone number as the shared send limits name it: HMAC-SHA-256 under its own subkey, hex, so the throttle
    /// table holds no number.
    pub fn sms_destination(&self, phone: &str) -> String {
        hex::encode(mac(&self.sms_destinations, &[phone.as_bytes()]))
    }

    /// The anti-forgery token a page puts in its forms: HMAC-SHA-256 over `binding`, base64url. The binding is
    /// something only the browser that loaded the page holds (its session token, or before sign-in a random cookie),
    /// so another site can neither read nor compute the token.
    pub fn form_token(&self, binding: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.form_token_mac(binding).finalize().into_bytes())
    }

    /// Whether `token` is [`Keys::form_token`] of `binding`, compared in constant time.
    pub fn form_token_valid(&self, binding: &str, token: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        self.form_token_mac(binding).verify_slice(&bytes).is_ok()
    }

    fn form_token_mac(&self, binding: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.form_tokens)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(binding.as_bytes());
        mac
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn derive(master: &[u8; KEY_BYTES], label: &[u8]) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(&mac(master, &[label]));
    key
}

/// A session token: 32 random bytes, sent to the client as unpadded base64url in the cookie. The database only ever
/// sees its SHA-256 ([`SessionToken::digest`]). `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts only what [`SessionToken::generate`] can produce, so junk cookies never reach the database.
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        (bytes.len() == 32).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// A short random identifier (not a secret) that ties together the audit events of one login attempt.
pub fn flow_id() -> String {
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh secret for the pages' browser cookie: 32 random bytes, unpadded base64url like a session token.
pub fn browser_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_context() {
        let keys = Keys::from_master(&[7; 32]);
        let sealed = keys.seal("totp:1", b"secret");
        assert_eq!(keys.open("totp:1", &sealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(keys.open("totp:2", &sealed), None);
        assert_ne!(sealed, keys.seal("totp:1", b"secret"), "nonces must differ");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let other = Keys::from_master(&[8; 32]);
        assert_eq!(other.open("totp:1", &sealed), None);
        assert_eq!(keys.open("totp:1", &sealed[..10]), None);
    }

    #[test]
    fn key_file_is_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.key");
        let first = Keys::load_or_create(&path).unwrap();
        let sealed = first.seal("x", b"y");
        let second = Keys::load_or_create(&path).unwrap();
        assert_eq!(second.open("x", &sealed).as_deref(), Some(&b"y"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(Keys::load_or_create(&path), Err(KeyError::Malformed { .. })));
        let racing = dir.path().join("racing.key");
        let keys: Vec<Keys> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8).map(|_| scope.spawn(|| Keys::load_or_create(&racing))).collect();
            starts.into_iter().map(|start| start.join().unwrap().unwrap()).collect()
        });
        let sealed = keys[0].seal("x", b"y");
        assert!(
            keys.iter().all(|k| k.open("x", &sealed).is_some()),
            "all racers agree on one key"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary file is left behind"
        );
        let missing_dir = dir.path().join("no/such/folder/twofold.key");
        assert!(matches!(
            Keys::load_or_create(&missing_dir),
            Err(KeyError::Uncreatable { .. })
        ));
    }

    #[test]
    fn form_tokens_are_bound_to_their_binding_and_key() {
        let keys = Keys::from_master(&[7; 32]);
        let token = keys.form_token("session:abc");
        assert!(keys.form_token_valid("session:abc", &token));
        assert!(!keys.form_token_valid("session:abd", &token));
        assert!(!keys.form_token_valid("session:abc", ""));
        assert!(!keys.form_token_valid("session:abc", "not base64 !"));
        assert!(!keys.form_token_valid("session:abc", &token[..20]));
        assert!(!Keys::from_master(&[8; 32]).form_token_valid("session:abc", &token));
    }

    #[test]
    fn tokens_are_random_and_parse_strictly() {
        let token = SessionToken::generate();
        assert_ne!(token, SessionToken::generate());
        assert_eq!(SessionToken::parse(token.as_str()), Some(token.clone()));
        assert_eq!(SessionToken::parse("short"), None);
        assert_eq!(SessionToken::parse(&"A".repeat(5000)), None);
        assert_eq!(token.digest().len(), 32);
        assert!(!format!("{token:?}").contains(token.as_str()));
    }
}
