//! When a page cannot be what was asked for: the error type of the page handlers, its mapping from the flow's errors,
//! and the friendly pages for 400, 403, 404, 405, 429 (with when to try again) and 500. Internal causes are logged
//! here once and never shown.
//!
//! A handler's error becomes a response before it knows the site's name, so it travels as a response extension and
//! [`render_problem`], called around every request with the state, turns it into the page.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::templates::{Layout, NotFoundPage, ProblemPage, ServerErrorPage, TooManyAttemptsPage};
use super::{html, see_other, sentence};
use crate::flow::{rules, FlowError};

#[derive(Debug, Clone)]
pub enum PageError {
    NotFound,
    MethodNotAllowed,
    /// A form post without a valid anti-forgery token, or from another origin.
    Forbidden,
    BadRequest(String),
    TooManyAttempts {
        retry_after: i64,
        message: String,
    },
    Internal,
    /// A service Twofold depends on (the SMS gateway) failed; the message says what to do instead.
    Unavailable(String),
    /// Not a failure to show: the browser belongs elsewhere (signed out, pending, or its sign-in is too old).
    Redirect(String),
    /// A form's body was not read: too large (413), too slow to arrive (408) or broken (400).
    Body {
        status: StatusCode,
        message: &'static str,
    },
}

impl From<FlowError> for PageError {
    fn from(error: FlowError) -> Self {
        match error {
            FlowError::TooManyAttempts { retry_after, message } => Self::TooManyAttempts {
                retry_after,
                message: sentence(&message),
            },
            FlowError::Unauthenticated | FlowError::NoPendingLogin => Self::Redirect("/login".into()),
            // The security page explains why and offers to sign in again.
            FlowError::ReauthenticationRequired => Self::Redirect("/settings/security".into()),
            // The security page asks "Confirm it's you" first.
            FlowError::StepUpRequired => Self::Redirect("/settings/security?notice=confirm_first".into()),
            FlowError::RegistrationDisabled | FlowError::NoSuchUser(_) | FlowError::NoSuchSession(_) => Self::NotFound,
            FlowError::Store(_) | FlowError::Hash(_) | FlowError::SecretUnreadable | FlowError::IllegalStep(_) => {
                tracing::error!(error = %error, "request failed");
                Self::Internal
            }
            FlowError::BadRequest(_)
            | FlowError::UsernameTaken
            | FlowError::WeakPassword(_)
            | FlowError::InvalidUsername
            | FlowError::InvalidCredentials
            | FlowError::WrongPassword
            | FlowError::InvalidCode(_)
            | FlowError::InvalidPhone => Self::BadRequest(sentence(&error.to_string())),
            FlowError::SmsUnavailable(_) => Self::Unavailable(sentence(&error.to_string())),
        }
    }
}

/// Marks a response whose page [`render_problem`] still has to render.
#[derive(Clone)]
struct Problem(PageError);

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Redirect(_) => StatusCode::SEE_OTHER,
            Self::Body { status, .. } => *status,
        }
    }

    fn render(self, site_name: &str) -> Response {
        let status = self.status();
        let layout = |title: &'static str| Layout::anonymous(site_name, title);
        match self {
            Self::Redirect(location) => see_other(&location),
            Self::NotFound => html(
                status,
                &NotFoundPage {
                    layout: layout("Page not found"),
                },
            ),
            Self::Internal => html(
                status,
                &ServerErrorPage {
                    layout: layout("Something went wrong"),
                },
            ),
            Self::TooManyAttempts { retry_after, message } => {
                let retry_after = retry_after.max(1);
                // A lock that waits for an operator has a nominal Retry-After; a person should not wait for it.
                let wait = (retry_after < rules::OPERATOR_LOCK_RETRY_AFTER).then(|| wait_text(retry_after));
                let mut response = html(
                    status,
                    &TooManyAttemptsPage {
                        layout: layout("Too many attempts"),
                        message,
                        wait,
                    },
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            Self::Forbidden => html(
                status,
                &ProblemPage {
                    layout: layout("Form refused"),
                    message: "This form has expired or was sent from another site, so nothing was changed. Go back, \
                          reload the page and try again."
                        .into(),
                },
            ),
            Self::MethodNotAllowed => html(
                status,
                &ProblemPage {
                    layout: layout("Not possible here"),
                    message: "This address does not take this kind of request.".into(),
                },
            ),
            Self::Unavailable(message) => html(
                status,
                &ProblemPage {
                    layout: layout("Not available right now"),
                    message,
                },
            ),
            Self::BadRequest(message) => html(
                status,
                &ProblemPage {
                    layout: layout("That did not work"),
                    message,
                },
            ),
            Self::Body { message, .. } => html(
                status,
                &ProblemPage {
                    layout: layout("That did not work"),
                    message: message.into(),
                },
            ),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(Problem(self));
        response
    }
}

/// Renders the page of a [`PageError`] that a handler returned; other responses pass unchanged.
pub fn render_problem(mut response: Response, site_name: &str) -> Response {
    match response.extensions_mut().remove::<Problem>() {
        Some(Problem(error)) => error.render(site_name),
        None => response,
    }
}

/// "about 3 minutes", rounded up, so a person knows whether to wait or come back later.
pub(super) fn wait_text(seconds: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if seconds < 60 {
        plural(seconds, "second")
    } else if seconds < 2 * 60 * 60 {
        format!("about {}", plural((seconds + 59) / 60, "minute"))
    } else {
        format!("about {}", plural((seconds + 3599) / 3600, "hour"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(error: PageError) -> (StatusCode, Option<String>, String) {
        let response = error.render("ACME");
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), usize::MAX)).unwrap();
        (status, retry_after, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn each_problem_has_its_page() {
        let (status, _, body) = shown(PageError::Internal);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("Something went wrong · ACME") && body.contains("has been logged"));
        let (status, _, body) = shown(PageError::NotFound);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("Page not found"));
        let (status, _, body) = shown(PageError::BadRequest("Nope <b>.".into()));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.contains("Nope &#60;b&#62;.") || body.contains("Nope &lt;b&gt;."),
            "escaped: {body}"
        );
    }

    #[test]
    fn too_many_attempts_say_when_to_try_again() {
        let (status, retry_after, body) = shown(PageError::TooManyAttempts {
            retry_after: 600,
            message: "Locked.".into(),
        });
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after.as_deref(), Some("600"));
        assert!(body.contains("about 10 minutes"));
        let (_, retry_after, body) = shown(PageError::TooManyAttempts {
            retry_after: rules::OPERATOR_LOCK_RETRY_AFTER,
            message: "Locked.".into(),
        });
        assert!(retry_after.is_some());
        assert!(body.contains("until an administrator") && !body.contains("about 24 hours"));
    }

    #[test]
    fn waits_are_said_in_words() {
        assert_eq!(wait_text(1), "1 second");
        assert_eq!(wait_text(59), "59 seconds");
        assert_eq!(wait_text(60), "about 1 minute");
        assert_eq!(wait_text(61), "about 2 minutes");
        assert_eq!(wait_text(900), "about 15 minutes");
        assert_eq!(wait_text(86_400), "about 24 hours");
    }
}
