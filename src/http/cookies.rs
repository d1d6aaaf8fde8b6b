//! The cookies Twofold sets, in one place so the JSON API and the pages give them the same attributes: the session
//! cookie, and the pages' browser cookie that binds the anti-forgery token of forms shown before sign-in.

use axum::http::HeaderValue;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::WebSettings;
use crate::flow::SessionToken;

pub const SESSION_COOKIE: &str = "twofold_session";

/// Holds a random value that the pre-sign-in forms' token is bound to (see `pages::csrf`).
pub const BROWSER_COOKIE: &str = "twofold_browser";

fn header(cookie: Cookie<'_>) -> HeaderValue {
    // Cookie values here are base64url and the attributes fixed ASCII: always a valid header value.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `max_age` `None` makes a cookie that lives as long as the browser session.
fn cookie(web: &WebSettings, name: &'static str, value: String, max_age: Option<time::Duration>) -> HeaderValue {
    let mut cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(web.secure_cookies)
        .build();
    cookie.set_max_age(max_age);
    header(cookie)
}

pub fn session(web: &WebSettings, token: &SessionToken, max_age_seconds: i64) -> HeaderValue {
    let max_age = time::Duration::seconds(max_age_seconds);
    cookie(web, SESSION_COOKIE, token.as_str().to_owned(), Some(max_age))
}

pub fn cleared_session(web: &WebSettings) -> HeaderValue {
    cookie(web, SESSION_COOKIE, String::new(), Some(time::Duration::ZERO))
}

/// Lives as long as the browser session: it only has to outlast the page that carries the form.
pub fn browser(web: &WebSettings, value: &str) -> HeaderValue {
    cookie(web, BROWSER_COOKIE, value.to_owned(), None)
}
