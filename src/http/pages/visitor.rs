//! The login state of a page request, read once, and the extractors that say what a page needs: a full session
//! ([`SignedIn`]) or a recent one ([`Recent`]). A browser in the wrong state is sent where it belongs (a pending
//! sign-in to its second step, anyone else to sign in, coming back afterwards) rather than shown an error.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Method as HttpMethod;

use super::return_to::ReturnTo;
use super::PageError;
use crate::flow::{FullSession, LoginState, RecentSession};
use crate::http::extract::login_state;
use crate::http::AppState;

/// The security page, where a sign-in too old to change a factor is offered a new one.
pub const SECURITY: &str = "/settings/security";

/// Any login state; the handler decides where each goes.
pub struct Visitor(pub LoginState);

impl FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(login_state(parts, state).await?))
    }
}

/// Where a browser sent to sign in comes back to: the page it asked for; anywhere in the security settings (a form
/// post's own address is not a page, and a set-up page is a step that starts there) the security page.
fn here(parts: &Parts) -> Option<ReturnTo> {
    if parts.uri.path().starts_with(SECURITY) {
        return ReturnTo::parse(SECURITY);
    }
    if parts.method == HttpMethod::GET || parts.method == HttpMethod::HEAD {
        return parts
            .uri
            .path_and_query()
            .and_then(|path| ReturnTo::parse(path.as_str()));
    }
    ReturnTo::parse("/")
}

/// A full session; a pending sign-in goes to its second step, anyone else to sign in, and back here afterwards.
pub struct SignedIn(pub FullSession);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let step = match login_state(parts, state).await? {
            LoginState::SignedIn(session) => return Ok(Self(session)),
            LoginState::Pending(_) => "/login/2fa",
            LoginState::SignedOut => "/login",
        };
        Err(PageError::Redirect(ReturnTo::carried(here(parts).as_ref(), step)))
    }
}

/// A full session recent enough to change factors; an older one goes to the security page, which says why and
/// offers to sign in again.
pub struct Recent(pub RecentSession);

impl FromRequestParts<AppState> for Recent {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        Ok(Self(state.flow.recent(session)?))
    }
}
