//! Getting a TOTP secret into an authenticator app: RFC 4648 base32, the Google Authenticator
//! "Key Uri Format" `otpauth://` URI, and that URI rendered as an SVG QR code.

use data_encoding::BASE32_NOPAD;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use qrcode::render::svg;
use qrcode::QrCode;

use super::{TOTP_DIGITS, TOTP_PERIOD};

/// Everything except RFC 3986 unreserved characters. Narrower sets (e.g. leaving '@' or ':'
/// alone) are legal in some URI positions, but apps disagree on parsing the label, so encoding
/// maximally is the interoperable choice; '+' is never produced because space becomes %20.
const LABEL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The smallest width and height of the QR image; smaller renders are hard for phone cameras.
const QR_MIN_PIXELS: u32 = 200;

/// RFC 4648 base32, upper case, no padding (what authenticator apps expect).
pub fn base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// Key URI (Google Authenticator "Key Uri Format"):
/// `otpauth://totp/{ISSUER}:{ACCOUNT}?secret={BASE32}&issuer={ISSUER}&algorithm=SHA1&digits=6&period=30`.
///
/// Issuer and account are percent-encoded per RFC 3986 (space as %20, never '+'; ':' encoded too,
/// though callers reject colons up front). The secret carries no '=' padding.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer = utf8_percent_encode(issuer, LABEL_ENCODE);
    let account = utf8_percent_encode(account, LABEL_ENCODE);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_PERIOD}",
        secret = base32(secret),
    )
}

/// The text could not be put into a QR code (in practice: it is too long).
#[derive(Debug, thiserror::Error)]
#[error("the text is too long for a QR code")]
pub struct QrError;

/// `data` as a QR code in a complete SVG document: quiet zone included, at least 200x200 px,
/// black modules on white.
pub fn qr_svg(data: &str) -> Result<String, QrError> {
    // Byte-mode input can only fail on capacity, so every qrcode error collapses into one.
    let code = QrCode::new(data.as_bytes()).map_err(|_| QrError)?;
    Ok(code
        .render::<svg::Color>()
        .quiet_zone(true)
        .min_dimensions(QR_MIN_PIXELS, QR_MIN_PIXELS)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_known_value() {
        assert_eq!(base32(b"Hello!\xde\xad\xbe\xef"), "JBSWY3DPEHPK3PXP");
    }

    #[test]
    fn base32_has_no_padding() {
        let encoded = base32(&[0u8; 20]);
        assert_eq!(encoded.len(), 32);
        assert_eq!(base32(b"a"), "ME");
        assert!(!base32(b"ab").contains('='));
    }

    #[test]
    fn otpauth_uri_is_exact() {
        let secret = b"Hello!\xde\xad\xbe\xef";
        assert_eq!(
            otpauth_uri("ACME Co", "john.doe@email.com", secret),
            "otpauth://totp/ACME%20Co:john.doe%40email.com?secret=JBSWY3DPEHPK3PXP\
             &issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn otpauth_uri_encodes_reserved_and_non_ascii() {
        let uri = otpauth_uri("A+B:C&D", "ü?#=/ ~_.-", b"x");
        assert_eq!(
            uri,
            "otpauth://totp/A%2BB%3AC%26D:%C3%BC%3F%23%3D%2F%20~_.-?secret=PA\
             &issuer=A%2BB%3AC%26D&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn qr_svg_is_a_complete_document() {
        let uri = otpauth_uri("ACME Co", "john.doe@email.com", &[7u8; 20]);
        let svg = qr_svg(&uri).expect("short URI fits");
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"));
        assert!(svg.contains("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("#000000") && svg.contains("#ffffff"));
        let width: u32 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|w| w.parse().ok())
            .expect("svg has a width");
        assert!(width >= 200, "width {width}");
    }

    #[test]
    fn qr_svg_rejects_oversized_text() {
        let huge = "x".repeat(10_000);
        assert!(qr_svg(&huge).is_err());
    }
}
