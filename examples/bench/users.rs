//! The benchmark's users as the load generator knows them: every secret and token is derived from the user's index,
//! so the generator rebuilds them instead of reading the database, and the seeder and the generator agree by
//! construction. Which users a figure may still sign in is tracked here, because the server accepts a TOTP code once
//! per user and 30-second step (its anti-replay rule).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use twofold::otp::{Algorithm, TOTP_DIGITS, TOTP_PERIOD, TOTP_SECRET_BYTES};

/// Every user's password (they share one Argon2id hash).
pub const PASSWORD: &str = "bench password, not a secret";

pub fn username(index: usize) -> String {
    format!("bench{index}")
}

/// The database id of user `index`: the seeder writes ids 1, 2, 3… in index order.
pub fn user_id(index: usize) -> i64 {
    index as i64 + 1
}

pub fn totp_secret(index: usize) -> Vec<u8> {
    Sha256::digest(format!("bench-user-{index}"))[..TOTP_SECRET_BYTES].to_vec()
}

/// The token of user `index`'s full session (32 bytes, unpadded base64url, like the server's own).
pub fn full_session(index: usize) -> String {
    token(&format!("bench-full-{index}"))
}

/// The token of a pending session prepared for user `index` in batch `batch` (a user gets one per batch).
pub fn pending_session(batch: u32, index: usize) -> String {
    token(&format!("bench-pending-{batch}-{index}"))
}

fn token(label: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(label))
}

/// What the server stores for a token: the SHA-256 of its text (`twofold::crypto::SessionToken::digest`).
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token).to_vec()
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn current_step() -> i64 {
    unix_now() / TOTP_PERIOD
}

/// The seeded users and, for each, the last TOTP step the server may have recorded for it.
#[derive(Default)]
pub struct Users {
    last_step: Vec<i64>,
    cursor: usize,
}

impl Users {
    pub fn count(&self) -> usize {
        self.last_step.len()
    }

    /// Users `count()..total` now exist.
    pub fn grow_to(&mut self, total: usize) {
        self.last_step.resize(total.max(self.count()), i64::MIN);
    }

    /// Up to `wanted` users whose code of the current step the server has not seen, walking round from where the
    /// last call stopped so that uses spread over all users.
    pub fn take(&mut self, wanted: usize) -> Vec<usize> {
        let step = current_step();
        let mut taken = Vec::with_capacity(wanted);
        for _ in 0..self.count() {
            if taken.len() == wanted {
                break;
            }
            let index = self.cursor;
            self.cursor = (self.cursor + 1) % self.count();
            if self.last_step[index] < step {
                taken.push(index);
            }
        }
        taken
    }

    /// User `index`'s code at this moment, noting the step as used.
    pub fn code(&mut self, index: usize) -> String {
        let now = unix_now();
        // The server checks the code a moment later and may already be in the next step; it accepts the code then
        // too, as the previous step's, but the next step's own code matches with a chance of one in a million and
        // would be recorded instead. Either way the user is not used again before the step after next.
        self.last_step[index] = now / TOTP_PERIOD + 1;
        twofold::otp::totp(
            &totp_secret(index),
            now as u64,
            TOTP_PERIOD as u64,
            TOTP_DIGITS,
            Algorithm::Sha1,
        )
    }
}
