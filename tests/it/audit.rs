//! The audit trail an operator and an auditor use: one flow id per login attempt, no secrets, a MAC chain that
//! reveals edits, insertions and deletions, filters, retention, diagrams, operator commands, and the service
//! endpoints (health, readiness, Prometheus metrics).

use crate::common::{stdout, Client, Options, Stand, TestApp, PASSWORD};
use serde_json::Value;
use twofold::flow::{Pruned, Requester, Verdict};

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
        settings: vec![
            ("sms.gateway".into(), "http".into()),
            ("sms.url".into(), stand.webhook_url()),
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
    let ids: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(ids.len() >= 6, "{ids:?}");

    // Edited.
    let original: String = sqlx::query_scalar("SELECT outcome FROM audit_events WHERE seq = $1")
        .bind(ids[3])
        .fetch_one(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET outcome = 'tampered' WHERE seq = $1")
        .bind(ids[3])
        .execute(&db)
        .await
        .unwrap();
    let edited = app.cli(&["audit", "verify"], None);
    assert!(!edited.status.success());
    assert!(
        stdout(&edited).contains(&format!("event #{} was edited", ids[3])),
        "{}",
        stdout(&edited)
    );
    sqlx::query("UPDATE audit_events SET outcome = $1 WHERE seq = $2")
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
        "INSERT INTO audit_events (seq, mac_version, at_ms, flow_id, user_id, username, client_addr, user_agent, \
             event, method, outcome, prev_mac, mac) \
         SELECT seq + 1, mac_version, at_ms + 1, flow_id, user_id, 'mallory', client_addr, user_agent, 'login', \
             NULL, 'success', mac, prev_mac \
         FROM audit_events WHERE seq = $1",
    )
    .bind(newest)
    .execute(&db)
    .await
    .unwrap();
    let forged: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
        .fetch_one(&db)
        .await
        .unwrap();
    let inserted = app.cli(&["audit", "verify"], None);
    assert!(!inserted.status.success());
    assert!(
        stdout(&inserted).contains(&format!("event #{forged} was edited or inserted")),
        "{}",
        stdout(&inserted)
    );
    sqlx::query("DELETE FROM audit_events WHERE seq = $1")
        .bind(forged)
        .execute(&db)
        .await
        .unwrap();
    assert!(app.cli(&["audit", "verify"], None).status.success());

    // Deleted.
    sqlx::query("DELETE FROM audit_events WHERE seq = $1")
        .bind(ids[4])
        .execute(&db)
        .await
        .unwrap();
    let deleted = app.cli(&["audit", "verify"], None);
    assert!(!deleted.status.success());
    assert!(
        stdout(&deleted).contains(&format!("event #{} was deleted", ids[4])),
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
    assert_eq!(
        prune(&app).await,
        Pruned::Events(2),
        "the user_add and the first login are past 90 days"
    );
    let after: Vec<(i64, String, String)> = sqlx::query_as("SELECT seq, event, outcome FROM audit_events ORDER BY seq")
        .fetch_all(&app.db().await)
        .await
        .unwrap();
    let kept = |seq: i64, event: &str, outcome: &str| (seq, event.to_owned(), outcome.to_owned());
    assert_eq!(
        after,
        vec![
            kept(3, "login", "invalid_credentials"),
            kept(4, "audit_prune", "success")
        ],
        "the numbers go on; the prune is itself audited"
    );
    assert_eq!(before, 3);
    let verified = app.cli(&["audit", "verify"], None);
    assert!(verified.status.success(), "{verified:?}");
    // New events continue the chain from the anchor.
    app.login("frank", PASSWORD).await;
    assert!(app.cli(&["audit", "verify"], None).status.success());
    // Deleting the oldest kept event is still caught.
    sqlx::query("DELETE FROM audit_events WHERE seq = (SELECT MIN(seq) FROM audit_events)")
        .execute(&app.db().await)
        .await
        .unwrap();
    let verified = app.cli(&["audit", "verify"], None);
    assert!(!verified.status.success());
    assert!(
        stdout(&verified).contains("event #3 was deleted"),
        "{}",
        stdout(&verified)
    );
}

/// The server's hourly prune, run now on the test clock.
async fn prune(app: &TestApp) -> Pruned {
    app.on_server(|flow| async move { flow.prune_audit(&Requester::default()).await.expect("prune") })
        .await
}

async fn count_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_deleted_event_cannot_be_hidden_by_renumbering() {
    let app = TestApp::spawn().await;
    app.add_user("grace", PASSWORD).await;
    for _ in 0..4 {
        app.login("grace", "not the password").await;
    }
    let db = app.db().await;
    sqlx::query("DELETE FROM audit_events WHERE seq = 3")
        .execute(&db)
        .await
        .unwrap();
    let gap = app.cli(&["audit", "verify"], None);
    assert!(!gap.status.success());
    assert!(stdout(&gap).contains("event #3 was deleted"), "{}", stdout(&gap));
    // Closing the gap breaks the MACs: they cover the numbers. (Through negative numbers, so that no row meets
    // another's number on the way.)
    for renumber in [
        "UPDATE audit_events SET seq = -seq WHERE seq > 3",
        "UPDATE audit_events SET seq = -seq - 1 WHERE seq < 0",
    ] {
        sqlx::query(renumber).execute(&db).await.unwrap();
    }
    let renumbered = app.cli(&["audit", "verify"], None);
    assert!(!renumbered.status.success());
    assert!(
        stdout(&renumbered).contains("event #3 was edited or inserted"),
        "{}",
        stdout(&renumbered)
    );
}

#[tokio::test]
async fn a_backdated_event_is_reported_and_pruning_refuses_to_launder_it() {
    let app = TestApp::spawn().await;
    app.add_user("heidi", PASSWORD).await;
    app.login("heidi", PASSWORD).await;
    app.advance(91 * 24 * 3600);
    for _ in 0..3 {
        app.login("heidi", "not the password").await;
    }
    // Someone who can write the database moves a recent event back past the retention period.
    let db = app.db().await;
    let backdate = |seq: i64| {
        let db = db.clone();
        async move {
            sqlx::query("UPDATE audit_events SET at_ms = 0 WHERE seq = $1")
                .bind(seq)
                .execute(&db)
                .await
                .unwrap();
        }
    };
    backdate(5).await;
    let verified = app.cli(&["audit", "verify"], None);
    assert!(!verified.status.success());
    assert!(
        stdout(&verified).contains("event #5 was edited"),
        "{}",
        stdout(&verified)
    );
    // Pruning walks by number and stops at event 3, the first within the retention: the backdated event 5 does not
    // take 3 and 4 with it, and stays for verify to report.
    assert_eq!(prune(&app).await, Pruned::Events(2));
    let kept: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(kept, vec![3, 4, 5, 6], "6 is the prune's own event");
    let verified = app.cli(&["audit", "verify"], None);
    assert!(
        stdout(&verified).contains("event #5 was edited"),
        "{}",
        stdout(&verified)
    );
    // An edited event among those pruning would delete: nothing is deleted, and the refusal is recorded.
    backdate(3).await;
    let before = count_events(&app).await;
    assert_eq!(prune(&app).await, Pruned::Refused(Verdict::Altered { seq: 3 }));
    let refused: Vec<(String, String)> =
        sqlx::query_as("SELECT event, outcome FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(refused, vec![("audit_prune".to_owned(), "refused".to_owned())]);
    assert_eq!(count_events(&app).await, before + 1, "nothing was deleted");
    let by_hand = app.cli(&["audit", "prune"], None);
    assert!(!by_hand.status.success());
    assert!(
        String::from_utf8_lossy(&by_hand.stderr).contains("nothing pruned"),
        "{by_hand:?}"
    );
}

#[tokio::test]
async fn a_clock_that_jumps_back_is_reported_and_not_pruned_away() {
    let app = TestApp::spawn().await;
    app.add_user("ivan", PASSWORD).await;
    app.advance(91 * 24 * 3600);
    app.login("ivan", PASSWORD).await;
    // Within the skew an older time is normal (requests finish in any order); beyond it, it is reported even though
    // the server wrote it with the key.
    app.advance(-4 * 60);
    app.login("ivan", PASSWORD).await;
    assert!(app.cli(&["audit", "verify"], None).status.success());
    app.advance(-2 * 60);
    app.login("ivan", PASSWORD).await;
    let verified = app.cli(&["audit", "verify"], None);
    assert!(!verified.status.success());
    assert!(stdout(&verified).contains("event #4 is timed"), "{}", stdout(&verified));
    assert_eq!(
        prune(&app).await,
        Pruned::Events(1),
        "only the user_add is past the retention"
    );
    let verified = app.cli(&["audit", "verify"], None);
    assert!(stdout(&verified).contains("event #4 is timed"), "{}", stdout(&verified));
}

#[tokio::test]
async fn a_trail_longer_than_a_page_verifies_and_prunes_whole() {
    let app = TestApp::spawn().await;
    app.add_user("kim", PASSWORD).await;
    // 2,500 cheap events (each revocation is audited), so that verify and prune read the chain in three pages.
    app.on_server(|flow| async move {
        for _ in 0..2_499 {
            flow.revoke_user_sessions("kim").await.expect("revoke");
        }
    })
    .await;
    let verified = app.cli(&["audit", "verify"], None);
    assert!(
        stdout(&verified).contains("2500 events verified"),
        "{}",
        stdout(&verified)
    );
    app.advance(91 * 24 * 3600);
    app.login("kim", PASSWORD).await;
    assert_eq!(prune(&app).await, Pruned::Events(2_500));
    let verified = app.cli(&["audit", "verify"], None);
    assert!(stdout(&verified).contains("2 events verified"), "{}", stdout(&verified));
    // A deletion deep in a later page is found too.
    app.on_server(|flow| async move {
        for _ in 0..1_500 {
            flow.revoke_user_sessions("kim").await.expect("revoke");
        }
    })
    .await;
    sqlx::query("DELETE FROM audit_events WHERE seq = 3700")
        .execute(&app.db().await)
        .await
        .unwrap();
    let verified = app.cli(&["audit", "verify"], None);
    assert!(
        stdout(&verified).contains("event #3700 was deleted"),
        "{}",
        stdout(&verified)
    );
}

#[tokio::test]
async fn the_head_reveals_newest_events_cut_off() {
    let app = TestApp::spawn().await;
    let empty = app.cli(&["audit", "head"], None);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty"), "{empty:?}");
    app.add_user("judy", PASSWORD).await;
    app.login("judy", PASSWORD).await;
    let head = app.cli(&["audit", "head"], None);
    assert!(head.status.success(), "{head:?}");
    let head = stdout(&head).trim().to_owned();
    let mac: Vec<u8> = sqlx::query_scalar("SELECT mac FROM audit_events WHERE seq = 2")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(head, format!("2:{}", hex::encode(&mac)));
    let as_json: Value = serde_json::from_str(&stdout(&app.cli(&["audit", "head", "--json"], None))).expect("JSON");
    assert_eq!(as_json, serde_json::json!({ "seq": 2, "mac": hex::encode(&mac) }));

    app.login("judy", "not the password").await;
    assert!(app.cli(&["audit", "verify", "--head", &head], None).status.success());
    // The two newest events deleted: the chain alone still verifies, the recorded head does not.
    sqlx::query("DELETE FROM audit_events WHERE seq >= 2")
        .execute(&app.db().await)
        .await
        .unwrap();
    assert!(app.cli(&["audit", "verify"], None).status.success());
    let cut = app.cli(&["audit", "verify", "--head", &head], None);
    assert!(!cut.status.success());
    assert!(
        stdout(&cut).contains("the recorded head #2 is gone"),
        "{}",
        stdout(&cut)
    );
    for bad in ["2", "two:ab", "2:not-hex", ""] {
        let refused = app.cli(&["audit", "verify", "--head", bad], None);
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("--head takes SEQ:MAC"),
            "{refused:?}"
        );
    }
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
