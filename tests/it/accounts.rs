//! What a person and an operator manage about an account: changing the password (`POST /auth/password`), and the
//! operator's `user passwd`, `user disable` and `user enable`. Each with its refusals, its audit events and the
//! sessions it ends.

use serde_json::json;

use crate::common::{assert_failure_mentioning, assert_success, stdout, Client, Enrolled, TestApp, PASSWORD};

const NEW_PASSWORD: &str = "a brand new pass phrase";

/// The outcomes of `event`'s audit rows, oldest first.
async fn outcomes(app: &TestApp, event: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT outcome FROM audit_events WHERE event = $1 ORDER BY seq")
        .bind(event)
        .fetch_all(&app.db().await)
        .await
        .expect("audit rows")
}

/// Asserts that `full` and `pending` (a sign-in waiting for its second step) of `user` have ended: the session is
/// gone, and the second step cannot finish even with the right code.
async fn assert_ended(app: &TestApp, user: &Enrolled, full: &str, pending: &str) {
    app.get("/auth/session", Some(full))
        .await
        .assert_error(401, "unauthenticated");
    app.verify(pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "no_pending_login");
}

async fn change(app: &TestApp, cookie: Option<&str>, current: &str, new: &str) -> crate::common::Resp {
    let body = json!({ "current_password": current, "new_password": new });
    app.post("/auth/password", cookie, body).await
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_the_old_password() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let here = app.sign_in(&user).await;
    let elsewhere = app.sign_in(&user).await;
    let mid_second_step = app.pending(&user).await;

    let changed = change(&app, Some(&here), PASSWORD, NEW_PASSWORD).await;
    assert_eq!(changed.status, 204, "{changed:?}");

    assert_eq!(app.get("/auth/session", Some(&here)).await.status, 200);
    assert_ended(&app, &user, &elsewhere, &mid_second_step).await;
    app.get("/auth/session", Some(&user.cookie))
        .await
        .assert_error(401, "unauthenticated");
    app.login("alice", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    // The second factor stays.
    let login = app.login("alice", NEW_PASSWORD).await;
    assert_eq!(login.body["status"], "2fa_required", "{login:?}");
    assert_eq!(outcomes(&app, "password_change").await, ["success"]);
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing_and_counts_toward_the_throttle() {
    let app = TestApp::spawn().await;
    let user = app.enroll("bob").await;
    let cookie = app.sign_in(&user).await;
    let before = app.state_snapshot().await;
    let refused = change(&app, Some(&cookie), "not the password", NEW_PASSWORD).await;
    refused.assert_error(401, "invalid_credentials");
    assert!(
        refused.body["message"].as_str().unwrap().contains("current password"),
        "{refused:?}"
    );
    let after = app.state_snapshot().await;
    // Only the throttle moved: the attempt is counted against the account, as a wrong sign-in is.
    let without_throttle = |snapshot: &str| {
        snapshot
            .lines()
            .filter(|line| !line.starts_with("login_throttle"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_throttle(&before), without_throttle(&after));
    assert_ne!(before, after, "the wrong password was counted");
    assert_eq!(outcomes(&app, "password_change").await, ["invalid_credentials"]);
    // Nine more wrong passwords use up the account's ten; the next try is refused before it is checked.
    for _ in 0..9 {
        change(&app, Some(&cookie), "not the password", NEW_PASSWORD)
            .await
            .assert_error(401, "invalid_credentials");
    }
    let throttled = change(&app, Some(&cookie), PASSWORD, NEW_PASSWORD).await;
    throttled.assert_error(429, "too_many_attempts");
    assert!(throttled.header("retry-after").is_some(), "{throttled:?}");
    app.login("bob", PASSWORD).await.assert_error(429, "too_many_attempts");
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
}

#[tokio::test]
async fn a_right_current_password_gives_its_attempt_back() {
    let app = TestApp::spawn().await;
    let user = app.enroll("carol").await;
    let cookie = app.sign_in(&user).await;
    let attempts = || async {
        let attempts: i64 = sqlx::query_scalar("SELECT attempts FROM login_throttle WHERE key = 'account:carol'")
            .fetch_one(&app.db().await)
            .await
            .expect("the account's throttle row");
        attempts
    };
    let before = attempts().await;
    assert_eq!(change(&app, Some(&cookie), PASSWORD, NEW_PASSWORD).await.status, 204);
    assert_eq!(attempts().await, before);
}

#[tokio::test]
async fn a_weak_new_password_is_refused_with_the_reason() {
    let app = TestApp::spawn().await;
    let user = app.enroll("davidson").await;
    let cookie = app.sign_in(&user).await;
    let before = app.state_snapshot().await;
    for (new, reason) in [
        ("short", "at least 8 characters"),
        ("password123", "common"),
        ("DavidSon", "username"),
        ("my twofold password", "service name"),
        (&"x".repeat(1025), "1024"),
    ] {
        let refused = change(&app, Some(&cookie), PASSWORD, new).await;
        refused.assert_error(400, "weak_password");
        let message = refused.body["message"].as_str().unwrap();
        assert!(message.contains(reason), "{reason:?} not in {message:?}");
    }
    // Refused before the current password was checked: nothing counted, nothing changed.
    assert_eq!(app.state_snapshot().await, before);
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
}

#[tokio::test]
async fn a_password_change_needs_a_recent_full_session_and_a_well_formed_body() {
    let app = TestApp::spawn().await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    change(&app, None, PASSWORD, NEW_PASSWORD)
        .await
        .assert_error(401, "unauthenticated");
    change(&app, Some(&pending), PASSWORD, NEW_PASSWORD)
        .await
        .assert_error(401, "unauthenticated");
    let cookie = app.sign_in(&user).await;
    for body in [
        json!({}),
        json!({ "current_password": PASSWORD }),
        json!({ "current_password": 5, "new_password": NEW_PASSWORD }),
        json!(["current_password", "new_password"]),
    ] {
        app.post("/auth/password", Some(&cookie), body)
            .await
            .assert_error(400, "bad_request");
    }
    change(&app, Some(&cookie), "", NEW_PASSWORD)
        .await
        .assert_error(400, "bad_request");
    app.advance(16 * 60);
    change(&app, Some(&cookie), PASSWORD, NEW_PASSWORD)
        .await
        .assert_error(401, "reauthentication_required");
    app.login("erin", PASSWORD).await;
    assert!(outcomes(&app, "password_change").await.is_empty());
}

#[tokio::test]
async fn of_two_racing_changes_from_one_password_one_wins() {
    let app = TestApp::spawn().await;
    let user = app.enroll("frank").await;
    let first = app.sign_in(&user).await;
    let second = app.sign_in(&user).await;
    let (a, b) = tokio::join!(
        change(&app, Some(&first), PASSWORD, "first new pass phrase"),
        change(&app, Some(&second), PASSWORD, "second new pass phrase"),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 401], "{a:?}\n{b:?}");
    let (winner, loser) = if a.status == 204 {
        ("first new pass phrase", "second new pass phrase")
    } else {
        ("second new pass phrase", "first new pass phrase")
    };
    assert_eq!(app.login("frank", winner).await.status, 200);
    app.login("frank", loser).await.assert_error(401, "invalid_credentials");
    app.login("frank", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn user_passwd_sets_the_password_ends_every_session_and_keeps_the_factors() {
    let app = TestApp::spawn().await;
    let user = app.enroll("grace").await;
    let full = app.sign_in(&user).await;
    let pending = app.pending(&user).await;
    let output = app.cli(
        &["user", "passwd", "grace", "--password-stdin"],
        Some("set by the operator\n"),
    );
    assert_success(&output);
    assert!(stdout(&output).contains("ended their sessions"), "{}", stdout(&output));
    assert_ended(&app, &user, &full, &pending).await;
    app.login("grace", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    let login = app.login("grace", "set by the operator").await;
    assert_eq!(login.body["status"], "2fa_required", "{login:?}");
    assert_eq!(outcomes(&app, "user_passwd").await, ["success"]);

    let before = app.state_snapshot().await;
    for (args, stdin, words) in [
        (
            &["user", "passwd", "grace", "--password-stdin"][..],
            Some("short\n"),
            "at least 8 characters",
        ),
        (
            &["user", "passwd", "nobody", "--password-stdin"][..],
            Some("long enough pass\n"),
            "no such user",
        ),
        (&["user", "passwd", "grace"][..], None, "--password-stdin"),
    ] {
        assert_failure_mentioning(&app.cli(args, stdin), &[words]);
    }
    assert_eq!(app.state_snapshot().await, before);
}

#[tokio::test]
async fn a_disabled_user_is_answered_as_a_wrong_password_until_enabled() {
    let app = TestApp::spawn().await;
    let user = app.enroll("heidi").await;
    let full = app.sign_in(&user).await;
    let pending = app.pending(&user).await;
    app.on_server(|flow| async move { flow.disable_user("heidi").await })
        .await
        .expect("disabled");
    // At once, on this instance: no session outlives the command.
    assert_ended(&app, &user, &full, &pending).await;
    // The right password and a wrong one get the same answer.
    let right = app.login("heidi", PASSWORD).await;
    let wrong = app.login("heidi", "not the password").await;
    right.assert_error(401, "invalid_credentials");
    assert_eq!((right.status, &right.body), (wrong.status, &wrong.body));
    assert!(right.cookie().is_none());
    let logins = outcomes(&app, "login").await;
    assert_eq!(logins[logins.len() - 2..], ["disabled", "invalid_credentials"]);

    let list = app.cli(&["user", "list"], None);
    assert_success(&list);
    let line = stdout(&list)
        .lines()
        .find(|line| line.starts_with("heidi"))
        .unwrap()
        .to_owned();
    // DISABLED is the column before GROUPS, the last.
    assert_eq!(line.split_whitespace().rev().nth(1), Some("yes"), "{line}");
    let show = stdout(&app.cli(&["user", "show", "heidi"], None));
    assert!(show.contains("disabled:"), "{show}");

    let output = app.cli(&["user", "enable", "heidi"], None);
    assert_success(&output);
    assert_eq!(app.login("heidi", PASSWORD).await.body["status"], "2fa_required");
    let list = stdout(&app.cli(&["user", "list"], None));
    let line = list.lines().find(|line| line.starts_with("heidi")).unwrap();
    assert_eq!(line.split_whitespace().rev().nth(1), Some("no"), "{line}");
    assert!(!stdout(&app.cli(&["user", "show", "heidi"], None)).contains("disabled:"));
    assert_eq!(outcomes(&app, "user_disable").await, ["success"]);
    assert_eq!(outcomes(&app, "user_enable").await, ["success"]);
}

#[tokio::test]
async fn user_disable_from_the_command_line_ends_the_sessions() {
    let app = TestApp::spawn().await;
    let user = app.enroll("ivan").await;
    let full = app.sign_in(&user).await;
    let output = app.cli(&["user", "disable", "ivan"], None);
    assert_success(&output);
    assert!(stdout(&output).contains("user enable ivan"), "{}", stdout(&output));
    // `sign_in` moved the clock past the session cache, so this check reads the database.
    app.get("/auth/session", Some(&full))
        .await
        .assert_error(401, "unauthenticated");
    app.login("ivan", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    for command in ["disable", "enable"] {
        for name in ["nobody", "not a name"] {
            assert_failure_mentioning(&app.cli(&["user", command, name], None), &["no such user"]);
        }
    }
}

const FIREFOX_ON_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const CHROME_ON_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// Both steps for `user` from a browser that sends `user_agent`; returns the full session's cookie.
async fn sign_in_from(app: &TestApp, user: &Enrolled, user_agent: &str) -> String {
    let pending = app.pending(user).await;
    let verified = app
        .send(
            app.request(reqwest::Method::POST, "/auth/verify-2fa", Some(&pending))
                .header(reqwest::header::USER_AGENT, user_agent)
                .json(&json!({ "method": "totp", "code": app.code(&user.secret, 0) })),
        )
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    app.advance(30);
    verified.cookie().expect("full session cookie")
}

async fn session_list(app: &TestApp, cookie: &str) -> Vec<serde_json::Value> {
    let listed = app.get("/auth/sessions", Some(cookie)).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    listed.body["sessions"].as_array().expect("sessions").clone()
}

#[tokio::test]
async fn the_session_list_says_where_one_is_signed_in_and_marks_this_one() {
    let app = TestApp::spawn().await;
    let user = app.enroll("lena").await;
    app.post_empty("/auth/logout", Some(&user.cookie)).await;
    let laptop = sign_in_from(&app, &user, FIREFOX_ON_LINUX).await;
    let desktop = sign_in_from(&app, &user, CHROME_ON_WINDOWS).await;
    // Neither a sign-in waiting for its second step nor another account's sessions are listed.
    app.pending(&user).await;
    let other = app.enroll("mike").await;
    app.sign_in(&other).await;

    let listed = session_list(&app, &laptop).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Newest first.
    assert_eq!(listed[0]["device"], "Chrome on Windows 10");
    assert_eq!(listed[0]["user_agent"], CHROME_ON_WINDOWS);
    assert_eq!(listed[0]["current"], false);
    assert_eq!(listed[1]["device"], "Firefox on Linux");
    assert_eq!(listed[1]["current"], true);
    for entry in &listed {
        assert_eq!(entry["client"], "127.0.0.1");
        assert_eq!(entry["second_factor"], "totp");
        for key in ["created_at", "last_seen_at"] {
            let at = entry[key].as_str().unwrap_or_default();
            assert!(
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
                "{key}: {entry:?}"
            );
        }
        assert!(entry["id"].is_i64(), "{entry:?}");
    }
    assert_eq!(session_list(&app, &desktop).await[0]["current"], true);
    app.get("/auth/sessions", None)
        .await
        .assert_error(401, "unauthenticated");
    let pending = app.pending(&user).await;
    app.get("/auth/sessions", Some(&pending))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn ending_one_session_or_all_others() {
    let app = TestApp::spawn().await;
    let user = app.enroll("nora").await;
    let here = app.sign_in(&user).await;
    let there = app.sign_in(&user).await;
    let stranger = app.enroll("oscar").await;
    let theirs = app.sign_in(&stranger).await;
    let their_id = session_list(&app, &theirs).await[0]["id"].as_i64().unwrap();
    let there_id = session_list(&app, &there)
        .await
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // Another account's session, an unknown id and no number at all: the same 404, and nothing ends.
    for id in [
        their_id.to_string(),
        "999999".into(),
        "not-a-number".into(),
        "-1".into(),
    ] {
        app.delete(&format!("/auth/sessions/{id}"), Some(&here), json!(null))
            .await
            .assert_error(404, "not_found");
    }
    assert_eq!(app.get("/auth/session", Some(&theirs)).await.status, 200);
    app.delete(&format!("/auth/sessions/{there_id}"), None, json!(null))
        .await
        .assert_error(401, "unauthenticated");

    let ended = app
        .delete(&format!("/auth/sessions/{there_id}"), Some(&here), json!(null))
        .await;
    assert_eq!(ended.status, 204, "{ended:?}");
    app.get("/auth/session", Some(&there))
        .await
        .assert_error(401, "unauthenticated");
    assert_eq!(app.get("/auth/session", Some(&here)).await.status, 200);
    // Ended once: again it is unknown.
    app.delete(&format!("/auth/sessions/{there_id}"), Some(&here), json!(null))
        .await
        .assert_error(404, "not_found");

    // Everywhere else, a sign-in halfway through its second step included.
    let third = app.sign_in(&user).await;
    let pending = app.pending(&user).await;
    let ended = app.delete("/auth/sessions", Some(&here), json!(null)).await;
    assert_eq!(ended.status, 204, "{ended:?}");
    app.get("/auth/session", Some(&third))
        .await
        .assert_error(401, "unauthenticated");
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "no_pending_login");
    assert_eq!(app.get("/auth/session", Some(&here)).await.status, 200);
    assert_eq!(session_list(&app, &here).await.len(), 1);
    assert_eq!(app.get("/auth/session", Some(&theirs)).await.status, 200);
    assert_eq!(outcomes(&app, "session_revoke").await, ["success", "success"]);
}

/// The value `user show` prints for `field`.
fn shown(app: &TestApp, username: &str, field: &str) -> String {
    let output = app.cli(&["user", "show", username], None);
    assert_success(&output);
    let text = stdout(&output);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{text}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn user_add_and_edit_set_what_apps_are_told() {
    let app = TestApp::spawn().await;
    let added = app.cli(
        &[
            "user",
            "add",
            "paula",
            "--password-stdin",
            "--email",
            "paula@example.com",
            "--display-name",
            "Paula Zoë Müller",
            "--group",
            "admins",
            "--group",
            "dev-ops",
            "--group",
            "admins",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_success(&added);
    assert_eq!(shown(&app, "paula", "email"), "paula@example.com");
    assert_eq!(shown(&app, "paula", "display name"), "Paula Zoë Müller");
    assert_eq!(shown(&app, "paula", "groups"), "admins, dev-ops");
    let list = stdout(&app.cli(&["user", "list"], None));
    let line = list.lines().find(|line| line.starts_with("paula")).unwrap();
    assert!(line.ends_with("admins,dev-ops"), "{line}");

    let edited = app.cli(
        &[
            "user",
            "edit",
            "paula",
            "--email",
            "",
            "--add-group",
            "finance",
            "--remove-group",
            "admins",
            "--remove-group",
            "never-in-it",
        ],
        None,
    );
    assert_success(&edited);
    assert_eq!(shown(&app, "paula", "email"), "-");
    assert_eq!(shown(&app, "paula", "display name"), "Paula Zoë Müller");
    assert_eq!(shown(&app, "paula", "groups"), "dev-ops, finance");
    assert_eq!(outcomes(&app, "user_edit").await, ["success"]);
    // The password was not touched.
    assert_eq!(app.login("paula", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_bad_email_name_or_group_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    app.add_user("quentin", PASSWORD).await;
    let before = app.state_snapshot().await;
    let long_name = "n".repeat(129);
    for (flag, value, words) in [
        ("--email", "not an address", "name@example.com"),
        ("--email", "two@@example.com", "name@example.com"),
        ("--email", "nodomain@", "name@example.com"),
        ("--email", "a@b\u{7}.com", "name@example.com"),
        ("--display-name", "line\nbreak", "control characters"),
        ("--display-name", long_name.as_str(), "128 characters"),
        ("--add-group", "Admins", "not a group name"),
        ("--add-group", "with space", "not a group name"),
        ("--add-group", "", "not a group name"),
        ("--add-group", "ünïcode", "not a group name"),
    ] {
        let output = app.cli(&["user", "edit", "quentin", flag, value], None);
        assert_failure_mentioning(&output, &[words]);
    }
    let output = app.cli(
        &["user", "add", "rita", "--password-stdin", "--group", "no,commas"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_failure_mentioning(&output, &["not a group name"]);
    assert_failure_mentioning(
        &app.cli(&["user", "edit", "nobody", "--email", "a@b.co"], None),
        &["no such user"],
    );
    assert_eq!(app.state_snapshot().await, before);
    let too_many: Vec<String> = (0..101)
        .flat_map(|n| ["--add-group".to_owned(), format!("g{n}")])
        .collect();
    let mut args = vec!["user", "edit", "quentin"];
    args.extend(too_many.iter().map(String::as_str));
    assert_failure_mentioning(&app.cli(&args, None), &["at most 100 groups"]);
    assert_eq!(app.state_snapshot().await, before);
}
