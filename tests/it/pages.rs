//! The browser pages' server-side rules, without a browser: anti-forgery tokens, `return_to` kept on the site, a
//! pending session confined to the second step, security headers, the error pages, and the pages sharing the JSON
//! API's session cookie and limits. (The browser tests in `e2e/` drive the same pages in Chromium.)

use std::collections::BTreeMap;

use crate::common::{Client, Options, Resp, Stand, TestApp, PASSWORD};
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, ORIGIN, SET_COOKIE};

const SESSION: &str = "twofold_session";

/// Just enough of a browser: keeps the cookies it is given, follows no redirect, and posts forms.
struct Browser<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
        }
    }

    /// A browser holding a session cookie the JSON API handed out.
    fn with_session(app: &'a TestApp, session: &str) -> Self {
        let mut browser = Self::new(app);
        browser.cookies.insert(SESSION.into(), session.into());
        browser
    }

    fn session(&self) -> Option<&str> {
        self.cookies.get(SESSION).map(String::as_str)
    }

    fn remember(&mut self, resp: &Resp) {
        for header in resp.headers.get_all(SET_COOKIE) {
            let header = header.to_str().expect("ASCII cookie");
            let (pair, attributes) = header.split_once(';').unwrap_or((header, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
        }
    }

    fn request(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        // What Chromium sends when it navigates.
        let request = request.header(
            ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        );
        let cookies: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if cookies.is_empty() {
            request
        } else {
            request.header(COOKIE, cookies.join("; "))
        }
    }

    async fn get(&mut self, path: &str) -> Resp {
        let resp = self.app.send(self.request(self.app.http.get(self.app.url(path)))).await;
        self.remember(&resp);
        resp
    }

    /// Posts exactly these fields (no token is added).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.post_from(path, fields, None).await
    }

    async fn post_from(&mut self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = self
            .request(self.app.http.post(self.app.url(path)))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        let resp = self.app.send(request).await;
        self.remember(&resp);
        resp
    }

    /// Loads `page`, then posts its form to `action` with these fields and the page's anti-forgery token.
    async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
        let shown = self.get(page).await;
        assert_eq!(shown.status, 200, "GET {page}: {shown:?}");
        let token = form_token(&shown);
        let mut all = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }
}

/// The anti-forgery token of the (first) form on a page.
fn form_token(page: &Resp) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.text.find(marker).expect("a form with a token") + marker.len();
    let end = start + page.text[start..].find('"').expect("closing quote");
    page.text[start..end].to_owned()
}

#[track_caller]
fn assert_redirect(resp: &Resp, location: &str) {
    assert_eq!(resp.status, 303, "{resp:?}");
    assert_eq!(resp.header("location").as_deref(), Some(location), "{resp:?}");
}

#[track_caller]
fn assert_page(resp: &Resp, status: u16, text: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert!(
        resp.header("content-type").is_some_and(|t| t.starts_with("text/html")),
        "{resp:?}"
    );
    assert!(resp.text.contains(text), "{text:?} not in {}", resp.text);
}

#[track_caller]
fn assert_security_headers(resp: &Resp) {
    let csp = resp.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(resp.header("cache-control").as_deref(), Some("no-store"), "{resp:?}");
    assert_eq!(resp.header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(resp.header("referrer-policy").as_deref(), Some("same-origin"));
    assert_eq!(resp.header("x-frame-options").as_deref(), Some("DENY"));
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let mut anonymous = Browser::new(&app);
    for path in [
        "/login",
        "/register",
        "/no/such/page",
        "/",
        "/login/2fa",
        "/settings/security",
    ] {
        let resp = anonymous.get(path).await;
        assert_security_headers(&resp);
    }
    let mut signed_in = Browser::with_session(&app, &app.sign_in(&user).await);
    for path in ["/", "/settings/security"] {
        let resp = signed_in.get(path).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_security_headers(&resp);
        assert!(
            !resp.text.contains("<script>") && !resp.text.contains("style="),
            "no inline script or style"
        );
    }
    let forged = signed_in.post("/settings/security/recovery-codes", &[]).await;
    assert_security_headers(&forged);
    let css = anonymous.get("/static/style.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").is_some_and(|t| t.starts_with("text/css")));
}

#[tokio::test]
async fn unknown_addresses_get_a_page_and_the_api_keeps_its_json() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    let missing = browser.get("/no/such/page").await;
    assert_page(&missing, 404, "Page not found");
    let wrong_method = browser.get("/logout").await;
    assert_page(&wrong_method, 405, "does not take this kind of request");
    app.get("/auth/nothing-here", None).await.assert_error(404, "not_found");
    app.get("/auth/login", None)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn forms_without_a_valid_token_are_refused() {
    let app = TestApp::spawn().await;
    app.add_user("bob", PASSWORD).await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    assert!(
        browser.cookies.contains_key("twofold_browser"),
        "the sign-in form binds its token to a cookie"
    );
    let token = form_token(&page);
    let credentials = [("username", "bob"), ("password", PASSWORD)];

    assert_page(&browser.post("/login", &credentials).await, 403, "Form refused");
    let wrong = [
        ("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        credentials[0],
        credentials[1],
    ];
    assert_page(&browser.post("/login", &wrong).await, 403, "Form refused");
    // Another browser (another cookie) cannot use this page's token, nor can a request without the cookie.
    let mut other = Browser::new(&app);
    other.get("/login").await;
    let stolen = [("csrf_token", token.as_str()), credentials[0], credentials[1]];
    assert_eq!(other.post("/login", &stolen).await.status, 403);
    assert_eq!(Browser::new(&app).post("/login", &stolen).await.status, 403);
    // The right token from another site's page is refused too.
    let cross = browser.post_from("/login", &stolen, Some("https://evil.example")).await;
    assert_eq!(cross.status, 403);
    assert!(browser.session().is_none(), "no refused post signed in");

    let accepted = browser
        .post_from("/login", &stolen, Some("http://127.0.0.1:8080"))
        .await;
    assert_redirect(&accepted, "/");
    let session = browser.session().expect("signed in").to_owned();
    assert_eq!(
        app.get("/auth/session", Some(&session)).await.status,
        200,
        "same cookie as the API"
    );

    // Signed in, forms are bound to the session: a pre-sign-in token or none at all changes nothing.
    let before = app.state_snapshot().await;
    assert_eq!(browser.post("/settings/security/totp", &[]).await.status, 403);
    assert_eq!(
        browser
            .post("/settings/security/totp", &[("csrf_token", &token)])
            .await
            .status,
        403
    );
    assert_eq!(browser.post("/logout", &[]).await.status, 403);
    assert_eq!(before, app.state_snapshot().await, "refused posts changed nothing");
    let signed_out = browser.submit("/", "/logout", &[]).await;
    assert_redirect(&signed_out, "/login?notice=signed_out");
    assert_eq!(app.get("/auth/session", Some(&session)).await.status, 401);
}

#[tokio::test]
async fn a_form_over_16_kib_gets_the_too_large_page_and_one_under_is_read() {
    let app = TestApp::spawn().await;
    app.add_user("bob", PASSWORD).await;
    let mut browser = Browser::new(&app);
    let before = app.state_snapshot().await;
    let over = "x".repeat(16 * 1024);
    let refused = browser
        .submit(
            "/login",
            "/login",
            &[("username", "bob"), ("password", PASSWORD), ("pad", &over)],
        )
        .await;
    assert_page(&refused, 413, "That form is too large to send");
    assert_security_headers(&refused);
    assert!(browser.session().is_none(), "the refused form signed nobody in");
    assert_eq!(before, app.state_snapshot().await, "the refused form changed nothing");
    // Unknown fields are ignored, as in the API: a form under the limit signs in.
    let under = "x".repeat(15 * 1024);
    let accepted = browser
        .submit(
            "/login",
            "/login",
            &[("username", "bob"), ("password", PASSWORD), ("pad", &under)],
        )
        .await;
    assert_redirect(&accepted, "/");
    assert!(browser.session().is_some());
}

#[tokio::test]
async fn return_to_never_leaves_the_site() {
    let app = TestApp::spawn().await;
    app.add_user("bob", PASSWORD).await;
    let credentials = [("username", "bob"), ("password", PASSWORD)];
    for target in [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
    ] {
        let mut browser = Browser::new(&app);
        let form = browser.get(&format!("/login?return_to={}", encode(target))).await;
        assert!(
            !form.text.contains("name=\"return_to\""),
            "{target:?} is not carried in the form"
        );
        let mut fields = vec![("return_to", target)];
        fields.extend_from_slice(&credentials);
        let signed_in = browser.submit("/login", "/login", &fields).await;
        assert_redirect(&signed_in, "/");
    }
    let mut browser = Browser::new(&app);
    let mut fields = vec![("return_to", "/settings/security")];
    fields.extend_from_slice(&credentials);
    assert_redirect(&browser.submit("/login", "/login", &fields).await, "/settings/security");

    // Through the second step: a safe target rides along, an unsafe one is dropped at each step.
    let user = app.enroll("alice").await;
    let mut browser = Browser::new(&app);
    let fields = [
        ("return_to", "/settings/security"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let pending = browser.submit("/login", "/login", &fields).await;
    assert_redirect(&pending, "/login/2fa?return_to=%2Fsettings%2Fsecurity");
    let code = app.code(&user.secret, 0);
    let fields = [
        ("method", "totp"),
        ("code", code.as_str()),
        ("return_to", "//evil.example"),
    ];
    let verified = browser.submit("/login/2fa", "/login/2fa", &fields).await;
    assert_redirect(&verified, "/");
}

#[tokio::test]
async fn a_pending_session_opens_only_the_second_step() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let before = app.state_snapshot().await;
    // The JSON API's pending cookie works on the pages, and the pages hold it to the same rule.
    let mut browser = Browser::with_session(&app, &app.pending(&user).await);
    for (path, location) in [
        ("/", "/login/2fa?return_to=%2F"),
        ("/settings/security", "/login/2fa?return_to=%2Fsettings%2Fsecurity"),
        ("/settings/security/totp", "/login/2fa?return_to=%2Fsettings%2Fsecurity"),
        ("/settings/security/sms", "/login/2fa?return_to=%2Fsettings%2Fsecurity"),
        ("/login", "/login/2fa"),
        ("/register", "/login/2fa"),
    ] {
        assert_redirect(&browser.get(path).await, location);
    }
    let step = browser.get("/login/2fa").await;
    assert_page(&step, 200, "autocomplete=\"one-time-code\" inputmode=\"numeric\"");
    assert!(step.text.contains("Use a recovery code"));
    let token = form_token(&step);
    for action in [
        "/settings/security/totp",
        "/settings/security/recovery-codes",
        "/settings/security/totp/remove",
        "/settings/security/sms",
        "/settings/security/sms/confirm",
    ] {
        let resp = browser
            .post(
                action,
                &[("csrf_token", &token), ("code", "123456"), ("phone", "+15551234567")],
            )
            .await;
        assert_redirect(&resp, "/login/2fa?return_to=%2Fsettings%2Fsecurity");
    }
    let after = app.state_snapshot().await;
    assert_eq!(
        before.lines().next(),
        after.lines().next(),
        "the users table (factors, codes) did not change"
    );
}

#[tokio::test]
async fn wrong_codes_say_how_many_tries_are_left_then_the_sign_in_starts_over() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let mut browser = Browser::with_session(&app, &app.pending(&user).await);
    for left in (1..=4).rev() {
        let resp = browser
            .submit("/login/2fa", "/login/2fa", &[("method", "totp"), ("code", "000000")])
            .await;
        let tries = if left == 1 {
            "1 try left".to_owned()
        } else {
            format!("{left} tries left")
        };
        assert_page(&resp, 401, &format!("The code is not valid; {tries}."));
    }
    let malformed = browser
        .submit("/login/2fa", "/login/2fa", &[("method", "totp"), ("code", "12")])
        .await;
    assert_page(&malformed, 400, "An authenticator code is 6 digits.");
    let last = browser
        .submit("/login/2fa", "/login/2fa", &[("method", "totp"), ("code", "000000")])
        .await;
    assert_redirect(&last, "/login?notice=tries_used");
    assert!(browser.session().is_none(), "the dead pending cookie is cleared");
    assert_page(
        &browser.get("/login?notice=tries_used").await,
        200,
        "used all its tries",
    );
}

#[tokio::test]
async fn enrolment_and_recovery_codes_through_the_pages() {
    let app = TestApp::spawn().await;
    app.add_user("carol", PASSWORD).await;
    let mut browser = Browser::new(&app);
    let signed_in = browser
        .submit("/login", "/login", &[("username", "carol"), ("password", PASSWORD)])
        .await;
    assert_redirect(&signed_in, "/");
    assert_page(&browser.get("/").await, 200, "None (password only)");

    let started = browser
        .submit("/settings/security", "/settings/security/totp", &[])
        .await;
    assert_redirect(&started, "/settings/security/totp");
    let setup = browser.get("/settings/security/totp").await;
    assert_page(&setup, 200, "<svg");
    assert!(
        !setup.text.contains("<?xml"),
        "the SVG is inlined without its XML declaration"
    );
    let start = setup.text.find("id=\"secret\"").expect("secret");
    let secret_text: String = setup.text[start..]
        .split('>')
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("secret text")
        .split_whitespace()
        .collect();
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_text.as_bytes())
        .expect("base32");

    let wrong = browser
        .submit(
            "/settings/security/totp",
            "/settings/security/totp/confirm",
            &[("code", "000000")],
        )
        .await;
    assert_page(&wrong, 401, "That code is not right");
    assert!(wrong.text.contains(&secret_text[..4]), "the same set-up is shown again");
    let code = app.code(&secret, 0);
    let confirmed = browser
        .submit(
            "/settings/security/totp",
            "/settings/security/totp/confirm",
            &[("code", &code)],
        )
        .await;
    assert_page(&confirmed, 200, "Save your recovery codes");
    let codes: Vec<String> = confirmed
        .text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.len() == 19 && word.matches('-').count() == 3)
        .map(str::to_owned)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");

    let joined = codes.join(" ");
    let token = form_token(&confirmed);
    let download = browser
        .post(
            "/settings/security/recovery-codes/download",
            &[("csrf_token", &token), ("codes", &joined)],
        )
        .await;
    assert_eq!(download.status, 200);
    assert_eq!(
        download.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(download
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment")));
    assert!(codes.iter().all(|code| download.text.contains(code.as_str())));
    let echo = browser
        .post(
            "/settings/security/recovery-codes/download",
            &[("csrf_token", &token), ("codes", "<script>alert(1)</script>")],
        )
        .await;
    assert_eq!(echo.status, 400, "only recovery codes are echoed");

    let session = browser.session().expect("session").to_owned();
    let status = app.get("/auth/2fa", Some(&session)).await;
    assert_eq!(status.body["totp"], true);
    assert_eq!(status.body["recovery_codes_left"], 10);
    let security = browser.get("/settings/security").await;
    assert_page(&security, 200, "10 of 10");
    assert!(
        security.text.contains("Confirm it"),
        "with a factor on, changes need a step-up first"
    );

    // A change before "Confirm it's you" is sent back to it; the sign-in's own code does not count.
    let refused = browser
        .submit("/settings/security", "/settings/security/recovery-codes", &[])
        .await;
    assert_eq!(refused.status, 303, "{refused:?}");
    assert_eq!(
        refused.header("location").as_deref(),
        Some("/settings/security?notice=confirm_first")
    );
    app.advance(30);
    let wrong = browser
        .submit(
            "/settings/security",
            "/settings/security/step-up",
            &[("method", "totp"), ("code", "000000")],
        )
        .await;
    assert_page(&wrong, 401, "That code is not right");
    let code = app.code(&secret, 0);
    let stepped = browser
        .submit(
            "/settings/security",
            "/settings/security/step-up",
            &[("method", "totp"), ("code", &code)],
        )
        .await;
    assert_eq!(stepped.status, 303, "{stepped:?}");
    assert_page(
        &browser.get("/settings/security?notice=stepped_up").await,
        200,
        "For the next 5 minutes",
    );

    let regenerated = browser
        .submit("/settings/security", "/settings/security/recovery-codes", &[])
        .await;
    assert_page(&regenerated, 200, "The old codes no longer work");
    assert!(!regenerated.text.contains(codes[0].as_str()));
}

#[tokio::test]
async fn changing_factors_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let mut browser = Browser::with_session(&app, &app.sign_in(&user).await);
    assert!(browser
        .get("/settings/security")
        .await
        .text
        .contains("Remove authenticator app"));
    app.advance(16 * 60);
    let page = browser.get("/settings/security").await;
    assert_page(&page, 200, "Sign in again to make changes");
    assert!(!page.text.contains("Remove authenticator app"));
    let token = form_token(&page);
    let code = app.code(&user.secret, 0);
    let before = app.state_snapshot().await;
    let refused = browser
        .post(
            "/settings/security/totp/remove",
            &[("csrf_token", &token), ("code", &code)],
        )
        .await;
    assert_redirect(&refused, "/settings/security");
    assert_eq!(before, app.state_snapshot().await);
    let again = browser
        .post(
            "/logout",
            &[("csrf_token", &token), ("return_to", "/settings/security")],
        )
        .await;
    assert_redirect(&again, "/login?return_to=%2Fsettings%2Fsecurity&notice=sign_in_again");
}

#[tokio::test]
async fn too_many_attempts_get_a_page_that_says_when_to_try_again() {
    let app = TestApp::spawn().await;
    app.add_user("dave", PASSWORD).await;
    let mut browser = Browser::new(&app);
    for _ in 0..10 {
        let wrong = browser
            .submit(
                "/login",
                "/login",
                &[("username", "dave"), ("password", "not the password")],
            )
            .await;
        assert_page(&wrong, 401, "The username or password is wrong.");
        assert!(wrong.text.contains("value=\"dave\""), "the username is kept");
    }
    let throttled = browser
        .submit("/login", "/login", &[("username", "dave"), ("password", PASSWORD)])
        .await;
    assert_page(&throttled, 429, "Too many attempts");
    assert!(throttled.text.contains("about 15 minutes"), "{}", throttled.text);
    let retry_after: i64 = throttled
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after > 0);
}

#[tokio::test]
async fn registration_page_follows_allow_registration() {
    let closed = TestApp::spawn_with(Options {
        allow_registration: false,
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&closed);
    assert_page(&browser.get("/register").await, 404, "Page not found");
    assert!(!browser.get("/login").await.text.contains("/register"));

    let open = TestApp::spawn().await;
    let mut browser = Browser::new(&open);
    assert!(browser.get("/login").await.text.contains("href=\"/register\""));
    let fields = [
        ("username", "erin"),
        ("password", PASSWORD),
        ("password_again", "different"),
    ];
    assert_page(
        &browser.submit("/register", "/register", &fields).await,
        400,
        "not the same",
    );
    let fields = [
        ("username", "erin"),
        ("password", PASSWORD),
        ("password_again", PASSWORD),
    ];
    let created = browser.submit("/register", "/register", &fields).await;
    assert_redirect(&created, "/settings/security?notice=welcome");
    assert_page(
        &browser.get("/settings/security?notice=welcome").await,
        200,
        "Your account is ready",
    );
    let mut again = Browser::new(&open);
    assert_page(
        &again.submit("/register", "/register", &fields).await,
        409,
        "This username is taken.",
    );
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_code_sent_twice_does_not_throw_away_the_new_session() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let pending = app.pending(&user).await;
    let mut browser = Browser::with_session(&app, &pending);
    let page = browser.get("/login/2fa").await;
    let token = form_token(&page);
    let code = app.code(&user.secret, 0);
    let fields = [
        ("csrf_token", token.as_str()),
        ("method", "totp"),
        ("code", code.as_str()),
    ];
    assert_redirect(&browser.post("/login/2fa", &fields).await, "/");
    // A double-click: the same form again, with the pending cookie it was sent with.
    let mut second = Browser::with_session(&app, &pending);
    let late = second.post("/login/2fa", &fields).await;
    assert_redirect(&late, "/login?notice=expired");
    assert!(late.set_cookie().is_none(), "the browser's new cookie is left alone");
    assert_redirect(&browser.get("/login?notice=expired").await, "/");
}

// ---------------------------------------------------------------------------------------------------------------
// Text-message codes through the pages
// ---------------------------------------------------------------------------------------------------------------

/// Not the number in the pages' example (+15551234567), so a page showing it is caught.
const PHONE: &str = "+447700900123";
const MASKED: &str = "+4•••••23";

/// An app whose `http` SMS gateway is `inbox`.
async fn sms_app(inbox: &Stand) -> TestApp {
    TestApp::spawn_with(Options {
        settings: [
            ("sms.gateway", "http"),
            ("sms.url", inbox.webhook_url().as_str()),
            ("sms.timeout", "300ms"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Options::default()
    })
    .await
}

/// No page may show the whole number, however it is written.
#[track_caller]
fn assert_masked(resp: &Resp) {
    assert!(resp.text.contains(MASKED), "the masked number in {}", resp.text);
    for whole in [PHONE, &PHONE[1..], "7700900123"] {
        assert!(!resp.text.contains(whole), "{whole} shown in {}", resp.text);
    }
}

/// Adds `username` with a password only and a phone, enrolled through the JSON API; returns the recovery codes.
async fn sms_user(app: &TestApp, inbox: &Stand, username: &str) -> Vec<String> {
    app.add_user(username, PASSWORD).await;
    let cookie = app.login(username, PASSWORD).await.cookie().expect("session");
    let setup = app
        .post(
            "/auth/2fa/sms/setup",
            Some(&cookie),
            serde_json::json!({ "phone": PHONE }),
        )
        .await;
    assert_eq!(setup.status, 202, "{setup:?}");
    let confirm = app
        .post(
            "/auth/2fa/sms/confirm",
            Some(&cookie),
            serde_json::json!({ "code": inbox.last_code_to(PHONE) }),
        )
        .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    // The enrolment's send must not hold up the sign-in's.
    app.advance(31);
    confirm.body["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|code| code.as_str().expect("a code").to_owned())
        .collect()
}

#[tokio::test]
async fn a_phone_is_added_on_the_security_page() {
    let inbox = Stand::start().await;
    let app = sms_app(&inbox).await;
    app.add_user("pat", PASSWORD).await;
    let mut browser = Browser::new(&app);
    let signed_in = browser
        .submit("/login", "/login", &[("username", "pat"), ("password", PASSWORD)])
        .await;
    assert_redirect(&signed_in, "/");

    let security = browser.get("/settings/security").await;
    assert_page(&security, 200, "Add a phone for text-message codes");
    for text in [
        "type=\"tel\"",
        "autocomplete=\"tel\"",
        "aria-describedby=\"phone-hint sms-risk\"",
        "+15551234567",
        "NIST",
    ] {
        assert!(security.text.contains(text), "{text} in {}", security.text);
    }

    // A forged form sends nothing; an invalid number is explained next to the field.
    let before = app.state_snapshot().await;
    assert_page(
        &browser.post("/settings/security/sms", &[("phone", PHONE)]).await,
        403,
        "Form refused",
    );
    let invalid = browser
        .submit(
            "/settings/security",
            "/settings/security/sms",
            &[("phone", "5551234567")],
        )
        .await;
    assert_page(&invalid, 400, "That is not a number in international form.");
    assert!(invalid.text.contains("id=\"phone-error\"") && invalid.text.contains("aria-invalid=\"true\""));
    assert!(
        !invalid.text.contains("value=\"5551234567\""),
        "the number is not written back"
    );
    assert_eq!(inbox.count(), 0, "nothing was sent");
    assert_eq!(before, app.state_snapshot().await, "refused posts changed nothing");

    let sent = browser
        .submit("/settings/security", "/settings/security/sms", &[("phone", PHONE)])
        .await;
    assert_redirect(&sent, "/settings/security/sms");
    assert_eq!(inbox.count(), 1);
    let confirm = browser.get("/settings/security/sms").await;
    assert_page(
        &confirm,
        200,
        &format!("We sent a code to <strong class=\"nowrap\">{MASKED}</strong>"),
    );
    assert_masked(&confirm);
    assert!(confirm
        .text
        .contains("You can ask for a new code in <span data-resend-countdown>30 seconds</span>"));
    assert!(confirm.text.contains("src=\"/static/resend.js\""));

    // Asking again at once is refused, with the wait; nothing is sent.
    let early = browser
        .submit(
            "/settings/security/sms",
            "/settings/security/sms",
            &[("phone", PHONE), ("again", "1")],
        )
        .await;
    assert_page(&early, 429, "You can ask for a new one in 30 seconds.");
    assert!(
        early.text.contains("No text message?"),
        "the confirmation page comes back"
    );
    assert_eq!(early.header("retry-after").as_deref(), Some("30"));
    assert_masked(&early);
    assert_eq!(inbox.count(), 1);

    let code = inbox.last_code_to(PHONE);
    let wrong = format!("{:06}", (code.parse::<u32>().expect("digits") + 1) % 1_000_000);
    let refused = browser
        .submit(
            "/settings/security/sms",
            "/settings/security/sms/confirm",
            &[("code", &wrong)],
        )
        .await;
    assert_page(&refused, 401, "That code is not right.");
    let confirmed = browser
        .submit(
            "/settings/security/sms",
            "/settings/security/sms/confirm",
            &[("code", &code)],
        )
        .await;
    assert_page(&confirmed, 200, "Text-message codes are on.");
    assert!(
        confirmed.text.contains("Save your recovery codes"),
        "the first factor brings recovery codes"
    );

    let security = browser.get("/settings/security").await;
    assert_page(&security, 200, "10 of 10");
    assert_masked(&security);
    assert!(security
        .text
        .contains("<span class=\"badge on\">On</span> When you sign in, you can ask for a code"));
    let dashboard = browser.get("/").await;
    assert!(
        !dashboard.text.contains("Protect your account"),
        "a phone is a second factor"
    );
}

#[tokio::test]
async fn signing_in_with_a_text_message_through_the_pages() {
    let inbox = Stand::start().await;
    let app = sms_app(&inbox).await;
    sms_user(&app, &inbox, "quinn").await;
    let mut browser = Browser::new(&app);
    let pending = browser
        .submit("/login", "/login", &[("username", "quinn"), ("password", PASSWORD)])
        .await;
    assert_redirect(&pending, "/login/2fa");

    // Before a code is sent: the number it will go to, a button, and no code field yet.
    let step = browser.get("/login/2fa").await;
    assert_page(&step, 200, "Send a code");
    assert_masked(&step);
    assert!(!step.text.contains("name=\"code\""), "{}", step.text);
    assert!(step.text.contains("Use a recovery code"));

    let sent_before = inbox.count();
    assert_page(&browser.post("/login/2fa/sms", &[]).await, 403, "Form refused");
    assert_eq!(inbox.count(), sent_before, "a forged form sends nothing");
    let sent = browser.submit("/login/2fa", "/login/2fa/sms", &[]).await;
    assert_redirect(&sent, "/login/2fa?method=sms");
    assert_eq!(inbox.count(), sent_before + 1);
    let first_code = inbox.last_code_to(PHONE);

    let step = browser.get("/login/2fa?method=sms").await;
    assert_page(
        &step,
        200,
        &format!("We sent a code to <span class=\"nowrap\">{MASKED}</span>"),
    );
    assert_masked(&step);
    assert!(step
        .text
        .contains("autocomplete=\"one-time-code\" inputmode=\"numeric\""));
    assert!(step
        .text
        .contains("You can ask for a new code in\n    <span data-resend-countdown>30 seconds</span>"));

    // Without JavaScript the resend button can be pressed at once: the server refuses, says how long, sends nothing.
    let early = browser.submit("/login/2fa?method=sms", "/login/2fa/sms", &[]).await;
    assert_page(
        &early,
        429,
        "You can ask for a new code in 30 seconds. The code already sent still works.",
    );
    assert_eq!(early.header("retry-after").as_deref(), Some("30"));
    assert!(early.text.contains("name=\"code\""), "the code field stays");
    assert_eq!(inbox.count(), sent_before + 1);

    let wrong = format!("{:06}", (first_code.parse::<u32>().expect("digits") + 1) % 1_000_000);
    let refused = browser
        .submit(
            "/login/2fa?method=sms",
            "/login/2fa",
            &[("method", "sms"), ("code", &wrong)],
        )
        .await;
    assert_page(&refused, 401, "The code is not valid; 4 tries left.");
    assert_masked(&refused);

    app.advance(31);
    let again = browser.submit("/login/2fa?method=sms", "/login/2fa/sms", &[]).await;
    assert_redirect(&again, "/login/2fa?method=sms");
    assert_eq!(inbox.count(), sent_before + 2);
    let code = inbox.last_code_to(PHONE);
    let verified = browser
        .submit(
            "/login/2fa?method=sms",
            "/login/2fa",
            &[("method", "sms"), ("code", &code)],
        )
        .await;
    assert_redirect(&verified, "/");
    assert_page(&browser.get("/").await, 200, "Text message (SMS)");
}

#[tokio::test]
async fn a_gateway_outage_is_explained_and_the_sign_in_goes_on_with_a_recovery_code() {
    let mut inbox = Stand::start().await;
    let app = sms_app(&inbox).await;
    let recovery_codes = sms_user(&app, &inbox, "robin").await;
    inbox.stop().await;
    let mut browser = Browser::new(&app);
    browser
        .submit("/login", "/login", &[("username", "robin"), ("password", PASSWORD)])
        .await;
    let down = browser.submit("/login/2fa", "/login/2fa/sms", &[]).await;
    assert_page(&down, 503, "The text message could not be sent just now.");
    assert!(down.text.contains("choose another way to sign in below"));
    assert!(down.text.contains("Send a code"), "it can be tried again");
    assert!(down.text.contains("href=\"/login/2fa?method=recovery_code\""));

    let verified = browser
        .submit(
            "/login/2fa?method=recovery_code",
            "/login/2fa",
            &[("method", "recovery_code"), ("code", &recovery_codes[0])],
        )
        .await;
    assert_redirect(&verified, "/");
    assert_page(&browser.get("/").await, 200, "Recovery code");
}

#[tokio::test]
async fn the_security_page_changes_the_password_with_its_token() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let other = app.sign_in(&user).await;
    let mut browser = Browser::with_session(&app, &app.sign_in(&user).await);
    let page = browser.get("/settings/security").await;
    assert_page(&page, 200, "name=\"new_password_again\"");
    let new = NEW;

    // No token, or a token of another browser: refused before anything is looked at.
    let forged = [
        ("current_password", PASSWORD),
        ("new_password", new),
        ("new_password_again", new),
    ];
    assert_eq!(browser.post("/settings/security/password", &forged).await.status, 403);
    let mut stranger = Browser::with_session(&app, &other);
    let stranger_token = form_token(&stranger.get("/settings/security").await);
    let mut with_stranger_token = vec![("csrf_token", stranger_token.as_str())];
    with_stranger_token.extend_from_slice(&forged);
    assert_eq!(
        browser
            .post("/settings/security/password", &with_stranger_token)
            .await
            .status,
        403
    );

    let submit = |current: &'static str, again: &'static str| {
        [
            ("current_password", current),
            ("new_password", NEW),
            ("new_password_again", again),
        ]
    };
    let differ = browser
        .submit(
            "/settings/security",
            "/settings/security/password",
            &submit(PASSWORD, "something else"),
        )
        .await;
    assert_page(&differ, 400, "The two new passwords differ");
    let wrong = browser
        .submit(
            "/settings/security",
            "/settings/security/password",
            &submit("not it at all", NEW),
        )
        .await;
    assert_page(&wrong, 401, "Your current password is not right");
    let weak = browser
        .submit(
            "/settings/security",
            "/settings/security/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "short"),
                ("new_password_again", "short"),
            ],
        )
        .await;
    assert_page(&weak, 400, "at least 8 characters");
    app.login("alice", new).await.assert_error(401, "invalid_credentials");

    let done = browser
        .submit(
            "/settings/security",
            "/settings/security/password",
            &submit(PASSWORD, NEW),
        )
        .await;
    assert_redirect(&done, "/?notice=password_changed");
    assert_page(
        &browser.get("/?notice=password_changed").await,
        200,
        "Your password was changed",
    );
    assert!(!browser.get("/").await.text.contains("Your password was changed"));
    app.get("/auth/session", Some(&other))
        .await
        .assert_error(401, "unauthenticated");
    assert_eq!(app.login("alice", new).await.status, 200);
}

/// The new password of the password-form tests.
const NEW: &str = "a brand new pass phrase";

#[tokio::test]
async fn an_old_sign_in_is_asked_to_sign_in_again_before_changing_the_password() {
    let app = TestApp::spawn().await;
    let user = app.enroll("bob").await;
    let mut browser = Browser::with_session(&app, &app.sign_in(&user).await);
    app.advance(16 * 60);
    let page = browser.get("/settings/security").await;
    assert_page(&page, 200, "To change your password, sign in again first");
    assert!(!page.text.contains("name=\"new_password\""));
    let fields = [
        ("current_password", PASSWORD),
        ("new_password", "a brand new pass phrase"),
        ("new_password_again", "a brand new pass phrase"),
    ];
    let refused = browser
        .submit("/settings/security", "/settings/security/password", &fields)
        .await;
    assert_redirect(&refused, "/settings/security");
    assert_eq!(app.login("bob", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn the_security_page_lists_where_one_is_signed_in_and_ends_a_session() {
    let app = TestApp::spawn().await;
    let user = app.enroll("carol").await;
    app.post_empty("/auth/logout", Some(&user.cookie)).await;
    let elsewhere = app.sign_in(&user).await;
    let mut browser = Browser::with_session(&app, &app.sign_in(&user).await);
    let page = browser.get("/settings/security").await;
    assert_page(&page, 200, "Where you're signed in");
    assert!(page.text.contains("(this browser)"), "{}", page.text);
    assert!(page.text.contains("second factor: Authenticator app"), "{}", page.text);
    assert_eq!(page.text.matches("End this session").count(), 1, "{}", page.text);
    let listed = app.get("/auth/sessions", Some(&elsewhere)).await;
    let other_id = listed.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let action = format!("/settings/security/sessions/{other_id}/end");
    assert!(page.text.contains(&action), "{}", page.text);

    // Without the page's token nothing ends.
    assert_eq!(browser.post(&action, &[]).await.status, 403);
    assert_eq!(app.get("/auth/session", Some(&elsewhere)).await.status, 200);
    let ended = browser.submit("/settings/security", &action, &[]).await;
    assert_redirect(&ended, "/settings/security?notice=session_ended");
    app.get("/auth/session", Some(&elsewhere))
        .await
        .assert_error(401, "unauthenticated");
    assert_page(
        &browser.get("/settings/security?notice=session_ended").await,
        200,
        "That session was signed out.",
    );
    let unknown = browser
        .submit("/settings/security", "/settings/security/sessions/nope/end", &[])
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    let third = app.sign_in(&user).await;
    assert_eq!(
        browser.post("/settings/security/sessions/end-others", &[]).await.status,
        403
    );
    let all = browser
        .submit("/settings/security", "/settings/security/sessions/end-others", &[])
        .await;
    assert_redirect(&all, "/settings/security?notice=other_sessions_ended");
    app.get("/auth/session", Some(&third))
        .await
        .assert_error(401, "unauthenticated");
    assert_eq!(browser.get("/settings/security").await.status, 200);
}

#[tokio::test]
async fn the_phone_is_removed_on_the_security_page_with_a_code_texted_for_it() {
    let inbox = Stand::start().await;
    let app = sms_app(&inbox).await;
    sms_user(&app, &inbox, "ruth").await;
    let mut browser = Browser::new(&app);
    let pending = browser
        .submit("/login", "/login", &[("username", "ruth"), ("password", PASSWORD)])
        .await;
    assert_eq!(pending.status, 303, "{pending:?}");
    let sent = browser.submit("/login/2fa?method=sms", "/login/2fa/sms", &[]).await;
    assert_eq!(sent.status, 303, "{sent:?}");
    let code = inbox.last_code_to(PHONE);
    let signed_in = browser
        .submit(
            "/login/2fa?method=sms",
            "/login/2fa",
            &[("method", "sms"), ("code", &code)],
        )
        .await;
    assert_redirect(&signed_in, "/");

    let security = browser.get("/settings/security").await;
    assert_page(&security, 200, "Remove this phone");
    assert!(
        security.text.contains("It is your last second factor"),
        "{}",
        security.text
    );
    app.advance(31);
    let texted = browser
        .submit("/settings/security", "/settings/security/step-up/sms", &[])
        .await;
    assert_redirect(&texted, "/settings/security?notice=step_up_sent");
    let code = inbox.last_code_to(PHONE);
    // Without the page's token, or with a wrong code, the phone stays.
    assert_eq!(
        browser
            .post("/settings/security/sms/remove", &[("code", &code)])
            .await
            .status,
        403
    );
    let wrong = browser
        .submit(
            "/settings/security",
            "/settings/security/sms/remove",
            &[("code", "000000")],
        )
        .await;
    assert_page(&wrong, 401, "the phone is still on");
    let removed = browser
        .submit(
            "/settings/security",
            "/settings/security/sms/remove",
            &[("code", &code)],
        )
        .await;
    assert_redirect(&removed, "/settings/security?notice=sms_removed");
    let after = browser.get("/settings/security?notice=sms_removed").await;
    assert_page(&after, 200, "The phone was removed, and your recovery codes with it.");
    assert!(!after.text.contains("Remove this phone"));
    assert_eq!(app.login("ruth", PASSWORD).await.body["status"], "authenticated");
}
