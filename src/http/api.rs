//! The JSON API of the contract (`/auth/...`). Each handler carries its part of the API document
//! (`#[utoipa::path]`: body, answers and their error codes); [`super::openapi`] adds the answers that every route of a
//! kind shares (the `Origin` check, body limits, an unavailable database).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{AnyState, ApiJson, Change, Client, Pending, Recent, SignedIn, ToVerify};
use super::{cookies, AppState};
use crate::flow::{rules, LoginOutcome, LoginState, Method, Notice, PendingAction, SignedInSession, SmsSent};

// The patterns and lengths in the schemas below are the rules the flow applies (`Username::parse`, the password's
// length, `TypedCode::parse`, `PhoneNumber::parse`) in their plainest form, so that generated requests mostly get past
// validation; the server also accepts the sloppier forms it normalises (spaces and dashes in codes, upper case).

/// Username and password. No `Debug`: it would print the password.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    /// Compared case-insensitively.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._@-]{0,63}$")]
    username: String,
    /// At least 8 characters to register; not one of the most common passwords.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// The current password and the new one. No `Debug`: it would print both.
#[derive(Deserialize, ToSchema)]
pub struct NewPassword {
    #[schema(min_length = 1, max_length = 1024)]
    current_password: String,
    /// At least 8 characters; not one of the most common passwords, nor the username or the service's name.
    #[schema(min_length = 8, max_length = 1024)]
    new_password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct SecondFactorCode {
    // A string, not the enum, so that an unknown method is the flow's `400 bad_request` like any other bad input.
    #[schema(value_type = SecondFactorMethod)]
    method: String,
    /// Six digits for `totp` and `sms`, a recovery code (`XXXX-XXXX-XXXX-XXXX`, base32) for `recovery_code`.
    #[schema(pattern = r"^([0-9]{6}|[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})$")]
    code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct Code {
    /// Six digits.
    #[schema(pattern = r"^[0-9]{6}$")]
    code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct Phone {
    /// E.164, e.g. `+15551234567`.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$")]
    phone: String,
}

/// A second factor by its name in the contract.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecondFactorMethod {
    Totp,
    Sms,
    RecoveryCode,
}

impl From<Method> for SecondFactorMethod {
    fn from(method: Method) -> Self {
        match method {
            Method::Totp => Self::Totp,
            Method::Sms => Self::Sms,
            Method::RecoveryCode => Self::RecoveryCode,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    username: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignInStatus {
    Authenticated,
    #[serde(rename = "2fa_required")]
    SecondFactorRequired,
}

/// Where a sign-in stands: done, or waiting for one of `methods` (only the account's own).
#[derive(Serialize, ToSchema)]
pub struct SignIn {
    status: SignInStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    methods: Option<Vec<SecondFactorMethod>>,
}

impl SignIn {
    fn authenticated() -> Self {
        Self {
            status: SignInStatus::Authenticated,
            methods: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MaskedPhone {
    /// Masked, e.g. `+1•••••67`.
    phone: String,
}

#[derive(Serialize, ToSchema)]
pub struct SecondFactors {
    totp: bool,
    sms: Option<MaskedPhone>,
    recovery_codes_left: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TotpSetup {
    /// Base32, for typing into an authenticator app.
    secret: String,
    otpauth_uri: String,
    /// The `otpauth_uri` as a QR code (SVG).
    qr_svg: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten new codes, or none when confirming a factor that is not the account's first (its set stays).
    recovery_codes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SmsCodeSent {
    /// Seconds the code stays valid.
    expires_in: i64,
    /// Seconds before another code may be asked for.
    resend_after: i64,
}

fn with_cookie(cookie: HeaderValue, status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

#[utoipa::path(post, path = "/auth/register", tag = "sign-in", request_body = Credentials,
    description = "Creates an account, when the server allows registration.",
    responses(
        (status = 201, description = "The account exists", body = Registered),
        (status = 400, description = "`weak_password`, `invalid_username` or `bad_request`", body = ErrorBody),
        (status = 403, description = "`registration_disabled`, or `cross_origin`", body = ErrorBody),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many registrations from this address",
            body = ErrorBody, headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn register(
    State(state): State<AppState>,
    Client(who): Client,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let username = state.flow.register(&body.username, &body.password, &who).await?;
    Ok((StatusCode::CREATED, Json(Registered { username })).into_response())
}

#[utoipa::path(post, path = "/auth/login", tag = "sign-in", request_body = Credentials,
    description = "The password step. Sets the session cookie: a full session, or a pending one when the account has \
        a second factor.",
    responses(
        (status = 200, description = "Signed in, or a second factor is required", body = SignIn,
            headers(("Set-Cookie" = String, description = "`twofold_session`"))),
        (status = 401, description = "`invalid_credentials` (unknown user and wrong password alike)", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Client(who): Client,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    Ok(match state.flow.login(&body.username, &body.password, &who).await? {
        LoginOutcome::Authenticated(token) => with_cookie(
            cookies::session(&state.web, &token, state.web.session_lifetime_seconds),
            StatusCode::OK,
            SignIn::authenticated(),
        ),
        LoginOutcome::SecondFactorRequired { token, methods } => with_cookie(
            cookies::session(&state.web, &token, rules::PENDING_SESSION_SECONDS),
            StatusCode::OK,
            SignIn {
                status: SignInStatus::SecondFactorRequired,
                methods: Some(methods.into_iter().map(SecondFactorMethod::from).collect()),
            },
        ),
    })
}

#[utoipa::path(post, path = "/auth/verify-2fa", tag = "sign-in", request_body = SecondFactorCode,
    description = "The second step: turns the pending session into a full one under a new cookie.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Signed in", body = SignIn,
            headers(("Set-Cookie" = String, description = "`twofold_session`, the new token"))),
        (status = 401, description = "`invalid_2fa_code`, or `no_pending_login` without a pending session",
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the second factor is locked", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn verify_second_factor(
    State(state): State<AppState>,
    Client(who): Client,
    Pending(pending, _): Pending<ToVerify>,
    ApiJson(body): ApiJson<SecondFactorCode>,
) -> Result<Response, ApiError> {
    let token = state
        .flow
        .verify_second_factor(pending, &body.method, &body.code, &who)
        .await
        .map_err(|refused| refused.error)?;
    Ok(with_cookie(
        cookies::session(&state.web, &token, state.web.session_lifetime_seconds),
        StatusCode::OK,
        SignIn::authenticated(),
    ))
}

#[utoipa::path(post, path = "/auth/logout", tag = "sign-in",
    description = "Ends whatever session the cookie names, pending or full, and clears the cookie.",
    security((), ("session_cookie" = [])),
    responses((status = 204, description = "Signed out", headers(("Set-Cookie" = String, description = "Cleared")))))]
pub async fn logout(
    State(state): State<AppState>,
    Client(who): Client,
    AnyState(login): AnyState,
) -> Result<Response, ApiError> {
    state.flow.logout(login, &who).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookies::cleared_session(&state.web));
    Ok(response)
}

/// `GET /auth/session`'s body. Borrowed strings: this is the request every app behind Twofold makes.
#[derive(Serialize, ToSchema)]
pub struct SessionBody<'a> {
    #[schema(format = DateTime)]
    authenticated_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    /// Failures and refused replays since the last sign-in.
    notices: Vec<Notice>,
    /// The second factor this sign-in used, if any.
    second_factor: Option<&'a str>,
    username: &'a str,
}

#[utoipa::path(get, path = "/auth/session", tag = "session",
    description = "Who is signed in; what the apps behind Twofold ask.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "A full session", body = SessionBody),
        (status = 401, description = "`unauthenticated`: no session, an expired one, or a pending one",
            body = ErrorBody),
    ))]
pub async fn session(SignedIn(session): SignedIn) -> Response {
    Json(SessionBody {
        authenticated_at: rfc3339(session.authenticated_at()),
        expires_at: rfc3339(session.expires_at()),
        notices: session.notices(),
        second_factor: session.second_factor(),
        username: session.username(),
    })
    .into_response()
}

#[utoipa::path(get, path = "/auth/2fa", tag = "second factors",
    description = "The account's second factors.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "The factors", body = SecondFactors),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
    ))]
pub async fn second_factor_status(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
) -> Result<Json<SecondFactors>, ApiError> {
    let status = state.flow.second_factor_status(&session).await?;
    Ok(Json(SecondFactors {
        totp: status.totp,
        sms: status.sms_phone.map(|phone| MaskedPhone { phone }),
        recovery_codes_left: status.recovery_codes_left,
    }))
}

#[utoipa::path(post, path = "/auth/2fa/totp/setup", tag = "second factors",
    description = "A new authenticator secret, not active until confirmed. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "The secret to show", body = TotpSetup),
        (status = 401, description = "`unauthenticated`, `reauthentication_required` or `step_up_required` (a step-up is due)", body = ErrorBody),
    ))]
pub async fn totp_setup(
    State(state): State<AppState>,
    Client(who): Client,
    Change(session): Change,
) -> Result<Json<TotpSetup>, ApiError> {
    let setup = state.flow.totp_setup(&session, &who).await?;
    Ok(Json(TotpSetup {
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
        qr_svg: setup.qr_svg,
    }))
}

#[utoipa::path(post, path = "/auth/2fa/totp/confirm", tag = "second factors", request_body = Code,
    description = "Activates the authenticator set up last with one of its codes. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Active; recovery codes when it is the account's first factor",
            body = RecoveryCodes),
        (status = 401, description = "`invalid_2fa_code`, `unauthenticated`, `reauthentication_required` or `step_up_required` (a step-up is due)",
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the second factor is locked", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    Client(who): Client,
    Change(session): Change,
    ApiJson(body): ApiJson<Code>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = state.flow.totp_confirm(&session, &body.code, &who).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

#[utoipa::path(delete, path = "/auth/2fa/totp", tag = "second factors", request_body = Code,
    description = "Removes the authenticator, given one of its current codes. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`invalid_2fa_code`, `unauthenticated` or `reauthentication_required`",
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the second factor is locked", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn totp_remove(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(session): Recent,
    ApiJson(body): ApiJson<Code>,
) -> Result<StatusCode, ApiError> {
    state.flow.totp_remove(&session, &body.code, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/auth/2fa/sms", tag = "second factors", request_body = Code,
    description = "Removes the phone, given the code just texted to it for this session (`POST /auth/2fa/sms/send`). \
        When no authenticator app is left, the recovery codes go too and the account signs in with its password \
        alone. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`bad_request`: the account has no phone, or the code is not 6 digits",
            body = ErrorBody),
        (status = 401, description = "`invalid_2fa_code`, `unauthenticated` or `reauthentication_required`",
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the second factor is locked", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn sms_remove(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(session): Recent,
    ApiJson(body): ApiJson<Code>,
) -> Result<StatusCode, ApiError> {
    state.flow.sms_remove(&session, &body.code, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/auth/2fa/recovery-codes", tag = "second factors",
    description = "A new set of recovery codes; the old ones stop working. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "The new codes, shown once", body = RecoveryCodes),
        (status = 401, description = "`unauthenticated`, `reauthentication_required` or `step_up_required` (a step-up is due)", body = ErrorBody),
    ))]
pub async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Client(who): Client,
    Change(session): Change,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = state.flow.regenerate_recovery_codes(&session, &who).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

fn sms_sent(sent: SmsSent) -> Response {
    let body = SmsCodeSent {
        expires_in: sent.expires_in,
        resend_after: sent.resend_after,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

#[utoipa::path(post, path = "/auth/2fa/sms/send", tag = "sign-in",
    description = "Texts a code to the account's phone: a sign-in code for a pending session, a step-up code for a \
        signed-in one.",
    security(("session_cookie" = [])),
    responses(
        (status = 202, description = "Sent", body = SmsCodeSent),
        (status = 400, description = "`bad_request`: the account has no phone", body = ErrorBody),
        (status = 401, description = "`no_pending_login`: neither pending nor signed in", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: sent a moment ago, too many lately, or the second \
            factor is locked", body = ErrorBody, headers(("Retry-After" = i64, description = "Seconds to wait"))),
        (status = 503, description = "`sms_gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn send_sms(
    State(state): State<AppState>,
    Client(who): Client,
    AnyState(login): AnyState,
) -> Result<Response, ApiError> {
    let sent = match login {
        LoginState::Pending(pending) => state.flow.send_login_sms(&pending, &who).await?,
        LoginState::SignedIn(session) => state.flow.send_step_up_sms(&session, &who).await?,
        LoginState::SignedOut => return Err(state.flow.without_pending(PendingAction::SendSms, &who).await?.into()),
    };
    Ok(sms_sent(sent))
}

/// `POST /auth/step-up`: a current code from one of the account's factors, so that this session may change them.
#[utoipa::path(post, path = "/auth/step-up", tag = "second factors", request_body = SecondFactorCode,
    description = "Proves a second factor on this signed-in session (the sign-in's own code does not count): for \
        the next 5 minutes it may change the account's factors.",
    security(("session_cookie" = [])),
    responses(
        (status = 204, description = "Stepped up"),
        (status = 400, description = "`bad_request`: a malformed code, or a method the account does not use",
            body = ErrorBody),
        (status = 401, description = "`invalid_2fa_code` or `unauthenticated`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the second factor is locked", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn step_up(
    State(state): State<AppState>,
    Client(who): Client,
    SignedIn(session): SignedIn,
    ApiJson(body): ApiJson<SecondFactorCode>,
) -> Result<StatusCode, ApiError> {
    state.flow.step_up(&session, &body.method, &body.code, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/auth/2fa/sms/setup", tag = "second factors", request_body = Phone,
    description = "Texts a code to a new phone, to confirm it. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 202, description = "Sent", body = SmsCodeSent),
        (status = 400, description = "`invalid_phone` or `bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`, `reauthentication_required` or `step_up_required` (a step-up is due)", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: sent a moment ago, or too many lately", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
        (status = 503, description = "`sms_gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn sms_setup(
    State(state): State<AppState>,
    Client(who): Client,
    Change(session): Change,
    ApiJson(body): ApiJson<Phone>,
) -> Result<Response, ApiError> {
    Ok(sms_sent(state.flow.sms_setup(&session, &body.phone, &who).await?))
}

#[utoipa::path(post, path = "/auth/2fa/sms/confirm", tag = "second factors", request_body = Code,
    description = "Activates the phone set up last with the code texted to it. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Active; recovery codes when it is the account's first factor",
            body = RecoveryCodes),
        (status = 401, description = "`invalid_2fa_code`, `unauthenticated`, `reauthentication_required` or `step_up_required` (a step-up is due)",
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the second factor is locked", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn sms_confirm(
    State(state): State<AppState>,
    Client(who): Client,
    Change(session): Change,
    ApiJson(body): ApiJson<Code>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = state.flow.sms_confirm(&session, &body.code, &who).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

#[utoipa::path(post, path = "/auth/password", tag = "account", request_body = NewPassword,
    description = "Changes the password, given the current one; every other session of the account ends (pending ones \
        included), this one stays. Needs a recent sign-in.",
    security(("session_cookie" = [])),
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "`weak_password` (the reason is in the message) or `bad_request`",
            body = ErrorBody),
        (status = 401, description = "`invalid_credentials` (the current password is wrong; it counts toward the \
            password throttle), `unauthenticated` or `reauthentication_required`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many wrong passwords", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(session): Recent,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<StatusCode, ApiError> {
    state
        .flow
        .change_password(&session, &body.current_password, &body.new_password, &who)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One place the person is signed in.
#[derive(Serialize, ToSchema)]
pub struct SessionEntry {
    /// What `DELETE /auth/sessions/{id}` takes.
    id: i64,
    /// When this sign-in happened.
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_seen_at: String,
    /// The client's address as the session last saw it.
    client: Option<String>,
    /// The `User-Agent` header as sent.
    user_agent: Option<String>,
    /// The browser and system in plain words, e.g. "Firefox on Linux".
    device: String,
    /// The second factor the sign-in used, if any.
    second_factor: Option<String>,
    /// Whether this is the session asking.
    current: bool,
}

impl From<SignedInSession> for SessionEntry {
    fn from(session: SignedInSession) -> Self {
        Self {
            id: session.id,
            created_at: rfc3339(session.created_at),
            last_seen_at: rfc3339(session.last_seen_at),
            client: session.client,
            user_agent: session.user_agent,
            device: session.device,
            second_factor: session.second_factor,
            current: session.current,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Sessions {
    /// Newest first.
    sessions: Vec<SessionEntry>,
}

#[utoipa::path(get, path = "/auth/sessions", tag = "account",
    description = "Where the account is signed in: its live full sessions, newest first, this one marked `current`.",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "The sessions", body = Sessions),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
    ))]
pub async fn sessions(State(state): State<AppState>, SignedIn(session): SignedIn) -> Result<Json<Sessions>, ApiError> {
    let sessions = state.flow.signed_in_sessions(&session).await?;
    Ok(Json(Sessions {
        sessions: sessions.into_iter().map(SessionEntry::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "account",
    description = "Ends one of the account's sessions (this one too, if asked).",
    params(("id" = i64, Path, description = "A session's `id` from `GET /auth/sessions`")),
    security(("session_cookie" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such session of this account", body = ErrorBody),
    ))]
pub async fn end_session(
    State(state): State<AppState>,
    Client(who): Client,
    SignedIn(session): SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    // Read as text, so that an id that is no number is the same 404 as an unknown one, in the contract's body.
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such session"))?;
    state.flow.end_session(&session, id, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/auth/sessions", tag = "account",
    description = "Ends every other session of the account, pending ones included (\"sign out everywhere else\").",
    security(("session_cookie" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
    ))]
pub async fn end_other_sessions(
    State(state): State<AppState>,
    Client(who): Client,
    SignedIn(session): SignedIn,
) -> Result<StatusCode, ApiError> {
    state.flow.end_sessions_elsewhere(&session, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}
