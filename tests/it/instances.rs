//! Two `twofold serve` processes on one PostgreSQL schema behave like one server: a sign-in started on one finishes
//! on the other, a logout anywhere ends the session everywhere, one TOTP code is accepted once however requests race
//! across instances, a pending session's tries, the account's second-factor lock, the password throttle, SMS codes
//! and SMS send limits are counted across instances. Also the start-up messages for a database that cannot be reached
//! or is newer than the binary.
//!
//! All but the unreachable-database test need PostgreSQL: they are ignored unless the PostgreSQL half runs them (with
//! `TWOFOLD_TEST_DATABASE_URL` set, as `.ci/run` does).

use std::path::Path;

use crate::common::instances::*;
use crate::common::*;
use futures::future::join_all;
use serde_json::json;

/// The test database's URL; these tests are ignored unless the PostgreSQL half runs them.
fn postgres() -> String {
    postgres_test_url().expect("this test needs PostgreSQL: set TWOFOLD_TEST_DATABASE_URL=postgres://...")
}

/// Instances A and B, started together on a fresh schema (so they race to migrate it) with one shared key file.
async fn two_instances(schema: &PgSchema, dir: &Path) -> (Instance, Instance) {
    two_instances_with(schema, dir, &[]).await
}

async fn two_instances_with(schema: &PgSchema, dir: &Path, env: &[(&str, &str)]) -> (Instance, Instance) {
    let key = dir.join("twofold.key");
    let mut a = Instance::spawn("A", &schema.url, &key, dir, env);
    let mut b = Instance::spawn("B", &schema.url, &key, dir, env);
    a.ready().await;
    b.ready().await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn a_sign_in_started_on_one_instance_finishes_on_the_other() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let (a, b) = two_instances(&schema, dir.path()).await;
    let user = a.enroll("alice").await;

    let pending = a.pending("alice").await;
    let verified = b
        .verify(&pending, "totp", &code_at_step(&user.secret, user.step + 1))
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let full = verified.cookie().expect("full session cookie");
    for instance in [&a, &b] {
        let session = instance.get("/auth/session", Some(&full)).await;
        assert_eq!(session.status, 200, "session on {}: {session:?}", instance.name);
        assert_eq!(session.body["username"], "alice");
        assert_eq!(session.body["second_factor"], "totp");
    }
    // The pending token died on both.
    let again = a
        .verify(&pending, "totp", &code_at_step(&user.secret, user.step + 2))
        .await;
    again.assert_error(401, "no_pending_login");

    // A recovery code used on B is used on A too.
    let pending = b.pending("alice").await;
    let used = b.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    assert_eq!(used.status, 200, "{used:?}");
    let pending = a.pending("alice").await;
    let reused = a.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    reused.assert_error(401, "invalid_2fa_code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn a_logout_on_one_instance_ends_the_session_on_all() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    // Without the session cache: a logout anywhere ends the session everywhere at once. (With it, instances that
    // checked the session in the last `session_cache` may accept it that much longer: tests/cli.rs.)
    let (a, b) = two_instances_with(&schema, dir.path(), &[("TWOFOLD_SESSION_CACHE", "0s")]).await;
    a.register("bob").await;
    let login = a.login("bob", PASSWORD).await;
    assert_eq!(login.body["status"], "authenticated", "{login:?}");
    let cookie = login.cookie().expect("session cookie");
    assert_eq!(a.get("/auth/session", Some(&cookie)).await.status, 200);
    assert_eq!(b.get("/auth/session", Some(&cookie)).await.status, 200);

    let logout = b.post_empty("/auth/logout", Some(&cookie)).await;
    assert_eq!(logout.status, 204, "{logout:?}");
    a.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
    b.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn one_code_racing_on_two_instances_is_accepted_once() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let (a, b) = two_instances(&schema, dir.path()).await;
    let user = a.enroll("carol").await;
    let instances = [&a, &b];

    // 20 sign-ins waiting for a second factor, half opened on each instance ...
    let mut pending = Vec::new();
    for i in 0..20 {
        pending.push(instances[i % 2].pending("carol").await);
    }
    // ... then one code for all of them at once, each sent to the other instance than the one that opened it.
    let code = code_at_step(&user.secret, user.step + 1);
    let answers = join_all(
        pending
            .iter()
            .enumerate()
            .map(|(i, cookie)| instances[(i + 1) % 2].verify(cookie, "totp", &code)),
    )
    .await;
    let accepted = answers.iter().filter(|answer| answer.status == 200).count();
    assert_eq!(accepted, 1, "exactly one success: {answers:#?}");
    for answer in answers.iter().filter(|answer| answer.status != 200) {
        assert!(
            matches!(
                (answer.status, answer.error()),
                (401, "invalid_2fa_code") | (429, "too_many_attempts")
            ),
            "a refused racer: {answer:?}"
        );
    }
    let db = any_pool(&schema.url).await;
    let last_step: Option<i64> = sqlx::query_scalar("SELECT totp_last_step FROM users WHERE username = $1")
        .bind("carol")
        .fetch_one(&db)
        .await
        .expect("user row");
    assert_eq!(last_step, Some(user.step + 1));
    let full_sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE state = 'full'")
        .fetch_one(&db)
        .await
        .expect("count");
    // The one from enrolling, and the one the winner opened.
    assert_eq!(full_sessions, 2);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn five_wrong_codes_split_between_instances_end_the_pending_session() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let (a, b) = two_instances(&schema, dir.path()).await;
    let user = a.enroll("dave").await;
    let window: Vec<String> = (user.step - 1..=user.step + 3)
        .map(|step| code_at_step(&user.secret, step))
        .collect();
    let wrong = (0..10)
        .map(|n| n.to_string().repeat(6))
        .find(|candidate| !window.contains(candidate))
        .expect("a wrong code");

    let pending = a.pending("dave").await;
    for (i, instance) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let answer = instance.verify(&pending, "totp", &wrong).await;
        answer.assert_error(401, "invalid_2fa_code");
        let message = answer.body["message"].as_str().unwrap_or_default();
        let left = 4 - i;
        match left {
            0 => assert!(message.contains("used all its tries"), "{message}"),
            1 => assert!(message.contains("1 try left"), "{message}"),
            _ => assert!(message.contains(&format!("{left} tries left")), "{message}"),
        }
    }
    let right = b
        .verify(&pending, "totp", &code_at_step(&user.secret, user.step + 1))
        .await;
    right.assert_error(401, "no_pending_login");
    let db = any_pool(&schema.url).await;
    let failures: i64 = sqlx::query_scalar("SELECT second_factor_failures FROM users WHERE username = $1")
        .bind("dave")
        .fetch_one(&db)
        .await
        .expect("user row");
    // The refused right code was not even counted: there was no sign-in left to count it against.
    assert_eq!(failures, 5);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn the_password_throttle_and_the_account_lock_hold_across_instances() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let (a, b) = two_instances(&schema, dir.path()).await;
    let user = a.enroll("frank").await;
    let window: Vec<String> = (user.step - 1..=user.step + 3)
        .map(|step| code_at_step(&user.secret, step))
        .collect();
    let wrong = (0..10)
        .map(|n| n.to_string().repeat(6))
        .find(|candidate| !window.contains(candidate))
        .expect("a wrong code");

    // 10 wrong codes over two sign-ins and both instances lock the second factor, for both.
    for instance in [&a, &b] {
        let pending = instance.pending("frank").await;
        for other in [&a, &b, &a, &b, &a] {
            other
                .verify(&pending, "totp", &wrong)
                .await
                .assert_error(401, "invalid_2fa_code");
        }
    }
    let pending = b.pending("frank").await;
    let locked = a
        .verify(&pending, "totp", &code_at_step(&user.secret, user.step + 1))
        .await;
    locked.assert_error(429, "too_many_attempts");

    // 10 wrong passwords, half on each instance, use up the account's window on both.
    a.register("grace").await;
    let wrong_password = json!({ "username": "grace", "password": "not the password at all" });
    for instance in [&a, &b].into_iter().cycle().take(10) {
        instance
            .post("/auth/login", None, wrong_password.clone())
            .await
            .assert_error(401, "invalid_credentials");
    }
    for instance in [&a, &b] {
        let throttled = instance.login("grace", PASSWORD).await;
        throttled.assert_error(429, "too_many_attempts");
        assert!(throttled.header("retry-after").is_some(), "{throttled:?}");
    }
}

/// The last code the console gateway "sent", from the instance's log.
fn last_sms_code(log: &str) -> Option<String> {
    log.match_indices(" is your ")
        .filter_map(|(at, _)| log.get(at.checked_sub(6)?..at))
        .filter(|code| code.chars().all(|c| c.is_ascii_digit()))
        .last()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn sms_codes_and_send_limits_are_shared_between_instances() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let (a, b) = two_instances_with(&schema, dir.path(), &[("TWOFOLD_SMS__GATEWAY", "console")]).await;
    a.register("erin").await;
    let cookie = a.login("erin", PASSWORD).await.cookie().expect("session cookie");
    let phone = json!({ "phone": "+15551234567" });

    let setup = a.post("/auth/2fa/sms/setup", Some(&cookie), phone.clone()).await;
    assert_eq!(setup.status, 202, "{setup:?}");
    let code = last_sms_code(&a.log()).expect("the console gateway logged the code");
    // One send per 30 s per user, whichever instance is asked.
    let again = b.post("/auth/2fa/sms/setup", Some(&cookie), phone).await;
    again.assert_error(429, "too_many_attempts");
    assert!(again.header("retry-after").is_some(), "{again:?}");
    // The code sent through A confirms the phone on B.
    let confirm = b
        .post("/auth/2fa/sms/confirm", Some(&cookie), json!({ "code": code }))
        .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert_eq!(confirm.body["recovery_codes"].as_array().map(Vec::len), Some(10));
    let login = b.login("erin", PASSWORD).await;
    assert_eq!(login.body["methods"], json!(["sms", "recovery_code"]), "{login:?}");
    let pending = login.cookie().expect("pending cookie");
    a.post_empty("/auth/2fa/sms/send", Some(&pending))
        .await
        .assert_error(429, "too_many_attempts");
    // And a code used once is gone on both: the enrolment code is no login code.
    b.verify(&pending, "sms", &code)
        .await
        .assert_error(401, "invalid_2fa_code");
}

/// Needs no PostgreSQL server: nothing listens where the URL points.
#[tokio::test]
async fn an_unreachable_database_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("postgres://twofold:hunter2@127.0.0.1:{}/twofold", free_port());
    let key = dir.path().join("twofold.key");
    let mut instance = Instance::spawn("A", &url, &key, dir.path(), &[("TWOFOLD_DATABASE_TIMEOUT", "1s")]);
    let (code, log) = instance.exit().await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("cannot reach the database"), "{log}");
    assert!(log.contains("Check that PostgreSQL is running"), "{log}");
    assert!(!log.contains("hunter2"), "the password leaked: {log}");
}

#[tokio::test]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn a_schema_newer_than_the_binary_stops_the_start_with_a_clear_message() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = dir.path().join("twofold.key");
    let mut first = Instance::spawn("A", &schema.url, &key, dir.path(), &[]);
    first.ready().await;
    first.kill();
    // A later Twofold applied a migration this binary does not have.
    let db = any_pool(&schema.url).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         SELECT 9999, 'from the future', TRUE, checksum, 0 FROM _sqlx_migrations WHERE version = 1",
    )
    .execute(&db)
    .await
    .expect("a future migration recorded");
    db.close().await;

    let mut second = Instance::spawn("B", &schema.url, &key, dir.path(), &[]);
    let (code, log) = second.exit().await;
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("schema version 9999, newer than this Twofold binary"),
        "{log}"
    );
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("migrations")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse::<i64>().ok()
        })
        .max()
        .expect("a numbered migration");
    assert!(log.contains(&format!("(up to {known})")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn a_user_disabled_while_signing_in_on_two_instances_keeps_no_session() {
    let url = postgres();
    let schema = PgSchema::create(&url).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let (a, b) = two_instances_with(&schema, dir.path(), &[("TWOFOLD_SESSION_CACHE", "0s")]).await;
    a.register("dora").await;
    let instances = [&a, &b];
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_twofold"));
    command
        .args(["user", "disable", "dora"])
        .env("TWOFOLD_DATABASE_URL", &schema.url)
        .env("TWOFOLD_SECRET_KEY_FILE", dir.path().join("twofold.key"));
    let disable = tokio::task::spawn_blocking(move || command.output());
    // Sign-ins on both instances while the operator's command runs: each either finished before the account was
    // disabled (and its session ended with it) or found it disabled. (A disabled account's right password counts as
    // a wrong one, so fewer than the account's 10 tries.)
    let logins = join_all((0..6).map(|i| instances[i % 2].login("dora", PASSWORD)));
    let (disabled, logins) = tokio::join!(disable, logins);
    let disabled = disabled.expect("join").expect("twofold user disable");
    assert!(disabled.status.success(), "{disabled:?}");
    for login in &logins {
        match login.status {
            200 => {
                let cookie = login.cookie().expect("session cookie");
                for instance in instances {
                    instance
                        .get("/auth/session", Some(&cookie))
                        .await
                        .assert_error(401, "unauthenticated");
                }
            }
            _ => login.assert_error(401, "invalid_credentials"),
        }
    }
    a.login("dora", PASSWORD).await.assert_error(401, "invalid_credentials");
    b.login("dora", PASSWORD).await.assert_error(401, "invalid_credentials");
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&any_pool(&schema.url).await)
        .await
        .expect("count");
    assert_eq!(sessions, 0);
}
