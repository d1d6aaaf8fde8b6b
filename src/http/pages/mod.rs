//! The pages a person uses in a browser: sign-in, the second step, the dashboard, security settings (authenticator
//! app, recovery codes) and registration, plus friendly error pages. They are another face of the same login flow as
//! the JSON API: every handler calls the same [`crate::flow::Flow`] functions with the same session cookie, so each
//! rule (limits, expiry, replay, re-authentication, "a pending session can only finish its sign-in") lives once, in
//! `flow`. Plain HTML forms that work without JavaScript; templates compiled into the binary (askama, one struct per
//! page); an anti-forgery token in every form ([`csrf`]); strict security headers and `Cache-Control: no-store` on
//! every answer.

mod account;
mod csrf;
mod problem;
mod return_to;
mod sign_in;
mod templates;
mod visitor;

pub use problem::{render_problem, PageError};

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

use self::templates::SmsCode;
use super::AppState;
use crate::flow::SmsChallenge;

/// No inline script or style anywhere (the QR code is inline SVG, which carries neither), forms post only here, and
/// no other site may frame a page (clickjacking a "remove authenticator" button).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("../../../static/style.css");
const COPY_SCRIPT: &str = include_str!("../../../static/copy.js");
const RESEND_SCRIPT: &str = include_str!("../../../static/resend.js");

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(account::dashboard))
        .route("/login", get(sign_in::login_page).post(sign_in::login))
        .route("/login/2fa", get(sign_in::second_step_page).post(sign_in::second_step))
        .route("/login/2fa/sms", post(sign_in::send_sms))
        .route("/logout", post(sign_in::logout))
        .route("/register", get(sign_in::register_page).post(sign_in::register))
        .route("/settings/security", get(account::security_page))
        .route(
            "/settings/security/totp",
            get(account::totp_setup_page).post(account::totp_setup),
        )
        .route("/settings/security/totp/confirm", post(account::totp_confirm))
        .route("/settings/security/step-up", post(account::step_up))
        .route("/settings/security/step-up/sms", post(account::send_step_up_sms))
        .route("/settings/security/totp/remove", post(account::totp_remove))
        .route("/settings/security/password", post(account::change_password))
        .route(
            "/settings/security/sessions/end-others",
            post(account::end_other_sessions),
        )
        .route("/settings/security/sessions/{id}/end", post(account::end_session))
        .route(
            "/settings/security/sms",
            get(account::sms_setup_page).post(account::sms_setup),
        )
        .route("/settings/security/sms/confirm", post(account::sms_confirm))
        .route("/settings/security/sms/remove", post(account::sms_remove))
        .route(
            "/settings/security/recovery-codes",
            post(account::regenerate_recovery_codes),
        )
        .route(
            "/settings/security/recovery-codes/download",
            post(account::download_recovery_codes),
        )
        .route("/static/style.css", get(stylesheet))
        .route("/static/copy.js", get(copy_script))
        .route("/static/resend.js", get(resend_script))
}

/// The headers every page and every redirect between pages carries. The stack in `http::router` adds
/// `X-Content-Type-Options` and `X-Frame-Options` to every answer.
fn add_page_headers(headers: &mut HeaderMap) {
    // Not the API's `no-referrer`: under that policy browsers send `Origin: null` with every form post, and the
    // pages check `Origin`. `same-origin` still tells other sites nothing (no page links to one anyway).
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // Pages show secrets (set-up keys, recovery codes) and per-session state: never keep them in a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// A rendered page with its status and headers.
fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                body,
            )
                .into_response();
            add_page_headers(response.headers_mut());
            response
        }
        Err(error) => {
            tracing::error!(%error, "a page could not be rendered");
            PageError::Internal.into_response()
        }
    }
}

/// "See other": where a browser goes after a form post or when a page is not for it, always fetched with GET.
/// `location` is a path this module built from fixed parts and a checked [`return_to::ReturnTo`].
fn see_other(location: &str) -> Response {
    let location = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    add_page_headers(response.headers_mut());
    response
}

fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

async fn stylesheet() -> Response {
    static_asset("text/css; charset=utf-8", STYLESHEET)
}

async fn copy_script() -> Response {
    static_asset("text/javascript; charset=utf-8", COPY_SCRIPT)
}

async fn resend_script() -> Response {
    static_asset("text/javascript; charset=utf-8", RESEND_SCRIPT)
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    // `no-cache` (revalidate) rather than a lifetime: a new binary must never be paired with an old stylesheet.
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The query string as `T`; a malformed one is a 400 page (axum's own rejection would be plain text).
struct PageQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(Self)
            .map_err(|_| PageError::BadRequest("The address has a malformed query string.".into()))
    }
}

/// An SMS code as the templates show it.
fn sms_code(challenge: SmsChallenge) -> SmsCode {
    SmsCode {
        resend_wait: problem::wait_text(challenge.resend_in.max(1)),
        phone: challenge.phone,
        code_sent: challenge.code_sent,
        resend_in: challenge.resend_in,
    }
}

/// A page answering 429 inline (a refused resend) carries `Retry-After` like the 429 page does.
fn with_retry_after(mut response: Response, retry_after: Option<i64>) -> Response {
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// A message from the flow (written lower-case for the JSON API) as a sentence on a page.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// How a page shows a moment: the server knows no time zone for the person, so UTC, said as such.
fn human_time(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "[day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

/// How long before `now` a moment was, in a person's words: "just now", "5 minutes ago", "2 hours ago", "3 days ago".
fn time_ago(then: OffsetDateTime, now: OffsetDateTime) -> String {
    let minutes = (now - then).whole_minutes().max(0);
    let (count, unit) = match minutes {
        0 => return "just now".to_owned(),
        1..=59 => (minutes, "minute"),
        60..=1439 => (minutes / 60, "hour"),
        _ => (minutes / 1440, "day"),
    };
    format!("{count} {unit}{} ago", if count == 1 { "" } else { "s" })
}

/// The same moment for `<time datetime>`.
fn machine_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_messages_become_sentences() {
        assert_eq!(
            sentence("the code is not valid; 4 tries left"),
            "The code is not valid; 4 tries left."
        );
        assert_eq!(sentence("Done."), "Done.");
    }

    #[test]
    fn times_ago_in_words() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_015).unwrap();
        let ago = |seconds: i64| time_ago(now - time::Duration::seconds(seconds), now);
        assert_eq!(ago(-5), "just now");
        assert_eq!(ago(59), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(5 * 60 + 59), "5 minutes ago");
        assert_eq!(ago(3600), "1 hour ago");
        assert_eq!(ago(2 * 3600 + 1800), "2 hours ago");
        assert_eq!(ago(24 * 3600), "1 day ago");
        assert_eq!(ago(3 * 24 * 3600), "3 days ago");
    }

    #[test]
    fn times_are_shown_in_utc() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_015).unwrap();
        assert_eq!(human_time(at), "15 January 2027, 08:00 UTC");
        assert_eq!(machine_time(at), "2027-01-15T08:00:15Z");
    }
}
