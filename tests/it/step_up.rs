//! Step-up for factor changes: once an account has a second factor, every change of its factors needs a current
//! code from one of them, proved on this session within 5 minutes, besides the recent sign-in. Before this, an
//! authenticator could be replaced (and the owner's other sessions ended) with the password alone.

use serde_json::{json, Value};

use crate::common::*;

async fn step_up(app: &TestApp, cookie: &str, method: &str, code: &str) -> Resp {
    app.post("/auth/step-up", Some(cookie), json!({ "method": method, "code": code }))
        .await
}

async fn change(app: &TestApp, cookie: &str, path: &str, body: Option<Value>) -> Resp {
    match body {
        Some(body) => app.post(path, Some(cookie), body).await,
        None => app.post_empty(path, Some(cookie)).await,
    }
}

/// Every change of factors a session can ask for (removal carries its own code; see `totp_delete_*`).
fn every_change(app: &TestApp, user: &Enrolled) -> Vec<(&'static str, Option<Value>)> {
    vec![
        ("/auth/2fa/totp/setup", None),
        (
            "/auth/2fa/totp/confirm",
            Some(json!({ "code": app.code(&user.secret, 0) })),
        ),
        ("/auth/2fa/sms/setup", Some(json!({ "phone": "+15551234567" }))),
        ("/auth/2fa/sms/confirm", Some(json!({ "code": "123456" }))),
        ("/auth/2fa/recovery-codes", None),
    ]
}

async fn failures(app: &TestApp, username: &str) -> i64 {
    let db = app.db().await;
    let failures: i64 = sqlx::query_scalar("SELECT second_factor_failures FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(&db)
        .await
        .expect("user row");
    db.close().await;
    failures
}

#[tokio::test]
async fn every_change_of_factors_needs_a_step_up_once_the_account_has_one() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let before = app.state_snapshot().await;
    for (path, body) in every_change(&app, &user) {
        change(&app, &user.cookie, path, body)
            .await
            .assert_error(401, "step_up_required");
    }
    assert_eq!(app.state_snapshot().await, before, "a refused change changes nothing");

    let stepped = step_up(&app, &user.cookie, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(stepped.status, 204, "{stepped:?}");
    assert_eq!(stepped.text, "");
    let regenerated = app.post_empty("/auth/2fa/recovery-codes", Some(&user.cookie)).await;
    assert_eq!(regenerated.status, 200, "{regenerated:?}");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&user.cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let replacement = data_encoding::BASE32_NOPAD
        .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
        .expect("base32");
    let confirmed = app
        .post(
            "/auth/2fa/totp/confirm",
            Some(&user.cookie),
            json!({ "code": app.code(&replacement, 0) }),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
}

#[tokio::test]
async fn the_first_factor_needs_only_the_recent_sign_in() {
    let app = TestApp::spawn().await;
    app.add_user("bob", PASSWORD).await;
    let cookie = app.login("bob", PASSWORD).await.cookie().expect("session");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    // With nothing to prove, there is nothing to step up with.
    step_up(&app, &cookie, "totp", "123456")
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn the_sign_ins_own_code_is_no_step_up_and_a_step_up_opens_only_its_session() {
    let app = TestApp::spawn().await;
    let user = app.enroll("carol").await;
    let pending = app.pending(&user).await;
    let code = app.code(&user.secret, 0);
    let signed_in = app.verify(&pending, "totp", &code).await;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    let cookie = signed_in.cookie().expect("full session");

    app.post_empty("/auth/2fa/totp/setup", Some(&cookie))
        .await
        .assert_error(401, "step_up_required");
    // The code that signed in is used: typed again it is a replay, and counts as a failure.
    step_up(&app, &cookie, "totp", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(failures(&app, "carol").await, 1);

    app.advance(30);
    let other = app.sign_in(&user).await;
    app.step_up(&other, &user.secret).await;
    assert_eq!(failures(&app, "carol").await, 0, "a right code resets the count");
    assert_eq!(
        app.post_empty("/auth/2fa/recovery-codes", Some(&other)).await.status,
        200
    );
    app.post_empty("/auth/2fa/recovery-codes", Some(&cookie))
        .await
        .assert_error(401, "step_up_required");
}

#[tokio::test]
async fn a_step_up_lasts_five_minutes() {
    let app = TestApp::spawn().await;
    let user = app.enroll("dave").await;
    app.step_up(&user.cookie, &user.secret).await;
    app.advance(5 * 60 - 31);
    let regenerated = app.post_empty("/auth/2fa/recovery-codes", Some(&user.cookie)).await;
    assert_eq!(regenerated.status, 200, "at 4:59: {regenerated:?}");
    app.advance(1);
    app.post_empty("/auth/2fa/recovery-codes", Some(&user.cookie))
        .await
        .assert_error(401, "step_up_required");
}

#[tokio::test]
async fn a_stale_sign_in_is_told_before_the_step_up() {
    let app = TestApp::spawn().await;
    let user = app.enroll("erin").await;
    app.advance(14 * 60);
    assert_eq!(app.get("/auth/session", Some(&user.cookie)).await.status, 200);
    app.advance(60);
    app.post_empty("/auth/2fa/totp/setup", Some(&user.cookie))
        .await
        .assert_error(401, "reauthentication_required");
    // A step-up does not stand in for a recent sign-in.
    let stepped = step_up(&app, &user.cookie, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(stepped.status, 204, "{stepped:?}");
    app.post_empty("/auth/2fa/totp/setup", Some(&user.cookie))
        .await
        .assert_error(401, "reauthentication_required");
}

#[tokio::test]
async fn wrong_step_ups_count_toward_the_second_factor_lock() {
    let app = TestApp::spawn().await;
    let user = app.enroll("frank").await;
    for tries in 1..=10 {
        step_up(&app, &user.cookie, "totp", &app.wrong_code(&user.secret))
            .await
            .assert_error(401, "invalid_2fa_code");
        assert_eq!(failures(&app, "frank").await, tries);
    }
    let locked = step_up(&app, &user.cookie, "totp", &app.code(&user.secret, 0)).await;
    locked.assert_error(429, "too_many_attempts");
    assert!(locked.header("retry-after").is_some(), "{locked:?}");
    // The lock is the account's: the sign-in is locked as well.
    let pending = app.pending(&user).await;
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(429, "too_many_attempts");
    app.post_empty("/auth/2fa/totp/setup", Some(&user.cookie))
        .await
        .assert_error(401, "step_up_required");
}

#[tokio::test]
async fn a_recovery_code_steps_up_once() {
    let app = TestApp::spawn().await;
    let user = app.enroll("grace").await;
    let code = &user.recovery_codes[0];
    let stepped = step_up(&app, &user.cookie, "recovery_code", code).await;
    assert_eq!(stepped.status, 204, "{stepped:?}");
    let status = app.get("/auth/2fa", Some(&user.cookie)).await;
    assert_eq!(status.body["recovery_codes_left"], 9, "{status:?}");
    step_up(&app, &user.cookie, "recovery_code", code)
        .await
        .assert_error(401, "invalid_2fa_code");
}

#[tokio::test]
async fn only_a_signed_in_session_steps_up_and_bad_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.enroll("heidi").await;
    step_up(&app, "twofold_session=nonsense", "totp", "123456")
        .await
        .assert_error(401, "unauthenticated");
    let no_cookie = app
        .post("/auth/step-up", None, json!({ "method": "totp", "code": "123456" }))
        .await;
    no_cookie.assert_error(401, "unauthenticated");
    let pending = app.pending(&user).await;
    step_up(&app, &pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "unauthenticated");

    for body in [
        json!({}),
        json!({ "method": "totp" }),
        json!({ "method": "carrier-pigeon", "code": "123456" }),
        json!({ "method": "totp", "code": "12345" }),
        json!({ "method": "totp", "code": 123456 }),
        json!({ "method": "sms", "code": "123456" }),
    ] {
        app.post("/auth/step-up", Some(&user.cookie), body)
            .await
            .assert_error(400, "bad_request");
    }
    assert_eq!(failures(&app, "heidi").await, 0, "malformed proofs are not attempts");
}
