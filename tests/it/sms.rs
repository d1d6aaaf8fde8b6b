//! SMS as a second factor, against a real HTTP stand-in for the gateway: a small axum server started inside each
//! test on a random loopback port, which records every request it gets and answers from a script (a status, or a
//! delay before 200). Covers the `http`, `twilio` and `console` gateways, the retry policy (3 tries, 5xx and
//! timeouts retried, 4xx not), send limits (30 s, 5 per hour, refused sends not counted), code lifetime, single
//! use, binding to the pending session, the second-factor lock shared with TOTP, phone validation, and the audit
//! trail (outcomes, and no phone number or code in it).

use std::time::Duration;

use crate::common::*;
use base64::Engine as _;
use serde_json::{json, Value};

const PHONE: &str = "+15551234567";
const MASKED: &str = "+1•••••67";

/// A loopback URL where nothing listens.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/sms")
}

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn http_settings(url: &str, token: Option<&str>) -> Vec<(String, String)> {
    let mut pairs = settings(&[("sms.gateway", "http"), ("sms.url", url), ("sms.timeout", "300ms")]);
    if let Some(token) = token {
        pairs.push(("sms.token".into(), token.into()));
    }
    pairs
}

async fn spawn_http(url: &str) -> TestApp {
    TestApp::spawn_with(Options {
        settings: http_settings(url, None),
        ..Default::default()
    })
    .await
}

// ---------------------------------------------------------------------------------------------------------------
// Flow helpers
// ---------------------------------------------------------------------------------------------------------------

/// Adds a user without a second factor and signs in with the password alone; returns the full session cookie.
async fn password_only_session(app: &TestApp, username: &str) -> String {
    app.add_user(username, PASSWORD).await;
    let login = app.login(username, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "authenticated", "{login:?}");
    login.cookie().expect("session cookie")
}

async fn sms_setup(app: &TestApp, cookie: &str, phone: &str) -> Resp {
    app.post("/auth/2fa/sms/setup", Some(cookie), json!({ "phone": phone }))
        .await
}

async fn sms_confirm(app: &TestApp, cookie: &str, code: &str) -> Resp {
    app.post("/auth/2fa/sms/confirm", Some(cookie), json!({ "code": code }))
        .await
}

async fn sms_send(app: &TestApp, cookie: &str) -> Resp {
    app.post_empty("/auth/2fa/sms/send", Some(cookie)).await
}

#[track_caller]
fn assert_sent(resp: &Resp) {
    assert_eq!(resp.status, 202, "{resp:?}");
    assert_eq!(resp.body, json!({ "expires_in": 300, "resend_after": 30 }), "{resp:?}");
}

struct SmsUser {
    username: String,
    recovery_codes: Vec<String>,
}

/// Adds `username` (password only), signs in, enrolls PHONE through the stand-in, and confirms with the code the
/// stand-in received. The clock is not moved: the enrolment send is at the current time.
async fn enroll_sms(app: &TestApp, stand: &Stand, username: &str) -> SmsUser {
    let cookie = password_only_session(app, username).await;
    let before = stand.count();
    assert_sent(&sms_setup(app, &cookie, PHONE).await);
    assert_eq!(stand.count(), before + 1, "one enrolment message");
    let confirm = sms_confirm(app, &cookie, &stand.last_code()).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let recovery_codes = recovery_codes(&confirm);
    assert_eq!(recovery_codes.len(), 10, "{confirm:?}");
    SmsUser {
        username: username.to_owned(),
        recovery_codes,
    }
}

/// Password step; returns the pending session's cookie.
async fn pending(app: &TestApp, username: &str) -> String {
    let login = app.login(username, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "2fa_required", "{login:?}");
    login.cookie().expect("pending cookie")
}

/// A well-formed 6-digit code different from `code`.
fn other_code(code: &str) -> String {
    let n: u32 = code.parse().expect("6 digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

/// A 6-digit code that the authenticator would not accept now (steps t-1, t, t+1).
fn wrong_totp(app: &TestApp, secret: &[u8]) -> String {
    let valid: Vec<String> = (-1..=1).map(|offset| app.code(secret, offset)).collect();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|candidate| !valid.contains(candidate))
        .expect("a wrong code")
}

fn retry_after(resp: &Resp) -> i64 {
    resp.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After in {resp:?}"))
        .parse()
        .expect("Retry-After in seconds")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.db().await;
    let value: i64 = sqlx::query_scalar(sql).fetch_one(&db).await.expect("query");
    db.close().await;
    value
}

/// The outcomes recorded for `event`, oldest first.
async fn outcomes(app: &TestApp, event: &str) -> Vec<String> {
    let db = app.db().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT outcome FROM audit_events WHERE event = $1 ORDER BY id")
        .bind(event)
        .fetch_all(&db)
        .await
        .expect("audit events");
    db.close().await;
    rows.into_iter().map(|(o,)| o).collect()
}

/// `(event, method, outcome)` of every audit event, oldest first.
async fn audit_trail(app: &TestApp) -> Vec<(String, Option<String>, String)> {
    let db = app.db().await;
    let rows = sqlx::query_as("SELECT event, method, outcome FROM audit_events ORDER BY id")
        .fetch_all(&db)
        .await
        .expect("audit events");
    db.close().await;
    rows
}

// ---------------------------------------------------------------------------------------------------------------
// The whole flow
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn enrol_a_phone_and_sign_in_with_an_sms_code() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;

    let setup = sms_setup(&app, &cookie, PHONE).await;
    assert_sent(&setup);
    assert_eq!(stand.count(), 1);
    let enrol_message = stand.last();
    assert_eq!(enrol_message.method, "POST");
    assert_eq!(enrol_message.path, "/sms");
    assert_eq!(enrol_message.json()["to"], PHONE, "{enrol_message:?}");
    assert!(enrol_message.message().contains("Twofold"), "{enrol_message:?}");
    // Not active until confirmed.
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["sms"], Value::Null, "{status:?}");

    let confirm = sms_confirm(&app, &cookie, &enrol_message.code()).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let recovery_codes = recovery_codes(&confirm);
    assert_eq!(recovery_codes.len(), 10, "{confirm:?}");

    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["sms"], json!({ "phone": MASKED }), "{status:?}");
    assert_eq!(status.body["totp"], false);
    assert_eq!(status.body["recovery_codes_left"], 10);
    assert!(!status.text.contains("5551234567"), "{status:?}");
    assert_eq!(outcomes(&app, "sms_setup").await, ["success"]);
    assert_eq!(outcomes(&app, "sms_confirm").await, ["success"]);

    let logout = app.post_empty("/auth/logout", Some(&cookie)).await;
    assert_eq!(logout.status, 204, "{logout:?}");

    // Without a pending session there is nothing to send a code for.
    app.post_empty("/auth/2fa/sms/send", None)
        .await
        .assert_error(401, "no_pending_login");

    // The enrolment message counts toward the 30-second limit.
    app.advance(30);
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "2fa_required", "{login:?}");
    assert_eq!(login.body["methods"], json!(["sms", "recovery_code"]), "{login:?}");
    let pending = login.cookie().expect("pending cookie");

    assert_sent(&sms_send(&app, &pending).await);
    assert_eq!(stand.count(), 2);
    let login_message = stand.last();
    assert_eq!(login_message.json()["to"], PHONE);
    assert!(login_message.message().contains("Twofold"), "{login_message:?}");
    let code = login_message.code();

    let verified = app.verify(&pending, "sms", &code).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(verified.body, json!({ "status": "authenticated" }));
    let full = verified.cookie().expect("new cookie");
    assert_ne!(full, pending);
    let session = app.get("/auth/session", Some(&full)).await;
    assert_eq!(session.status, 200, "{session:?}");
    assert_eq!(session.body["username"], "alice");
    assert_eq!(session.body["second_factor"], "sms");
    // The pending token is dead.
    app.verify(&pending, "sms", &code)
        .await
        .assert_error(401, "no_pending_login");

    assert_eq!(outcomes(&app, "sms_send").await, ["no_pending_login", "success"]);
    let trail = audit_trail(&app).await;
    assert!(
        trail.contains(&("second_factor".into(), Some("sms".into()), "success".into())),
        "{trail:?}"
    );

    // Codes are stored as digests, never as text.
    let db = app.db().await;
    let digests: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT digest FROM sms_codes")
        .fetch_all(&db)
        .await
        .expect("sms codes");
    db.close().await;
    for (digest,) in digests {
        assert!(!String::from_utf8_lossy(&digest).contains(&code));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Gateway formats
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn http_gateway_sends_json_with_a_bearer_token_when_one_is_set() {
    let stand = Stand::start().await;
    let app = TestApp::spawn_with(Options {
        settings: http_settings(&stand.webhook_url(), Some("s3cr3t-token")),
        ..Default::default()
    })
    .await;
    let cookie = password_only_session(&app, "alice").await;
    assert_sent(&sms_setup(&app, &cookie, PHONE).await);

    let received = stand.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/sms");
    assert_eq!(
        request.header("authorization"),
        Some("Bearer s3cr3t-token"),
        "{request:?}"
    );
    let content_type = request.header("content-type").expect("Content-Type");
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body = request.json();
    let object = body.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["message", "to"], "{body}");
    assert_eq!(body["to"], PHONE);
    let message = body["message"].as_str().expect("message is text");
    assert!(message.contains("Twofold"), "{message}");
    let code = six_digits_in(message).expect("a 6-digit code");
    let confirm = sms_confirm(&app, &cookie, &code).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
}

#[tokio::test]
async fn http_gateway_sends_no_authorization_without_a_token() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;
    assert_sent(&sms_setup(&app, &cookie, PHONE).await);

    let request = stand.last();
    assert_eq!(request.header("authorization"), None, "{request:?}");
    assert!(request
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json")));
    assert_eq!(request.json()["to"], PHONE);
}

#[tokio::test]
async fn twilio_gateway_posts_a_form_with_basic_auth() {
    let stand = Stand::start().await;
    let app = TestApp::spawn_with(Options {
        settings: settings(&[
            ("sms.gateway", "twilio"),
            ("sms.base_url", &stand.base),
            ("sms.account_sid", "AC123"),
            ("sms.auth_token", "secret"),
            ("sms.from", "+15550001111"),
            ("sms.timeout", "300ms"),
        ]),
        ..Default::default()
    })
    .await;
    let cookie = password_only_session(&app, "alice").await;
    assert_sent(&sms_setup(&app, &cookie, PHONE).await);

    let received = stand.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/2010-04-01/Accounts/AC123/Messages.json");
    let content_type = request.header("content-type").expect("Content-Type");
    assert!(
        content_type.starts_with("application/x-www-form-urlencoded"),
        "{content_type}"
    );
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC123:secret")
    );
    assert_eq!(request.header("authorization"), Some(expected_auth.as_str()));

    let form = request.form();
    let mut names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Body", "From", "To"], "{form:?}");
    assert_eq!(request.form_field("To").as_deref(), Some(PHONE));
    assert_eq!(request.form_field("From").as_deref(), Some("+15550001111"));
    let body = request.form_field("Body").expect("Body");
    assert!(body.contains("Twofold"), "{body}");
    let code = six_digits_in(&body).expect("a 6-digit code");

    let confirm = sms_confirm(&app, &cookie, &code).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_eq!(recovery_codes(&confirm).len(), 10);
}

#[tokio::test]
async fn console_gateway_accepts_the_message() {
    let app = TestApp::spawn_with(Options {
        settings: settings(&[("sms.gateway", "console")]),
        ..Default::default()
    })
    .await;
    let cookie = password_only_session(&app, "alice").await;
    assert_sent(&sms_setup(&app, &cookie, PHONE).await);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM sms_codes WHERE purpose = 'enroll'").await,
        1
    );
    assert_eq!(outcomes(&app, "sms_setup").await, ["success"]);
}

#[tokio::test]
async fn without_an_sms_section_sms_is_unavailable() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    sms_setup(&app, &cookie, PHONE)
        .await
        .assert_error(503, "sms_gateway_unavailable");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM users WHERE sms_pending_phone IS NOT NULL").await,
        0
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Gateway failures and the retry policy
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn gateway_down_at_login_answers_503_and_the_pending_session_stays_usable() {
    let mut stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    stand.stop().await;
    let sends_before = count(&app, "SELECT COUNT(*) FROM sms_sends").await;
    assert_eq!(sends_before, 1, "the enrolment send");

    app.advance(30);
    let pending = pending(&app, &user.username).await;
    let down = sms_send(&app, &pending).await;
    down.assert_error(503, "sms_gateway_unavailable");
    let message = down.body["message"].as_str().unwrap_or_default();
    assert!(!message.contains("127.0.0.1") && !message.contains("/sms"), "{message}");

    assert_eq!(
        outcomes(&app, "sms_send").await,
        ["gateway_unavailable"],
        "audit of the failed send"
    );
    assert_eq!(stand.count(), 1, "nothing reached the stopped stand-in");
    // Nothing stored: no code, no counted send.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, sends_before);

    // The pending session is still there and still takes a code.
    let verified = app.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let full = verified.cookie().expect("full session cookie");
    let session = app.get("/auth/session", Some(&full)).await;
    assert_eq!(session.body["second_factor"], "recovery_code", "{session:?}");
}

#[tokio::test]
async fn gateway_down_at_enrolment_stores_nothing() {
    let app = spawn_http(&dead_url().await).await;
    let cookie = password_only_session(&app, "alice").await;
    let before = app.state_snapshot().await;

    sms_setup(&app, &cookie, PHONE)
        .await
        .assert_error(503, "sms_gateway_unavailable");

    assert_eq!(app.state_snapshot().await, before);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 0);
    assert_eq!(outcomes(&app, "sms_setup").await, ["gateway_unavailable"]);
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["sms"], Value::Null, "{status:?}");
}

#[tokio::test]
async fn a_slow_gateway_is_tried_three_times_then_503() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;
    let slow = Behaviour::Delay(Duration::from_secs(1));
    stand.script([slow, slow, slow]);

    sms_setup(&app, &cookie, PHONE)
        .await
        .assert_error(503, "sms_gateway_unavailable");
    let received = stand.received();
    assert_eq!(received.len(), 3, "{received:?}");
    // Every try carries the same message.
    assert!(received.iter().all(|r| r.body == received[0].body), "{received:?}");
    assert_eq!(outcomes(&app, "sms_setup").await, ["gateway_unavailable"]);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 0);
    // The code of a message that never got through does not confirm.
    sms_confirm(&app, &cookie, &received[0].code())
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn a_5xx_is_retried_and_the_retry_delivers_the_code() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;
    let before = stand.count();
    stand.script([Behaviour::Status(500)]);

    assert_sent(&sms_send(&app, &pending).await);
    let received = stand.received();
    assert_eq!(received.len(), before + 2, "one failed try and one retry: {received:?}");
    let (first, second) = (&received[before], &received[before + 1]);
    assert_eq!(first.body, second.body, "the retry sends the same message");
    assert_eq!(outcomes(&app, "sms_send").await, ["success"]);

    let verified = app.verify(&pending, "sms", &second.code()).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;
    let before = stand.count();
    stand.script([Behaviour::Status(400)]);

    sms_send(&app, &pending)
        .await
        .assert_error(503, "sms_gateway_unavailable");
    assert_eq!(stand.count(), before + 1, "exactly one request: {:?}", stand.received());
    assert_eq!(outcomes(&app, "sms_send").await, ["gateway_refused"]);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);

    // The refused code does not sign in.
    let refused_code = stand.last_code();
    app.verify(&pending, "sms", &refused_code)
        .await
        .assert_error(401, "invalid_2fa_code");
}

// ---------------------------------------------------------------------------------------------------------------
// Code lifetime, single use, binding, replacement
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_enrolment_code_expires_after_five_minutes() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;

    assert_sent(&sms_setup(&app, &cookie, PHONE).await);
    let expired = stand.last_code();
    app.advance(301);
    sms_confirm(&app, &cookie, &expired)
        .await
        .assert_error(401, "invalid_2fa_code");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["sms"], Value::Null, "{status:?}");

    // A fresh code, used just inside its five minutes, confirms (the session is still recent enough).
    assert_sent(&sms_setup(&app, &cookie, PHONE).await);
    let fresh = stand.last_code();
    app.advance(299);
    let confirm = sms_confirm(&app, &cookie, &fresh).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_eq!(recovery_codes(&confirm).len(), 10);
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["sms"], json!({ "phone": MASKED }), "{status:?}");
}

#[tokio::test]
async fn a_login_code_works_once() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);

    let first = pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &first).await);
    let code = stand.last_code();
    let verified = app.verify(&first, "sms", &code).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM sms_codes WHERE purpose = 'login'").await,
        0,
        "the used code is gone"
    );

    let second = pending(&app, &user.username).await;
    app.verify(&second, "sms", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
}

#[tokio::test]
async fn a_login_code_is_bound_to_its_pending_session() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);

    let p1 = pending(&app, &user.username).await;
    let p2 = pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &p1).await);
    let code = stand.last_code();

    app.verify(&p2, "sms", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
    // The attempt in the other session did not consume it.
    let verified = app.verify(&p1, "sms", &code).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

#[tokio::test]
async fn a_newer_code_replaces_the_older_one() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;

    assert_sent(&sms_send(&app, &pending).await);
    let a = stand.last_code();
    let mut b = a.clone();
    // Two random codes are equal once in a million; ask again until they differ.
    for _ in 0..3 {
        app.advance(31);
        assert_sent(&sms_send(&app, &pending).await);
        b = stand.last_code();
        if b != a {
            break;
        }
    }
    assert_ne!(a, b);

    let old = app.verify(&pending, "sms", &a).await;
    old.assert_error(401, "invalid_2fa_code");
    let verified = app.verify(&pending, "sms", &b).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Send limits
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sends_are_limited_to_one_per_30_seconds_and_five_per_hour() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await; // send 1, at t0
    let pending = pending(&app, &user.username).await;

    // The enrolment send counts.
    let soon = sms_send(&app, &pending).await;
    soon.assert_error(429, "too_many_attempts");
    let wait = retry_after(&soon);
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    assert_eq!(stand.count(), 1, "a throttled send reaches no gateway");

    app.advance(30);
    assert_sent(&sms_send(&app, &pending).await); // send 2, t0 + 30
    let again = sms_send(&app, &pending).await;
    again.assert_error(429, "too_many_attempts");
    let wait = retry_after(&again);
    assert!((1..=30).contains(&wait), "Retry-After {wait}");

    for _ in 3..=5 {
        app.advance(30);
        assert_sent(&sms_send(&app, &pending).await); // sends 3..5, up to t0 + 120
    }
    assert_eq!(stand.count(), 5);

    app.advance(30);
    let sixth = sms_send(&app, &pending).await;
    sixth.assert_error(429, "too_many_attempts");
    let wait = retry_after(&sixth);
    assert!((31..=3600).contains(&wait), "Retry-After {wait} waits for the hour");
    assert_eq!(stand.count(), 5, "the sixth message was not sent");
    assert_eq!(
        outcomes(&app, "sms_send").await,
        [
            "throttled",
            "success",
            "throttled",
            "success",
            "success",
            "success",
            "throttled"
        ]
    );

    // An hour after the first send, sending works again (for a new sign-in).
    app.advance(wait);
    let pending = self::pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &pending).await);
    assert_eq!(stand.count(), 6);
}

/// Several accounts adding the same number cannot have it texted more than its own limits allow (2 a minute, 5 an
/// hour, 10 a day), whichever account asks: SMS bombing, and the toll fraud of pumping texts to a number.
#[tokio::test]
async fn texts_to_one_number_are_limited_whichever_accounts_ask() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let mut accounts = 0;
    // Each time a new account, signed in just now, adds the same number.
    let mut setup = || {
        accounts += 1;
        let username = format!("user{accounts}");
        let app = &app;
        async move {
            let cookie = password_only_session(app, &username).await;
            sms_setup(app, &cookie, PHONE).await
        }
    };
    // A minute: two texts, then the number waits.
    assert_sent(&setup().await);
    assert_sent(&setup().await);
    let third = setup().await;
    third.assert_error(429, "too_many_attempts");
    assert!((1..=60).contains(&retry_after(&third)), "{third:?}");
    assert_eq!(stand.count(), 2, "a throttled text reaches no gateway");
    // An hour: five.
    app.advance(60);
    assert_sent(&setup().await);
    assert_sent(&setup().await);
    app.advance(60);
    assert_sent(&setup().await);
    let sixth = setup().await;
    sixth.assert_error(429, "too_many_attempts");
    assert!(retry_after(&sixth) > 60, "waits for the hour: {sixth:?}");
    assert_eq!(stand.count(), 5);
    // A day: ten.
    app.advance(3600);
    for _ in 0..2 {
        assert_sent(&setup().await);
        assert_sent(&setup().await);
        app.advance(60);
    }
    assert_sent(&setup().await);
    app.advance(3600);
    let eleventh = setup().await;
    eleventh.assert_error(429, "too_many_attempts");
    assert!(retry_after(&eleventh) > 3600, "waits for the day: {eleventh:?}");
    assert_eq!(stand.count(), 10);
    let throttled = outcomes(&app, "sms_setup")
        .await
        .iter()
        .filter(|outcome| *outcome == "throttled")
        .count();
    assert_eq!(throttled, 3, "each refusal is audited");
    // Another number is not held back by this one's limits.
    let cookie = password_only_session(&app, "another").await;
    assert_sent(&sms_setup(&app, &cookie, "+15557654321").await);
}

/// All texts together stay within `[sms] budget_per_hour`.
#[tokio::test]
async fn texts_stay_within_the_hourly_budget() {
    let stand = Stand::start().await;
    let mut settings = http_settings(&stand.webhook_url(), None);
    settings.push(("sms.budget_per_hour".into(), "3".into()));
    let app = TestApp::spawn_with(Options {
        settings,
        ..Default::default()
    })
    .await;
    for n in 0..3 {
        let cookie = password_only_session(&app, &format!("user{n}")).await;
        assert_sent(&sms_setup(&app, &cookie, &format!("+1555000000{n}")).await);
    }
    let cookie = password_only_session(&app, "user3").await;
    let over = sms_setup(&app, &cookie, "+15550000003").await;
    over.assert_error(429, "too_many_attempts");
    assert_eq!(stand.count(), 3);
    app.advance(3600);
    let cookie = password_only_session(&app, "user4").await;
    assert_sent(&sms_setup(&app, &cookie, "+15550000004").await);
}

#[tokio::test]
async fn a_send_the_gateway_did_not_accept_counts_toward_no_limit() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;

    // Down (5xx on every try), then up: the next send goes out at once.
    stand.script([Behaviour::Status(503); 3]);
    sms_send(&app, &pending)
        .await
        .assert_error(503, "sms_gateway_unavailable");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM sms_sends").await,
        1,
        "the enrolment send"
    );
    assert_sent(&sms_send(&app, &pending).await);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 2);

    // Refused (4xx), then accepted: the same.
    app.advance(30);
    stand.script([Behaviour::Status(422)]);
    sms_send(&app, &pending)
        .await
        .assert_error(503, "sms_gateway_unavailable");
    assert_sent(&sms_send(&app, &pending).await);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 3);

    assert_eq!(
        outcomes(&app, "sms_send").await,
        ["gateway_unavailable", "success", "gateway_refused", "success"]
    );
    let verified = app.verify(&pending, "sms", &stand.last_code()).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// The second-factor lock, shared with TOTP
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_sms_and_totp_codes_share_the_ten_failure_lock() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = app.enroll("alice").await;
    app.step_up(&user.cookie, &user.secret).await;

    // SMS as a second factor next to TOTP: no new recovery codes.
    assert_sent(&sms_setup(&app, &user.cookie, PHONE).await);
    let confirm = sms_confirm(&app, &user.cookie, &stand.last_code()).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_eq!(recovery_codes(&confirm), Vec::<String>::new());
    app.advance(30);

    let login = app.login("alice", PASSWORD).await;
    assert_eq!(
        login.body["methods"],
        json!(["totp", "sms", "recovery_code"]),
        "{login:?}"
    );
    let p1 = login.cookie().expect("pending cookie");
    assert_sent(&sms_send(&app, &p1).await);
    let wrong = other_code(&stand.last_code());
    for _ in 0..5 {
        app.verify(&p1, "sms", &wrong)
            .await
            .assert_error(401, "invalid_2fa_code");
    }
    app.verify(&p1, "sms", &wrong)
        .await
        .assert_error(401, "no_pending_login");

    let p2 = app.pending(&user).await;
    for _ in 0..5 {
        app.verify(&p2, "totp", &wrong_totp(&app, &user.secret))
            .await
            .assert_error(401, "invalid_2fa_code");
    }
    assert_eq!(
        count(
            &app,
            "SELECT second_factor_failures FROM users WHERE username = 'alice'"
        )
        .await,
        10
    );
    assert!(outcomes(&app, "second_factor")
        .await
        .contains(&"lock_engaged".to_owned()));

    // Locked: no text message is sent, even outside the 30-second limit.
    app.advance(31);
    let p3 = app.pending(&user).await;
    let before = stand.count();
    let locked = sms_send(&app, &p3).await;
    locked.assert_error(429, "too_many_attempts");
    let wait = retry_after(&locked);
    assert!((31..=900).contains(&wait), "Retry-After {wait}");
    assert_eq!(stand.count(), before, "no message while locked");
    assert_eq!(outcomes(&app, "sms_send").await, ["success", "locked"]);
    // A correct TOTP code is refused as well.
    app.verify(&p3, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(429, "too_many_attempts");
}

// ---------------------------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn phone_numbers_must_be_e164() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;
    let before = app.state_snapshot().await;

    let too_long = format!("+1{}", "5".repeat(20));
    for phone in [
        "5551234567",
        "15551234567",
        "+0123456789",
        "+1555abc4567",
        too_long.as_str(),
        "",
        "+",
        "+1555",
        "call me maybe",
        "++15551234567",
        "+1555１２３4567",
    ] {
        sms_setup(&app, &cookie, phone).await.assert_error(400, "invalid_phone");
    }
    // Not a string, or no phone at all: a malformed body.
    for body in [json!({ "phone": 15551234567_i64 }), json!({}), json!({ "phone": null })] {
        app.post("/auth/2fa/sms/setup", Some(&cookie), body)
            .await
            .assert_error(400, "bad_request");
    }
    assert_eq!(app.state_snapshot().await, before);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 0);
    assert_eq!(stand.count(), 0, "no message for an invalid number");

    // Spaces, dashes and parentheses are dropped.
    assert_sent(&sms_setup(&app, &cookie, "+1 (555) 123-4567").await);
    assert_eq!(stand.last().json()["to"], PHONE);
    let confirm = sms_confirm(&app, &cookie, &stand.last_code()).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["sms"], json!({ "phone": MASKED }), "{status:?}");
}

#[tokio::test]
async fn sms_codes_are_strictly_six_digits() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &pending).await);
    let code = stand.last_code();

    for malformed in ["12345", "1234567", "abcdef", ""] {
        app.verify(&pending, "sms", malformed)
            .await
            .assert_error(400, "bad_request");
    }
    // Spaces and dashes are dropped; malformed input did not use up a try.
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let verified = app.verify(&pending, "sms", &spaced).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// The audit trail
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_audit_trail_holds_no_phone_number_and_no_code() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &pending).await);
    let code = stand.last_code();
    app.verify(&pending, "sms", &other_code(&code))
        .await
        .assert_error(401, "invalid_2fa_code");
    let verified = app.verify(&pending, "sms", &code).await;
    assert_eq!(verified.status, 200, "{verified:?}");

    let codes_sent: Vec<String> = stand.received().iter().map(Received::code).collect();
    assert_eq!(codes_sent.len(), 2);

    let events = app.rows("audit_events").await;
    let rows = events.len();
    for cell in events.into_iter().flatten() {
        let (value, text) = match cell {
            Cell::Text(value) => (value, true),
            Cell::Int(value) => (value.to_string(), false),
            Cell::Null => continue,
            // The chain's MACs, compared as hex so that a code or number could not hide in them either.
            Cell::Bytes(bytes) => (hex::encode(bytes), false),
        };
        for secret in ["5551234567", "+15551234567", MASKED] {
            assert!(!value.contains(secret), "an audit event holds {secret:?}: {value:?}");
        }
        // Numeric columns (ids, times) are numbers the server chose; the codes are looked for in the text ones.
        if text {
            for secret in &codes_sent {
                assert!(
                    !value.contains(secret.as_str()),
                    "an audit event holds the code {secret}: {value:?}"
                );
            }
        }
    }
    assert!(rows >= 6, "the flow was audited ({rows} events)");
    let trail = audit_trail(&app).await;
    for expected in [
        ("sms_setup", "success"),
        ("sms_confirm", "success"),
        ("sms_send", "success"),
        ("second_factor", "invalid_code"),
        ("second_factor", "success"),
    ] {
        assert!(
            trail.contains(&(expected.0.into(), Some("sms".into()), expected.1.into())),
            "{expected:?} in {trail:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sessions, re-authentication, replacement, reset
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_sms_endpoint_takes_only_its_kind_of_session() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    let sent = stand.count();
    app.advance(30);

    // A full session's text is a step-up code, so it needs a phone on the account.
    let full = password_only_session(&app, "bob").await;
    sms_send(&app, &full).await.assert_error(400, "bad_request");

    // A pending session cannot enrol a phone.
    let pending = pending(&app, &user.username).await;
    sms_setup(&app, &pending, PHONE)
        .await
        .assert_error(401, "unauthenticated");
    sms_confirm(&app, &pending, "123456")
        .await
        .assert_error(401, "unauthenticated");
    // No session at all.
    app.post("/auth/2fa/sms/setup", None, json!({ "phone": PHONE }))
        .await
        .assert_error(401, "unauthenticated");
    assert_eq!(stand.count(), sent, "nothing was sent");

    // The pending session can still ask for its code.
    assert_sent(&sms_send(&app, &pending).await);
}

#[tokio::test]
async fn enrolling_a_phone_needs_a_recent_sign_in() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;

    // Kept alive, but signed in 15 minutes ago.
    app.advance(10 * 60);
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
    app.advance(5 * 60);
    sms_setup(&app, &cookie, PHONE)
        .await
        .assert_error(401, "reauthentication_required");
    assert_eq!(stand.count(), 0);

    // Set up while recent, confirmed once no longer recent: refused as well.
    let fresh = app.login("alice", PASSWORD).await.cookie().expect("cookie");
    assert_sent(&sms_setup(&app, &fresh, PHONE).await);
    let code = stand.last_code();
    app.advance(4 * 60);
    assert_eq!(app.get("/auth/session", Some(&fresh)).await.status, 200);
    app.advance(4 * 60);
    assert_eq!(app.get("/auth/session", Some(&fresh)).await.status, 200);
    app.advance(4 * 60);
    assert_eq!(app.get("/auth/session", Some(&fresh)).await.status, 200);
    app.advance(3 * 60);
    sms_confirm(&app, &fresh, &code)
        .await
        .assert_error(401, "reauthentication_required");
    let status = app.get("/auth/2fa", Some(&fresh)).await;
    assert_eq!(status.body["sms"], Value::Null, "{status:?}");
}

#[tokio::test]
async fn confirming_refuses_a_wrong_code_and_ends_other_sessions() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;
    let other = app.login("alice", PASSWORD).await.cookie().expect("second session");

    assert_sent(&sms_setup(&app, &cookie, PHONE).await);
    let code = stand.last_code();
    sms_confirm(&app, &cookie, &other_code(&code))
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(outcomes(&app, "sms_confirm").await, ["invalid_code"]);
    assert_eq!(app.get("/auth/session", Some(&other)).await.status, 200);

    // The wrong try did not use up the code.
    let confirm = sms_confirm(&app, &cookie, &code).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_eq!(recovery_codes(&confirm).len(), 10);
    app.get("/auth/session", Some(&other))
        .await
        .assert_error(401, "unauthenticated");
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
    // The account has a factor now, so a further change needs a step-up first; after one (a recovery code here),
    // the code is found used: no phone is being set up.
    sms_confirm(&app, &cookie, &code)
        .await
        .assert_error(401, "step_up_required");
    let recovery = recovery_codes(&confirm)[0].clone();
    let stepped = app
        .post(
            "/auth/step-up",
            Some(&cookie),
            json!({ "method": "recovery_code", "code": recovery }),
        )
        .await;
    assert_eq!(stepped.status, 204, "{stepped:?}");
    sms_confirm(&app, &cookie, &code).await.assert_error(400, "bad_request");
}

#[tokio::test]
async fn a_second_setup_replaces_the_phone_being_enrolled() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;

    assert_sent(&sms_setup(&app, &cookie, PHONE).await);
    let first = stand.last_code();
    // Within 30 s of the first: throttled, and the first stays in place.
    let soon = sms_setup(&app, &cookie, "+447700900123").await;
    soon.assert_error(429, "too_many_attempts");
    assert!((1..=30).contains(&retry_after(&soon)), "{soon:?}");
    assert_eq!(outcomes(&app, "sms_setup").await, ["success", "throttled"]);

    app.advance(30);
    assert_sent(&sms_setup(&app, &cookie, "+447700900123").await);
    let second = stand.last();
    assert_eq!(second.json()["to"], "+447700900123");
    let second = second.code();
    if first != second {
        sms_confirm(&app, &cookie, &first)
            .await
            .assert_error(401, "invalid_2fa_code");
    }
    let confirm = sms_confirm(&app, &cookie, &second).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["sms"], json!({ "phone": "+4•••••23" }), "{status:?}");
}

#[tokio::test]
async fn reset_2fa_removes_the_phone_and_its_codes() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &pending).await);
    let code = stand.last_code();

    let output = app.cli(&["user", "reset-2fa", "alice"], None);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM users WHERE sms_phone IS NOT NULL OR sms_pending_phone IS NOT NULL"
        )
        .await,
        0
    );
    app.verify(&pending, "sms", &code)
        .await
        .assert_error(401, "no_pending_login");
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.body["status"], "authenticated", "{login:?}");
    let status = app.get("/auth/2fa", login.cookie().as_deref()).await;
    assert_eq!(status.body["sms"], Value::Null, "{status:?}");
}

#[tokio::test]
async fn sending_a_new_code_resets_no_count() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;

    assert_sent(&sms_send(&app, &pending).await);
    let wrong = other_code(&stand.last_code());
    for _ in 0..4 {
        app.verify(&pending, "sms", &wrong)
            .await
            .assert_error(401, "invalid_2fa_code");
    }
    app.advance(30);
    assert_sent(&sms_send(&app, &pending).await);
    let code = stand.last_code();
    let wrong = other_code(&code);
    let last = app.verify(&pending, "sms", &wrong).await;
    last.assert_error(401, "invalid_2fa_code");
    // That was the session's fifth wrong code: it is over, even for the right one.
    app.verify(&pending, "sms", &code)
        .await
        .assert_error(401, "no_pending_login");
    assert_eq!(
        count(
            &app,
            "SELECT second_factor_failures FROM users WHERE username = 'alice'"
        )
        .await,
        5
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn parallel_sends_send_one_message() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;
    let before = stand.count();

    let answers = futures::future::join_all((0..4).map(|_| sms_send(&app, &pending))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 429, 429, 429], "{answers:?}");
    assert_eq!(stand.count(), before + 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 2);
}

#[tokio::test]
async fn parallel_verifies_use_an_sms_code_once() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending = pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &pending).await);
    let code = stand.last_code();

    let answers = futures::future::join_all((0..4).map(|_| app.verify(&pending, "sms", &code))).await;
    let ok: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    for other in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(other.status, 401, "{other:?}");
        assert!(
            matches!(other.error(), "no_pending_login" | "invalid_2fa_code"),
            "{other:?}"
        );
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM sessions WHERE state = 'full'").await,
        2,
        "the enrolment session and one new one"
    );
}

#[tokio::test]
async fn sms_endpoints_refuse_other_origins() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;
    let evil = app
        .send(
            app.http
                .post(app.url("/auth/2fa/sms/setup"))
                .header("cookie", format!("twofold_session={cookie}"))
                .header("origin", "https://evil.example")
                .json(&json!({ "phone": PHONE })),
        )
        .await;
    evil.assert_error(403, "cross_origin");
    assert_eq!(stand.count(), 0);
}

#[tokio::test]
async fn a_redirect_is_not_an_acceptance() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let cookie = password_only_session(&app, "alice").await;
    stand.script([Behaviour::Status(302); 3]);

    sms_setup(&app, &cookie, PHONE)
        .await
        .assert_error(503, "sms_gateway_unavailable");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_sends").await, 0);
    let trail = outcomes(&app, "sms_setup").await;
    assert!(
        trail == ["gateway_refused"] || trail == ["gateway_unavailable"],
        "{trail:?}"
    );
}

/// A signed-in session asks `POST /auth/2fa/sms/send` for a step-up code; the login's code is no step-up, and a
/// step-up code signs no one in.
#[tokio::test]
async fn a_text_steps_up_a_signed_in_session_and_nothing_else() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "alice").await;
    app.advance(30);
    let pending_login = pending(&app, &user.username).await;
    assert_sent(&sms_send(&app, &pending_login).await);
    let login_code = stand.last_code();
    let signed_in = app.verify(&pending_login, "sms", &login_code).await;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    let cookie = signed_in.cookie().expect("full session");

    app.post_empty("/auth/2fa/totp/setup", Some(&cookie))
        .await
        .assert_error(401, "step_up_required");
    let step_up = |code: String| {
        let app = &app;
        let cookie = cookie.clone();
        async move {
            app.post("/auth/step-up", Some(&cookie), json!({ "method": "sms", "code": code }))
                .await
        }
    };
    step_up(login_code).await.assert_error(401, "invalid_2fa_code");

    app.advance(30);
    assert_sent(&sms_send(&app, &cookie).await);
    let step_up_code = stand.last_code();
    // Sent for this session's step-up: another pending sign-in cannot use it.
    let other_login = pending(&app, &user.username).await;
    app.verify(&other_login, "sms", &step_up_code)
        .await
        .assert_error(401, "invalid_2fa_code");
    let stepped = step_up(step_up_code.clone()).await;
    assert_eq!(stepped.status, 204, "{stepped:?}");
    step_up(step_up_code).await.assert_error(401, "invalid_2fa_code");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
}

/// Both steps with a code texted to the phone, after the send limit allows another text; returns the full session.
async fn sign_in_by_text(app: &TestApp, stand: &Stand, username: &str) -> String {
    app.advance(31);
    let pending = pending(app, username).await;
    assert_sent(&sms_send(app, &pending).await);
    let verified = app.verify(&pending, "sms", &stand.last_code()).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    verified.cookie().expect("full session cookie")
}

async fn remove_phone(app: &TestApp, cookie: Option<&str>, code: &str) -> Resp {
    app.delete("/auth/2fa/sms", cookie, json!({ "code": code })).await
}

#[tokio::test]
async fn removing_the_phone_takes_a_code_texted_to_it_for_this_session() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    let user = enroll_sms(&app, &stand, "pia").await;
    let elsewhere = sign_in_by_text(&app, &stand, "pia").await;
    let here = sign_in_by_text(&app, &stand, "pia").await;

    // No code was texted for this: every code is wrong, and the phone stays.
    remove_phone(&app, Some(&here), "123456")
        .await
        .assert_error(401, "invalid_2fa_code");
    // The sign-in's own code is not one either.
    remove_phone(&app, Some(&here), &stand.last_code())
        .await
        .assert_error(401, "invalid_2fa_code");
    // A code texted to another session is that session's.
    app.advance(31);
    assert_sent(&sms_send(&app, &elsewhere).await);
    remove_phone(&app, Some(&here), &stand.last_code())
        .await
        .assert_error(401, "invalid_2fa_code");
    for bad in [
        json!({}),
        json!({ "code": 123456 }),
        json!({ "code": "12345" }),
        json!({ "code": "abcdef" }),
    ] {
        app.delete("/auth/2fa/sms", Some(&here), bad)
            .await
            .assert_error(400, "bad_request");
    }
    remove_phone(&app, None, "123456")
        .await
        .assert_error(401, "unauthenticated");
    let status = app.get("/auth/2fa", Some(&here)).await;
    assert_eq!(status.body["sms"], json!({ "phone": MASKED }), "{status:?}");

    app.advance(31);
    assert_sent(&sms_send(&app, &here).await);
    let code = stand.last_code_to(PHONE);
    remove_phone(&app, Some(&here), &other_code(&code))
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(remove_phone(&app, Some(&here), &code).await.status, 204);

    // It was the last second factor: the recovery codes went with it, and the password alone signs in.
    let status = app.get("/auth/2fa", Some(&here)).await;
    assert_eq!(status.body["sms"], Value::Null, "{status:?}");
    assert_eq!(status.body["recovery_codes_left"], 0, "{status:?}");
    app.get("/auth/session", Some(&elsewhere))
        .await
        .assert_error(401, "unauthenticated");
    remove_phone(&app, Some(&here), &code)
        .await
        .assert_error(400, "bad_request");
    let login = app.login("pia", PASSWORD).await;
    assert_eq!(login.body["status"], "authenticated", "{login:?}");
    assert!(!user.recovery_codes.is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM recovery_codes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sms_codes").await, 0);
    let removals = outcomes(&app, "sms_remove").await;
    assert_eq!(removals.last().map(String::as_str), Some("success"), "{removals:?}");
    assert_eq!(
        removals.iter().filter(|o| *o == "invalid_code").count(),
        4,
        "{removals:?}"
    );
}

#[tokio::test]
async fn removing_the_phone_needs_a_recent_sign_in() {
    let stand = Stand::start().await;
    let app = spawn_http(&stand.webhook_url()).await;
    enroll_sms(&app, &stand, "quinn").await;
    let cookie = sign_in_by_text(&app, &stand, "quinn").await;
    app.advance(31);
    assert_sent(&sms_send(&app, &cookie).await);
    let code = stand.last_code();
    app.advance(16 * 60);
    remove_phone(&app, Some(&cookie), &code)
        .await
        .assert_error(401, "reauthentication_required");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["sms"], json!({ "phone": MASKED }), "{status:?}");
}
