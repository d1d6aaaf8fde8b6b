//! Extractors that parse requests at the edge into the types the flow trusts: JSON bodies whose failures use the
//! contract's error body, the session cookie, and who is asking.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;

use super::cookies::SESSION_COOKIE;
use super::error::{ApiError, ErrorCode};
use super::AppState;
use crate::flow::{
    FactorChange, FullSession, LoginState, PendingAction, PendingLogin, RecentSession, Requester, SessionToken,
};

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
                    ErrorCode::UnsupportedMediaType,
                    "send the body as JSON with Content-Type: application/json",
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
pub fn session_token(parts: &Parts) -> Option<SessionToken> {
    let jar = CookieJar::from_headers(&parts.headers);
    jar.get(SESSION_COOKIE)
        .and_then(|cookie| SessionToken::parse(cookie.value()))
}

/// The login state of the request: its session cookie read once, with the flow's rules applied. Each request runs
/// this once, through whichever of the extractors below its handler asks for.
pub async fn login_state(parts: &Parts, state: &AppState) -> Result<LoginState, crate::flow::FlowError> {
    state.flow.resolve(session_token(parts).as_ref()).await
}

/// Any login state: for signing out, which ends whatever session there is.
pub struct AnyState(pub LoginState);

impl FromRequestParts<AppState> for AnyState {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(login_state(parts, state).await?))
    }
}

fn unauthenticated() -> ApiError {
    crate::flow::FlowError::Unauthenticated.into()
}

/// A full session; anything else is `401 unauthenticated` (no session, an expired one, or a pending one).
pub struct SignedIn(pub FullSession);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match login_state(parts, state).await? {
            LoginState::SignedIn(session) => Ok(Self(session)),
            LoginState::Pending(_) | LoginState::SignedOut => Err(unauthenticated()),
        }
    }
}

/// A full session whose sign-in is recent enough to change factors: else `401 unauthenticated`, or `401
/// reauthentication_required` for a full session signed in too long ago.
pub struct Recent(pub RecentSession);

impl FromRequestParts<AppState> for Recent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        Ok(Self(state.flow.recent(session)?))
    }
}

/// A recent session allowed to change the account's factors: else as [`Recent`], or `401 step_up_required` when the
/// account has a second factor and this session has not proved one in the last 5 minutes (`POST /auth/step-up`).
pub struct Change(pub FactorChange);

impl FromRequestParts<AppState> for Change {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Recent(session) = Recent::from_request_parts(parts, state).await?;
        Ok(Self(state.flow.factor_change(session).await?))
    }
}

/// What a handler wants a pending sign-in for; a request without one is audited under it.
pub trait PendingPurpose {
    const ACTION: PendingAction;
}

/// `POST /auth/verify-2fa`.
pub struct ToVerify;
impl PendingPurpose for ToVerify {
    const ACTION: PendingAction = PendingAction::Verify;
}

/// A pending sign-in; anything else is audited and answered `401 no_pending_login`.
pub struct Pending<P>(pub PendingLogin, pub std::marker::PhantomData<P>);

impl<P: PendingPurpose> FromRequestParts<AppState> for Pending<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match login_state(parts, state).await? {
            LoginState::Pending(pending) => Ok(Self(pending, std::marker::PhantomData)),
            LoginState::SignedIn(_) | LoginState::SignedOut => {
                let who = requester(parts, state);
                Err(state.flow.without_pending(P::ACTION, &who).await?.into())
            }
        }
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
        Ok(Self(requester(parts, &AppState::from_ref(state))))
    }
}

/// Who is asking, from the request's parts.
pub fn requester(parts: &Parts, state: &AppState) -> Requester {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // A header value that is not text is a hop that does not parse, like any other: it stops the walk.
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.split(',').map(forwarded_hop).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect::<Vec<_>>();
    let client = client_address(peer, &forwarded, &state.web.trusted_proxies);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).chars().take(256).collect());
    Requester {
        client_addr: client.map(|ip| ip.to_string()),
        user_agent,
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`203.0.113.9:4711`, `[2001:db8::1]:443`,
/// `[2001:db8::1]`); `None` when it is none of these (`unknown`, an obfuscated name, garbage).
fn forwarded_hop(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    item.parse::<IpAddr>()
        .ok()
        .or_else(|| item.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            item.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })
}

/// Walks `X-Forwarded-For` from the right while the hop is a trusted proxy; the first untrusted address is the
/// client. A client cannot choose its address by sending the header itself: its own entries sit left of the
/// proxy's and are only reached through trusted hops. A hop that does not parse ends the walk at the last trusted
/// hop's address: skipping it would let the entries left of it, which anyone can write, be believed.
fn client_address(peer: Option<IpAddr>, forwarded: &[Option<IpAddr>], trusted: &[IpAddr]) -> Option<IpAddr> {
    let mut client = peer?;
    for hop in forwarded.iter().rev() {
        if !trusted.contains(&client) {
            break;
        }
        match hop {
            Some(hop) => client = *hop,
            None => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::{client_address, forwarded_hop};
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let client = ip("203.0.113.9");
        let spoof = ip("198.51.100.1");
        let hops = |list: &[IpAddr]| list.iter().copied().map(Some).collect::<Vec<_>>();
        assert_eq!(client_address(Some(client), &hops(&[spoof]), &[proxy]), Some(client));
        assert_eq!(
            client_address(Some(proxy), &hops(&[spoof, client]), &[proxy]),
            Some(client)
        );
        assert_eq!(client_address(Some(proxy), &[], &[proxy]), Some(proxy));
        assert_eq!(client_address(None, &hops(&[client]), &[proxy]), None);
    }

    #[test]
    fn forwarded_hops_with_ports_parse_and_others_end_the_walk() {
        assert_eq!(forwarded_hop(" 203.0.113.9:4711"), Some(ip("203.0.113.9")));
        assert_eq!(forwarded_hop("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(forwarded_hop("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(forwarded_hop("2001:db8::1"), Some(ip("2001:db8::1")));
        for garbage in ["unknown", "_hidden", "", "[203.0.113.9]", "203.0.113.9:port", "[::1"] {
            assert_eq!(forwarded_hop(garbage), None, "{garbage:?}");
        }

        let proxy = ip("10.0.0.1");
        let spoof = Some(ip("198.51.100.1"));
        // The spoofed entry left of the hop that does not parse is never reached.
        assert_eq!(client_address(Some(proxy), &[spoof, None], &[proxy]), Some(proxy));
        let inner = ip("10.0.0.2");
        assert_eq!(
            client_address(Some(proxy), &[spoof, None, Some(inner)], &[proxy, inner]),
            Some(inner)
        );
    }
}
