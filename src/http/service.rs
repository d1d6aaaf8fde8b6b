//! Endpoints for the machines around Twofold: liveness, readiness, Prometheus metrics, and the request-latency
//! measurement that feeds them.

use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::{AppState, WebSettings, BODY_LIMIT_BYTES};
use crate::metrics::{MethodLabel, RouteLabel};

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    status: &'static str,
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "service", description = "The process is up and serving.",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can do its work: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "service", description = "The database answers.",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match state.flow.ready().await {
        Ok(()) => Ok(Json(Health { status: "ready" })),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::DatabaseUnavailable,
                "the database does not answer",
            ))
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service", description = "Prometheus metrics.",
    responses((status = 200, description = "The text exposition format", body = String,
        content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.flow.metrics().render(),
    )
        .into_response()
}

/// Around every request (one middleware: each layer of them costs the session check about a tenth of its speed):
/// reads the whole body before the handler runs, renders the page of a problem a page handler returned, and times
/// the request by its route pattern (never the raw path, which a client could vary at will; "unmatched" for
/// addresses no route serves).
pub async fn around_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = MethodLabel::of(request.method());
    let route = RouteLabel::new(request.extensions().get::<MatchedPath>());
    let wants_page = super::wants_page(request.uri(), request.headers());
    let response = match read_body(request, &state.web).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal.answer(wants_page),
    };
    let response = super::pages::render_problem(response, &state.web.site_name);
    state.flow.metrics().observe_request(
        method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Why a request's body was not read.
enum BodyRefusal {
    TooLarge,
    TooSlow,
    Unreadable,
}

impl BodyRefusal {
    fn answer(self, wants_page: bool) -> Response {
        let (status, code, message, page) = match self {
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the request body is too large",
                "That form is too large to send. Go back and send less.",
            ),
            Self::TooSlow => (
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                "the request body took too long to arrive",
                "The form took too long to arrive. Go back and send it again.",
            ),
            Self::Unreadable => (
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "the request body could not be read",
                "The form could not be read. Go back and send it again.",
            ),
        };
        let mut response = if wants_page {
            super::pages::PageError::Body { status, message: page }.into_response()
        } else {
            ApiError::new(status, code, message).into_response()
        };
        // The rest of the body is not read, so the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// The request with its whole body read into memory (at most `BODY_LIMIT_BYTES`, within `body_read_timeout`).
/// Reading every body here, whether or not its handler wants it, is what keeps a kept-alive connection usable: a
/// body left unread when the answer goes out makes hyper close the connection, and a client that already sent its
/// next request on it gets no answer. A request without a body passes untouched.
async fn read_body(request: Request, web: &WebSettings) -> Result<Request, BodyRefusal> {
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, BODY_LIMIT_BYTES);
    let collected = tokio::time::timeout(web.body_read_timeout, limited.collect())
        .await
        .map_err(|_| BodyRefusal::TooSlow)?
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                BodyRefusal::TooLarge
            } else {
                BodyRefusal::Unreadable
            }
        })?;
    Ok(Request::from_parts(parts, Body::from(collected.to_bytes())))
}
