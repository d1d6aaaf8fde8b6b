//! Cross-site request forgery protection for the pages' forms.
//!
//! Every form carries a token: an HMAC, under a subkey of the server key, of something only the browser that
//! loaded the form holds. Once there is a session that is the session token, so the token is a per-session
//! synchronizer token that needs no storage and changes whenever the session does (a pending session becoming full
//! gets a new one). Before sign-in (the sign-in and registration forms) it is a random value in an `HttpOnly`
//! cookie set with the form: a signed double-submit token, which also stops login CSRF. Another site can make a
//! browser send its cookies, but can read neither them nor the page, so it cannot produce the token; a forged post
//! gets a 403 page and changes nothing. A post whose `Origin` names another site is refused the same way.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::super::cookies::{self, BROWSER_COOKIE, SESSION_COOKIE};
use super::PageError;
use crate::flow::{Flow, SessionToken};
use crate::http::AppState;

/// What the forms of this browser are bound to, with a prefix per kind so the two kinds never collide.
fn binding(headers: &HeaderMap) -> Option<String> {
    let jar = CookieJar::from_headers(headers);
    if let Some(token) = jar.get(SESSION_COOKIE).and_then(|c| SessionToken::parse(c.value())) {
        return Some(format!("session:{}", token.as_str()));
    }
    jar.get(BROWSER_COOKIE)
        .map(|cookie| cookie.value())
        .filter(|value| well_formed(value))
        .map(|value| format!("browser:{value}"))
}

/// What [`Flow::browser_secret`] makes: 43 base64url characters.
fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token for the forms of the page being rendered, and the browser cookie to set when the browser had no
/// binding yet.
pub struct FormToken {
    pub token: String,
    new_cookie: Option<HeaderValue>,
}

impl FormToken {
    /// Sets the browser cookie this token is bound to, if it is new.
    pub fn attach(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.new_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie.clone());
        }
        response
    }
}

impl FromRequestParts<AppState> for FormToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(match binding(&parts.headers) {
            Some(binding) => Self {
                token: state.flow.form_token(&binding),
                new_cookie: None,
            },
            None => {
                let secret = Flow::browser_secret();
                Self {
                    token: state.flow.form_token(&format!("browser:{secret}")),
                    new_cookie: Some(cookies::browser(&state.web, &secret)),
                }
            }
        })
    }
}

/// The name of the hidden field every form carries.
#[derive(Deserialize)]
struct TokenField {
    csrf_token: Option<String>,
}

/// A form post whose origin and token were checked, parsed into `T` (its own fields; the token field is ignored).
pub struct Protected<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Protected<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        if headers
            .get(header::ORIGIN)
            .is_some_and(|origin| origin.as_bytes() != state.web.public_origin.as_bytes())
        {
            tracing::info!("refused a form post from another origin");
            return Err(PageError::Forbidden);
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        let binding = binding(headers);
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|_| PageError::BadRequest("The form could not be read (is it very large?).".into()))?;
        let token = serde_urlencoded::from_bytes::<TokenField>(&body)
            .ok()
            .and_then(|field| field.csrf_token);
        let genuine = match (&binding, &token) {
            (Some(binding), Some(token)) => state.flow.form_token_valid(binding, token),
            _ => false,
        };
        if !genuine {
            tracing::info!("refused a form post without a valid anti-forgery token");
            return Err(PageError::Forbidden);
        }
        if !is_form {
            return Err(PageError::BadRequest("Send the form as a web form.".into()));
        }
        serde_urlencoded::from_bytes(&body)
            .map(Self)
            .map_err(|_| PageError::BadRequest("The form misses a field.".into()))
    }
}
