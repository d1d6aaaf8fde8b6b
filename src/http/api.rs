//! The JSON API of the contract (`/auth/...`).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::extract::{ApiJson, Client, SessionCookie};
use super::{cookies, AppState};
use crate::flow::{limits, LoginOutcome, Method, Notice, SmsSent};

/// Username and password. No `Debug`: it would print the password.
#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

#[derive(Deserialize)]
pub struct SecondFactorCode {
    method: String,
    code: String,
}

#[derive(Deserialize)]
pub struct Code {
    code: String,
}

#[derive(Deserialize)]
pub struct Phone {
    phone: String,
}

fn with_cookie(cookie: HeaderValue, status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

fn method_names(methods: &[Method]) -> Vec<&'static str> {
    methods.iter().map(|m| m.as_str()).collect()
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

pub async fn register(
    State(state): State<AppState>,
    Client(who): Client,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let username = state.flow.register(&body.username, &body.password, &who).await?;
    Ok((StatusCode::CREATED, Json(json!({ "username": username }))).into_response())
}

pub async fn login(
    State(state): State<AppState>,
    Client(who): Client,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    Ok(match state.flow.login(&body.username, &body.password, &who).await? {
        LoginOutcome::Authenticated(token) => with_cookie(
            cookies::session(&state.web, &token, state.web.session_lifetime_seconds),
            StatusCode::OK,
            json!({ "status": "authenticated" }),
        ),
        LoginOutcome::SecondFactorRequired { token, methods } => with_cookie(
            cookies::session(&state.web, &token, limits::PENDING_SESSION_SECONDS),
            StatusCode::OK,
            json!({ "status": "2fa_required", "methods": method_names(&methods) }),
        ),
    })
}

pub async fn verify_second_factor(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
    ApiJson(body): ApiJson<SecondFactorCode>,
) -> Result<Response, ApiError> {
    let token = state
        .flow
        .verify_second_factor(token.as_ref(), &body.method, &body.code, &who)
        .await?;
    Ok(with_cookie(
        cookies::session(&state.web, &token, state.web.session_lifetime_seconds),
        StatusCode::OK,
        json!({ "status": "authenticated" }),
    ))
}

pub async fn logout(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
) -> Result<Response, ApiError> {
    state.flow.logout(token.as_ref(), &who).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookies::cleared_session(&state.web));
    Ok(response)
}

/// `GET /auth/session`'s body. A struct rather than `json!`: this is the request every app behind Twofold makes.
#[derive(Serialize)]
struct SessionBody {
    authenticated_at: String,
    expires_at: String,
    notices: Vec<Notice>,
    second_factor: Option<String>,
    username: String,
}

pub async fn session(
    State(state): State<AppState>,
    SessionCookie(token): SessionCookie,
) -> Result<Json<impl Serialize>, ApiError> {
    let view = state.flow.session(token.as_ref()).await?;
    Ok(Json(SessionBody {
        authenticated_at: rfc3339(view.authenticated_at),
        expires_at: rfc3339(view.expires_at),
        notices: view.notices,
        second_factor: view.second_factor,
        username: view.username,
    }))
}

pub async fn second_factor_status(
    State(state): State<AppState>,
    SessionCookie(token): SessionCookie,
) -> Result<Json<Value>, ApiError> {
    let status = state.flow.second_factor_status(token.as_ref()).await?;
    Ok(Json(json!({
        "totp": status.totp,
        "sms": status.sms_phone.map(|phone| json!({ "phone": phone })),
        "recovery_codes_left": status.recovery_codes_left,
    })))
}

pub async fn totp_setup(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
) -> Result<Json<Value>, ApiError> {
    let setup = state.flow.totp_setup(token.as_ref(), &who).await?;
    Ok(Json(json!({
        "secret": setup.secret,
        "otpauth_uri": setup.otpauth_uri,
        "qr_svg": setup.qr_svg,
    })))
}

pub async fn totp_confirm(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
    ApiJson(body): ApiJson<Code>,
) -> Result<Json<Value>, ApiError> {
    let codes = state.flow.totp_confirm(token.as_ref(), &body.code, &who).await?;
    Ok(Json(json!({ "recovery_codes": codes })))
}

pub async fn totp_remove(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
    ApiJson(body): ApiJson<Code>,
) -> Result<StatusCode, ApiError> {
    state.flow.totp_remove(token.as_ref(), &body.code, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
) -> Result<Json<Value>, ApiError> {
    let codes = state.flow.regenerate_recovery_codes(token.as_ref(), &who).await?;
    Ok(Json(json!({ "recovery_codes": codes })))
}

fn sms_sent(sent: SmsSent) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "expires_in": sent.expires_in, "resend_after": sent.resend_after })),
    )
        .into_response()
}

pub async fn send_login_sms(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
) -> Result<Response, ApiError> {
    Ok(sms_sent(state.flow.send_login_sms(token.as_ref(), &who).await?))
}

pub async fn sms_setup(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
    ApiJson(body): ApiJson<Phone>,
) -> Result<Response, ApiError> {
    Ok(sms_sent(state.flow.sms_setup(token.as_ref(), &body.phone, &who).await?))
}

pub async fn sms_confirm(
    State(state): State<AppState>,
    Client(who): Client,
    SessionCookie(token): SessionCookie,
    ApiJson(body): ApiJson<Code>,
) -> Result<Json<Value>, ApiError> {
    let codes = state.flow.sms_confirm(token.as_ref(), &body.code, &who).await?;
    Ok(Json(json!({ "recovery_codes": codes })))
}
