//! The HTTP faces of the flow: the JSON API under `/auth` and the browser pages (in [`pages`]), with their routes,
//! cookies, the `Origin` check and response headers. Handlers translate between requests and the flow's calls and
//! hold no business rules.

mod api;
pub mod connections;
mod cookies;
mod error;
mod extract;
mod openapi;
mod pages;
mod service;

pub use cookies::SESSION_COOKIE;
pub use error::{ApiError, ErrorCode};
pub use openapi::document;

use std::net::IpAddr;
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::level_filters::LevelFilter;

use crate::flow::Flow;

/// Bodies above this are refused with 413 before they are parsed.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// A request (body included) that takes longer than this is answered 408, so a client that trickles its body
/// cannot hold a connection and its task forever.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the HTTP layer needs besides the flow.
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub secure_cookies: bool,
    /// `scheme://host[:port]` of `public_url`: the only `Origin` a browser may send.
    pub public_origin: String,
    pub trusted_proxies: Vec<IpAddr>,
    pub session_lifetime_seconds: i64,
    /// The name the pages show (the configured `issuer`, which authenticator apps show too).
    pub site_name: String,
    /// The longest a request's body may take to arrive (else 408).
    pub body_read_timeout: std::time::Duration,
}

/// What every handler and middleware extracts. One `Arc`, so each extraction is one reference count, not one per part
/// (each middleware layer and the handler extract it: with several counts per request, the two cores fought over
/// their cache lines).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub flow: Arc<Flow>,
    pub web: WebSettings,
}

impl AppState {
    pub fn new(flow: Arc<Flow>, web: WebSettings) -> Self {
        Self(Arc::new(Shared { flow, web }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Which layers a route of the table sits behind, and so which answers it shares with the others of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Reads the session: no `Origin` check, which the session check, made for every request of the apps behind
    /// Twofold, would feel.
    Read,
    /// Changes something: behind the `Origin` check (it stops cross-site request forgery).
    Write,
    /// For the machines around Twofold: no session, no `Origin` check, cacheable.
    Service,
}

/// One route of the JSON API or of the service endpoints.
#[derive(Debug, Clone)]
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub kind: RouteKind,
}

/// The methods the table uses, each with its filter, so a route's method is written once.
#[derive(Clone, Copy)]
enum Verb {
    Get,
    Post,
    Delete,
}

fn route<H, T>(kind: RouteKind, verb: Verb, path: &'static str, handler: H) -> (ApiRoute, MethodRouter<AppState>)
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let (method, filter) = match verb {
        Verb::Get => (Method::GET, MethodFilter::GET),
        Verb::Post => (Method::POST, MethodFilter::POST),
        Verb::Delete => (Method::DELETE, MethodFilter::DELETE),
    };
    (ApiRoute { method, path, kind }, on(filter, handler))
}

/// Every route of the JSON API and of the service endpoints, with its handler: the one list that [`router`] is built
/// from and that the API document is checked against (tests/it/openapi.rs), so a route cannot be served without
/// being documented. The browser pages are not here: they are HTML for people, not part of the API.
fn route_table() -> Vec<(ApiRoute, MethodRouter<AppState>)> {
    use RouteKind::{Read, Service, Write};
    use Verb::{Delete, Get, Post};
    vec![
        route(Read, Get, "/auth/session", api::session),
        route(Read, Get, "/auth/2fa", api::second_factor_status),
        route(Write, Post, "/auth/register", api::register),
        route(Write, Post, "/auth/login", api::login),
        route(Write, Post, "/auth/verify-2fa", api::verify_second_factor),
        route(Write, Post, "/auth/logout", api::logout),
        route(Write, Post, "/auth/2fa/totp/setup", api::totp_setup),
        route(Write, Post, "/auth/2fa/totp/confirm", api::totp_confirm),
        route(Write, Delete, "/auth/2fa/totp", api::totp_remove),
        route(Write, Post, "/auth/2fa/recovery-codes", api::regenerate_recovery_codes),
        route(Write, Post, "/auth/2fa/sms/send", api::send_sms),
        route(Write, Post, "/auth/step-up", api::step_up),
        route(Write, Post, "/auth/2fa/sms/setup", api::sms_setup),
        route(Write, Post, "/auth/2fa/sms/confirm", api::sms_confirm),
        route(Write, Delete, "/auth/2fa/sms", api::sms_remove),
        route(Write, Post, "/auth/password", api::change_password),
        route(Read, Get, "/auth/sessions", api::sessions),
        route(Write, Delete, "/auth/sessions", api::end_other_sessions),
        route(Write, Delete, "/auth/sessions/{id}", api::end_session),
        route(Service, Get, "/healthz", service::healthz),
        route(Service, Get, "/readyz", service::readyz),
        route(Service, Get, "/metrics", service::metrics),
        route(Service, Get, "/openapi.json", openapi::openapi_json),
    ]
}

/// The routes of [`route_table`], without their handlers: for the API document and its test.
pub fn routes() -> Vec<ApiRoute> {
    route_table().into_iter().map(|(route, _)| route).collect()
}

pub fn router(state: AppState) -> Router {
    // Full paths rather than `nest("/auth", ..)`: nesting strips the prefix from every request's URI, work that
    // the session check, the hottest request, does not need. Only requests that change something need the `Origin`
    // check (it stops cross-site request forgery); the reads skip that layer, which the session check feels.
    let (mut reads, mut writes, mut services) = (Router::new(), Router::new(), Router::new());
    for (route, handler) in route_table() {
        let group = match route.kind {
            RouteKind::Read => &mut reads,
            RouteKind::Write => &mut writes,
            RouteKind::Service => &mut services,
        };
        *group = std::mem::take(group).route(route.path, handler);
    }
    let writes = writes.route_layer(middleware::from_fn_with_state(state.clone(), same_origin));
    let auth = reads.merge(writes).layer(SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    let router = Router::new()
        .merge(auth)
        .merge(services)
        .merge(pages::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), service::around_requests))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::RequestTimeout,
                        "the request took too long to arrive",
                    )
                }))
                .timeout(REQUEST_TIMEOUT),
        )
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ));
    // A log line per request, only when the log filter asks for debug: at the default level it would log nothing and
    // still cost the session check a tenth of its speed. Failures are logged where they happen either way.
    let router = if LevelFilter::current() >= LevelFilter::DEBUG {
        router.layer(TraceLayer::new_for_http())
    } else {
        router
    };
    router.with_state(state)
}

/// Refuses a request whose `Origin` names another origin. Browsers always send `Origin` on cross-origin requests,
/// so together with `SameSite=Lax` this stops cross-site request forgery; clients that send none are not browsers.
async fn same_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        if origin.as_bytes() != state.web.public_origin.as_bytes() {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::CrossOrigin,
                "requests from another site are refused; use the address in public_url",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// A person's browser gets a page for an unknown address or method; API clients, and anything under `/auth`, get
/// the contract's JSON error. Browsers say `Accept: text/html` when they navigate; API clients do not.
fn wants_page(uri: &Uri, headers: &HeaderMap) -> bool {
    let api = uri.path() == "/auth" || uri.path().starts_with("/auth/");
    let html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/html"));
    html && !api
}

async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    if wants_page(&uri, &headers) {
        pages::PageError::NotFound.into_response()
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "there is nothing at this address",
        )
        .into_response()
    }
}

async fn method_not_allowed(uri: Uri, headers: HeaderMap) -> Response {
    if wants_page(&uri, &headers) {
        pages::PageError::MethodNotAllowed.into_response()
    } else {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this address does not take this method",
        )
        .into_response()
    }
}
