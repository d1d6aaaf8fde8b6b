//! Signing in and out, and registering: `/login`, `/login/2fa`, `/logout`, `/register`. The same flow calls as
//! `POST /auth/login`, `/auth/verify-2fa`, `/auth/logout` and `/auth/register`, with the same cookie.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::csrf::{FormToken, Protected};
use super::problem::wait_text;
use super::return_to::ReturnTo;
use super::templates::{Layout, LoginPage, MethodChoice, RegisterPage, SecondStepPage};
use super::visitor::Visitor;
use super::{html, see_other, sentence, sms_code, with_cookie, with_retry_after, PageError, PageQuery};
use crate::flow::{rules, FlowError, LoginOutcome, LoginState, Method, NotVerified, PendingAction, PendingLogin};
use crate::http::cookies;
use crate::http::extract::Client;
use crate::http::AppState;

/// Why the sign-in page is shown again; a closed list, so the query string cannot put words on the page.
#[derive(Clone, Copy)]
enum LoginNotice {
    SignedOut,
    SignInAgain,
    Expired,
    TriesUsed,
}

impl LoginNotice {
    fn parse(raw: Option<&str>) -> Option<Self> {
        match raw? {
            "signed_out" => Some(Self::SignedOut),
            "sign_in_again" => Some(Self::SignInAgain),
            "expired" => Some(Self::Expired),
            "tries_used" => Some(Self::TriesUsed),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::SignedOut => "signed_out",
            Self::SignInAgain => "sign_in_again",
            Self::Expired => "expired",
            Self::TriesUsed => "tries_used",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::SignedOut => "You have signed out.",
            Self::SignInAgain => "You have signed out. Sign in again to continue.",
            Self::Expired => "That sign-in was not finished in time. Please sign in again.",
            Self::TriesUsed => "That sign-in has used all its tries for a code. Please sign in again.",
        }
    }

    /// The sign-in page showing this notice, coming back to `return_to` afterwards.
    fn location(self, return_to: Option<&ReturnTo>) -> String {
        let base = ReturnTo::carried(return_to, "/login");
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}notice={}", self.as_str())
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    notice: Option<String>,
    method: Option<String>,
}

/// Username and password. No `Debug`: it would print the password.
#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    method: String,
    code: String,
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct SendCodeForm {
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct LogoutForm {
    return_to: Option<String>,
}

/// No `Debug`: it would print the password.
#[derive(Deserialize)]
pub struct RegisterForm {
    username: String,
    password: String,
    password_again: String,
}

fn layout(state: &AppState, form: &FormToken, title: &'static str) -> Layout {
    Layout {
        site_name: state.web.site_name.clone(),
        title,
        here: "",
        user: None,
        form_token: form.token.clone(),
    }
}

/// Where a browser that already has a session goes instead of a sign-in or registration page: a pending sign-in to
/// its second step (the only page it may open), a signed-in one onward. `None` when it is signed out.
fn elsewhere(login: &LoginState, return_to: Option<&ReturnTo>) -> Option<String> {
    match login {
        LoginState::Pending(_) => Some(ReturnTo::carried(return_to, "/login/2fa")),
        LoginState::SignedIn(_) => Some(ReturnTo::or_home(return_to).to_owned()),
        LoginState::SignedOut => None,
    }
}

struct LoginView<'a> {
    username: String,
    return_to: Option<&'a ReturnTo>,
    notice: Option<LoginNotice>,
    error: Option<String>,
}

fn login_view(state: &AppState, form: &FormToken, status: StatusCode, view: LoginView<'_>) -> Response {
    form.attach(html(
        status,
        &LoginPage {
            layout: layout(state, form, "Sign in"),
            username: view.username,
            return_to: view.return_to.map(|r| r.as_str().to_owned()),
            notice: view.notice.map(LoginNotice::message),
            error: view.error,
            registration: state.flow.allows_registration(),
        },
    ))
}

pub async fn login_page(
    State(state): State<AppState>,
    Visitor(login): Visitor,
    form: FormToken,
    PageQuery(query): PageQuery<LoginQuery>,
) -> Result<Response, PageError> {
    let return_to = ReturnTo::from_field(query.return_to.as_deref());
    if let Some(location) = elsewhere(&login, return_to.as_ref()) {
        return Ok(see_other(&location));
    }
    Ok(login_view(
        &state,
        &form,
        StatusCode::OK,
        LoginView {
            username: String::new(),
            return_to: return_to.as_ref(),
            notice: LoginNotice::parse(query.notice.as_deref()),
            error: None,
        },
    ))
}

pub async fn login(
    State(state): State<AppState>,
    Client(who): Client,
    form: FormToken,
    Protected(body): Protected<LoginForm>,
) -> Result<Response, PageError> {
    let return_to = ReturnTo::from_field(body.return_to.as_deref());
    let refused = |status: StatusCode, error: FlowError| {
        login_view(
            &state,
            &form,
            status,
            LoginView {
                username: body.username.clone(),
                return_to: return_to.as_ref(),
                notice: None,
                error: Some(sentence(&error.to_string())),
            },
        )
    };
    Ok(match state.flow.login(&body.username, &body.password, &who).await {
        Ok(LoginOutcome::Authenticated(token)) => with_cookie(
            see_other(ReturnTo::or_home(return_to.as_ref())),
            cookies::session(&state.web, &token, state.web.session_lifetime_seconds),
        ),
        Ok(LoginOutcome::SecondFactorRequired { token, .. }) => with_cookie(
            see_other(&ReturnTo::carried(return_to.as_ref(), "/login/2fa")),
            cookies::session(&state.web, &token, rules::PENDING_SESSION_SECONDS),
        ),
        Err(error @ FlowError::InvalidCredentials) => refused(StatusCode::UNAUTHORIZED, error),
        // Only a username or password no account can have; saying so reveals nothing about accounts.
        Err(error @ FlowError::BadRequest(_)) => refused(StatusCode::BAD_REQUEST, error),
        Err(error) => return Err(error.into()),
    })
}

/// How each method is offered on the second step; a new `Method` must say here how it is offered.
fn method_label(method: Method) -> &'static str {
    match method {
        Method::Totp => "Use your authenticator app",
        Method::Sms => "Get a code by text message",
        Method::RecoveryCode => "Use a recovery code",
    }
}

/// The second step's address showing `method`, coming back to `return_to` afterwards.
fn second_step_location(return_to: Option<&ReturnTo>, method: Method) -> String {
    let path = ReturnTo::carried(return_to, "/login/2fa");
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}method={}", method.as_str())
}

/// What the second step shows besides the code field: the answer's status, an error, and for a refused resend how
/// long to wait.
struct StepAnswer<'a> {
    status: StatusCode,
    return_to: Option<&'a ReturnTo>,
    error: Option<String>,
    retry_after: Option<i64>,
}

async fn second_step_view(
    state: &AppState,
    form: &FormToken,
    pending: &PendingLogin,
    method: Method,
    answer: StepAnswer<'_>,
) -> Result<Response, PageError> {
    let sms = match method {
        Method::Sms => state.flow.pending_sms(pending).await?.map(sms_code),
        Method::Totp | Method::RecoveryCode => None,
    };
    let others = pending
        .methods()
        .into_iter()
        .filter(|&other| other != method)
        .map(|other| MethodChoice {
            label: method_label(other),
            href: second_step_location(answer.return_to, other),
        })
        .collect();
    let page = html(
        answer.status,
        &SecondStepPage {
            layout: layout(state, form, "Two-step sign-in"),
            username: pending.username().to_owned(),
            method,
            sms,
            others,
            return_to: answer.return_to.map(|r| r.as_str().to_owned()),
            error: answer.error,
        },
    );
    Ok(form.attach(with_retry_after(page, answer.retry_after)))
}

/// The method asked for, if this sign-in can use it; else the first one it can.
fn chosen_method(pending: &PendingLogin, asked: Option<&str>) -> Option<Method> {
    let methods = pending.methods();
    asked
        .and_then(Method::parse)
        .filter(|method| methods.contains(method))
        .or_else(|| methods.first().copied())
}

pub async fn second_step_page(
    State(state): State<AppState>,
    Visitor(login): Visitor,
    form: FormToken,
    PageQuery(query): PageQuery<LoginQuery>,
) -> Result<Response, PageError> {
    let return_to = ReturnTo::from_field(query.return_to.as_deref());
    let pending = match login {
        LoginState::Pending(pending) => pending,
        LoginState::SignedIn(_) => return Ok(see_other(ReturnTo::or_home(return_to.as_ref()))),
        LoginState::SignedOut => return Ok(see_other(&ReturnTo::carried(return_to.as_ref(), "/login"))),
    };
    // An operator removed the account's factors meanwhile: this sign-in cannot finish, so it starts over.
    let Some(method) = chosen_method(&pending, query.method.as_deref()) else {
        return Ok(with_cookie(
            see_other(&LoginNotice::Expired.location(return_to.as_ref())),
            cookies::cleared_session(&state.web),
        ));
    };
    let answer = StepAnswer {
        status: StatusCode::OK,
        return_to: return_to.as_ref(),
        error: None,
        retry_after: None,
    };
    second_step_view(&state, &form, &pending, method, answer).await
}

pub async fn second_step(
    State(state): State<AppState>,
    Client(who): Client,
    Visitor(login): Visitor,
    form: FormToken,
    Protected(body): Protected<CodeForm>,
) -> Result<Response, PageError> {
    let return_to = ReturnTo::from_field(body.return_to.as_deref());
    let expired = || see_other(&LoginNotice::Expired.location(return_to.as_ref()));
    let LoginState::Pending(pending) = login else {
        // When a double-click sent the code twice, the first answer may have set a full session's cookie, which is
        // left alone: the sign-in page sends that one onward.
        state.flow.without_pending(PendingAction::Verify, &who).await?;
        return Ok(expired());
    };
    let (status, error, pending) = match state
        .flow
        .verify_second_factor(pending, &body.method, &body.code, &who)
        .await
    {
        Ok(full) => {
            return Ok(with_cookie(
                see_other(ReturnTo::or_home(return_to.as_ref())),
                cookies::session(&state.web, &full, state.web.session_lifetime_seconds),
            ))
        }
        Err(NotVerified {
            error: error @ (FlowError::InvalidCode(_) | FlowError::BadRequest(_)),
            still_pending: Some(pending),
        }) => {
            let status = match error {
                FlowError::BadRequest(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            (status, error, pending)
        }
        // A wrong code that was the sign-in's last try ended it: it starts over from the password.
        Err(NotVerified {
            error: FlowError::InvalidCode(_),
            still_pending: None,
        }) => {
            return Ok(with_cookie(
                see_other(&LoginNotice::TriesUsed.location(return_to.as_ref())),
                cookies::cleared_session(&state.web),
            ))
        }
        Err(NotVerified {
            error: FlowError::NoPendingLogin,
            ..
        }) => return Ok(expired()),
        Err(NotVerified { error, .. }) => return Err(error.into()),
    };
    let Some(method) = chosen_method(&pending, Some(&body.method)) else {
        return Ok(with_cookie(
            see_other(&LoginNotice::Expired.location(return_to.as_ref())),
            cookies::cleared_session(&state.web),
        ));
    };
    let answer = StepAnswer {
        status,
        return_to: return_to.as_ref(),
        error: Some(sentence(&error.to_string())),
        retry_after: None,
    };
    second_step_view(&state, &form, &pending, method, answer).await
}

/// "Send a code" and "Send a new code" on the second step: texts a code to the account's phone, then shows the code
/// field (after a redirect, so reloading the page does not send another). A send the limits refuse is explained on
/// the same page with when to ask again; a gateway failure too, with the other methods still offered.
pub async fn send_sms(
    State(state): State<AppState>,
    Client(who): Client,
    Visitor(login): Visitor,
    form: FormToken,
    Protected(body): Protected<SendCodeForm>,
) -> Result<Response, PageError> {
    let return_to = ReturnTo::from_field(body.return_to.as_deref());
    let expired = || see_other(&LoginNotice::Expired.location(return_to.as_ref()));
    let LoginState::Pending(pending) = login else {
        state.flow.without_pending(PendingAction::SendSms, &who).await?;
        return Ok(expired());
    };
    let (status, error, retry_after) = match state.flow.send_login_sms(&pending, &who).await {
        Ok(_) => return Ok(see_other(&second_step_location(return_to.as_ref(), Method::Sms))),
        Err(FlowError::NoPendingLogin) => return Ok(expired()),
        Err(FlowError::SmsUnavailable(_)) => {
            let message = if pending.methods().len() > 1 {
                "The text message could not be sent just now. Try again in a minute, or choose another way to sign \
                 in below."
            } else {
                "The text message could not be sent just now. Try again in a minute."
            };
            (StatusCode::SERVICE_UNAVAILABLE, message.to_owned(), None)
        }
        Err(error @ FlowError::TooManyAttempts { .. }) => {
            // The send limits (one code per 30 seconds, five an hour) are explained here, next to the code field; a
            // second factor locked by wrong codes refuses every method, so that gets the 429 page.
            match state.flow.pending_sms(&pending).await? {
                Some(sms) if sms.resend_in > 0 => {
                    let wait = wait_text(sms.resend_in);
                    let message = if sms.code_sent {
                        format!("You can ask for a new code in {wait}. The code already sent still works.")
                    } else {
                        format!("You can ask for a new code in {wait}.")
                    };
                    (StatusCode::TOO_MANY_REQUESTS, message, Some(sms.resend_in))
                }
                _ => return Err(error.into()),
            }
        }
        Err(error @ FlowError::BadRequest(_)) => (StatusCode::BAD_REQUEST, sentence(&error.to_string()), None),
        Err(error) => return Err(error.into()),
    };
    let method = chosen_method(&pending, Some(Method::Sms.as_str())).unwrap_or(Method::Sms);
    let answer = StepAnswer {
        status,
        return_to: return_to.as_ref(),
        error: Some(error),
        retry_after,
    };
    second_step_view(&state, &form, &pending, method, answer).await
}

pub async fn logout(
    State(state): State<AppState>,
    Client(who): Client,
    Visitor(login): Visitor,
    Protected(body): Protected<LogoutForm>,
) -> Result<Response, PageError> {
    state.flow.logout(login, &who).await?;
    let return_to = ReturnTo::from_field(body.return_to.as_deref());
    let notice = if return_to.is_some() {
        LoginNotice::SignInAgain
    } else {
        LoginNotice::SignedOut
    };
    Ok(with_cookie(
        see_other(&notice.location(return_to.as_ref())),
        cookies::cleared_session(&state.web),
    ))
}

fn register_view(
    state: &AppState,
    form: &FormToken,
    status: StatusCode,
    username: String,
    error: Option<String>,
) -> Response {
    form.attach(html(
        status,
        &RegisterPage {
            layout: layout(state, form, "Create an account"),
            username,
            error,
        },
    ))
}

pub async fn register_page(
    State(state): State<AppState>,
    Visitor(login): Visitor,
    form: FormToken,
) -> Result<Response, PageError> {
    if !state.flow.allows_registration() {
        return Err(PageError::NotFound);
    }
    if let Some(location) = elsewhere(&login, None) {
        return Ok(see_other(&location));
    }
    Ok(register_view(&state, &form, StatusCode::OK, String::new(), None))
}

pub async fn register(
    State(state): State<AppState>,
    Client(who): Client,
    form: FormToken,
    Protected(body): Protected<RegisterForm>,
) -> Result<Response, PageError> {
    let refused = |status: StatusCode, message: String| {
        register_view(&state, &form, status, body.username.clone(), Some(message))
    };
    if body.password != body.password_again {
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            "The two passwords are not the same; type them again.".into(),
        ));
    }
    match state.flow.register(&body.username, &body.password, &who).await {
        Ok(_) => {}
        Err(error @ FlowError::UsernameTaken) => {
            return Ok(refused(StatusCode::CONFLICT, sentence(&error.to_string())))
        }
        Err(error @ (FlowError::WeakPassword(_) | FlowError::InvalidUsername)) => {
            return Ok(refused(StatusCode::BAD_REQUEST, sentence(&error.to_string())))
        }
        Err(error) => return Err(error.into()),
    }
    // A new account has no second factor yet, so this signs straight in; the security page invites setting one up.
    Ok(match state.flow.login(&body.username, &body.password, &who).await? {
        LoginOutcome::Authenticated(token) => with_cookie(
            see_other("/settings/security?notice=welcome"),
            cookies::session(&state.web, &token, state.web.session_lifetime_seconds),
        ),
        LoginOutcome::SecondFactorRequired { token, .. } => with_cookie(
            see_other("/login/2fa"),
            cookies::session(&state.web, &token, rules::PENDING_SESSION_SECONDS),
        ),
    })
}
