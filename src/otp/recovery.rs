//! Recovery codes: the one-shot fallback second factor. Owns their format (16 base32 characters,
//! 80 bits from the OS CSPRNG), the normalisation of what a person types, and set generation.
//! Hashing and storing them is the caller's job.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use rand::rngs::OsRng;
use rand::RngCore;

use super::strip_separators;

/// Codes per set handed to a user.
pub const RECOVERY_CODES_PER_SET: usize = 10;

/// 80 bits encode to exactly 16 base32 characters with no padding.
const RECOVERY_CODE_BYTES: usize = 10;
const RECOVERY_CODE_CHARS: usize = 16;
const GROUP_CHARS: usize = 4;

/// A recovery code in normalised form: 16 upper-case RFC 4648 base32 characters, no dashes.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// Normalise what a person typed: drop spaces/dashes/tabs, upper-case ASCII; it must then be
    /// exactly 16 chars of A-Z2-7. `None` if invalid or if the raw input is over 64 bytes.
    pub fn parse(raw: &str) -> Option<Self> {
        let code = strip_separators(raw)?.to_ascii_uppercase();
        let in_alphabet = |b: u8| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b);
        (code.len() == RECOVERY_CODE_CHARS && code.bytes().all(in_alphabet)).then_some(Self(code))
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; RECOVERY_CODE_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(BASE32_NOPAD.encode(&bytes))
    }

    /// The normalised 16 chars (what gets hashed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// XXXX-XXXX-XXXX-XXXX for showing to the user.
    pub fn display(&self) -> String {
        let groups: Vec<String> = self
            .0
            .chars()
            .collect::<Vec<_>>()
            .chunks(GROUP_CHARS)
            .map(|group| group.iter().collect())
            .collect();
        groups.join("-")
    }
}

impl fmt::Debug for RecoveryCode {
    // A recovery code is a standing credential; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(****)")
    }
}

/// A fresh set of [`RECOVERY_CODES_PER_SET`] distinct codes.
pub fn generate_recovery_codes() -> Vec<RecoveryCode> {
    let mut codes: Vec<RecoveryCode> = Vec::with_capacity(RECOVERY_CODES_PER_SET);
    // A collision among 80-bit codes is practically impossible, but distinctness is promised, so
    // it is enforced rather than assumed.
    while codes.len() < RECOVERY_CODES_PER_SET {
        let code = RecoveryCode::generate();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn assert_display_shape(shown: &str) {
        assert_eq!(shown.len(), 19, "{shown}");
        for (i, c) in shown.chars().enumerate() {
            if i % 5 == 4 {
                assert_eq!(c, '-', "{shown}");
            } else {
                assert!(c.is_ascii_uppercase() || ('2'..='7').contains(&c), "{shown}");
            }
        }
    }

    #[test]
    fn generated_code_displays_in_groups() {
        let code = RecoveryCode::generate();
        assert_eq!(code.as_str().len(), 16);
        assert_display_shape(&code.display());
        assert_eq!(code.display().replace('-', ""), code.as_str());
    }

    #[test]
    fn parse_round_trips_display_and_sloppy_input() {
        let code = RecoveryCode::generate();
        assert_eq!(RecoveryCode::parse(&code.display()), Some(code.clone()));
        assert_eq!(RecoveryCode::parse(code.as_str()), Some(code.clone()));
        let sloppy = format!(" {} ", code.display().replace('-', " ").to_ascii_lowercase());
        assert_eq!(RecoveryCode::parse(&sloppy), Some(code.clone()));
        let tabbed = code.display().replace('-', "\t");
        assert_eq!(RecoveryCode::parse(&tabbed), Some(code));
    }

    #[test]
    fn parse_normalises_fixed_value() {
        let code = RecoveryCode::parse("abcd efgh-ijkl\tmn23").expect("valid");
        assert_eq!(code.as_str(), "ABCDEFGHIJKLMN23");
        assert_eq!(code.display(), "ABCD-EFGH-IJKL-MN23");
    }

    #[test]
    fn parse_rejects_invalid_codes() {
        let long = "A".repeat(10 * 1024);
        let padded = format!("ABCDEFGHIJKLMNOP{}", " ".repeat(60));
        for raw in [
            "",
            "ABCD-EFGH-IJKL-MNO",
            "ABCD-EFGH-IJKL-MNOPQ",
            "ABCD-EFGH-IJKL-MN00",
            "ABCD-EFGH-IJKL-MN11",
            "ABCD-EFGH-IJKL-MN88",
            "ABCD-EFGH-IJKL-MN99",
            "ABCD-EFGH-IJKL-MNÖP",
            "ABCDEFGHIJKLMNé",
            "ABCD-EFGH-IJKL-MNＯP",
            "ABCD_EFGH_IJKL_MNOP",
            "ABCD-EFGH-IJKL-MNO=",
            long.as_str(),
            padded.as_str(),
        ] {
            assert!(RecoveryCode::parse(raw).is_none(), "accepted {raw:?}");
        }
    }

    #[test]
    fn debug_hides_the_code() {
        let code = RecoveryCode::generate();
        assert_eq!(format!("{code:?}"), "RecoveryCode(****)");
    }

    #[test]
    fn thousand_generated_codes_are_distinct() {
        let codes: HashSet<String> = (0..1000)
            .map(|_| RecoveryCode::generate().as_str().to_owned())
            .collect();
        assert_eq!(codes.len(), 1000);
    }

    #[test]
    fn a_set_has_ten_distinct_codes() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES_PER_SET);
        assert_eq!(codes.len(), 10);
        let distinct: HashSet<&str> = codes.iter().map(RecoveryCode::as_str).collect();
        assert_eq!(distinct.len(), 10);
        for code in &codes {
            assert_display_shape(&code.display());
        }
    }
}
