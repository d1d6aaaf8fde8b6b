//! Anti-replay of TOTP codes and recovery codes, the accepted drift window, and what a refused replay leaves
//! behind: a notice at the next sign-in and an audit event.

use crate::common::*;
use futures::future::join_all;
use serde_json::{json, Value};

/// The TOTP step the server clock is in.
fn current_step(app: &TestApp) -> i64 {
    app.now().div_euclid(30)
}

async fn user_column(app: &TestApp, username: &str, column: &str) -> Option<i64> {
    let db = app.db().await;
    let value: Option<i64> = sqlx::query_scalar(&format!("SELECT {column} FROM users WHERE username = $1"))
        .bind(username)
        .fetch_one(&db)
        .await
        .expect("user row");
    db.close().await;
    value
}

async fn count(app: &TestApp, sql: &str, username: &str) -> i64 {
    let db = app.db().await;
    let n: i64 = sqlx::query_scalar(sql)
        .bind(username)
        .fetch_one(&db)
        .await
        .expect("count");
    db.close().await;
    n
}

async fn notices(app: &TestApp, cookie: &str) -> Vec<Value> {
    let session = app.get("/auth/session", Some(cookie)).await;
    assert_eq!(session.status, 200, "{session:?}");
    session.body["notices"].as_array().expect("notices array").clone()
}

#[tokio::test]
async fn the_same_totp_code_twice_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let code = app.code(&user.secret, 0);
    let step = current_step(&app);

    let first = app.pending(&user).await;
    let ok = app.verify(&first, "totp", &code).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["status"], "authenticated");
    assert_eq!(user_column(&app, "alice", "totp_last_step").await, Some(step));

    // Same step, new login.
    let second = app.pending(&user).await;
    app.verify(&second, "totp", &code)
        .await
        .assert_error(401, "invalid_2fa_code");

    // Next step: the code is now step t-1, still inside the window, and still refused.
    app.advance(30);
    let third = app.pending(&user).await;
    app.verify(&third, "totp", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
    // The spaced form of the same code is the same code.
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    app.verify(&third, "totp", &spaced)
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(user_column(&app, "alice", "totp_last_step").await, Some(step));

    // The refusals were replays, not a broken session: the current code still works in the same pending session.
    let ok = app.verify(&third, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(user_column(&app, "alice", "totp_last_step").await, Some(step + 1));
}

#[tokio::test]
async fn an_older_step_after_a_newer_one_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.enroll("bob").await;
    let step = current_step(&app);

    let pending = app.pending(&user).await;
    let ahead = app.verify(&pending, "totp", &app.code(&user.secret, 1)).await;
    assert_eq!(ahead.status, 200, "{ahead:?}");
    assert_eq!(user_column(&app, "bob", "totp_last_step").await, Some(step + 1));

    let pending = app.pending(&user).await;
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "invalid_2fa_code");
    app.verify(&pending, "totp", &app.code(&user.secret, -1))
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(user_column(&app, "bob", "totp_last_step").await, Some(step + 1));
}

#[tokio::test]
async fn the_enrolment_code_cannot_be_replayed_at_login() {
    let app = TestApp::spawn().await;
    // Confirmed, signed out and pending again, all in the same step: no clock movement.
    let (_, code, pending) = enrol_and_sign_in_again(&app, "carol").await;
    assert_eq!(
        user_column(&app, "carol", "totp_last_step").await,
        Some(current_step(&app)),
        "confirming records the step"
    );
    app.verify(&pending, "totp", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE username = $1 AND event = 'second_factor' AND outcome = 'replay'",
            "carol"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn twenty_concurrent_verifies_with_one_totp_code_succeed_once() {
    let app = TestApp::spawn().await;
    let user = app.enroll("dave").await;
    // End the enrolment's full session so every full session left afterwards comes from these verifies.
    let logout = app.post_empty("/auth/logout", Some(&user.cookie)).await;
    assert_eq!(logout.status, 204, "{logout:?}");

    let mut pendings = Vec::new();
    for _ in 0..20 {
        pendings.push(app.pending(&user).await);
    }
    let code = app.code(&user.secret, 0);
    let step = current_step(&app);
    let answers = join_all(pendings.iter().map(|pending| app.verify(pending, "totp", &code))).await;

    let successes = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(successes, 1, "{answers:#?}");
    for answer in answers.iter().filter(|a| a.status != 200) {
        match answer.status {
            401 => answer.assert_error(401, "invalid_2fa_code"),
            429 => {
                answer.assert_error(429, "too_many_attempts");
                assert!(answer.header("retry-after").is_some(), "{answer:?}");
            }
            _ => panic!("unexpected answer {answer:?}"),
        }
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1 AND s.state = 'full'",
            "dave"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.username = $1 AND s.second_factor = 'totp'",
            "dave"
        )
        .await,
        1
    );
    assert_eq!(user_column(&app, "dave", "totp_last_step").await, Some(step));

    // The winner's cookie is a working full session.
    let winner = answers.iter().find(|a| a.status == 200).expect("winner");
    let cookie = winner.cookie().expect("full session cookie");
    let session = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(session.status, 200, "{session:?}");
    assert_eq!(session.body["second_factor"], "totp");
}

#[tokio::test]
async fn twenty_concurrent_uses_of_one_recovery_code_succeed_once() {
    let app = TestApp::spawn().await;
    let user = app.enroll("erin").await;
    let logout = app.post_empty("/auth/logout", Some(&user.cookie)).await;
    assert_eq!(logout.status, 204, "{logout:?}");

    let mut pendings = Vec::new();
    for _ in 0..20 {
        pendings.push(app.pending(&user).await);
    }
    let code = user.recovery_codes[0].clone();
    let answers = join_all(
        pendings
            .iter()
            .map(|pending| app.verify(pending, "recovery_code", &code)),
    )
    .await;

    let successes = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(successes, 1, "{answers:#?}");
    for answer in answers.iter().filter(|a| a.status != 200) {
        match answer.status {
            401 => answer.assert_error(401, "invalid_2fa_code"),
            429 => answer.assert_error(429, "too_many_attempts"),
            _ => panic!("unexpected answer {answer:?}"),
        }
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1 AND s.state = 'full'",
            "erin"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM recovery_codes r JOIN users u ON u.id = r.user_id \
             WHERE u.username = $1 AND r.used_at IS NOT NULL",
            "erin"
        )
        .await,
        1
    );

    // The used code stays used.
    let winner = answers.iter().find(|a| a.status == 200).expect("winner");
    let cookie = winner.cookie().expect("full session cookie");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["recovery_codes_left"], 9);
    // The losers count as failures and may have locked the second factor for a while: wait that out first.
    app.advance(15 * 60 + 1);
    let pending = app.pending(&user).await;
    app.verify(&pending, "recovery_code", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
}

#[tokio::test]
async fn codes_one_step_either_side_are_accepted() {
    let app = TestApp::spawn().await;
    let user = app.enroll("frank").await;
    // Move well past the enrolment step so t-1 is later than the last accepted step.
    app.advance(60);
    let step = current_step(&app);

    let pending = app.pending(&user).await;
    let behind = app.verify(&pending, "totp", &app.code(&user.secret, -1)).await;
    assert_eq!(behind.status, 200, "t-1: {behind:?}");
    assert_eq!(user_column(&app, "frank", "totp_last_step").await, Some(step - 1));

    let pending = app.pending(&user).await;
    let ahead = app.verify(&pending, "totp", &app.code(&user.secret, 1)).await;
    assert_eq!(ahead.status, 200, "t+1: {ahead:?}");
    assert_eq!(user_column(&app, "frank", "totp_last_step").await, Some(step + 1));
}

#[tokio::test]
async fn codes_two_steps_away_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.enroll("grace").await;
    // The enrolment used step t0; now t = t0 + 3, so t-2 = t0 + 1 is later than anything accepted.
    app.advance(60);
    let last = user_column(&app, "grace", "totp_last_step")
        .await
        .expect("enrolment step");
    let step = current_step(&app);
    assert!(step - 2 > last);

    let pending = app.pending(&user).await;
    let too_old = app.verify(&pending, "totp", &app.code(&user.secret, -2)).await;
    too_old.assert_error(401, "invalid_2fa_code");
    let too_new = app.verify(&pending, "totp", &app.code(&user.secret, 2)).await;
    too_new.assert_error(401, "invalid_2fa_code");
    assert_eq!(user_column(&app, "grace", "totp_last_step").await, Some(last));
    // Outside the window is a wrong code, not a replay.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE username = $1 AND event = 'second_factor' AND outcome = 'invalid_code'",
            "grace"
        )
        .await,
        2
    );

    // The session itself was fine: the current code works.
    let ok = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test]
async fn a_refused_replay_is_noticed_at_the_next_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.enroll("heidi").await;
    let used = app.code(&user.secret, 0);
    let first = app.sign_in(&user).await;
    assert!(notices(&app, &first).await.is_empty());

    // Someone replays the code just used (now step t-1) and also tries a wrong one.
    let pending = app.pending(&user).await;
    app.verify(&pending, "totp", &used)
        .await
        .assert_error(401, "invalid_2fa_code");
    app.verify(&pending, "totp", &app.wrong_code(&user.secret))
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE username = $1 AND event = 'second_factor' \
             AND outcome = 'replay' AND method = 'totp'",
            "heidi"
        )
        .await,
        1
    );

    // The owner signs in.
    let owner = app.sign_in(&user).await;
    let found = notices(&app, &owner).await;
    let replay = found
        .iter()
        .find(|n| n["kind"] == "totp_replay_refused")
        .unwrap_or_else(|| panic!("no replay notice in {found:?}"));
    assert!(replay["count"].as_i64().is_some_and(|n| n >= 1), "{replay:?}");
    assert!(replay["message"].as_str().is_some_and(|m| !m.is_empty()), "{replay:?}");
    let failures = found
        .iter()
        .find(|n| n["kind"] == "second_factor_failures")
        .unwrap_or_else(|| panic!("no failure notice in {found:?}"));
    assert!(failures["count"].as_i64().is_some_and(|n| n >= 2), "{failures:?}");
    assert!(failures["last_at"].is_string(), "{failures:?}");

    // Shown once: the sign-in after that has nothing to report.
    let again = app.sign_in(&user).await;
    assert!(notices(&app, &again).await.is_empty());
}

/// A right password's session is pending or full according to the account's factors as they are when the session is
/// created, not when the password check began: logins still hashing while the owner turns on an authenticator must
/// not come out as live password-only sessions (an attacker with the password could keep such logins in flight, a
/// right password refunding its throttle attempt). A login that finished before the enrolment committed got a full
/// session, which the enrolment then ended with the account's other sessions; any other got a pending one.
#[tokio::test]
async fn logins_in_flight_during_an_enrolment_are_not_left_password_only() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let owner = app.login("alice", PASSWORD).await.cookie().expect("owner's session");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&owner)).await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
        .expect("base32");
    // Eight logins queue for the hashing threads (one per core), so most are still hashing when the enrolment,
    // which hashes nothing, commits.
    let logins = (0..8)
        .map(|_| {
            let request = app
                .http
                .post(app.url("/auth/login"))
                .json(&json!({ "username": "alice", "password": PASSWORD }));
            tokio::spawn(read(request))
        })
        .collect::<Vec<_>>();
    let confirm = app
        .post(
            "/auth/2fa/totp/confirm",
            Some(&owner),
            json!({ "code": app.code(&secret, 0) }),
        )
        .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let mut pending = 0;
    for login in logins {
        let answer = login.await.expect("join").expect("answer");
        assert_eq!(answer.status, 200, "{answer:?}");
        let cookie = answer.cookie().expect("a session cookie");
        match answer.body["status"].as_str() {
            Some("2fa_required") => pending += 1,
            Some("authenticated") => {
                let session = app.get("/auth/session", Some(&cookie)).await;
                session.assert_error(401, "unauthenticated");
            }
            other => panic!("login answered {other:?}"),
        }
    }
    assert!(
        pending > 0,
        "no login was still hashing when the enrolment committed: the test proved nothing"
    );
    // The owner's own session, which enrolled, stays.
    assert_eq!(app.get("/auth/session", Some(&owner)).await.status, 200);
}

/// A signed-in `username` (password only) sets up an authenticator and confirms it with the current code; then signs
/// out and back in, pending. Returns the secret, the code that confirmed, and the pending session.
async fn enrol_and_sign_in_again(app: &TestApp, username: &str) -> (Vec<u8>, String, String) {
    app.add_user(username, PASSWORD).await;
    let cookie = app.login(username, PASSWORD).await.cookie().expect("session cookie");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
        .expect("base32 secret");
    let code = app.code(&secret, 0);
    let confirm = app
        .post("/auth/2fa/totp/confirm", Some(&cookie), json!({ "code": code }))
        .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_eq!(app.post_empty("/auth/logout", Some(&cookie)).await.status, 204);
    let login = app.login(username, PASSWORD).await;
    assert_eq!(login.body["status"], "2fa_required", "{login:?}");
    (secret, code, login.cookie().expect("pending cookie"))
}

/// The tries a pending session has used, and the account's consecutive failures.
async fn counted(app: &TestApp, username: &str) -> (i64, i64) {
    let failures = user_column(app, username, "second_factor_failures")
        .await
        .unwrap_or_default();
    let tries = count(
        app,
        "SELECT COALESCE(MAX(s.failed_attempts), 0) FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE u.username = $1 AND s.state = 'pending'",
        username,
    )
    .await;
    (tries, failures)
}

#[tokio::test]
async fn the_enrolment_code_typed_again_at_once_is_told_apart_and_not_held_against_anyone() {
    let app = TestApp::spawn().await;
    let (secret, code, pending) = enrol_and_sign_in_again(&app, "ivy").await;
    // The person types the code their app still shows: the one that just confirmed the app.
    let refused = app.verify(&pending, "totp", &code).await;
    refused.assert_error(401, "invalid_2fa_code");
    let message = refused.body["message"].as_str().unwrap();
    assert!(
        message.contains("already used") && message.contains("next one"),
        "{message}"
    );
    assert!(!message.contains("tries left"), "{message}");
    assert_eq!(counted(&app, "ivy").await, (0, 0), "no try and no failure counted");
    // Still refused as often as it is typed, and still never counted.
    app.verify(&pending, "totp", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(counted(&app, "ivy").await, (0, 0));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE username = $1 AND event = 'second_factor' AND outcome = 'replay'",
            "ivy"
        )
        .await,
        2
    );
    // The next code signs in, and nothing is reported to the person as someone else's doing.
    app.advance(30);
    let verified = app.verify(&pending, "totp", &app.code(&secret, 0)).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let full = verified.cookie().expect("full session cookie");
    assert_eq!(notices(&app, &full).await, Vec::<Value>::new());
}

#[tokio::test]
async fn the_enrolment_code_from_another_browser_is_reported() {
    let app = TestApp::spawn().await;
    let (secret, code, pending) = enrol_and_sign_in_again(&app, "jack").await;
    let elsewhere = app
        .send(
            app.request(reqwest::Method::POST, "/auth/verify-2fa", Some(&pending))
                .header(
                    reqwest::header::USER_AGENT,
                    "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
                )
                .json(&json!({ "method": "totp", "code": code })),
        )
        .await;
    elsewhere.assert_error(401, "invalid_2fa_code");
    assert_eq!(counted(&app, "jack").await, (0, 0));
    app.advance(30);
    let verified = app.verify(&pending, "totp", &app.code(&secret, 0)).await;
    let found = notices(&app, &verified.cookie().expect("full session cookie")).await;
    let replay = found
        .iter()
        .find(|n| n["kind"] == "totp_replay_refused")
        .unwrap_or_else(|| panic!("no replay notice in {found:?}"));
    assert_eq!(replay["count"], 1, "{replay:?}");
}

#[tokio::test]
async fn replays_count_toward_no_limit_and_never_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.enroll("kim").await;
    let used = app.code(&user.secret, 0);
    app.sign_in(&user).await;
    let pending = app.pending(&user).await;
    // More replays than a pending session has tries and than the account's lock allows.
    for _ in 0..12 {
        let refused = app.verify(&pending, "totp", &used).await;
        refused.assert_error(401, "invalid_2fa_code");
        assert!(
            refused.body["message"].as_str().unwrap().contains("already used"),
            "{refused:?}"
        );
    }
    assert_eq!(counted(&app, "kim").await, (0, 0));
    let verified = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let found = notices(&app, &verified.cookie().expect("full session cookie")).await;
    let replay = found
        .iter()
        .find(|n| n["kind"] == "totp_replay_refused")
        .unwrap_or_else(|| panic!("no replay notice in {found:?}"));
    assert_eq!(replay["count"], 12, "{replay:?}");
}
