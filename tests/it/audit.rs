//! The audit trail an operator and an auditor use: one flow id per login attempt, no secrets, a MAC chain that
//! reveals edits, insertions and deletions, filters, retention, diagrams, operator commands, and the service
//! endpoints (health, readiness, Prometheus metrics).

use crate::common::{Client, Options, Stand, TestApp, PASSWORD};
use serde_json::Value;

/// The audit rows of one flow, oldest first, as (event, method, outcome).
async fn flow_events(app: &TestApp, flow: &str) -> Vec<(String, Option<String>, String)> {
    sqlx::query_as("SELECT event, method, outcome FROM audit_events WHERE flow_id = $1 ORDER BY id")
        .bind(flow)
        .fetch_all(&app.db().await)
        .await
        .expect("events")
}

async fn last_flow(app: &TestApp, event: &str, outcome: &str) -> String {
    sqlx::query_scalar("SELECT flow_id FROM audit_events WHERE event = $1 AND outcome = $2 ORDER BY id DESC LIMIT 1")
        .bind(event)
        .bind(outcome)
        .fetch_one(&app.db().await)
        .await
        .expect("flow id")
}

/// Every text value stored in the audit table, to search for secrets.
async fn audit_text(app: &TestApp) -> String {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT COALESCE(flow_id,'') || '|' || COALESCE(username,'') || '|' || COALESCE(client_addr,'') || '|' || \
         COALESCE(user_agent,'') || '|' || event || '|' || COALESCE(method,'') || '|' || outcome || '|' || \
         CAST(at_ms AS TEXT) || '|' || COALESCE(CAST(user_id AS TEXT),'') FROM audit_events",
    )
    .fetch_all(&app.db().await)
    .await
    .expect("audit rows");
    rows.into_iter().map(|(row,)| row).collect::<Vec<_>>().join("\n")
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_totp_login_is_one_flow_of_events_without_secrets() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let login = app.login("alice", PASSWORD).await;
    let pending = login.cookie().expect("pending cookie");
    app.verify(&pending, "totp", "000000").await;
    let code = app.code(&user.secret, 0);
    let verified = app.verify(&pending, "totp", &code).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let full = verified.cookie().expect("full cookie");
    app.post_empty("/auth/logout", Some(&full)).await;

    let flow = last_flow(&app, "login", "second_factor_required").await;
    let events = flow_events(&app, &flow).await;
    let expected = [
        ("login", None, "second_factor_required"),
        ("second_factor", Some("totp"), "invalid_code"),
        ("second_factor", Some("totp"), "success"),
        ("logout", None, "success"),
    ];
    assert_eq!(events.len(), expected.len(), "{events:?}");
    for ((event, method, outcome), (want_event, want_method, want_outcome)) in events.iter().zip(expected) {
        assert_eq!(event, want_event);
        assert_eq!(method.as_deref(), want_method);
        assert_eq!(outcome, want_outcome);
    }
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT username, client_addr, flow_id FROM audit_events")
            .fetch_all(&app.db().await)
            .await
            .unwrap();
    assert!(
        rows.iter().all(|(_, addr, flow)| addr.is_some() && flow.is_some()),
        "{rows:?}"
    );

    let text = audit_text(&app).await;
    for secret in [PASSWORD, &code, &pending, &full] {
        assert!(!text.contains(secret), "the audit trail contains a secret");
    }
    let base32 = data_encoding::BASE32_NOPAD.encode(&user.secret);
    assert!(!text.contains(&base32));
    for recovery in &user.recovery_codes {
        assert!(!text.contains(recovery.as_str()) && !text.contains(&recovery.replace('-', "")));
    }
}

#[tokio::test]
async fn an_sms_login_is_one_flow_and_the_phone_never_appears() {
    let stand = Stand::start().await;
    let app = TestApp::spawn_with(Options {
        extra_env: vec![
            ("TWOFOLD_SMS__GATEWAY".into(), "http".into()),
            ("TWOFOLD_SMS__URL".into(), stand.webhook_url()),
        ],
        ..Options::default()
    })
    .await;
    let user = app.enroll("bob").await;
    app.step_up(&user.cookie, &user.secret).await;
    let setup = app
        .post(
            "/auth/2fa/sms/setup",
            Some(&user.cookie),
            serde_json::json!({ "phone": "+15551234567" }),
        )
        .await;
    assert_eq!(setup.status, 202, "{setup:?}");
    let enrol_code = stand.last_code();
    let confirmed = app
        .post(
            "/auth/2fa/sms/confirm",
            Some(&user.cookie),
            serde_json::json!({ "code": enrol_code }),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    app.advance(31);
    let pending = app.pending(&user).await;
    let sent = app.post_empty("/auth/2fa/sms/send", Some(&pending)).await;
    assert_eq!(sent.status, 202, "{sent:?}");
    app.verify(&pending, "sms", "000000").await;
    let ok = app.verify(&pending, "recovery_code", &user.recovery_codes[0]).await;
    assert_eq!(ok.status, 200, "{ok:?}");

    let flow = last_flow(&app, "login", "second_factor_required").await;
    let events: Vec<(String, Option<String>, String)> = flow_events(&app, &flow).await;
    let names: Vec<(&str, Option<&str>, &str)> = events
        .iter()
        .map(|(e, m, o)| (e.as_str(), m.as_deref(), o.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("login", None, "second_factor_required"),
            ("sms_send", Some("sms"), "success"),
            ("second_factor", Some("sms"), "invalid_code"),
            ("second_factor", Some("recovery_code"), "success"),
        ]
    );
    let text = audit_text(&app).await;
    for needle in ["+15551234567", "5551234567", "1234567", &enrol_code, &stand.last_code()] {
        assert!(
            !text.contains(needle),
            "the audit trail contains the phone number or a code ({needle})"
        );
    }
}

#[tokio::test]
async fn audit_verify_finds_edits_deletions_and_insertions() {
    let app = TestApp::spawn().await;
    app.enroll("carol").await;
    for _ in 0..3 {
        app.login("carol", "not the password").await;
    }
    let intact = app.cli(&["audit", "verify"], None);
    assert!(intact.status.success(), "{intact:?}");
    assert!(stdout(&intact).contains("intact"), "{}", stdout(&intact));

    let db = app.db().await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM audit_events ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(ids.len() >= 6, "{ids:?}");

    // Edited.
    let original: String = sqlx::query_scalar("SELECT outcome FROM audit_events WHERE id = $1")
        .bind(ids[3])
        .fetch_one(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET outcome = 'tampered' WHERE id = $1")
        .bind(ids[3])
        .execute(&db)
        .await
        .unwrap();
    let edited = app.cli(&["audit", "verify"], None);
    assert!(!edited.status.success());
    assert!(
        stdout(&edited).contains(&format!("event {} was edited", ids[3])),
        "{}",
        stdout(&edited)
    );
    sqlx::query("UPDATE audit_events SET outcome = $1 WHERE id = $2")
        .bind(&original)
        .bind(ids[3])
        .execute(&db)
        .await
        .unwrap();
    assert!(
        app.cli(&["audit", "verify"], None).status.success(),
        "restoring the value restores the chain"
    );

    // Inserted: a forged event appended after the newest one, chained to it, with a MAC made without the key.
    let newest = ids.last().copied().unwrap_or_default();
    sqlx::query(
        "INSERT INTO audit_events (at_ms, flow_id, user_id, username, client_addr, user_agent, event, method, \
             outcome, prev_mac, mac) \
         SELECT at_ms + 1, flow_id, user_id, 'mallory', client_addr, user_agent, 'login', NULL, 'success', mac, \
             prev_mac \
         FROM audit_events WHERE id = $1",
    )
    .bind(newest)
    .execute(&db)
    .await
    .unwrap();
    let forged: i64 = sqlx::query_scalar("SELECT MAX(id) FROM audit_events")
        .fetch_one(&db)
        .await
        .unwrap();
    let inserted = app.cli(&["audit", "verify"], None);
    assert!(!inserted.status.success());
    assert!(
        stdout(&inserted).contains(&format!("event {forged} was edited or inserted")),
        "{}",
        stdout(&inserted)
    );
    sqlx::query("DELETE FROM audit_events WHERE id = $1")
        .bind(forged)
        .execute(&db)
        .await
        .unwrap();
    assert!(app.cli(&["audit", "verify"], None).status.success());

    // Deleted.
    sqlx::query("DELETE FROM audit_events WHERE id = $1")
        .bind(ids[4])
        .execute(&db)
        .await
        .unwrap();
    let deleted = app.cli(&["audit", "verify"], None);
    assert!(!deleted.status.success());
    assert!(
        stdout(&deleted).contains(&format!("just before event {} were deleted", ids[5])),
        "{}",
        stdout(&deleted)
    );
}

#[tokio::test]
async fn audit_lists_with_filters_and_json() {
    let app = TestApp::spawn().await;
    app.add_user("dave", PASSWORD).await;
    app.add_user("erin", PASSWORD).await;
    app.login("dave", PASSWORD).await;
    app.advance(3600);
    app.login("erin", "wrong password").await;
    app.login("dave", "wrong password").await;

    let json_lines = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["audit", "--json"];
        all.extend_from_slice(args);
        let output = app.cli(&all, None);
        assert!(output.status.success(), "{output:?}");
        stdout(&output)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let dave = json_lines(&["--user", "dave"]);
    assert!(dave.iter().all(|e| e["user"] == "dave"));
    assert_eq!(dave.iter().filter(|e| e["event"] == "login").count(), 2);
    let failures = json_lines(&["--event", "login", "--outcome", "invalid_credentials"]);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures
        .iter()
        .all(|e| e["client_addr"] == "127.0.0.1" && e["flow_id"].is_string()));
    // The test clock starts at 2027-01-15T08:00:15Z; the later logins are an hour on.
    let early = json_lines(&["--event", "login", "--until", "2027-01-15T08:30:00Z"]);
    assert_eq!(early.len(), 1);
    assert_eq!(early[0]["outcome"], "success");
    let late = json_lines(&["--event", "login", "--since", "2027-01-15T08:30:00Z"]);
    assert_eq!(late.len(), 2);
    assert!(json_lines(&["--since", "2030-01-01"]).is_empty());

    let text = app.cli(&["audit", "--user", "erin"], None);
    assert!(stdout(&text).contains("invalid_credentials"), "{}", stdout(&text));
    let bad = app.cli(&["audit", "--since", "last tuesday"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
}

#[tokio::test]
async fn client_text_reaches_the_operators_terminal_escaped() {
    let app = TestApp::spawn().await;
    app.add_user("dave", PASSWORD).await;
    // U+009B is the one-byte form of ESC [ (a terminal's control sequence); U+202E reverses what follows.
    let agent = "curl\u{9b}2J\u{202e}txt.exe\u{200f}";
    let request = app
        .http
        .post(app.url("/auth/login"))
        .header(
            reqwest::header::USER_AGENT,
            reqwest::header::HeaderValue::from_bytes(agent.as_bytes()).expect("obs-text is a valid header value"),
        )
        .json(&serde_json::json!({ "username": "dave", "password": PASSWORD }));
    assert_eq!(app.send(request).await.status, 200);

    let output = app.cli(&["audit", "--json", "--user", "dave"], None);
    assert!(output.status.success(), "{output:?}");
    let printed = stdout(&output);
    for raw in ['\u{9b}', '\u{202e}', '\u{200f}', '\u{1b}'] {
        assert!(!printed.contains(raw), "{raw:?} printed raw: {printed:?}");
    }
    assert!(printed.contains("\\u009b") && printed.contains("\\u202e"), "{printed}");
    // The escapes are JSON's: a program reading the line gets the client's text back.
    let events: Vec<Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let login = events
        .iter()
        .find(|e| e["event"] == "login")
        .expect("the login's event");
    assert_eq!(login["user_agent"], agent);
}

#[tokio::test]
async fn pruning_keeps_the_chain_verifiable() {
    let app = TestApp::spawn().await;
    app.add_user("frank", PASSWORD).await;
    app.login("frank", PASSWORD).await;
    app.advance(91 * 24 * 3600);
    app.login("frank", "wrong").await;
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    let pruned = app
        .on_server(|flow| async move { flow.prune_audit().await.expect("prune") })
        .await;
    assert_eq!(pruned, 2, "the user_add and the first login are past 90 days");
    let after: Vec<String> = sqlx::query_scalar("SELECT outcome FROM audit_events ORDER BY id")
        .fetch_all(&app.db().await)
        .await
        .unwrap();
    assert_eq!(after, vec!["invalid_credentials"]);
    assert_eq!(before, 3);
    let verified = app.cli(&["audit", "verify"], None);
    assert!(verified.status.success(), "{verified:?}");
    // New events continue the chain from the anchor.
    app.login("frank", PASSWORD).await;
    assert!(app.cli(&["audit", "verify"], None).status.success());
    // Deleting the oldest kept event is still caught.
    sqlx::query("DELETE FROM audit_events WHERE id = (SELECT MIN(id) FROM audit_events)")
        .execute(&app.db().await)
        .await
        .unwrap();
    assert!(!app.cli(&["audit", "verify"], None).status.success());
}

#[tokio::test]
async fn audit_diagram_draws_one_login() {
    let app = TestApp::spawn().await;
    let user = app.enroll("gina").await;
    let pending = app.pending(&user).await;
    app.verify(&pending, "totp", "111111").await;
    app.advance(2);
    app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    let flow = last_flow(&app, "login", "second_factor_required").await;

    let mermaid = stdout(&app.cli(&["audit", "diagram", &flow], None));
    assert!(mermaid.starts_with("sequenceDiagram\n"), "{mermaid}");
    for needle in [
        "participant AuthApp as Authenticator app",
        "Client->>Twofold: POST /auth/login",
        "Twofold-->>Client: second_factor_required (+0.000 s)",
        "Client->>Twofold: POST /auth/verify-2fa (totp)",
        "Twofold-->>Client: invalid_code (+0.000 s)",
        "Twofold-->>Client: success (+2.000 s)",
    ] {
        assert!(mermaid.contains(needle), "missing {needle:?} in\n{mermaid}");
    }
    assert!(!mermaid.contains("SMS"), "{mermaid}");
    let zenuml = stdout(&app.cli(&["audit", "diagram", &flow, "--format", "zenuml"], None));
    assert!(
        zenuml.contains("@Actor User") && zenuml.contains("Client->Twofold: POST /auth/login"),
        "{zenuml}"
    );
    let unknown = app.cli(&["audit", "diagram", "no-such-flow"], None);
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn operator_commands_show_users_and_sessions() {
    let app = TestApp::spawn().await;
    let user = app.enroll("hank").await;
    let second = app.sign_in(&user).await;
    let shown = stdout(&app.cli(&["user", "show", "hank"], None));
    for needle in [
        "authenticator app:     yes",
        "recovery codes left:   10",
        "lock:                  none",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in\n{shown}");
    }
    assert!(!shown.contains("last sign-in:          never"));

    let listed = stdout(&app.cli(&["session", "list", "--user", "hank"], None));
    let ids: Vec<i64> = listed
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    let revoked = app.cli(&["session", "revoke", &ids[0].to_string()], None);
    assert!(revoked.status.success(), "{revoked:?}");
    let statuses = [
        app.get("/auth/session", Some(&user.cookie)).await.status,
        app.get("/auth/session", Some(&second)).await.status,
    ];
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 1, "{statuses:?}");
    let all = app.cli(&["session", "revoke", "--user", "hank"], None);
    assert!(stdout(&all).contains("ended 1 sessions"), "{}", stdout(&all));
    assert_eq!(app.get("/auth/session", Some(&second)).await.status, 401);
    let missing = app.cli(&["session", "revoke", "999999"], None);
    assert!(!missing.status.success());
    let events = app.cli(&["audit", "--event", "session_revoke", "--json"], None);
    assert_eq!(stdout(&events).lines().count(), 2);
}

/// `name{labels} value` lines of the Prometheus text format, as a map.
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("name and value");
            (name.to_owned(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

#[tokio::test]
async fn service_endpoints_and_metrics() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.body["status"], "ok");
    assert_eq!(app.get("/readyz", None).await.body["status"], "ready");
    let user = app.enroll("ivy").await;
    let before = parse_metrics(&app.get("/metrics", None).await.text);
    let pending = app.pending(&user).await;
    app.verify(&pending, "totp", "222222").await;
    app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    let metrics = app.get("/metrics", None).await;
    assert!(metrics
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let after = parse_metrics(&metrics.text);
    let rise = |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);
    assert_eq!(rise(r#"twofold_logins_total{outcome="second_factor_required"}"#), 1.0);
    assert_eq!(
        rise(r#"twofold_second_factor_checks_total{method="totp",outcome="invalid_code"}"#),
        1.0
    );
    assert_eq!(
        rise(r#"twofold_second_factor_checks_total{method="totp",outcome="success"}"#),
        1.0
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("twofold_http_request_duration_seconds_bucket")
                && k.contains(r#"route="/auth/verify-2fa""#)),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn the_readme_shows_the_current_flow_diagram() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let marker = "<!-- twofold diagram -->\n```mermaid\n";
    let start = readme.find(marker).expect("the README has the generated diagram") + marker.len();
    let end = start + readme[start..].find("```").expect("end of the diagram");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["diagram"])
        .env("TWOFOLD_DATABASE_URL", "sqlite://unused.db")
        .output()
        .expect("twofold diagram");
    assert!(output.status.success());
    assert_eq!(
        &readme[start..end],
        String::from_utf8_lossy(&output.stdout),
        "README.md's diagram is stale: paste the output of `twofold diagram` after the marker"
    );
}
