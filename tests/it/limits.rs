//! Attempt limits, locks, throttles, re-authentication and session expiry, walked with the fixed clock.

use crate::common::*;
use serde_json::json;

const MINUTE: i64 = 60;

/// A well-formed recovery code that is not one of the user's (base32: A-Z, 2-7).
fn wrong_recovery_code(user: &Enrolled, n: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let c = alphabet[n % alphabet.len()] as char;
    let group = c.to_string().repeat(4);
    let code = format!("{group}-{group}-{group}-{group}");
    assert!(!user.recovery_codes.contains(&code));
    code
}

async fn user_i64(app: &TestApp, username: &str, column: &str) -> Option<i64> {
    let db = app.db().await;
    let value: Option<i64> = sqlx::query_scalar(&format!("SELECT {column} FROM users WHERE username = $1"))
        .bind(username)
        .fetch_one(&db)
        .await
        .expect("user row");
    db.close().await;
    value
}

async fn failures(app: &TestApp, username: &str) -> i64 {
    user_i64(app, username, "second_factor_failures")
        .await
        .expect("failure count")
}

async fn scalar(app: &TestApp, sql: &str, bind: &str) -> Option<i64> {
    let db = app.db().await;
    let value: Option<i64> = sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_optional(&db)
        .await
        .expect("query");
    db.close().await;
    value
}

fn retry_after(resp: &Resp) -> i64 {
    resp.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After in {resp:?}"))
        .parse()
        .expect("Retry-After in seconds")
}

/// Both steps with the current code, without moving the clock: the session is created now.
async fn full_session(app: &TestApp, user: &Enrolled) -> String {
    let pending = app.pending(user).await;
    let verified = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    verified.cookie().expect("full session cookie")
}

/// One pending session spent on 5 wrong TOTP codes; asserts each answer.
async fn five_wrong_codes(app: &TestApp, user: &Enrolled) {
    let pending = app.pending(user).await;
    for _ in 0..5 {
        let wrong = app.verify(&pending, "totp", &app.wrong_code(&user.secret)).await;
        wrong.assert_error(401, "invalid_2fa_code");
    }
}

#[tokio::test]
async fn a_pending_session_lives_five_minutes() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;

    let pending = app.pending(&user).await;
    app.advance(299);
    let ok = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(ok.status, 200, "at 299 s: {ok:?}");

    app.advance(30);
    let pending = app.pending(&user).await;
    app.advance(301);
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "no_pending_login");
    // An expired pending session is not a session either.
    app.get("/auth/session", Some(&pending))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_pending_session_gets_five_tries() {
    let app = TestApp::spawn().await;
    let user = app.enroll("bob").await;
    let pending = app.pending(&user).await;

    for left in (1..=4).rev() {
        let wrong = app.verify(&pending, "totp", &app.wrong_code(&user.secret)).await;
        wrong.assert_error(401, "invalid_2fa_code");
        let message = wrong.body["message"].as_str().unwrap_or_default();
        assert!(message.contains("left"), "{message}");
        assert!(message.contains(&left.to_string()), "{left} tries left: {message}");
    }
    let fifth = app.verify(&pending, "totp", &app.wrong_code(&user.secret)).await;
    fifth.assert_error(401, "invalid_2fa_code");
    let sixth = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    sixth.assert_error(401, "no_pending_login");
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.username = $1 AND s.state = 'pending'",
            "bob"
        )
        .await,
        Some(0)
    );
    // The valid code was not consumed: a new login can use it.
    let pending = app.pending(&user).await;
    let ok = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test]
async fn ten_failures_lock_the_second_factor_for_fifteen_minutes() {
    let app = TestApp::spawn().await;
    let user = app.enroll("carol").await;

    five_wrong_codes(&app, &user).await;
    assert_eq!(failures(&app, "carol").await, 5);
    five_wrong_codes(&app, &user).await;
    assert_eq!(failures(&app, "carol").await, 10);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE username = $1 AND event = 'second_factor' AND outcome = 'lock_engaged'",
            "carol"
        )
        .await,
        Some(1)
    );

    let pending = app.pending(&user).await;
    let locked = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    locked.assert_error(429, "too_many_attempts");
    let wait = retry_after(&locked);
    assert!((880..=900).contains(&wait), "Retry-After {wait}");
    let locked = app.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    locked.assert_error(429, "too_many_attempts");
    assert_eq!(failures(&app, "carol").await, 10, "a locked attempt is not counted");

    app.advance(15 * MINUTE + 1);
    let pending = app.pending(&user).await;
    let ok = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(failures(&app, "carol").await, 0);
    assert_eq!(user_i64(&app, "carol", "second_factor_locked_until").await, None);
}

#[tokio::test]
async fn totp_and_recovery_code_failures_share_the_count() {
    let app = TestApp::spawn().await;
    let user = app.enroll("dave").await;

    let mut n = 0;
    for _ in 0..2 {
        let pending = app.pending(&user).await;
        for _ in 0..5 {
            let wrong = if n % 2 == 0 {
                app.verify(&pending, "totp", &app.wrong_code(&user.secret)).await
            } else {
                app.verify(&pending, "recovery_code", &wrong_recovery_code(&user, n))
                    .await
            };
            wrong.assert_error(401, "invalid_2fa_code");
            n += 1;
        }
    }
    assert_eq!(failures(&app, "dave").await, 10);

    let pending = app.pending(&user).await;
    let locked = app.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    locked.assert_error(429, "too_many_attempts");
    assert!(retry_after(&locked) > 0);
    let locked = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    locked.assert_error(429, "too_many_attempts");
}

#[tokio::test]
async fn a_correct_password_does_not_reset_second_factor_failures() {
    let app = TestApp::spawn().await;
    let user = app.enroll("erin").await;

    let pending = app.pending(&user).await;
    for _ in 0..3 {
        app.verify(&pending, "totp", &app.wrong_code(&user.secret))
            .await
            .assert_error(401, "invalid_2fa_code");
    }
    assert_eq!(failures(&app, "erin").await, 3);

    let pending = app.pending(&user).await;
    assert_eq!(failures(&app, "erin").await, 3);
    app.verify(&pending, "totp", &app.wrong_code(&user.secret))
        .await
        .assert_error(401, "invalid_2fa_code");
    assert_eq!(failures(&app, "erin").await, 4);

    // Only a successful second factor resets it.
    let ok = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(failures(&app, "erin").await, 0);
}

#[tokio::test]
async fn a_hundred_failures_lock_until_an_operator_unlocks() {
    let app = TestApp::spawn().await;
    let user = app.enroll("frank").await;

    for round in 1..=20 {
        five_wrong_codes(&app, &user).await;
        assert_eq!(failures(&app, "frank").await, round * 5);
        if round % 2 == 0 && round < 20 {
            app.advance(15 * MINUTE + 1);
        }
    }
    assert_eq!(failures(&app, "frank").await, 100);

    let pending = app.pending(&user).await;
    let locked = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    locked.assert_error(429, "too_many_attempts");
    assert!(retry_after(&locked) > 0);

    app.advance(24 * 60 * MINUTE);
    let pending = app.pending(&user).await;
    let locked = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    locked.assert_error(429, "too_many_attempts");
    assert!(retry_after(&locked) > 0);
    let locked = app.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    locked.assert_error(429, "too_many_attempts");
    assert_eq!(failures(&app, "frank").await, 100);

    let unlock = app.cli(&["user", "unlock", "frank"], None);
    assert!(
        unlock.status.success(),
        "unlock: {}\n{}",
        String::from_utf8_lossy(&unlock.stdout),
        String::from_utf8_lossy(&unlock.stderr)
    );
    assert_eq!(failures(&app, "frank").await, 0);

    // The locked attempts did not use up the pending session's tries.
    let ok = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE username = $1 AND event = 'user_unlock' AND outcome = 'success'",
            "frank"
        )
        .await,
        Some(1)
    );

    // 23 successful password steps gave their attempts back: the password throttle never got in the way.
    assert_eq!(
        scalar(
            &app,
            "SELECT attempts FROM login_throttle WHERE key = $1",
            "account:frank"
        )
        .await,
        Some(0)
    );
}

#[tokio::test]
async fn password_attempts_are_throttled_per_account() {
    let app = TestApp::spawn().await;
    app.add_user("grace", PASSWORD).await;

    for _ in 0..10 {
        app.login("grace", "not the password at all")
            .await
            .assert_error(401, "invalid_credentials");
    }
    let throttled = app.login("grace", PASSWORD).await;
    throttled.assert_error(429, "too_many_attempts");
    let wait = retry_after(&throttled);
    assert!(wait > 0 && wait <= 15 * MINUTE, "Retry-After {wait}");
    assert!(throttled.cookie().is_none(), "no session while throttled");

    // Another account is not affected.
    app.add_user("heidi", PASSWORD).await;
    let other = app.login("heidi", PASSWORD).await;
    assert_eq!(other.status, 200, "{other:?}");

    app.advance(15 * MINUTE);
    let ok = app.login("grace", PASSWORD).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["status"], "authenticated");
}

#[tokio::test]
async fn password_attempts_are_throttled_per_client_address() {
    let app = TestApp::spawn().await;
    app.add_user("ivan", PASSWORD).await;

    for user in 0..10 {
        let name = format!("nobody{user}");
        for _ in 0..10 {
            app.login(&name, "not the password at all")
                .await
                .assert_error(401, "invalid_credentials");
        }
    }
    let throttled = app.login("somebody-new", "not the password at all").await;
    throttled.assert_error(429, "too_many_attempts");
    assert!(retry_after(&throttled) > 0);
    // Even the right password of a real account, from this address.
    let throttled = app.login("ivan", PASSWORD).await;
    throttled.assert_error(429, "too_many_attempts");

    app.advance(15 * MINUTE);
    let ok = app.login("ivan", PASSWORD).await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// Behind a trusted proxy, the address is the proxy's client: what a client writes to the left of it, or a hop the
/// proxy could not name (`unknown`, an obfuscated identifier, `ip:port`), never gives an attacker a fresh allowance.
#[tokio::test]
async fn spoofed_and_unparseable_forwarded_hops_do_not_escape_the_address_throttle() {
    for client_hop in [
        "unknown",
        "_hidden",
        "203.0.113.9:4711",
        "[2001:db8::9]:443",
        "203.0.113.9",
    ] {
        let app = TestApp::spawn_with(Options {
            settings: vec![("trusted_proxies".into(), "127.0.0.1".into())],
            ..Options::default()
        })
        .await;
        let login = |n: usize, username: String, password: &'static str| {
            // Each try claims another origin to the left of what the proxy wrote.
            let forwarded = format!("198.51.100.{}, {client_hop}", n % 250);
            read(
                app.http()
                    .post(format!("{}/auth/login", app.base))
                    .header("x-forwarded-for", forwarded)
                    .json(&json!({ "username": username, "password": password })),
            )
        };
        for n in 0..100 {
            let answer = login(n, format!("nobody{}", n / 10), "not the password at all")
                .await
                .expect("an answer");
            answer.assert_error(401, "invalid_credentials");
        }
        let throttled = login(100, "somebody-new".into(), "not the password at all")
            .await
            .expect("an answer");
        throttled.assert_error(429, "too_many_attempts");
        // The throttle is the client's, not the proxy's: another client behind it is not refused.
        let other = read(
            app.http()
                .post(format!("{}/auth/login", app.base))
                .header("x-forwarded-for", "192.0.2.77")
                .json(&json!({ "username": "somebody-new", "password": "not the password at all" })),
        )
        .await
        .expect("an answer");
        other.assert_error(401, "invalid_credentials");
    }
}

#[tokio::test]
async fn changing_factors_needs_a_sign_in_under_fifteen_minutes_old() {
    let app = TestApp::spawn().await;
    let user = app.enroll("judy").await;
    let cookie = full_session(&app, &user).await;
    app.advance(30);
    app.step_up(&cookie, &user.secret).await;

    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");

    // Keep the session alive (idle < 30 min) while its sign-in ages, and its step-up (5 minutes) fresh.
    app.advance(10 * MINUTE - 60);
    let alive = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(alive.status, 200, "{alive:?}");
    app.step_up(&cookie, &user.secret).await;
    app.advance(4 * MINUTE + 29);
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "at 14:59: {setup:?}");
    app.advance(1);

    app.post_empty("/auth/2fa/totp/setup", Some(&cookie))
        .await
        .assert_error(401, "reauthentication_required");
    app.post(
        "/auth/2fa/totp/confirm",
        Some(&cookie),
        json!({ "code": app.code(&user.secret, 0) }),
    )
    .await
    .assert_error(401, "reauthentication_required");
    app.delete(
        "/auth/2fa/totp",
        Some(&cookie),
        json!({ "code": app.code(&user.secret, 0) }),
    )
    .await
    .assert_error(401, "reauthentication_required");
    app.post_empty("/auth/2fa/recovery-codes", Some(&cookie))
        .await
        .assert_error(401, "reauthentication_required");

    // The session itself is still valid, and nothing changed.
    let alive = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(alive.status, 200, "{alive:?}");
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["totp"], true);
    assert_eq!(status.body["recovery_codes_left"], 10);

    // A fresh sign-in (and its step-up) fixes it.
    app.advance(30);
    let fresh = full_session(&app, &user).await;
    app.advance(30);
    app.step_up(&fresh, &user.secret).await;
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&fresh)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
}

#[tokio::test]
async fn a_full_session_ends_after_thirty_idle_minutes() {
    let app = TestApp::spawn().await;
    let user = app.enroll("mallory").await;
    let cookie = full_session(&app, &user).await;

    app.advance(29 * MINUTE);
    let alive = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(alive.status, 200, "after 29 idle minutes: {alive:?}");

    app.advance(31 * MINUTE);
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
    app.get("/auth/2fa", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_one_minute_idle_timeout_holds_for_a_session_used_every_ten_seconds() {
    let app = TestApp::spawn_with(Options {
        settings: vec![("session_idle_timeout".into(), "1m".into())],
        ..Options::default()
    })
    .await;
    let user = app.enroll("olivia").await;
    let cookie = full_session(&app, &user).await;
    // Five minutes of a request every 10 s: each is well inside the minute, so none may find the session idle.
    for tick in 1..=30 {
        app.advance(10);
        let alive = app.get("/auth/session", Some(&cookie)).await;
        assert_eq!(alive.status, 200, "request {tick}, {} s in: {alive:?}", tick * 10);
    }
    // Then a minute without a request ends it.
    app.advance(MINUTE);
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_full_session_ends_after_twelve_hours_however_active() {
    let app = TestApp::spawn().await;
    let user = app.enroll("niaj").await;
    let cookie = full_session(&app, &user).await;

    // 35 × 20 min = 11 h 40 min, active all along.
    for _ in 0..35 {
        app.advance(20 * MINUTE);
        let alive = app.get("/auth/session", Some(&cookie)).await;
        assert_eq!(alive.status, 200, "{alive:?}");
    }
    app.advance(20 * MINUTE);
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
}
