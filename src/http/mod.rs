//! The HTTP faces of the flow: the JSON API under `/auth` and the browser pages (in [`pages`]), with their routes,
//! cookies, the `Origin` check and response headers. Handlers translate between requests and the flow's calls and
//! hold no business rules.

mod api;
mod cookies;
mod error;
mod extract;
mod pages;
mod service;

pub use cookies::SESSION_COOKIE;
pub use error::ApiError;

use std::net::IpAddr;
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::level_filters::LevelFilter;

use crate::crypto::Keys;
use crate::flow::Flow;

/// Bodies above this are refused with 413 before they are parsed.
const BODY_LIMIT_BYTES: usize = 16 * 1024;

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
}

/// What every handler and middleware extracts. One `Arc`, so each extraction is one reference count, not one per part
/// (each middleware layer and the handler extract it: with several counts per request, the two cores fought over
/// their cache lines).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub flow: Arc<Flow>,
    /// The server key's subkeys; the pages sign their anti-forgery tokens with one.
    pub keys: Arc<Keys>,
    pub web: WebSettings,
}

impl AppState {
    pub fn new(flow: Arc<Flow>, keys: Arc<Keys>, web: WebSettings) -> Self {
        Self(Arc::new(Shared { flow, keys, web }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    // Full paths rather than `nest("/auth", ..)`: nesting strips the prefix from every request's URI, work that
    // the session check, the hottest request, does not need.
    // Only requests that change something need the `Origin` check (it stops cross-site request forgery); the reads
    // skip that layer, which the session check, made for every request of the apps behind Twofold, feels.
    let reads = Router::new()
        .route("/auth/session", get(api::session))
        .route("/auth/2fa", get(api::second_factor_status));
    let writes = Router::new()
        .route("/auth/register", post(api::register))
        .route("/auth/login", post(api::login))
        .route("/auth/verify-2fa", post(api::verify_second_factor))
        .route("/auth/logout", post(api::logout))
        .route("/auth/2fa/totp/setup", post(api::totp_setup))
        .route("/auth/2fa/totp/confirm", post(api::totp_confirm))
        .route("/auth/2fa/totp", delete(api::totp_remove))
        .route("/auth/2fa/recovery-codes", post(api::regenerate_recovery_codes))
        .route("/auth/2fa/sms/send", post(api::send_login_sms))
        .route("/auth/2fa/sms/setup", post(api::sms_setup))
        .route("/auth/2fa/sms/confirm", post(api::sms_confirm))
        .route_layer(middleware::from_fn_with_state(state.clone(), same_origin));
    let auth = reads.merge(writes).layer(SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    let router = Router::new()
        .merge(auth)
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .merge(pages::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), service::around_requests))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
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
                "cross_origin",
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
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is nothing at this address").into_response()
    }
}

async fn method_not_allowed(uri: Uri, headers: HeaderMap) -> Response {
    if wants_page(&uri, &headers) {
        pages::PageError::MethodNotAllowed.into_response()
    } else {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this address does not take this method",
        )
        .into_response()
    }
}
