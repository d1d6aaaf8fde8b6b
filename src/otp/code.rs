//! The six-digit second-factor code as a person types it: normalisation and validation happen in
//! one place so that the rest of the server only ever handles well-formed codes.

use std::fmt;

use rand::rngs::OsRng;
use rand::Rng;

use super::strip_separators;

/// A second-factor code as typed by a person, normalised: ASCII spaces, dashes and tabs dropped,
/// then exactly 6 ASCII digits. Parsing is the only way to build one, so the rest of the code can
/// trust it.
#[derive(Clone, PartialEq, Eq)]
pub struct SixDigitCode(String);

impl SixDigitCode {
    /// `None` for anything that is not six ASCII digits once separators are dropped (full-width
    /// digits, signs and letters included), and for raw input longer than 64 bytes.
    pub fn parse(raw: &str) -> Option<Self> {
        let code = strip_separators(raw)?;
        // `is_ascii_digit` rather than `is_numeric`: the latter admits full-width and other
        // Unicode digits that an HOTP code can never contain.
        (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then_some(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Six uniformly random digits from the OS CSPRNG: an SMS code.
    pub fn random() -> Self {
        Self(format!("{:06}", OsRng.gen_range(0..1_000_000u32)))
    }
}

impl fmt::Debug for SixDigitCode {
    // A code is a credential for the next 30-90 s; it must not leak into logs via `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SixDigitCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..1000).map(|_| SixDigitCode::random().as_str().to_owned()).collect();
        assert!(codes.iter().all(|c| SixDigitCode::parse(c).is_some()));
        assert!(codes.len() > 990, "{} distinct of 1000", codes.len());
    }

    #[test]
    fn accepts_plain_and_separated_codes() {
        for raw in ["123456", "123 456", "123-456", " 123456 ", "\t123456", "1-2 3\t4-5 6"] {
            let code = SixDigitCode::parse(raw).unwrap_or_else(|| panic!("rejected {raw:?}"));
            assert_eq!(code.as_str(), "123456");
        }
    }

    #[test]
    fn separated_and_plain_codes_are_equal() {
        assert_eq!(SixDigitCode::parse("123 456"), SixDigitCode::parse("123456"));
        assert!(SixDigitCode::parse("123456").is_some());
    }

    #[test]
    fn rejects_malformed_codes() {
        let long = "1".repeat(10 * 1024);
        for raw in [
            "12345",
            "1234567",
            "12345a",
            "+12345",
            "+123456",
            "１２３４５６",
            "",
            "   ",
            "123_456",
            "123.456",
            "12345\u{00a0}6",
            long.as_str(),
        ] {
            assert!(SixDigitCode::parse(raw).is_none(), "accepted {raw:?}");
        }
    }

    #[test]
    fn rejects_long_input_even_if_mostly_separators() {
        let raw = format!("123456{}", " ".repeat(64));
        assert!(SixDigitCode::parse(&raw).is_none());
        let raw = format!("123456{}", " ".repeat(58));
        assert!(SixDigitCode::parse(&raw).is_some());
    }

    #[test]
    fn debug_never_shows_digits() {
        let code = SixDigitCode::parse("987654").expect("valid code");
        let shown = format!("{code:?}");
        assert_eq!(shown, "SixDigitCode(******)");
        assert!(!shown.chars().any(|c| c.is_ascii_digit()));
        assert_eq!(format!("{:?}", Some(code)), "Some(SixDigitCode(******))");
    }
}
