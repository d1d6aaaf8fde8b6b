//! Ugly input never gets a 5xx and never changes anything: every case below answers a 4xx with the contract's
//! error body, and the state tables (users, sessions, recovery codes, password throttle) are identical before and
//! after. Malformed codes from a pending session are not attempts: neither the session's nor the account's failure
//! count moves.

use crate::common::*;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

const JSON: &str = "application/json";

/// Sends `body` to `path` with `content_type`; `Err` says how the answer was not `status` with error `code`, or
/// that a state table changed.
async fn attempt(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    content_type: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &str,
) -> Result<(), String> {
    let body = body.into();
    let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
    let before = app.state_snapshot().await;
    let answer = app.post_raw(path, cookie, content_type, body).await;
    let after = app.state_snapshot().await;
    let message_ok = answer.body["message"].as_str().is_some_and(|m| !m.is_empty());
    if answer.status != status || answer.error() != code || !message_ok {
        return Err(format!(
            "POST {path} with {shown:?}: expected {status} {code}, got {} {}",
            answer.status, answer.text
        ));
    }
    if before != after {
        return Err(format!("POST {path} with {shown:?} changed the state"));
    }
    Ok(())
}

/// [`attempt`], asserting it went as expected.
async fn refused(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    content_type: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &str,
) {
    if let Err(failure) = attempt(app, path, cookie, content_type, body, status, code).await {
        panic!("{failure}");
    }
}

/// [`refused`] for a JSON value sent as `application/json`.
async fn refused_json(app: &TestApp, path: &str, cookie: Option<&str>, body: Value, status: u16, code: &str) {
    refused(app, path, cookie, JSON, body.to_string(), status, code).await;
}

/// A pending session's failure count, by the cookie's token (the database keeps the SHA-256 of the cookie text).
async fn pending_failures(app: &TestApp, cookie: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(cookie.as_bytes()).to_vec();
    let db = app.db().await;
    let (state, failures): (String, i64) =
        sqlx::query_as("SELECT state, failed_attempts FROM sessions WHERE token_digest = $1")
            .bind(digest)
            .fetch_one(&db)
            .await
            .expect("the pending session exists");
    db.close().await;
    assert_eq!(state, "pending");
    failures
}

async fn account_failures(app: &TestApp, username: &str) -> i64 {
    let db = app.db().await;
    let (failures,): (i64,) = sqlx::query_as("SELECT second_factor_failures FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(&db)
        .await
        .expect("user row");
    db.close().await;
    failures
}

/// A user with a password, and a full session for the TOTP endpoints; a set-up authenticator awaits confirmation.
async fn signed_in_with_setup(app: &TestApp) -> String {
    app.add_user("setup", PASSWORD).await;
    let login = app.login("setup", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    let cookie = login.cookie().expect("cookie");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    cookie
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_everywhere() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    let full = signed_in_with_setup(&app).await;
    let bodies: [&[u8]; 6] = [
        b"{",
        b"{\"username\": \"alice\", \"password\": }",
        b"{\"username\": 'alice'}",
        b"not json at all",
        b"{\"username\":\"alice\",\"password\":\"x\"",
        b"\xff\xfe\x00garbage",
    ];
    for body in bodies {
        refused(&app, "/auth/login", None, JSON, body, 400, "bad_request").await;
        refused(&app, "/auth/register", None, JSON, body, 400, "bad_request").await;
        refused(&app, "/auth/verify-2fa", Some(&pending), JSON, body, 400, "bad_request").await;
        refused(
            &app,
            "/auth/2fa/totp/confirm",
            Some(&full),
            JSON,
            body,
            400,
            "bad_request",
        )
        .await;
    }
    assert_eq!(pending_failures(&app, &pending).await, 0);
}

#[tokio::test]
async fn missing_fields_are_a_bad_request() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    let full = signed_in_with_setup(&app).await;
    for body in [
        json!({}),
        json!({ "username": "alice" }),
        json!({ "password": PASSWORD }),
    ] {
        refused_json(&app, "/auth/login", None, body.clone(), 400, "bad_request").await;
        refused_json(&app, "/auth/register", None, body, 400, "bad_request").await;
    }
    for body in [json!({}), json!({ "method": "totp" }), json!({ "code": "123456" })] {
        refused_json(&app, "/auth/verify-2fa", Some(&pending), body, 400, "bad_request").await;
    }
    refused_json(
        &app,
        "/auth/2fa/totp/confirm",
        Some(&full),
        json!({}),
        400,
        "bad_request",
    )
    .await;
    refused_json(
        &app,
        "/auth/2fa/totp/confirm",
        Some(&full),
        json!({ "cod": "123456" }),
        400,
        "bad_request",
    )
    .await;
    assert_eq!(pending_failures(&app, &pending).await, 0);
    assert_eq!(account_failures(&app, "erin").await, 0);
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_a_bad_request() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    let full = signed_in_with_setup(&app).await;
    for body in [
        json!({ "username": "alice", "password": 12345678 }),
        json!({ "username": ["alice"], "password": PASSWORD }),
        json!({ "username": null, "password": PASSWORD }),
        json!({ "username": "alice", "password": { "text": PASSWORD } }),
        json!({ "username": true, "password": PASSWORD }),
    ] {
        refused_json(&app, "/auth/login", None, body.clone(), 400, "bad_request").await;
        refused_json(&app, "/auth/register", None, body, 400, "bad_request").await;
    }
    for body in [
        json!({ "method": "totp", "code": null }),
        json!({ "method": "totp", "code": 123456 }),
        json!({ "method": "totp", "code": ["123456"] }),
        json!({ "method": 1, "code": "123456" }),
        json!({ "method": null, "code": "123456" }),
    ] {
        refused_json(&app, "/auth/verify-2fa", Some(&pending), body, 400, "bad_request").await;
    }
    for body in [json!({ "code": null }), json!({ "code": 123456 })] {
        refused_json(&app, "/auth/2fa/totp/confirm", Some(&full), body, 400, "bad_request").await;
    }
    assert_eq!(pending_failures(&app, &pending).await, 0);
    assert_eq!(account_failures(&app, "erin").await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_a_bad_request() {
    // Serde lets a struct be deserialised from a sequence, so `["alice", "<password>"]` could pass for
    // credentials; the contract wants an object, and alice exists here so such a slip would sign her in.
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    let full = signed_in_with_setup(&app).await;
    let code = app.code(&user.secret, 0);
    let mut failures = Vec::new();
    for body in [
        json!(["123456"]),
        json!(["alice", PASSWORD]),
        json!(["newbie", PASSWORD]),
        json!(["totp", code]),
        json!([]),
        json!("alice"),
        json!(42),
        json!(null),
        json!(true),
    ] {
        for (path, cookie) in [
            ("/auth/login", None),
            ("/auth/register", None),
            ("/auth/verify-2fa", Some(pending.as_str())),
            ("/auth/2fa/totp/confirm", Some(full.as_str())),
        ] {
            let body = body.to_string();
            if let Err(failure) = attempt(&app, path, cookie, JSON, body, 400, "bad_request").await {
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(pending_failures(&app, &pending).await, 0);
}

#[tokio::test]
async fn an_empty_body_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    // Declared JSON but empty: not valid JSON.
    refused(&app, "/auth/login", None, JSON, "", 400, "bad_request").await;
    refused(&app, "/auth/register", None, JSON, "", 400, "bad_request").await;
    refused(&app, "/auth/verify-2fa", Some(&pending), JSON, "", 400, "bad_request").await;
    // No body and no content type at all.
    for path in ["/auth/login", "/auth/register", "/auth/verify-2fa"] {
        let before = app.state_snapshot().await;
        let answer = app.post_empty(path, Some(&pending)).await;
        answer.assert_error(415, "unsupported_media_type");
        assert_eq!(before, app.state_snapshot().await, "{path}");
    }
    assert_eq!(pending_failures(&app, &pending).await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_unsupported() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    let login = json!({ "username": "alice", "password": PASSWORD }).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/json",
        "application/xml",
    ] {
        refused(
            &app,
            "/auth/login",
            None,
            content_type,
            login.clone(),
            415,
            "unsupported_media_type",
        )
        .await;
        refused(
            &app,
            "/auth/register",
            None,
            content_type,
            json!({ "username": "newbie", "password": PASSWORD }).to_string(),
            415,
            "unsupported_media_type",
        )
        .await;
        let code = json!({ "method": "totp", "code": app.code(&user.secret, 0) }).to_string();
        refused(
            &app,
            "/auth/verify-2fa",
            Some(&pending),
            content_type,
            code,
            415,
            "unsupported_media_type",
        )
        .await;
    }
    // A form post of the same fields is refused too (a cross-site form cannot log anyone in).
    refused(
        &app,
        "/auth/login",
        None,
        "application/x-www-form-urlencoded",
        format!("username=alice&password={}", PASSWORD.replace(' ', "+")),
        415,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(pending_failures(&app, &pending).await, 0);
}

/// Sends a request over a raw TCP connection: writes `head` and `body` on one task (ignoring write errors, since the
/// server may stop reading and close) while reading the answer on another. Returns what was read, if anything.
async fn raw_exchange(app: &TestApp, head: String, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(app.addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            writer.write_all(chunk).await?;
        }
        writer.flush().await
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = loop {
        match reader.read(&mut buffer).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                // One answer is all we want; stop once its head and declared body are in.
                if complete_http_answer(&answer) {
                    break Ok(());
                }
            }
            Err(error) => break Err(error),
        }
    };
    writing.abort();
    match read {
        Err(error) if answer.is_empty() => Err(error),
        _ => Ok(answer),
    }
}

/// Whether `bytes` hold a whole HTTP/1.1 answer with a `content-length` body.
fn complete_http_answer(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

/// An HTTP/1.1 answer as a [`Resp`] (headers left out).
fn parse_http_answer(bytes: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body_text = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Resp {
        status,
        headers: Default::default(),
        body: serde_json::from_str(&body_text).unwrap_or(Value::Null),
        text: body_text,
    }
}

#[tokio::test]
async fn a_ten_megabyte_login_is_payload_too_large() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let password = "p".repeat(10 * 1024 * 1024);
    let body = json!({ "username": "alice", "password": password })
        .to_string()
        .into_bytes();
    assert!(body.len() > 10_000_000);
    let before = app.state_snapshot().await;

    // First through reqwest: the body has a known length, so it goes out with Content-Length.
    let sent = app
        .http
        .post(app.url("/auth/login"))
        .header(CONTENT_TYPE, JSON)
        .body(body.clone())
        .send()
        .await;
    let answer = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            Some(Resp {
                status,
                headers: Default::default(),
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                text,
            })
        }
        Err(reqwest_error) => {
            // The server answers 413 after the first 16 KiB and closes without reading the rest, so reqwest fails
            // writing the body (broken pipe / reset) and never shows the answer. Read it ourselves: write on one
            // task while reading on another.
            eprintln!("reqwest got no answer ({reqwest_error}); reading it over a raw connection");
            let head = format!(
                "POST /auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: {JSON}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                app.addr,
                body.len()
            );
            match raw_exchange(&app, head, body).await {
                Ok(bytes) if !bytes.is_empty() => Some(parse_http_answer(&bytes)),
                Ok(_) => None,
                Err(raw_error) => {
                    // Only a connection the server closed mid-body is acceptable here, and only because no answer
                    // could be read at all.
                    assert!(
                        matches!(
                            raw_error.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                        ),
                        "reqwest: {reqwest_error:?}; raw: {raw_error:?}"
                    );
                    None
                }
            }
        }
    };
    match answer {
        Some(answer) => answer.assert_error(413, "payload_too_large"),
        None => eprintln!("the 10 MB login was cut off before any answer could be read"),
    }
    assert_eq!(before, app.state_snapshot().await);
    // The server still works afterwards.
    assert_eq!(app.login("alice", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_body_just_over_the_limit_is_payload_too_large_and_just_under_is_read() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    // 16 KiB of padding in an ignored field: over the limit, so refused before parsing.
    let over = json!({ "username": "alice", "password": PASSWORD, "pad": "x".repeat(16 * 1024) }).to_string();
    refused(&app, "/auth/login", None, JSON, over, 413, "payload_too_large").await;
    // Unknown fields are ignored; a body under the limit is parsed normally.
    let under = json!({ "username": "alice", "password": PASSWORD, "pad": "x".repeat(15 * 1024) });
    let answer = app.post("/auth/login", None, under).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["status"], "authenticated");
}

fn impossible_usernames() -> Vec<String> {
    vec![
        "ünïcode".into(),
        "名前".into(),
        "🦀crab".into(),
        "😀".into(),
        "a".repeat(1000),
        "a".repeat(65),
        "alice bob".into(),
        "".into(),
        "-alice".into(),
        "al:ice".into(),
        "alice\u{0}".into(),
    ]
}

#[tokio::test]
async fn impossible_usernames_at_login_are_a_bad_request() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    for username in impossible_usernames() {
        let body = json!({ "username": username, "password": PASSWORD });
        refused_json(&app, "/auth/login", None, body, 400, "bad_request").await;
    }
    // Passwords no account can have: empty, and over 1024 characters.
    for password in [String::new(), "p".repeat(1025)] {
        let body = json!({ "username": "alice", "password": password });
        refused_json(&app, "/auth/login", None, body, 400, "bad_request").await;
    }
    // None of it counted against the account: the right password still works.
    assert_eq!(app.login("alice", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn impossible_usernames_at_registration_are_invalid_username() {
    let app = TestApp::spawn().await;
    for username in impossible_usernames() {
        let body = json!({ "username": username, "password": PASSWORD });
        refused_json(&app, "/auth/register", None, body, 400, "invalid_username").await;
    }
    let db = app.db().await;
    let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(users, 0);
}

#[tokio::test]
async fn malformed_codes_are_not_attempts() {
    let app = TestApp::spawn().await;
    let user = app.enroll("erin").await;
    let pending = app.pending(&user).await;
    let long = "1".repeat(10 * 1024);
    let totp_codes = [
        "12345",
        "1234567",
        "12345a",
        "abcdef",
        "１２３４５６",
        "",
        "   ",
        "+12345",
        "123_456",
        "123.456",
        "12345\u{00a0}6",
        long.as_str(),
    ];
    for code in totp_codes {
        let body = json!({ "method": "totp", "code": code });
        refused_json(&app, "/auth/verify-2fa", Some(&pending), body, 400, "bad_request").await;
    }
    let recovery_codes = [
        "ABCD-EFGH-JKLM",
        "ABCD-EFGH-JKLM-NPQR-STUV",
        "ABCD-EFGH-JKLM-NPQ",
        "ABCD-EFGH-JKLM-NPQ1",
        "",
        "123456",
        long.as_str(),
    ];
    for code in recovery_codes {
        let body = json!({ "method": "recovery_code", "code": code });
        refused_json(&app, "/auth/verify-2fa", Some(&pending), body, 400, "bad_request").await;
    }
    for method in ["sms2", "TOTP", "", "recovery", "password"] {
        let body = json!({ "method": method, "code": app.code(&user.secret, 0) });
        refused_json(&app, "/auth/verify-2fa", Some(&pending), body, 400, "bad_request").await;
    }
    assert_eq!(pending_failures(&app, &pending).await, 0);
    assert_eq!(account_failures(&app, "erin").await, 0);

    // The pending session is untouched and still takes the right code.
    let verified = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(verified.body["status"], "authenticated");
}

#[tokio::test]
async fn malformed_codes_at_confirm_and_remove_change_nothing() {
    let app = TestApp::spawn().await;
    let full = signed_in_with_setup(&app).await;
    for code in ["12345", "1234567", "12a456", "１２３４５６", ""] {
        refused_json(
            &app,
            "/auth/2fa/totp/confirm",
            Some(&full),
            json!({ "code": code }),
            400,
            "bad_request",
        )
        .await;
    }
    let user = app.enroll("erin").await;
    let cookie = app.sign_in(&user).await;
    for code in ["12345", "1234567", "abcdef", ""] {
        let before = app.state_snapshot().await;
        let answer = app
            .delete("/auth/2fa/totp", Some(&cookie), json!({ "code": code }))
            .await;
        answer.assert_error(400, "bad_request");
        assert_eq!(before, app.state_snapshot().await, "DELETE with {code:?}");
    }
    let status = app.get("/auth/2fa", Some(&cookie)).await;
    assert_eq!(status.body["totp"], true, "{status:?}");
    assert_eq!(account_failures(&app, "erin").await, 0);
}

/// A valid code typed with a separator signs in, and is then the same code as the plain one: replaying it in the
/// same step is refused.
async fn separated_code_signs_in_then_plain_is_a_replay(separator: &str) {
    let app = TestApp::spawn().await;
    let user = app.enroll("erin").await;
    let code = app.code(&user.secret, 0);
    let typed = format!("{}{separator}{}", &code[..3], &code[3..]);

    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "totp", &typed).await;
    assert_eq!(verified.status, 200, "{typed:?}: {verified:?}");
    assert_eq!(verified.body["status"], "authenticated");

    let pending = app.pending(&user).await;
    let replay = app.verify(&pending, "totp", &code).await;
    replay.assert_error(401, "invalid_2fa_code");
    // And typed the other way, with the separator again, it is the same replay.
    let replay = app.verify(&pending, "totp", &typed).await;
    replay.assert_error(401, "invalid_2fa_code");
}

#[tokio::test]
async fn a_code_typed_with_a_space_signs_in_and_cannot_be_replayed_plain() {
    separated_code_signs_in_then_plain_is_a_replay(" ").await;
}

#[tokio::test]
async fn a_code_typed_with_a_dash_signs_in_and_cannot_be_replayed_plain() {
    separated_code_signs_in_then_plain_is_a_replay("-").await;
}
