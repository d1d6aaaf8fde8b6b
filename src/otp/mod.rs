//! One-time passwords: RFC 4226 HOTP and RFC 6238 TOTP generation and verification, the typed
//! second-factor and recovery codes a person enters, TOTP secrets with their `otpauth://` key URI
//! and QR code, and recovery-code sets. Everything here is pure except for drawing fresh secrets
//! from the OS CSPRNG; the current time is always passed in by the caller.

mod code;
mod hotp;
mod recovery;
mod uri;

pub use code::SixDigitCode;
pub use hotp::{generate_totp_secret, hotp, time_step, totp, verify_totp};
pub use recovery::{generate_recovery_codes, RecoveryCode, RECOVERY_CODES_PER_SET};
pub use uri::{base32, otpauth_uri, qr_svg, QrError};

/// HMAC algorithm for HOTP/TOTP. Twofold issues only Sha1; the others exist for the RFC 6238 vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// TOTP time step in seconds.
pub const TOTP_PERIOD: i64 = 30;
/// Digits in every TOTP code Twofold issues.
pub const TOTP_DIGITS: u32 = 6;
/// Length of a TOTP secret: 160 bits, the HMAC-SHA1 block-friendly size RFC 4226 recommends.
pub const TOTP_SECRET_BYTES: usize = 20;

/// Longest raw input either code parser looks at; anything longer is rejected before any work so
/// a hostile multi-megabyte form field costs nothing.
const MAX_RAW_CODE_LEN: usize = 64;

/// Drops the separators people type or paste into codes (ASCII space, tab, dash). `None` if the
/// raw input is over [`MAX_RAW_CODE_LEN`] bytes; a byte limit is as strict as a char limit here
/// because no valid code contains a non-ASCII character.
fn strip_separators(raw: &str) -> Option<String> {
    if raw.len() > MAX_RAW_CODE_LEN {
        return None;
    }
    Some(raw.chars().filter(|c| !matches!(c, ' ' | '-' | '\t')).collect())
}
