//! Extractors that parse requests at the edge into the types the flow trusts: JSON bodies whose failures use the
//! contract's error body, the session cookie, and who is asking.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;

use super::cookies::SESSION_COOKIE;
use super::error::ApiError;
use super::AppState;
use crate::audit::Requester;
use crate::crypto::SessionToken;

/// `axum::Json`, with every rejection answered in the contract's error format (400, never 422).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(JsonRejection::MissingJsonContentType(_)) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with Content-Type: application/json",
                ))
            }
            Err(JsonRejection::BytesRejection(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large",
                ))
            }
            Err(JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_)) => {
                return Err(ApiError::bad_request("the request body is not valid JSON"))
            }
            Err(_) => return Err(ApiError::bad_request("the request body could not be read")),
        };
        // Serde reads a struct from an array by position too; the contract's bodies are objects, nothing else.
        if !value.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        // Serde's text can quote the offending value (a password, a code), so it is not passed on.
        serde_json::from_value(value)
            .map(Self)
            .map_err(|_| ApiError::bad_request("the request body misses a field or has a field of the wrong type"))
    }
}

/// The session token from the `twofold_session` cookie, if there is a well-formed one.
pub struct SessionCookie(pub Option<SessionToken>);

impl<S: Send + Sync> FromRequestParts<S> for SessionCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        Ok(Self(
            jar.get(SESSION_COOKIE)
                .and_then(|cookie| SessionToken::parse(cookie.value())),
        ))
    }
}

/// Who is asking: the client address (the TCP peer, or the `X-Forwarded-For` entry added by a trusted proxy) and
/// the user agent.
pub struct Client(pub Requester);

impl<S> FromRequestParts<S> for Client
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|item| item.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        let client = client_address(peer, &forwarded, &state.web.trusted_proxies);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).chars().take(256).collect());
        Ok(Self(Requester {
            client_addr: client.map(|ip| ip.to_string()),
            user_agent,
        }))
    }
}

/// Walks `X-Forwarded-For` from the right while the hop is a trusted proxy; the first untrusted address is the
/// client. A client cannot choose its address by sending the header itself: its own entries sit left of the
/// proxy's and are only reached through trusted hops.
fn client_address(peer: Option<IpAddr>, forwarded: &[IpAddr], trusted: &[IpAddr]) -> Option<IpAddr> {
    let mut client = peer?;
    for hop in forwarded.iter().rev() {
        if !trusted.contains(&client) {
            break;
        }
        client = *hop;
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::client_address;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let client = ip("203.0.113.9");
        let spoof = ip("198.51.100.1");
        assert_eq!(client_address(Some(client), &[spoof], &[proxy]), Some(client));
        assert_eq!(client_address(Some(proxy), &[spoof, client], &[proxy]), Some(client));
        assert_eq!(client_address(Some(proxy), &[], &[proxy]), Some(proxy));
        assert_eq!(client_address(None, &[client], &[proxy]), None);
    }
}
