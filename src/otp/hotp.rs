//! The HOTP/TOTP algorithms themselves (RFC 4226, RFC 6238), TOTP verification with a ±1 step
//! window, and TOTP secret generation. Pure functions: time comes in as unix seconds.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{Algorithm, SixDigitCode, TOTP_DIGITS, TOTP_PERIOD, TOTP_SECRET_BYTES};

/// RFC 4226 HOTP, zero-padded to `digits`. Dynamic truncation offset = last byte of the MAC & 0x0f.
///
/// `digits` outside 6..=8 (the range RFC 4226 and RFC 6238 define) is clamped into it, since a
/// `String` result leaves no room for an error and a shorter code would silently weaken it.
pub fn hotp(secret: &[u8], counter: u64, digits: u32, algorithm: Algorithm) -> String {
    let message = counter.to_be_bytes();
    let mac = match algorithm {
        Algorithm::Sha1 => hmac_bytes::<Hmac<Sha1>>(secret, &message),
        Algorithm::Sha256 => hmac_bytes::<Hmac<Sha256>>(secret, &message),
        Algorithm::Sha512 => hmac_bytes::<Hmac<Sha512>>(secret, &message),
    };
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    // Iterating instead of slicing keeps this panic-free without relying on the MAC length
    // (every supported MAC is >= 20 bytes, so the offset + 4 always fits anyway).
    let word = mac
        .iter()
        .skip(offset)
        .take(4)
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    let digits = digits.clamp(6, 8);
    let value = (word & 0x7fff_ffff) % 10u32.pow(digits);
    format!("{value:0width$}", width = digits as usize)
}

/// RFC 6238 TOTP at unix time `unix_time` (T0 = 0, step `period`), 64-bit T (post-2038 works).
///
/// A `period` of 0 is treated as 1 second rather than dividing by zero.
pub fn totp(secret: &[u8], unix_time: u64, period: u64, digits: u32, algorithm: Algorithm) -> String {
    hotp(secret, unix_time / period.max(1), digits, algorithm)
}

/// The TOTP time step of a unix time: floor(unix_time / 30). Negative times are clamped to step 0.
pub fn time_step(unix_time: i64) -> i64 {
    // Clamping first makes truncating division equal to floor division.
    unix_time.max(0) / TOTP_PERIOD
}

/// Checks `code` against steps t-1, t, t+1 of `secret` at `unix_time` (SHA1, 6 digits, 30 s).
///
/// All three candidates are always computed and compared in constant time, so timing reveals
/// neither whether nor where the code matched. Returns the matching step (the highest if several
/// match). Replay protection is the caller's job: it must persist the last accepted step and
/// refuse steps that are not newer.
pub fn verify_totp(secret: &[u8], code: &SixDigitCode, unix_time: i64) -> Option<i64> {
    let current = time_step(unix_time);
    let mut found = subtle::Choice::from(0);
    let mut matched_step = 0i64;
    // `current` is at most i64::MAX / 30, so `current + 1` cannot overflow.
    for step in [current - 1, current, current + 1] {
        // Step -1 (only reachable in the first 30 s of the epoch) has no HOTP counter; comparing
        // against counter 0 with the result masked out keeps the work identical.
        let valid = subtle::Choice::from(u8::from(step >= 0));
        let counter = u64::try_from(step).unwrap_or(0);
        let candidate = hotp(secret, counter, TOTP_DIGITS, Algorithm::Sha1);
        let is_match = candidate.as_bytes().ct_eq(code.as_str().as_bytes()) & valid;
        // Ascending order plus overwrite-on-match yields the highest matching step.
        matched_step = i64::conditional_select(&matched_step, &step, is_match);
        found |= is_match;
    }
    bool::from(found).then_some(matched_step)
}

/// A fresh 160-bit TOTP secret from the OS CSPRNG.
pub fn generate_totp_secret() -> Vec<u8> {
    let mut secret = vec![0u8; TOTP_SECRET_BYTES];
    OsRng.fill_bytes(&mut secret);
    secret
}

fn hmac_bytes<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC hashes or pads keys of any length, so `new_from_slice` cannot fail for `Hmac<_>`.
    let mut mac = <M as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = b"12345678901234567890";

    fn code(s: &str) -> SixDigitCode {
        SixDigitCode::parse(s).expect("valid code")
    }

    #[test]
    fn hotp_pads_with_leading_zeros() {
        assert_eq!(totp(SEED, 1_234_567_890, 30, 6, Algorithm::Sha1), "005924");
    }

    #[test]
    fn hotp_clamps_digits() {
        assert_eq!(hotp(SEED, 0, 0, Algorithm::Sha1), "755224");
        assert_eq!(hotp(SEED, 0, 99, Algorithm::Sha1).len(), 8);
    }

    #[test]
    fn totp_with_zero_period_does_not_panic() {
        assert_eq!(totp(SEED, 1, 0, 6, Algorithm::Sha1), hotp(SEED, 1, 6, Algorithm::Sha1));
    }

    #[test]
    fn time_step_floors_and_clamps() {
        assert_eq!(time_step(0), 0);
        assert_eq!(time_step(29), 0);
        assert_eq!(time_step(30), 1);
        assert_eq!(time_step(59), 1);
        assert_eq!(time_step(-1), 0);
        assert_eq!(time_step(i64::MIN), 0);
        assert_eq!(time_step(20_000_000_000), 666_666_666);
        assert_eq!(time_step(i64::MAX), i64::MAX / 30);
    }

    #[test]
    fn verify_near_epoch_ignores_negative_step() {
        // At step 0 the window is {0, 1}; counter 0's code must match as step 0, never step -1.
        let at_zero = hotp(SEED, 0, 6, Algorithm::Sha1);
        assert_eq!(verify_totp(SEED, &code(&at_zero), 5), Some(0));
        assert_eq!(verify_totp(SEED, &code(&at_zero), -500), Some(0));
        let at_one = hotp(SEED, 1, 6, Algorithm::Sha1);
        assert_eq!(verify_totp(SEED, &code(&at_one), 0), Some(1));
    }

    #[test]
    fn verify_at_far_future_does_not_overflow() {
        let last = time_step(i64::MAX);
        let counter = u64::try_from(last).expect("non-negative");
        let current = hotp(SEED, counter, 6, Algorithm::Sha1);
        assert_eq!(verify_totp(SEED, &code(&current), i64::MAX), Some(last));
    }

    #[test]
    fn verify_rejects_wrong_secret() {
        let other = b"09876543210987654321";
        assert_eq!(verify_totp(other, &code("050471"), 1_111_111_111), None);
    }

    #[test]
    fn generated_secrets_are_160_bits_and_differ() {
        let a = generate_totp_secret();
        let b = generate_totp_secret();
        assert_eq!(a.len(), TOTP_SECRET_BYTES);
        assert_eq!(b.len(), 20);
        assert_ne!(a, b);
    }
}
