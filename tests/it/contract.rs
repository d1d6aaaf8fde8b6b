//! The HTTP contract table of DESIGN.md (every row except SMS), each row's success case and each of its error codes,
//! plus the cross-cutting rules: cookie flags, the `Origin` check, error bodies for 404/405, what a pending session
//! may not do, `Cache-Control`, and what the database holds instead of tokens and secrets.

use crate::common::*;
use reqwest::header::{COOKIE, ORIGIN};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const DEFAULT_ORIGIN: &str = "http://127.0.0.1:8080";
const EVIL_ORIGIN: &str = "https://evil.example";

// ---------------------------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------------------------

async fn register(app: &TestApp, username: &str, password: &str) -> Resp {
    app.post(
        "/auth/register",
        None,
        json!({ "username": username, "password": password }),
    )
    .await
}

/// Adds a user without a second factor and signs them in; returns the full session cookie.
async fn password_only_session(app: &TestApp, username: &str) -> String {
    app.add_user(username, PASSWORD).await;
    let login = app.login(username, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "authenticated", "{login:?}");
    login.cookie().expect("session cookie")
}

/// `XXXX-XXXX-XXXX-XXXX` with base32 characters.
fn assert_recovery_code_shape(code: &str) {
    let groups: Vec<&str> = code.split('-').collect();
    assert_eq!(groups.len(), 4, "{code}");
    for group in groups {
        assert_eq!(group.len(), 4, "{code}");
        assert!(
            group
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
            "{code}"
        );
    }
}

fn assert_ten_distinct_codes(codes: &[String]) {
    assert_eq!(codes.len(), 10, "{codes:?}");
    for code in codes {
        assert_recovery_code_shape(code);
    }
    let mut unique = codes.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "codes repeat: {codes:?}");
}

fn assert_retry_after(resp: &Resp, at_most: i64) {
    let value = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After on {resp:?}"));
    let seconds: i64 = value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After in seconds: {value:?}"));
    assert!((1..=at_most).contains(&seconds), "Retry-After {seconds} of {resp:?}");
}

fn parse_time(value: &Value) -> OffsetDateTime {
    let text = value.as_str().unwrap_or_else(|| panic!("a time string, got {value}"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("RFC 3339 {text:?}: {e}"))
}

/// A request with an optional session cookie and an optional `Origin`.
fn with(request: reqwest::RequestBuilder, cookie: Option<&str>, origin: Option<&str>) -> reqwest::RequestBuilder {
    let request = match cookie {
        Some(value) => request.header(COOKIE, format!("twofold_session={value}")),
        None => request,
    };
    match origin {
        Some(value) => request.header(ORIGIN, value),
        None => request,
    }
}

/// Every value of every column of every table of the database, as bytes (integers as their text).
async fn database_values(app: &TestApp) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    for table in app.tables().await {
        for row in app.rows(&table).await {
            values.extend(row.into_iter().filter_map(Cell::into_bytes));
        }
    }
    values
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

async fn assert_nowhere_in_database(app: &TestApp, what: &str, needle: &[u8]) {
    for value in database_values(app).await {
        assert!(!contains(&value, needle), "{what} found in the database: {value:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// POST /auth/register
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_creates_a_user_who_can_sign_in() {
    let app = TestApp::spawn().await;
    let resp = register(&app, "Alice", PASSWORD).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(resp.body, json!({ "username": "alice" }));
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "authenticated");
}

#[tokio::test]
async fn register_refused_when_registration_is_disabled() {
    let app = TestApp::spawn_with(Options {
        allow_registration: false,
        ..Options::default()
    })
    .await;
    register(&app, "alice", PASSWORD)
        .await
        .assert_error(403, "registration_disabled");
    app.login("alice", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn register_refuses_a_taken_username_in_any_case() {
    let app = TestApp::spawn().await;
    assert_eq!(register(&app, "alice", PASSWORD).await.status, 201);
    register(&app, "alice", "another good passphrase")
        .await
        .assert_error(409, "username_taken");
    register(&app, "ALICE", "another good passphrase")
        .await
        .assert_error(409, "username_taken");
    // The original password still works: the refused registration changed nothing.
    assert_eq!(app.login("alice", PASSWORD).await.status, 200);
}

/// Registration is throttled per client address: each attempt costs a password hash and a refused one says whether
/// a name is taken, so a client cannot probe names (or burn CPU) without limit.
#[tokio::test]
async fn register_is_throttled_per_client_address() {
    let app = TestApp::spawn().await;
    assert_eq!(register(&app, "alice", PASSWORD).await.status, 201);
    for _ in 1..10 {
        register(&app, "alice", PASSWORD)
            .await
            .assert_error(409, "username_taken");
    }
    let throttled = register(&app, "bob", PASSWORD).await;
    throttled.assert_error(429, "too_many_attempts");
    assert_retry_after(&throttled, 15 * 60);
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE event = 'register' AND outcome = 'throttled'")
            .fetch_one(&app.db().await)
            .await
            .expect("audit");
    assert_eq!(audited, 1);
    app.advance(15 * 60);
    assert_eq!(register(&app, "bob", PASSWORD).await.status, 201);
}

#[tokio::test]
async fn register_refuses_weak_passwords() {
    let app = TestApp::spawn().await;
    for (username, password) in [
        ("alice", "short1"),              // under 8 characters
        ("alice", "password123"),         // a common password
        ("longusername", "longusername"), // equal to the username
        ("alice", "my twofold secret"),   // contains the issuer
    ] {
        let resp = register(&app, username, password).await;
        resp.assert_error(400, "weak_password");
        app.login(username, password)
            .await
            .assert_error(401, "invalid_credentials");
    }
}

#[tokio::test]
async fn register_refuses_invalid_usernames() {
    let app = TestApp::spawn().await;
    let too_long = "a".repeat(65);
    for username in ["", "-bob", "a b", "a:b", "名前", too_long.as_str()] {
        register(&app, username, PASSWORD)
            .await
            .assert_error(400, "invalid_username");
    }
    let db = app.db().await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// POST /auth/login
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_without_second_factor_is_authenticated_with_a_cookie() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body, json!({ "status": "authenticated" }));
    let cookie = login.cookie().expect("cookie");
    assert!(!cookie.is_empty());
    let session = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(session.status, 200, "{session:?}");
    assert_eq!(session.body["username"], "alice");
}

#[tokio::test]
async fn login_of_an_enrolled_user_requires_the_second_factor() {
    let app = TestApp::spawn().await;
    let _user = app.enroll("alice").await;
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(
        login.body,
        json!({ "status": "2fa_required", "methods": ["totp", "recovery_code"] })
    );
    let pending = login.cookie().expect("pending cookie");
    assert!(!pending.is_empty());
    // The cookie names a pending session, which is not signed in.
    app.get("/auth/session", Some(&pending))
        .await
        .assert_error(401, "unauthenticated");
    let db = app.db().await;
    let state: String = sqlx::query_scalar("SELECT state FROM sessions WHERE token_digest = $1")
        .bind(Sha256::digest(pending.as_bytes()).to_vec())
        .fetch_one(&db)
        .await
        .expect("pending session row");
    assert_eq!(state, "pending");
}

#[tokio::test]
async fn login_answers_the_same_for_unknown_user_and_wrong_password() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let unknown = app.login("mallory", PASSWORD).await;
    let wrong = app.login("alice", "not the right password").await;
    unknown.assert_error(401, "invalid_credentials");
    wrong.assert_error(401, "invalid_credentials");
    assert_eq!(unknown.text, wrong.text, "the bodies must not tell the cases apart");
    assert!(unknown.cookie().is_none(), "{unknown:?}");
    assert!(wrong.cookie().is_none(), "{wrong:?}");
    let db = app.db().await;
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn login_is_throttled_after_ten_wrong_passwords() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    for attempt in 1..=10 {
        let resp = app.login("alice", &format!("wrong password {attempt}")).await;
        resp.assert_error(401, "invalid_credentials");
    }
    // The 11th attempt in the window is refused, even with the right password.
    let throttled = app.login("alice", PASSWORD).await;
    throttled.assert_error(429, "too_many_attempts");
    assert_retry_after(&throttled, 15 * 60);
    assert!(throttled.cookie().is_none(), "{throttled:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// POST /auth/verify-2fa
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn verify_replaces_the_pending_session_with_a_new_full_one() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(verified.body, json!({ "status": "authenticated" }));
    let full = verified.cookie().expect("new cookie");
    assert!(!full.is_empty());
    assert_ne!(full, pending, "the token must change when the session becomes full");

    let session = app.get("/auth/session", Some(&full)).await;
    assert_eq!(session.status, 200, "{session:?}");
    // The pending token is dead.
    app.get("/auth/session", Some(&pending))
        .await
        .assert_error(401, "unauthenticated");
    app.advance(30);
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "no_pending_login");
    let db = app.db().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE token_digest = $1")
        .bind(Sha256::digest(pending.as_bytes()).to_vec())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the pending session row is gone");
}

#[tokio::test]
async fn verify_refuses_a_wrong_code() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let pending = app.pending(&user).await;
    let wrong = app.verify(&pending, "totp", &app.wrong_code(&user.secret)).await;
    wrong.assert_error(401, "invalid_2fa_code");
    assert!(wrong.cookie().unwrap_or_default().is_empty(), "{wrong:?}");
    // The pending session survives one wrong code.
    let right = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(right.status, 200, "{right:?}");
}

#[tokio::test]
async fn verify_without_a_pending_session_is_no_pending_login() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let code = app.code(&user.secret, 0);
    // No cookie at all.
    app.post("/auth/verify-2fa", None, json!({ "method": "totp", "code": code }))
        .await
        .assert_error(401, "no_pending_login");
    // A full session's cookie.
    app.verify(&user.cookie, "totp", &code)
        .await
        .assert_error(401, "no_pending_login");
    // A cookie that names nothing.
    app.verify("garbage-not-a-token", "totp", &code)
        .await
        .assert_error(401, "no_pending_login");
    app.verify("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "totp", &code)
        .await
        .assert_error(401, "no_pending_login");
    // None of these burnt the code: a real pending session can still use it.
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "totp", &code).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

#[tokio::test]
async fn verify_is_throttled_after_ten_wrong_codes() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let wrong = app.wrong_code(&user.secret);
    for _ in 0..2 {
        let pending = app.pending(&user).await;
        for _ in 0..5 {
            app.verify(&pending, "totp", &wrong)
                .await
                .assert_error(401, "invalid_2fa_code");
        }
        // The 5th wrong code ended this pending session.
        app.verify(&pending, "totp", &wrong)
            .await
            .assert_error(401, "no_pending_login");
    }
    // 10 consecutive failures: the second factor is locked for 15 minutes, even for the right code.
    let pending = app.pending(&user).await;
    let locked = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    locked.assert_error(429, "too_many_attempts");
    assert_retry_after(&locked, 15 * 60);
    assert!(locked.cookie().unwrap_or_default().is_empty(), "{locked:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// POST /auth/logout
// ---------------------------------------------------------------------------------------------------------------

fn assert_cookie_cleared(resp: &Resp) {
    let header = resp.set_cookie().unwrap_or_else(|| panic!("Set-Cookie on {resp:?}"));
    assert_eq!(resp.cookie().as_deref(), Some(""), "{header}");
    assert!(header.contains("Max-Age=0"), "{header}");
    assert!(header.contains("Path=/"), "{header}");
}

#[tokio::test]
async fn logout_ends_a_full_session_server_side() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let resp = app.post_empty("/auth/logout", Some(&cookie)).await;
    assert_eq!(resp.status, 204, "{resp:?}");
    assert!(resp.text.is_empty(), "{resp:?}");
    assert_cookie_cleared(&resp);
    // Replaying the old cookie does not work.
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
    app.get("/auth/2fa", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
    let db = app.db().await;
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn logout_ends_a_pending_session() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let pending = app.pending(&user).await;
    let resp = app.post_empty("/auth/logout", Some(&pending)).await;
    assert_eq!(resp.status, 204, "{resp:?}");
    assert_cookie_cleared(&resp);
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "no_pending_login");
    let db = app.db().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE token_digest = $1")
        .bind(Sha256::digest(pending.as_bytes()).to_vec())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn logout_without_a_cookie_is_still_204() {
    let app = TestApp::spawn().await;
    let resp = app.post_empty("/auth/logout", None).await;
    assert_eq!(resp.status, 204, "{resp:?}");
    assert_cookie_cleared(&resp);
    let garbage = app.post_empty("/auth/logout", Some("not-a-session")).await;
    assert_eq!(garbage.status, 204, "{garbage:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// GET /auth/session
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn session_describes_a_totp_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let signed_in_at = app.now();
    let cookie = app.sign_in(&user).await;
    let resp = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["username"], "alice");
    assert_eq!(resp.body["second_factor"], "totp");
    let authenticated_at = parse_time(&resp.body["authenticated_at"]);
    let expires_at = parse_time(&resp.body["expires_at"]);
    assert_eq!(authenticated_at.unix_timestamp(), signed_in_at);
    assert!(expires_at > authenticated_at, "{resp:?}");
    assert!(
        expires_at.unix_timestamp() <= signed_in_at + 12 * 3600,
        "no later than the absolute lifetime: {resp:?}"
    );
    assert!(resp.body["notices"].is_array(), "{resp:?}");
}

#[tokio::test]
async fn session_of_a_password_only_user_has_no_second_factor() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let resp = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["username"], "alice");
    assert!(resp.body.get("second_factor").is_some_and(Value::is_null), "{resp:?}");
    parse_time(&resp.body["authenticated_at"]);
    parse_time(&resp.body["expires_at"]);
}

#[tokio::test]
async fn session_is_unauthenticated_without_a_cookie_or_with_garbage() {
    let app = TestApp::spawn().await;
    app.get("/auth/session", None)
        .await
        .assert_error(401, "unauthenticated");
    app.get("/auth/session", Some("garbage"))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn session_is_unauthenticated_for_a_pending_session() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let pending = app.pending(&user).await;
    app.get("/auth/session", Some(&pending))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn session_expires_after_thirty_idle_minutes() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    app.advance(29 * 60);
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
    // The request above refreshed the idle timer: 29 more minutes are fine, 31 idle minutes are not.
    app.advance(29 * 60);
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
    app.advance(31 * 60);
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn session_expires_after_twelve_hours_even_when_active() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    for _ in 0..28 {
        app.advance(25 * 60);
        let resp = app.get("/auth/session", Some(&cookie)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    // 700 minutes so far; 21 more passes 12 hours while the session was used 21 minutes ago.
    app.advance(21 * 60);
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
}

// ---------------------------------------------------------------------------------------------------------------
// GET /auth/2fa
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn second_factor_status_shape() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let resp = app.get("/auth/2fa", Some(&user.cookie)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.body,
        json!({ "totp": true, "sms": null, "recovery_codes_left": 10 })
    );

    let cookie = password_only_session(&app, "bob").await;
    let resp = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.body,
        json!({ "totp": false, "sms": null, "recovery_codes_left": 0 })
    );
}

#[tokio::test]
async fn second_factor_status_needs_a_session() {
    let app = TestApp::spawn().await;
    app.get("/auth/2fa", None).await.assert_error(401, "unauthenticated");
    app.get("/auth/2fa", Some("garbage"))
        .await
        .assert_error(401, "unauthenticated");
}

// ---------------------------------------------------------------------------------------------------------------
// POST /auth/2fa/totp/setup
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn totp_setup_returns_secret_uri_and_qr() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let resp = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let secret = resp.body["secret"].as_str().expect("secret");
    assert_eq!(secret.len(), 32, "{secret}");
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("base32 secret");
    assert_eq!(raw.len(), 20, "160-bit secret");
    let uri = resp.body["otpauth_uri"].as_str().expect("otpauth_uri");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains("issuer=Twofold"), "{uri}");
    assert!(uri.contains("alice"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let svg = resp.body["qr_svg"].as_str().expect("qr_svg");
    assert!(svg.contains("<svg"), "{svg}");
}

#[tokio::test]
async fn totp_setup_is_not_active_until_confirmed() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["totp"], false, "{status:?}");
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body, json!({ "status": "authenticated" }));
}

#[tokio::test]
async fn totp_setup_needs_a_session() {
    let app = TestApp::spawn().await;
    app.post_empty("/auth/2fa/totp/setup", None)
        .await
        .assert_error(401, "unauthenticated");
    app.post_empty("/auth/2fa/totp/setup", Some("garbage"))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn totp_setup_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    app.advance(15 * 60 + 1);
    app.post_empty("/auth/2fa/totp/setup", Some(&cookie))
        .await
        .assert_error(401, "reauthentication_required");
    let db = app.db().await;
    let pending: Option<Vec<u8>> = sqlx::query_scalar("SELECT totp_pending_secret FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(pending.is_none(), "nothing was set up");
}

// ---------------------------------------------------------------------------------------------------------------
// POST /auth/2fa/totp/confirm
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn totp_confirm_returns_ten_recovery_codes_the_first_time() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
        .expect("base32");
    let confirm = app
        .post(
            "/auth/2fa/totp/confirm",
            Some(&cookie),
            json!({ "code": app.code(&secret, 0) }),
        )
        .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_ten_distinct_codes(&recovery_codes(&confirm));
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(
        status.body,
        json!({ "totp": true, "sms": null, "recovery_codes_left": 10 })
    );
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.body["status"], "2fa_required", "{login:?}");
}

#[tokio::test]
async fn totp_confirm_of_a_second_enrolment_keeps_the_recovery_codes() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    app.step_up(&user.cookie, &user.secret).await;
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&user.cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let new_secret = data_encoding::BASE32_NOPAD
        .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
        .expect("base32");
    assert_ne!(new_secret, user.secret);
    let confirm = app
        .post(
            "/auth/2fa/totp/confirm",
            Some(&user.cookie),
            json!({ "code": app.code(&new_secret, 0) }),
        )
        .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_eq!(confirm.body, json!({ "recovery_codes": [] }));
    let status = app.get("/auth/2fa", Some(&user.cookie)).await;
    assert_eq!(status.body["recovery_codes_left"], 10, "{status:?}");

    // An old recovery code still signs in.
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    // The new authenticator is the active one.
    app.advance(30);
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "totp", &app.code(&new_secret, 0)).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

#[tokio::test]
async fn totp_confirm_refuses_a_wrong_code() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
        .expect("base32");
    app.post(
        "/auth/2fa/totp/confirm",
        Some(&cookie),
        json!({ "code": app.wrong_code(&secret) }),
    )
    .await
    .assert_error(401, "invalid_2fa_code");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["totp"], false, "{status:?}");
    assert_eq!(app.login("alice", PASSWORD).await.body["status"], "authenticated");
}

#[tokio::test]
async fn totp_confirm_needs_a_session() {
    let app = TestApp::spawn().await;
    app.post("/auth/2fa/totp/confirm", None, json!({ "code": "123456" }))
        .await
        .assert_error(401, "unauthenticated");
    app.post("/auth/2fa/totp/confirm", Some("garbage"), json!({ "code": "123456" }))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn totp_confirm_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
        .expect("base32");
    app.advance(15 * 60 + 1);
    app.post(
        "/auth/2fa/totp/confirm",
        Some(&cookie),
        json!({ "code": app.code(&secret, 0) }),
    )
    .await
    .assert_error(401, "reauthentication_required");
    // Still signed in, and still without a second factor.
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["totp"], false, "{status:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// DELETE /auth/2fa/totp
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn totp_delete_makes_the_login_password_only() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let resp = app
        .delete(
            "/auth/2fa/totp",
            Some(&user.cookie),
            json!({ "code": app.code(&user.secret, 0) }),
        )
        .await;
    assert_eq!(resp.status, 204, "{resp:?}");
    let status = app.get("/auth/2fa", Some(&user.cookie)).await;
    assert_eq!(
        status.body,
        json!({ "totp": false, "sms": null, "recovery_codes_left": 0 })
    );
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body, json!({ "status": "authenticated" }));
}

#[tokio::test]
async fn totp_delete_refuses_a_wrong_code() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    app.delete(
        "/auth/2fa/totp",
        Some(&user.cookie),
        json!({ "code": app.wrong_code(&user.secret) }),
    )
    .await
    .assert_error(401, "invalid_2fa_code");
    let status = app.get("/auth/2fa", Some(&user.cookie)).await;
    assert_eq!(
        status.body,
        json!({ "totp": true, "sms": null, "recovery_codes_left": 10 })
    );
    assert_eq!(app.login("alice", PASSWORD).await.body["status"], "2fa_required");
}

#[tokio::test]
async fn totp_delete_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    app.advance(15 * 60);
    app.delete(
        "/auth/2fa/totp",
        Some(&user.cookie),
        json!({ "code": app.code(&user.secret, 0) }),
    )
    .await
    .assert_error(401, "reauthentication_required");
    let status = app.get("/auth/2fa", Some(&user.cookie)).await;
    assert_eq!(status.body["totp"], true, "{status:?}");
}

#[tokio::test]
async fn totp_delete_needs_a_session() {
    let app = TestApp::spawn().await;
    app.delete("/auth/2fa/totp", None, json!({ "code": "123456" }))
        .await
        .assert_error(401, "unauthenticated");
}

// ---------------------------------------------------------------------------------------------------------------
// POST /auth/2fa/recovery-codes
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn recovery_codes_regenerate_kills_the_old_set() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    app.step_up(&user.cookie, &user.secret).await;
    let resp = app.post_empty("/auth/2fa/recovery-codes", Some(&user.cookie)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let fresh = recovery_codes(&resp);
    assert_ten_distinct_codes(&fresh);
    assert!(fresh.iter().all(|c| !user.recovery_codes.contains(c)), "{fresh:?}");

    let pending = app.pending(&user).await;
    app.verify(&pending, "recovery_code", &user.recovery_codes[0])
        .await
        .assert_error(401, "invalid_2fa_code");
    let verified = app.verify(&pending, "recovery_code", &fresh[0]).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let status = app.get("/auth/2fa", Some(&verified.cookie().expect("cookie"))).await;
    assert_eq!(status.body["recovery_codes_left"], 9, "{status:?}");
}

#[tokio::test]
async fn recovery_codes_regenerate_needs_a_session() {
    let app = TestApp::spawn().await;
    app.post_empty("/auth/2fa/recovery-codes", None)
        .await
        .assert_error(401, "unauthenticated");
    app.post_empty("/auth/2fa/recovery-codes", Some("garbage"))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn recovery_codes_regenerate_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    app.advance(15 * 60);
    app.post_empty("/auth/2fa/recovery-codes", Some(&user.cookie))
        .await
        .assert_error(401, "reauthentication_required");
    // The old set still works.
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Signing in with a recovery code
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn recovery_code_signs_in_once() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let code = &user.recovery_codes[3];
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "recovery_code", code).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(verified.body, json!({ "status": "authenticated" }));
    let full = verified.cookie().expect("cookie");
    assert_ne!(full, pending);
    let session = app.get("/auth/session", Some(&full)).await;
    assert_eq!(session.body["second_factor"], "recovery_code", "{session:?}");
    let status = app.get("/auth/2fa", Some(&full)).await;
    assert_eq!(status.body["recovery_codes_left"], 9, "{status:?}");

    // Single use.
    let pending = app.pending(&user).await;
    app.verify(&pending, "recovery_code", code)
        .await
        .assert_error(401, "invalid_2fa_code");
    let db = app.db().await;
    let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE used_at IS NOT NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(used, 1);
}

#[tokio::test]
async fn recovery_code_is_accepted_in_lower_case_with_spaces() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let typed = user.recovery_codes[0].to_lowercase().replace('-', " ");
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "recovery_code", &typed).await;
    assert_eq!(verified.status, 200, "{typed:?} -> {verified:?}");
    // And it was the same code: the canonical form is now used up.
    let pending = app.pending(&user).await;
    app.verify(&pending, "recovery_code", &user.recovery_codes[0])
        .await
        .assert_error(401, "invalid_2fa_code");
    let typed = format!(" {} ", user.recovery_codes[1].to_lowercase());
    let verified = app.verify(&pending, "recovery_code", &typed).await;
    assert_eq!(verified.status, 200, "{typed:?} -> {verified:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Cookie flags
// ---------------------------------------------------------------------------------------------------------------

fn cookie_attributes(header: &str) -> Vec<String> {
    header
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

fn assert_cookie_flags(resp: &Resp, secure: bool) {
    let header = resp.set_cookie().unwrap_or_else(|| panic!("Set-Cookie on {resp:?}"));
    let attributes = cookie_attributes(&header);
    assert!(attributes.iter().any(|a| a == "httponly"), "{header}");
    assert!(attributes.iter().any(|a| a == "samesite=lax"), "{header}");
    assert!(attributes.iter().any(|a| a == "path=/"), "{header}");
    assert!(attributes.iter().any(|a| a.starts_with("max-age=")), "{header}");
    assert_eq!(attributes.iter().any(|a| a == "secure"), secure, "{header}");
}

async fn assert_all_cookies(app: &TestApp, secure: bool) {
    app.add_user("plain", PASSWORD).await;
    let login = app.login("plain", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_cookie_flags(&login, secure);
    let user = app.enroll("alice").await;
    let pending = app.login("alice", PASSWORD).await;
    assert_eq!(pending.body["status"], "2fa_required", "{pending:?}");
    assert_cookie_flags(&pending, secure);
    let verified = app
        .verify(&pending.cookie().expect("cookie"), "totp", &app.code(&user.secret, 0))
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_cookie_flags(&verified, secure);
    let logout = app
        .post_empty("/auth/logout", Some(&verified.cookie().expect("cookie")))
        .await;
    assert_eq!(logout.status, 204, "{logout:?}");
    assert_cookie_flags(&logout, secure);
}

#[tokio::test]
async fn cookie_flags_on_http_public_url() {
    let app = TestApp::spawn().await;
    assert_all_cookies(&app, false).await;
}

#[tokio::test]
async fn cookie_is_secure_when_public_url_is_https() {
    let app = TestApp::spawn_with(Options {
        public_url: "https://auth.example.com".into(),
        ..Options::default()
    })
    .await;
    assert_all_cookies(&app, true).await;
}

// ---------------------------------------------------------------------------------------------------------------
// Origin check
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_from_another_origin_is_refused() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let body = json!({ "username": "alice", "password": PASSWORD });
    let evil = app
        .send(with(app.http.post(app.url("/auth/login")), None, Some(EVIL_ORIGIN)).json(&body))
        .await;
    evil.assert_error(403, "cross_origin");
    assert!(evil.cookie().is_none(), "{evil:?}");
    let db = app.db().await;
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);

    let same = app
        .send(with(app.http.post(app.url("/auth/login")), None, Some(DEFAULT_ORIGIN)).json(&body))
        .await;
    assert_eq!(same.status, 200, "{same:?}");
    assert_eq!(same.body["status"], "authenticated");
    let none = app
        .send(with(app.http.post(app.url("/auth/login")), None, None).json(&body))
        .await;
    assert_eq!(none.status, 200, "{none:?}");
}

#[tokio::test]
async fn totp_setup_from_another_origin_is_refused() {
    let app = TestApp::spawn().await;
    let cookie = password_only_session(&app, "alice").await;
    let url = app.url("/auth/2fa/totp/setup");
    let evil = app
        .send(with(app.http.post(&url), Some(&cookie), Some(EVIL_ORIGIN)))
        .await;
    evil.assert_error(403, "cross_origin");
    let db = app.db().await;
    let pending: Option<Vec<u8>> = sqlx::query_scalar("SELECT totp_pending_secret FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(pending.is_none(), "a refused request set nothing up");

    let same = app
        .send(with(app.http.post(&url), Some(&cookie), Some(DEFAULT_ORIGIN)))
        .await;
    assert_eq!(same.status, 200, "{same:?}");
    assert!(same.body["secret"].is_string(), "{same:?}");
    let none = app.send(with(app.http.post(&url), Some(&cookie), None)).await;
    assert_eq!(none.status, 200, "{none:?}");
}

#[tokio::test]
async fn origin_of_an_https_public_url_is_the_one_allowed() {
    let app = TestApp::spawn_with(Options {
        public_url: "https://auth.example.com".into(),
        ..Options::default()
    })
    .await;
    app.add_user("alice", PASSWORD).await;
    let body = json!({ "username": "alice", "password": PASSWORD });
    for origin in [DEFAULT_ORIGIN, EVIL_ORIGIN, "http://auth.example.com"] {
        app.send(with(app.http.post(app.url("/auth/login")), None, Some(origin)).json(&body))
            .await
            .assert_error(403, "cross_origin");
    }
    let same = app
        .send(
            with(
                app.http.post(app.url("/auth/login")),
                None,
                Some("https://auth.example.com"),
            )
            .json(&body),
        )
        .await;
    assert_eq!(same.status, 200, "{same:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// 404 and 405
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_routes_are_404_with_the_error_body() {
    let app = TestApp::spawn().await;
    app.get("/nothing-here", None).await.assert_error(404, "not_found");
    app.get("/auth/nothing-here", None).await.assert_error(404, "not_found");
    app.post("/auth/2fa/sms/nope", None, json!({}))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn wrong_methods_are_405_with_the_error_body() {
    let app = TestApp::spawn().await;
    app.get("/auth/login", None)
        .await
        .assert_error(405, "method_not_allowed");
    app.get("/auth/verify-2fa", None)
        .await
        .assert_error(405, "method_not_allowed");
    app.post("/auth/session", None, json!({}))
        .await
        .assert_error(405, "method_not_allowed");
    app.get("/auth/2fa/totp", None)
        .await
        .assert_error(405, "method_not_allowed");
    app.send(app.http.put(app.url("/auth/2fa/recovery-codes")))
        .await
        .assert_error(405, "method_not_allowed");
}

// ---------------------------------------------------------------------------------------------------------------
// A pending session can verify and log out, nothing else
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn pending_session_is_refused_everywhere_else() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let pending = app.pending(&user).await;
    let before = app.state_snapshot().await;
    let code = app.code(&user.secret, 0);
    let answers = [
        ("GET /auth/session", app.get("/auth/session", Some(&pending)).await),
        ("GET /auth/2fa", app.get("/auth/2fa", Some(&pending)).await),
        (
            "POST /auth/2fa/totp/setup",
            app.post_empty("/auth/2fa/totp/setup", Some(&pending)).await,
        ),
        (
            "POST /auth/2fa/totp/confirm",
            app.post("/auth/2fa/totp/confirm", Some(&pending), json!({ "code": code }))
                .await,
        ),
        (
            "DELETE /auth/2fa/totp",
            app.delete("/auth/2fa/totp", Some(&pending), json!({ "code": code }))
                .await,
        ),
        (
            "POST /auth/2fa/recovery-codes",
            app.post_empty("/auth/2fa/recovery-codes", Some(&pending)).await,
        ),
    ];
    for (route, resp) in &answers {
        assert_eq!(resp.status, 401, "{route}: {resp:?}");
        assert_eq!(resp.error(), "unauthenticated", "{route}: {resp:?}");
    }
    assert_eq!(app.state_snapshot().await, before, "a pending session changed state");
    // The pending session itself is intact and can still finish the login with the same code.
    let verified = app.verify(&pending, "totp", &code).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Cache-Control
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_responses_are_not_cached() {
    let app = TestApp::spawn().await;
    let mut answers = Vec::new();
    answers.push(register(&app, "bob", PASSWORD).await);
    answers.push(app.login("bob", "wrong password!").await);
    let user = app.enroll("alice").await;
    let login = app.login("alice", PASSWORD).await;
    let pending = login.cookie().expect("cookie");
    answers.push(login);
    answers.push(app.verify(&pending, "totp", &app.wrong_code(&user.secret)).await);
    let verified = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    let full = verified.cookie().expect("cookie");
    answers.push(verified);
    answers.push(app.get("/auth/session", Some(&full)).await);
    answers.push(app.get("/auth/session", None).await);
    answers.push(app.get("/auth/2fa", Some(&full)).await);
    answers.push(app.post_empty("/auth/2fa/totp/setup", Some(&full)).await);
    answers.push(app.post_empty("/auth/2fa/recovery-codes", Some(&full)).await);
    answers.push(app.post_empty("/auth/logout", Some(&full)).await);
    for resp in &answers {
        let cache = resp.header("cache-control").unwrap_or_default();
        assert!(cache.contains("no-store"), "Cache-Control of {resp:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What the database holds
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn database_stores_only_the_sha256_of_session_tokens() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let password_login = app.login("alice", PASSWORD).await;
    let pending = password_login.cookie().expect("pending cookie");
    let verified = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    let full = verified.cookie().expect("full cookie");
    let db = app.db().await;
    for (cookie, state) in [(&user.cookie, "full"), (&full, "full")] {
        let digest = Sha256::digest(cookie.as_bytes()).to_vec();
        let found: Option<String> = sqlx::query_scalar("SELECT state FROM sessions WHERE token_digest = $1")
            .bind(&digest)
            .fetch_optional(&db)
            .await
            .unwrap();
        assert_eq!(found.as_deref(), Some(state), "session row for the SHA-256 of {cookie}");
    }
    db.close().await;
    for cookie in [&user.cookie, &pending, &full] {
        assert_nowhere_in_database(&app, "a session cookie", cookie.as_bytes()).await;
        if let Ok(raw) = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cookie) {
            assert_nowhere_in_database(&app, "a session token's bytes", &raw).await;
        }
    }
    // And a new pending session is found by its digest too.
    let pending = app.pending(&user).await;
    let db = app.db().await;
    let state: String = sqlx::query_scalar("SELECT state FROM sessions WHERE token_digest = $1")
        .bind(Sha256::digest(pending.as_bytes()).to_vec())
        .fetch_one(&db)
        .await
        .expect("pending session row");
    assert_eq!(state, "pending");
    db.close().await;
    assert_nowhere_in_database(&app, "a pending session cookie", pending.as_bytes()).await;
}

#[tokio::test]
async fn database_does_not_hold_the_totp_secret_in_clear() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let base32 = data_encoding::BASE32_NOPAD.encode(&user.secret);
    let db = app.db().await;
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT totp_secret FROM users WHERE username = 'alice'")
        .fetch_one(&db)
        .await
        .unwrap();
    let stored = stored.expect("a sealed secret is stored");
    assert!(!contains(&stored, &user.secret), "raw secret in users.totp_secret");
    assert!(
        !contains(&stored, base32.as_bytes()),
        "base32 secret in users.totp_secret"
    );
    assert!(
        !contains(&stored, base32.to_lowercase().as_bytes()),
        "base32 secret in users.totp_secret"
    );
    db.close().await;
    for (what, needle) in [
        ("the raw TOTP secret", user.secret.clone()),
        ("the base32 TOTP secret", base32.clone().into_bytes()),
        ("the hex TOTP secret", hex::encode(&user.secret).into_bytes()),
    ] {
        assert_nowhere_in_database(&app, what, &needle).await;
    }

    // A secret being set up is sealed too.
    app.step_up(&user.cookie, &user.secret).await;
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&user.cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let pending_base32 = setup.body["secret"].as_str().expect("secret").to_owned();
    let pending_raw = data_encoding::BASE32_NOPAD
        .decode(pending_base32.as_bytes())
        .expect("base32");
    assert_nowhere_in_database(&app, "the raw pending secret", &pending_raw).await;
    assert_nowhere_in_database(&app, "the base32 pending secret", pending_base32.as_bytes()).await;
}

#[tokio::test]
async fn database_does_not_hold_recovery_codes_in_clear() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    for code in &user.recovery_codes {
        assert_nowhere_in_database(&app, "a recovery code", code.as_bytes()).await;
        assert_nowhere_in_database(&app, "a recovery code", code.replace('-', "").as_bytes()).await;
    }
}
