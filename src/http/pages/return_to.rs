//! Where to go after signing in. `return_to` is only ever a path on this site: a link to Twofold must not be able to
//! send a person who just signed in on to another site (an open redirect, the phishing page's favourite tool).

use url::form_urlencoded;

/// Longer than any path of this site needs; longer values are refused rather than cut.
const MAX_LEN: usize = 1024;

/// A checked same-origin path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnTo(String);

impl ReturnTo {
    /// Accepts a path that starts with exactly one '/' and holds only printable ASCII without a backslash. So no
    /// scheme (`https://…`), no scheme-relative `//host`, and no `/\host`: browsers read a backslash as a slash and
    /// drop tabs and line breaks from URLs, which would turn `/\evil.example` or `/<tab>/evil.example` into a host.
    pub fn parse(raw: &str) -> Option<Self> {
        let safe = raw.len() <= MAX_LEN
            && raw.starts_with('/')
            && !raw.starts_with("//")
            && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
        safe.then(|| Self(raw.to_owned()))
    }

    /// The checked value of an optional form or query field; anything unsafe is dropped.
    pub fn from_field(raw: Option<&str>) -> Option<Self> {
        raw.and_then(Self::parse)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where to go: this path, or the dashboard when there is none.
    pub fn or_home(this: Option<&Self>) -> &str {
        this.map_or("/", Self::as_str)
    }

    /// `path` with this value as its `return_to` query parameter, to carry it across a redirect.
    pub fn carried(this: Option<&Self>, path: &str) -> String {
        match this {
            Some(back) => {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", back.as_str())
                    .finish();
                format!("{path}?{query}")
            }
            None => path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReturnTo;

    #[test]
    fn accepts_paths_on_this_site() {
        for good in ["/", "/settings/security", "/a?b=c&d=%2F%2Fe", "/x#frag", "/%5Cevil"] {
            assert_eq!(ReturnTo::parse(good).map(|r| r.0), Some(good.to_owned()), "{good}");
        }
    }

    #[test]
    fn refuses_anything_that_could_leave_the_site() {
        for bad in [
            "",
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/ünïcode",
            "http:/evil.example",
        ] {
            assert_eq!(ReturnTo::parse(bad), None, "{bad:?}");
        }
        assert_eq!(ReturnTo::parse(&format!("/{}", "a".repeat(2000))), None);
    }

    #[test]
    fn is_carried_percent_encoded() {
        let back = ReturnTo::parse("/settings/security?x=1&y=2");
        assert_eq!(
            ReturnTo::carried(back.as_ref(), "/login"),
            "/login?return_to=%2Fsettings%2Fsecurity%3Fx%3D1%26y%3D2"
        );
        assert_eq!(ReturnTo::carried(None, "/login"), "/login");
        assert_eq!(ReturnTo::or_home(None), "/");
    }
}
