//! One struct per page, each bound to its template in `templates/` and compiled into the binary by askama, which
//! escapes every value for HTML unless a template says `|safe` (only the server-made QR code SVG does).

use askama::Template;

use crate::flow::{Method, Notice};

/// What the frame around every page needs: the site's name, the page's title, and for a signed-in person the
/// navigation with its sign-out form.
pub struct Layout {
    pub site_name: String,
    pub title: &'static str,
    /// The path of this page, so the navigation can mark it as current.
    pub here: &'static str,
    pub user: Option<String>,
    /// The anti-forgery token for the forms on this page (see `csrf`).
    pub form_token: String,
}

impl Layout {
    /// For pages shown to anyone, with no form in the frame.
    pub fn anonymous(site_name: &str, title: &'static str) -> Self {
        Self {
            site_name: site_name.to_owned(),
            title,
            here: "",
            user: None,
            form_token: String::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub username: String,
    pub return_to: Option<String>,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
    pub registration: bool,
}

/// One way to finish signing in, as the second step offers it.
pub struct MethodChoice {
    pub label: &'static str,
    /// The second-step address that switches to this method.
    pub href: String,
}

/// A code sent by text message, as a page shows it: the phone masked, and the resend control.
pub struct SmsCode {
    /// Masked, like `+1•••••67`.
    pub phone: String,
    /// Whether a code is waiting to be entered (else the page offers to send one).
    pub code_sent: bool,
    /// Seconds until a new code may be sent, for the countdown in `static/resend.js`; 0 when it may be now.
    pub resend_in: i64,
    /// The same wait in words, for the page without JavaScript.
    pub resend_wait: String,
}

#[derive(Template)]
#[template(path = "second_step.html")]
pub struct SecondStepPage {
    pub layout: Layout,
    pub username: String,
    pub method: Method,
    /// For `Method::Sms`: where the code goes and whether it was sent.
    pub sms: Option<SmsCode>,
    /// The methods other than `method` this account can use.
    pub others: Vec<MethodChoice>,
    pub return_to: Option<String>,
    pub error: Option<String>,
}

impl SecondStepPage {
    /// SMS before a code was sent: the page offers to send one, and the code field comes after.
    pub fn awaiting_send(&self) -> bool {
        self.sms.as_ref().is_some_and(|sms| !sms.code_sent)
    }
}

#[derive(Template)]
#[template(path = "register.html")]
pub struct RegisterPage {
    pub layout: Layout,
    pub username: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    pub layout: Layout,
    pub username: String,
    pub since: String,
    pub since_machine: String,
    pub second_factor: &'static str,
    pub has_second_factor: bool,
    pub notices: Vec<Notice>,
    /// What the dashboard reports after a change made elsewhere (a closed list, like the security page's).
    pub notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "security.html")]
pub struct SecurityPage {
    pub layout: Layout,
    pub totp: bool,
    /// The enrolled phone, masked; `None` when text-message codes are off.
    pub sms_phone: Option<String>,
    /// Whether this server has an SMS gateway, so a phone can be added.
    pub offers_sms: bool,
    /// A message about the phone field (an invalid number, a gateway failure), shown next to it.
    pub phone_error: Option<String>,
    pub recovery_codes_left: i64,
    pub recovery_codes_per_set: usize,
    /// Whether the sign-in is recent enough to change factors; if not, the page offers to sign in again.
    pub may_change: bool,
    /// Whether a change needs "Confirm it's you" first (the account has a second factor and this session has not
    /// proved one in the last 5 minutes); the page then asks for it and holds the change forms back.
    pub needs_step_up: bool,
    /// The text-message side of that confirmation, when the account has a phone.
    pub step_up_sms: Option<SmsCode>,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
    /// Why the password form was refused, shown next to it.
    pub password_error: Option<String>,
    /// Where the person is signed in, newest first.
    pub sessions: Vec<SessionLine>,
}

/// One line of the security page's "Where you're signed in".
pub struct SessionLine {
    pub id: i64,
    /// "Firefox on Linux".
    pub device: String,
    pub client: Option<String>,
    /// When it was last used, in words ("2 hours ago"), and as a machine-readable time.
    pub seen: String,
    pub seen_machine: String,
    /// The second factor the sign-in used, in words.
    pub factor: &'static str,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
pub struct TotpSetupPage {
    pub layout: Layout,
    /// The `<svg>` element of the QR code, made by `otp::qr_svg` from the key URI (no script, no style).
    pub qr_svg: String,
    /// The base32 secret in groups of four, for typing into an app by hand.
    pub secret: String,
    pub account: String,
    pub error: Option<String>,
}

/// The page that confirms a phone being added for text-message codes, with the code sent to it.
#[derive(Template)]
#[template(path = "sms_setup.html")]
pub struct SmsSetupPage {
    pub layout: Layout,
    pub sms: SmsCode,
    pub error: Option<String>,
    /// A message about the phone field of the "send a new code" form.
    pub phone_error: Option<String>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage {
    pub layout: Layout,
    pub codes: Vec<String>,
    /// Right after setting up the first factor, the sentence saying which one is now on; `None` after asking for a
    /// new set.
    pub first_set: Option<&'static str>,
}

/// The download of a set of recovery codes: a plain-text file.
#[derive(Template)]
#[template(path = "recovery_codes.txt")]
pub struct RecoveryCodesFile {
    pub site_name: String,
    pub username: String,
    pub codes: Vec<String>,
}

#[derive(Template)]
#[template(path = "not_found.html")]
pub struct NotFoundPage {
    pub layout: Layout,
}

#[derive(Template)]
#[template(path = "too_many_attempts.html")]
pub struct TooManyAttemptsPage {
    pub layout: Layout,
    pub message: String,
    /// How long to wait, in words; `None` when only an administrator can lift the lock.
    pub wait: Option<String>,
}

#[derive(Template)]
#[template(path = "server_error.html")]
pub struct ServerErrorPage {
    pub layout: Layout,
}

/// A request this site cannot do anything with: a refused form, a malformed address, a wrong method.
#[derive(Template)]
#[template(path = "problem.html")]
pub struct ProblemPage {
    pub layout: Layout,
    pub message: String,
}
