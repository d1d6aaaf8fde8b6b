//! The signed-in pages: the dashboard (`/`) and the security settings (`/settings/security`), where a person sets
//! up or removes an authenticator app, adds a phone for text-message codes, and gets recovery codes. The same flow
//! calls as the JSON API's `/auth/session` and `/auth/2fa…` endpoints, with the same rules (a recent sign-in to
//! change anything, a current code to remove).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::csrf::{FormToken, Protected};
use super::problem::wait_text;
use super::templates::{
    DashboardPage, Layout, RecoveryCodesFile, RecoveryCodesPage, SecurityPage, SessionLine, SmsSetupPage, TotpSetupPage,
};
use super::visitor::{Recent, SignedIn, SECURITY};
use super::{
    add_page_headers, html, human_time, machine_time, see_other, sentence, sms_code, time_ago, with_retry_after,
    PageError, PageQuery,
};
use crate::flow::rules::RECOVERY_CODES_PER_SET;
use crate::flow::{recovery_codes_in, FlowError, FullSession, Method, SecondFactorStatus, SmsChallenge, TotpSetup};
use crate::http::extract::Client;
use crate::http::AppState;

const SMS_SETUP: &str = "/settings/security/sms";

/// What the security page reports after a change; a closed list, so the query string cannot put words on the page.
#[derive(Clone, Copy)]
enum SecurityNotice {
    Welcome,
    TotpOn,
    TotpRemoved,
    /// Removed while text-message codes stay on, so the recovery codes stay too.
    TotpRemovedSmsOn,
    SmsOn,
    /// A change was asked for before "Confirm it's you".
    ConfirmFirst,
    SteppedUp,
    StepUpSent,
    SessionEnded,
    OtherSessionsEnded,
    SmsRemoved,
    /// Removed while the authenticator stays, so the recovery codes stay too.
    SmsRemovedTotpOn,
}

impl SecurityNotice {
    fn parse(raw: Option<&str>) -> Option<Self> {
        match raw? {
            "welcome" => Some(Self::Welcome),
            "totp_on" => Some(Self::TotpOn),
            "totp_removed" => Some(Self::TotpRemoved),
            "totp_removed_sms_on" => Some(Self::TotpRemovedSmsOn),
            "sms_on" => Some(Self::SmsOn),
            "confirm_first" => Some(Self::ConfirmFirst),
            "stepped_up" => Some(Self::SteppedUp),
            "step_up_sent" => Some(Self::StepUpSent),
            "session_ended" => Some(Self::SessionEnded),
            "other_sessions_ended" => Some(Self::OtherSessionsEnded),
            "sms_removed" => Some(Self::SmsRemoved),
            "sms_removed_totp_on" => Some(Self::SmsRemovedTotpOn),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::TotpOn => "totp_on",
            Self::TotpRemoved => "totp_removed",
            Self::TotpRemovedSmsOn => "totp_removed_sms_on",
            Self::SmsOn => "sms_on",
            Self::ConfirmFirst => "confirm_first",
            Self::SteppedUp => "stepped_up",
            Self::StepUpSent => "step_up_sent",
            Self::SessionEnded => "session_ended",
            Self::OtherSessionsEnded => "other_sessions_ended",
            Self::SmsRemoved => "sms_removed",
            Self::SmsRemovedTotpOn => "sms_removed_totp_on",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Welcome => "Your account is ready. Protect it now: set up an authenticator app below.",
            Self::TotpOn => "Your authenticator app is on. Your recovery codes stay as they were.",
            Self::TotpRemoved => "The authenticator app was removed, and your recovery codes with it.",
            Self::TotpRemovedSmsOn => {
                "The authenticator app was removed. Text-message codes and your recovery codes still work."
            }
            Self::SmsOn => "Text-message codes are on. Your recovery codes stay as they were.",
            Self::ConfirmFirst => "Confirm it's you first: enter a current code from one of your second factors.",
            Self::SteppedUp => "Thank you. For the next 5 minutes you can change how you sign in.",
            Self::StepUpSent => "We sent a code by text message. Enter it below to confirm it's you.",
            Self::SessionEnded => "That session was signed out.",
            Self::OtherSessionsEnded => "You were signed out everywhere else. This browser stays signed in.",
            Self::SmsRemoved => {
                "The phone was removed, and your recovery codes with it. Your password alone now protects your \
                 account: set up an authenticator app below."
            }
            Self::SmsRemovedTotpOn => "The phone was removed. Your authenticator app and recovery codes still work.",
        }
    }

    /// The security page showing this notice.
    fn location(self) -> String {
        format!("{SECURITY}?notice={}", self.as_str())
    }
}

#[derive(Deserialize)]
pub struct SecurityQuery {
    notice: Option<String>,
}

/// What the dashboard reports after a change; a closed list, as [`SecurityNotice`] is.
#[derive(Clone, Copy)]
enum DashboardNotice {
    PasswordChanged,
}

impl DashboardNotice {
    fn parse(raw: Option<&str>) -> Option<Self> {
        match raw? {
            "password_changed" => Some(Self::PasswordChanged),
            _ => None,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::PasswordChanged => {
                "Your password was changed. Everywhere else you were signed in (other browsers, other devices, a sign-in \
                 waiting for its second step) has been signed out."
            }
        }
    }
}

/// The dashboard showing this notice.
const PASSWORD_CHANGED: &str = "/?notice=password_changed";

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    new_password_again: String,
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

#[derive(Deserialize)]
pub struct PhoneForm {
    phone: String,
    /// Set by the confirmation page's "send a new code" form, so a refusal is shown there rather than on the
    /// security page.
    again: Option<String>,
}

#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
pub struct DownloadForm {
    codes: String,
}

fn layout(state: &AppState, form: &FormToken, view: &FullSession, title: &'static str, here: &'static str) -> Layout {
    Layout {
        site_name: state.web.site_name.clone(),
        title,
        here,
        user: Some(view.username().to_owned()),
        form_token: form.token.clone(),
    }
}

fn factor_name(factor: Option<&str>) -> &'static str {
    match factor.and_then(Method::parse) {
        Some(Method::Totp) => "Authenticator app",
        Some(Method::Sms) => "Text message (SMS)",
        Some(Method::RecoveryCode) => "Recovery code",
        None => "None (password only)",
    }
}

pub async fn dashboard(
    State(state): State<AppState>,
    SignedIn(view): SignedIn,
    form: FormToken,
    PageQuery(query): PageQuery<SecurityQuery>,
) -> Result<Response, PageError> {
    let status = state.flow.second_factor_status(&view).await?;
    Ok(html(
        StatusCode::OK,
        &DashboardPage {
            layout: layout(&state, &form, &view, "Dashboard", "/"),
            username: view.username().to_owned(),
            since: human_time(view.authenticated_at()),
            since_machine: machine_time(view.authenticated_at()),
            second_factor: factor_name(view.second_factor()),
            has_second_factor: status.totp || status.sms_phone.is_some(),
            notices: view.notices(),
            notice: DashboardNotice::parse(query.notice.as_deref()).map(DashboardNotice::message),
        },
    ))
}

/// What the security page says besides the account's state: its status, a notice, an error at the top or next to
/// the phone field, and for a refused send how long to wait.
#[derive(Default)]
struct SecurityAnswer {
    notice: Option<SecurityNotice>,
    error: Option<String>,
    phone_error: Option<String>,
    password_error: Option<String>,
    retry_after: Option<i64>,
}

impl SecurityAnswer {
    /// The page with `message` at its top.
    fn error(message: &str) -> Self {
        Self {
            error: Some(message.to_owned()),
            ..Self::default()
        }
    }
}

/// The security page for `view`.
async fn security_view(
    state: &AppState,
    form: &FormToken,
    view: &FullSession,
    status: StatusCode,
    answer: SecurityAnswer,
) -> Result<Response, PageError> {
    let factors = state.flow.second_factor_status(view).await?;
    let now = state.flow.now();
    let sessions = (state.flow.signed_in_sessions(view).await?)
        .into_iter()
        .map(|session| SessionLine {
            id: session.id,
            device: session.device,
            client: session.client,
            seen: time_ago(session.last_seen_at, now),
            seen_machine: machine_time(session.last_seen_at),
            factor: factor_name(session.second_factor.as_deref()),
            current: session.current,
        })
        .collect();
    let may_change = state.flow.is_recent(view);
    let needs_step_up = may_change && !state.flow.may_change_without_step_up(view);
    let step_up_sms = if needs_step_up {
        state.flow.step_up_sms(view).await?.map(sms_code)
    } else {
        None
    };
    let page = html(
        status,
        &SecurityPage {
            layout: layout(state, form, view, "Security", SECURITY),
            totp: factors.totp,
            sms_phone: factors.sms_phone,
            offers_sms: state.flow.offers_sms(),
            phone_error: answer.phone_error,
            recovery_codes_left: factors.recovery_codes_left,
            recovery_codes_per_set: RECOVERY_CODES_PER_SET,
            may_change,
            needs_step_up,
            step_up_sms,
            notice: answer.notice.map(SecurityNotice::message),
            error: answer.error,
            password_error: answer.password_error,
            sessions,
        },
    );
    Ok(with_retry_after(page, answer.retry_after))
}

pub async fn security_page(
    State(state): State<AppState>,
    SignedIn(view): SignedIn,
    form: FormToken,
    PageQuery(query): PageQuery<SecurityQuery>,
) -> Result<Response, PageError> {
    let answer = SecurityAnswer {
        notice: SecurityNotice::parse(query.notice.as_deref()),
        ..SecurityAnswer::default()
    };
    security_view(&state, &form, &view, StatusCode::OK, answer).await
}

/// Starts setting up an authenticator app, then shows it on its own page (so a reload does not start over).
pub async fn totp_setup(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(session): Recent,
    Protected(NoFields {}): Protected<NoFields>,
) -> Result<Response, PageError> {
    // After the anti-forgery check: a forged post learns nothing, not even that a step-up is due.
    let session = state.flow.factor_change(session).await?;
    state.flow.totp_setup(&session, &who).await?;
    Ok(see_other("/settings/security/totp"))
}

fn totp_setup_view(
    state: &AppState,
    form: &FormToken,
    view: &FullSession,
    status: StatusCode,
    setup: TotpSetup,
    error: Option<String>,
) -> Response {
    // The document's XML declaration has no place inside HTML; the `<svg>` element is all the page needs.
    let qr_svg = setup
        .qr_svg
        .find("<svg")
        .map_or(setup.qr_svg.as_str(), |start| &setup.qr_svg[start..])
        .to_owned();
    let secret = setup
        .secret
        .as_bytes()
        .chunks(4)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    html(
        status,
        &TotpSetupPage {
            layout: layout(state, form, view, "Set up an authenticator app", SECURITY),
            qr_svg,
            secret,
            account: format!("{} ({})", state.web.site_name, view.username()),
            error,
        },
    )
}

pub async fn totp_setup_page(
    State(state): State<AppState>,
    Recent(view): Recent,
    form: FormToken,
) -> Result<Response, PageError> {
    match state.flow.totp_setup_in_progress(&view).await? {
        Some(setup) => Ok(totp_setup_view(&state, &form, &view, StatusCode::OK, setup, None)),
        None => Ok(see_other(SECURITY)),
    }
}

pub async fn totp_confirm(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(view): Recent,
    form: FormToken,
    Protected(body): Protected<CodeForm>,
) -> Result<Response, PageError> {
    // After the anti-forgery check: a forged post learns nothing, not even that a step-up is due.
    let view = state.flow.factor_change(view).await?;
    let (status, error) = match state.flow.totp_confirm(&view, &body.code, &who).await {
        Ok(codes) if codes.is_empty() => return Ok(see_other(&SecurityNotice::TotpOn.location())),
        Ok(codes) => {
            let turned_on = "Your authenticator app is on. From now on, signing in asks for a code from it.";
            return Ok(recovery_codes_view(&state, &form, &view, codes, Some(turned_on)));
        }
        Err(FlowError::InvalidCode(_)) => (
            StatusCode::UNAUTHORIZED,
            "That code is not right. Check that the phone's clock is correct, then enter the newest code the app \
             shows."
                .to_owned(),
        ),
        Err(error @ FlowError::BadRequest(_)) => (StatusCode::BAD_REQUEST, sentence(&error.to_string())),
        Err(error) => return Err(error.into()),
    };
    match state.flow.totp_setup_in_progress(&view).await? {
        Some(setup) => Ok(totp_setup_view(&state, &form, &view, status, setup, Some(error))),
        None => Ok(see_other(SECURITY)),
    }
}

pub async fn totp_remove(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(view): Recent,
    form: FormToken,
    Protected(body): Protected<CodeForm>,
) -> Result<Response, PageError> {
    let removed = state.flow.totp_remove(&view, &body.code, &who).await;
    let notice = match removal(&state, &view, removed, |factors| factors.sms_phone.is_some()).await? {
        Removal::Removed { other_left: true } => SecurityNotice::TotpRemovedSmsOn,
        Removal::Removed { other_left: false } => SecurityNotice::TotpRemoved,
        Removal::Refused(status) => {
            let refused =
                "That code is not right, so the authenticator app is still on. Enter the newest code it shows.";
            return security_view(&state, &form, &view, status, SecurityAnswer::error(refused)).await;
        }
    };
    Ok(see_other(&notice.location()))
}

/// How a form that removes a factor with a code ended.
enum Removal {
    /// Removed; whether another second factor is left.
    Removed { other_left: bool },
    /// A wrong or malformed code, answered with this status.
    Refused(StatusCode),
}

/// Reads the outcome of removing a factor: on success whether `other_left` finds another factor on the account;
/// anything but a wrong or malformed code is the error page.
async fn removal(
    state: &AppState,
    view: &FullSession,
    outcome: Result<(), FlowError>,
    other_left: fn(&SecondFactorStatus) -> bool,
) -> Result<Removal, PageError> {
    match outcome {
        Ok(()) => {
            let factors = state.flow.second_factor_status(view).await?;
            Ok(Removal::Removed {
                other_left: other_left(&factors),
            })
        }
        Err(FlowError::InvalidCode(_)) => Ok(Removal::Refused(StatusCode::UNAUTHORIZED)),
        Err(FlowError::BadRequest(_)) => Ok(Removal::Refused(StatusCode::BAD_REQUEST)),
        Err(error) => Err(error.into()),
    }
}

/// The security page's password form: the current password, the new one twice. A success lands on the dashboard,
/// which says what else happened (every other session ended); a refusal is shown next to the form.
pub async fn change_password(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(view): Recent,
    form: FormToken,
    Protected(body): Protected<PasswordForm>,
) -> Result<Response, PageError> {
    let (status, message) = if body.new_password != body.new_password_again {
        (
            StatusCode::BAD_REQUEST,
            "The two new passwords differ, so your password is unchanged. Type the same new password twice.".to_owned(),
        )
    } else {
        match state
            .flow
            .change_password(&view, &body.current_password, &body.new_password, &who)
            .await
        {
            Ok(()) => return Ok(see_other(PASSWORD_CHANGED)),
            Err(FlowError::WrongPassword) => (
                StatusCode::UNAUTHORIZED,
                "Your current password is not right, so your password is unchanged. Type the one you signed in with."
                    .to_owned(),
            ),
            Err(error @ FlowError::WeakPassword(_)) => (
                StatusCode::BAD_REQUEST,
                format!("That new password cannot be used: {}", sentence(&error.to_string())),
            ),
            Err(error @ FlowError::BadRequest(_)) => (StatusCode::BAD_REQUEST, sentence(&error.to_string())),
            Err(error) => return Err(error.into()),
        }
    };
    let answer = SecurityAnswer {
        password_error: Some(message),
        ..SecurityAnswer::default()
    };
    security_view(&state, &form, &view, status, answer).await
}

/// "End this session" beside one of the other places the person is signed in.
pub async fn end_session(
    State(state): State<AppState>,
    Client(who): Client,
    SignedIn(view): SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
    Protected(NoFields {}): Protected<NoFields>,
) -> Result<Response, PageError> {
    let id = id.parse::<i64>().map_err(|_| PageError::NotFound)?;
    state.flow.end_session(&view, id, &who).await?;
    Ok(see_other(&SecurityNotice::SessionEnded.location()))
}

/// "End all other sessions": signs the account out everywhere but this browser.
pub async fn end_other_sessions(
    State(state): State<AppState>,
    Client(who): Client,
    SignedIn(view): SignedIn,
    Protected(NoFields {}): Protected<NoFields>,
) -> Result<Response, PageError> {
    state.flow.end_sessions_elsewhere(&view, &who).await?;
    Ok(see_other(&SecurityNotice::OtherSessionsEnded.location()))
}

/// "Remove phone": the code texted for this session ("Text me a code") removes the phone.
pub async fn sms_remove(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(view): Recent,
    form: FormToken,
    Protected(body): Protected<CodeForm>,
) -> Result<Response, PageError> {
    let removed = state.flow.sms_remove(&view, &body.code, &who).await;
    let notice = match removal(&state, &view, removed, |factors| factors.totp).await? {
        Removal::Removed { other_left: true } => SecurityNotice::SmsRemovedTotpOn,
        Removal::Removed { other_left: false } => SecurityNotice::SmsRemoved,
        Removal::Refused(status) => {
            let refused = "That code is not right, so the phone is still on. Text yourself a new code and enter it.";
            return security_view(&state, &form, &view, status, SecurityAnswer::error(refused)).await;
        }
    };
    Ok(see_other(&notice.location()))
}

#[derive(Deserialize)]
pub struct StepUpForm {
    method: String,
    code: String,
}

/// "Confirm it's you": a current code from one of the account's factors, after which the security page's changes
/// are open for 5 minutes.
pub async fn step_up(
    State(state): State<AppState>,
    Client(who): Client,
    SignedIn(view): SignedIn,
    form: FormToken,
    Protected(body): Protected<StepUpForm>,
) -> Result<Response, PageError> {
    let status = match state.flow.step_up(&view, &body.method, &body.code, &who).await {
        Ok(()) => return Ok(see_other(&SecurityNotice::SteppedUp.location())),
        Err(FlowError::InvalidCode(_)) => StatusCode::UNAUTHORIZED,
        Err(FlowError::BadRequest(_)) => StatusCode::BAD_REQUEST,
        Err(error) => return Err(error.into()),
    };
    let answer = SecurityAnswer {
        error: Some("That code is not right. Enter the newest code, or use another of your methods.".into()),
        ..SecurityAnswer::default()
    };
    security_view(&state, &form, &view, status, answer).await
}

/// "Text a code" for "Confirm it's you".
pub async fn send_step_up_sms(
    State(state): State<AppState>,
    Client(who): Client,
    SignedIn(view): SignedIn,
    form: FormToken,
    Protected(NoFields {}): Protected<NoFields>,
) -> Result<Response, PageError> {
    let (status, error, retry_after) = match state.flow.send_step_up_sms(&view, &who).await {
        Ok(_) => return Ok(see_other(&SecurityNotice::StepUpSent.location())),
        Err(error) => refused_send(
            error,
            "The text message could not be sent just now. Try again in a minute, or use another of your methods.",
        )?,
    };
    let answer = SecurityAnswer {
        error: Some(error),
        retry_after,
        ..SecurityAnswer::default()
    };
    security_view(&state, &form, &view, status, answer).await
}

/// A text the security page asked for and did not get, as the page says it: the status, the sentence (`unavailable`
/// for a gateway that could not take it) and, for a send limit, how long to wait. Any other error is its own page.
fn refused_send(error: FlowError, unavailable: &str) -> Result<(StatusCode, String, Option<i64>), PageError> {
    match error {
        FlowError::SmsUnavailable(_) => Ok((StatusCode::SERVICE_UNAVAILABLE, unavailable.to_owned(), None)),
        FlowError::TooManyAttempts { retry_after, .. } => Ok((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "A code was sent a moment ago. You can ask for a new one in {}.",
                wait_text(retry_after)
            ),
            Some(retry_after),
        )),
        error => Err(error.into()),
    }
}

/// "Add a phone" (and "send a new code" on the confirmation page): texts a code to the number, then shows the
/// confirmation page (after a redirect, so a reload sends nothing). The number is never written back into a page: a
/// refused one is explained next to the field, which comes back empty.
pub async fn sms_setup(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(view): Recent,
    form: FormToken,
    Protected(body): Protected<PhoneForm>,
) -> Result<Response, PageError> {
    // After the anti-forgery check: a forged post learns nothing, not even that a step-up is due.
    let view = state.flow.factor_change(view).await?;
    let (status, phone_error, retry_after) = match state.flow.sms_setup(&view, &body.phone, &who).await {
        Ok(_) => return Ok(see_other(SMS_SETUP)),
        // The field's hint already gives the form; this says what to change.
        Err(FlowError::InvalidPhone) => (
            StatusCode::BAD_REQUEST,
            "That is not a number in international form. Start with + and the country code (1 for the US and \
             Canada, 44 for the UK), then the number without its leading 0."
                .into(),
            None,
        ),
        Err(error) => refused_send(
            error,
            "The text message could not be sent just now, so the phone was not added. Try again in a minute.",
        )?,
    };
    if body.again.is_some() {
        if let Some(sms) = state.flow.sms_setup_in_progress(&view).await? {
            let page = sms_setup_view(&state, &form, &view, status, sms, None, Some(phone_error));
            return Ok(with_retry_after(page, retry_after));
        }
    }
    let answer = SecurityAnswer {
        phone_error: Some(phone_error),
        retry_after,
        ..SecurityAnswer::default()
    };
    security_view(&state, &form, &view, status, answer).await
}

fn sms_setup_view(
    state: &AppState,
    form: &FormToken,
    view: &FullSession,
    status: StatusCode,
    sms: SmsChallenge,
    error: Option<String>,
    phone_error: Option<String>,
) -> Response {
    html(
        status,
        &SmsSetupPage {
            layout: layout(state, form, view, "Add a phone for text-message codes", SECURITY),
            sms: sms_code(sms),
            error,
            phone_error,
        },
    )
}

pub async fn sms_setup_page(
    State(state): State<AppState>,
    Recent(view): Recent,
    form: FormToken,
) -> Result<Response, PageError> {
    match state.flow.sms_setup_in_progress(&view).await? {
        Some(sms) => Ok(sms_setup_view(&state, &form, &view, StatusCode::OK, sms, None, None)),
        None => Ok(see_other(SECURITY)),
    }
}

pub async fn sms_confirm(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(view): Recent,
    form: FormToken,
    Protected(body): Protected<CodeForm>,
) -> Result<Response, PageError> {
    // After the anti-forgery check: a forged post learns nothing, not even that a step-up is due.
    let view = state.flow.factor_change(view).await?;
    let (status, error) = match state.flow.sms_confirm(&view, &body.code, &who).await {
        Ok(codes) if codes.is_empty() => return Ok(see_other(&SecurityNotice::SmsOn.location())),
        Ok(codes) => {
            let turned_on = "Text-message codes are on. From now on, signing in asks for a code sent to your phone.";
            return Ok(recovery_codes_view(&state, &form, &view, codes, Some(turned_on)));
        }
        Err(FlowError::InvalidCode(_)) => (
            StatusCode::UNAUTHORIZED,
            "That code is not right. Enter the 6 digits of the newest text message.".to_owned(),
        ),
        Err(error @ FlowError::BadRequest(_)) => (StatusCode::BAD_REQUEST, sentence(&error.to_string())),
        Err(error) => return Err(error.into()),
    };
    match state.flow.sms_setup_in_progress(&view).await? {
        Some(sms) => Ok(sms_setup_view(&state, &form, &view, status, sms, Some(error), None)),
        None => Ok(see_other(SECURITY)),
    }
}

fn recovery_codes_view(
    state: &AppState,
    form: &FormToken,
    view: &FullSession,
    codes: Vec<String>,
    first_set: Option<&'static str>,
) -> Response {
    html(
        StatusCode::OK,
        &RecoveryCodesPage {
            layout: layout(state, form, view, "Recovery codes", SECURITY),
            codes,
            first_set,
        },
    )
}

pub async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Client(who): Client,
    Recent(view): Recent,
    form: FormToken,
    Protected(NoFields {}): Protected<NoFields>,
) -> Result<Response, PageError> {
    // After the anti-forgery check: a forged post learns nothing, not even that a step-up is due.
    let view = state.flow.factor_change(view).await?;
    match state.flow.regenerate_recovery_codes(&view, &who).await {
        Ok(codes) => Ok(recovery_codes_view(&state, &form, &view, codes, None)),
        Err(error @ FlowError::BadRequest(_)) => {
            let answer = SecurityAnswer {
                error: Some(sentence(&error.to_string())),
                ..SecurityAnswer::default()
            };
            security_view(&state, &form, &view, StatusCode::BAD_REQUEST, answer).await
        }
        Err(error) => Err(error.into()),
    }
}

/// The codes the recovery-codes page shows, sent back as a text file: the page has them and the server keeps none,
/// so the form carries them. Only well-formed codes are echoed, never arbitrary text.
pub async fn download_recovery_codes(
    State(state): State<AppState>,
    SignedIn(view): SignedIn,
    Protected(body): Protected<DownloadForm>,
) -> Result<Response, PageError> {
    let codes =
        recovery_codes_in(&body.codes).ok_or_else(|| PageError::BadRequest("These are not recovery codes.".into()))?;
    let file = RecoveryCodesFile {
        site_name: state.web.site_name.clone(),
        username: view.username().to_owned(),
        codes,
    };
    let text = askama::Template::render(&file).map_err(|_| PageError::Internal)?;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"recovery-codes.txt\""),
            ),
        ],
        text,
    )
        .into_response();
    add_page_headers(response.headers_mut());
    Ok(response)
}
