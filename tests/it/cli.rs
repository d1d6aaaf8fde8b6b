//! The command line: the operator's `twofold user ...` commands against a running server's database, configuration
//! errors that stop the binary with a message an operator can act on, and `twofold serve` really serving.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::common::*;

const NEW_PASSWORD: &str = "a perfectly long pass phrase";

#[tokio::test]
async fn user_add_with_password_on_stdin_then_login_works() {
    let app = TestApp::spawn().await;
    let output = app.cli(
        &["user", "add", "Carol", "--password-stdin"],
        Some(&format!("{NEW_PASSWORD}\n")),
    );
    assert_success(&output);
    assert!(stdout(&output).contains("carol"), "{}", stdout(&output));
    let login = app.login("carol", NEW_PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "authenticated");
    // The trailing newline was not part of the password.
    app.login("carol", &format!("{NEW_PASSWORD}\n"))
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn user_add_refuses_weak_passwords_and_says_why() {
    let app = TestApp::spawn().await;
    let output = app.cli(&["user", "add", "dave", "--password-stdin"], Some("short\n"));
    assert_failure_mentioning(&output, &["at least 8 characters"]);
    let output = app.cli(&["user", "add", "dave", "--password-stdin"], Some("password123\n"));
    assert_failure_mentioning(&output, &["common"]);
    let output = app.cli(&["user", "add", "davedave", "--password-stdin"], Some("davedave\n"));
    assert_failure_mentioning(&output, &["username"]);
    let output = app.cli(
        &["user", "add", "dave", "--password-stdin"],
        Some("my twofold password\n"),
    );
    assert_failure_mentioning(&output, &["service name"]);
    // None of them was created.
    let list = app.cli(&["user", "list"], None);
    assert_success(&list);
    assert!(!stdout(&list).contains("dave"), "{}", stdout(&list));
    app.login("dave", "short")
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn user_add_refuses_an_invalid_name() {
    let app = TestApp::spawn().await;
    let output = app.cli(&["user", "add", "no spaces", "--password-stdin"], Some(NEW_PASSWORD));
    assert_failure_mentioning(&output, &["username"]);
}

#[tokio::test]
async fn user_add_twice_is_refused_as_taken() {
    let app = TestApp::spawn().await;
    assert_success(&app.cli(&["user", "add", "erin", "--password-stdin"], Some(NEW_PASSWORD)));
    let again = app.cli(
        &["user", "add", "erin", "--password-stdin"],
        Some("another long password"),
    );
    assert_failure_mentioning(&again, &["taken"]);
    // Case-insensitively the same name.
    let again = app.cli(
        &["user", "add", "ERIN", "--password-stdin"],
        Some("another long password"),
    );
    assert_failure_mentioning(&again, &["taken"]);
    // The first password still works; the second was never stored.
    assert_eq!(app.login("erin", NEW_PASSWORD).await.status, 200);
    app.login("erin", "another long password")
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn user_add_without_a_terminal_asks_for_password_stdin() {
    let app = TestApp::spawn().await;
    // `cli` with no input gives the binary /dev/null as standard input: not a terminal.
    let output = app.cli(&["user", "add", "frank"], None);
    assert_failure_mentioning(&output, &["--password-stdin"]);
    app.login("frank", NEW_PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn user_list_shows_names_and_totp() {
    let app = TestApp::spawn().await;
    app.enroll("alice").await;
    app.add_user("bob", PASSWORD).await;
    let output = app.cli(&["user", "list"], None);
    assert_success(&output);
    let text = stdout(&output);
    let columns = |name: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|columns| columns.first().map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
    };
    assert_eq!(columns("alice")[1], "yes", "{text}");
    assert_eq!(columns("bob")[1], "no", "{text}");
    // Alice has her 10 recovery codes; Bob has none.
    assert_eq!(columns("alice")[2], "10", "{text}");
    assert_eq!(columns("bob")[2], "0", "{text}");
}

#[tokio::test]
async fn reset_2fa_ends_sessions_and_next_login_is_password_only() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let cookie = app.sign_in(&user).await;
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
    let pending = app.pending(&user).await;

    let output = app.cli(&["user", "reset-2fa", "alice"], None);
    assert_success(&output);

    // The command is another process: the server notices within its session cache's second, not at once.
    assert_eq!(app.get("/auth/session", Some(&cookie)).await.status, 200);
    app.advance(1);
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
    app.get("/auth/session", Some(&user.cookie))
        .await
        .assert_error(401, "unauthenticated");
    // A login waiting for its second factor is gone too.
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(401, "no_pending_login");

    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "authenticated", "{login:?}");
    let fresh = login.cookie().expect("cookie");
    let factors = app.get("/auth/2fa", Some(&fresh)).await;
    assert_eq!(factors.status, 200, "{factors:?}");
    assert_eq!(factors.body["totp"], false);
    assert_eq!(factors.body["recovery_codes_left"], 0);
}

#[tokio::test]
async fn delete_removes_the_user() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    let cookie = app.sign_in(&user).await;
    let output = app.cli(&["user", "delete", "alice"], None);
    assert_success(&output);
    app.login("alice", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    app.get("/auth/session", Some(&cookie))
        .await
        .assert_error(401, "unauthenticated");
    let list = app.cli(&["user", "list"], None);
    assert_success(&list);
    assert!(!stdout(&list).contains("alice"), "{}", stdout(&list));
}

#[tokio::test]
async fn commands_on_an_unknown_user_fail_with_no_such_user() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let before = app.state_snapshot().await;
    for command in ["reset-2fa", "unlock", "delete"] {
        for name in ["nobody", "not a name"] {
            let output = app.cli(&["user", command, name], None);
            assert_failure_mentioning(&output, &["no such user"]);
        }
    }
    assert_eq!(before, app.state_snapshot().await);
}

#[tokio::test]
async fn unlock_lifts_a_second_factor_lock() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    // Ten wrong codes (two pending sessions of five) lock the second factor.
    for _ in 0..2 {
        let pending = app.pending(&user).await;
        for _ in 0..5 {
            let wrong = app.verify(&pending, "totp", "000000").await;
            assert!(matches!(wrong.status, 401 | 429), "{wrong:?}");
        }
    }
    let pending = app.pending(&user).await;
    app.verify(&pending, "totp", &app.code(&user.secret, 0))
        .await
        .assert_error(429, "too_many_attempts");
    assert_success(&app.cli(&["user", "unlock", "alice"], None));
    let pending = app.pending(&user).await;
    let verified = app.verify(&pending, "totp", &app.code(&user.secret, 0)).await;
    assert_eq!(verified.status, 200, "{verified:?}");
}

// ---- configuration, run without a server -------------------------------------------------------------------------

/// The binary with a clean environment: only `PATH` and what the test sets, run from `dir` so that nothing lands in
/// the repository.
fn twofold(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_twofold"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "TWOFOLD_DATABASE_URL",
            format!("sqlite://{}", dir.join("twofold.db").display()),
        )
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("twofold binary ran")
}

#[test]
fn a_listen_address_that_is_not_one_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = run(twofold(dir.path()).env("TWOFOLD_LISTEN", "nonsense").arg("serve"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_failure_mentioning(&output, &["listen", "127.0.0.1:8080"]);
    assert!(!dir.path().join("twofold.db").exists(), "nothing should be created");
}

#[test]
fn an_unknown_key_in_the_config_file_is_named() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = dir.path().join("twofold.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:8081\"\nlisten_adress = \"127.0.0.1:9\"\n").expect("write config");
    let output = run(twofold(dir.path()).arg("--config").arg(&file).arg("serve"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_failure_mentioning(&output, &["listen_adress"]);
}

#[test]
fn a_missing_config_file_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = dir.path().join("missing.toml");
    let output = run(twofold(dir.path()).arg("--config").arg(&file).args(["user", "list"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_failure_mentioning(&output, &["missing.toml"]);
}

#[test]
fn a_key_file_that_is_a_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = dir.path().join("keys");
    std::fs::create_dir(&key).expect("folder");
    let output = run(twofold(dir.path())
        .env("TWOFOLD_SECRET_KEY_FILE", &key)
        .args(["user", "list"]));
    assert_failure_mentioning(&output, &["secret key file"]);
}

#[test]
fn a_key_file_with_garbage_is_refused_and_kept() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = dir.path().join("twofold.key");
    std::fs::write(&key, "this is not a key\n").expect("write key");
    let output = run(twofold(dir.path())
        .env("TWOFOLD_SECRET_KEY_FILE", &key)
        .args(["user", "list"]));
    assert_failure_mentioning(&output, &["secret key file", "does not hold a key"]);
    // The file was not replaced by a fresh key (that would make every stored secret unreadable).
    assert_eq!(std::fs::read_to_string(&key).expect("key"), "this is not a key\n");
}

#[test]
fn a_database_in_a_missing_folder_cannot_be_opened() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("nonexistent-dir/x.db").display());
    let output = run(twofold(dir.path())
        .env("TWOFOLD_DATABASE_URL", &url)
        .args(["user", "list"]));
    assert_failure_mentioning(&output, &["cannot open the database"]);
    assert!(!dir.path().join("nonexistent-dir").exists());
}

// ---- upgrades --------------------------------------------------------------------------------------------------

/// A trail written before events were numbered (migrations up to 0006, MACs without numbers, a pruning anchor over
/// an event id) verifies after the upgrade, and new events continue its chain with numbers.
#[tokio::test]
async fn an_audit_trail_from_before_numbering_verifies_after_the_upgrade() {
    use sqlx::migrate::Migrator;
    use twofold::audit::chain::{anchor_mac_v1, event_mac_v1, Content};

    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("twofold.db");
    let keys = twofold::crypto::Keys::load_or_create(&dir.path().join("twofold.key")).expect("key");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let db = sqlx::SqlitePool::connect_with(options).await.expect("database");
    let mut old = Migrator::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"))
        .await
        .expect("migrations");
    old.migrations = old
        .migrations
        .iter()
        .filter(|migration| migration.version <= 6)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    old.run(&db).await.expect("the schema before numbering");
    let mut prev = Vec::new();
    let mut macs = Vec::new();
    for (id, outcome) in [(1_i64, "success"), (2, "invalid_credentials"), (3, "success")] {
        let content = Content {
            at_ms: 1_700_000_000_000 + id,
            flow_id: Some("flow"),
            user_id: None,
            username: Some("olga"),
            client_addr: Some("127.0.0.1"),
            user_agent: None,
            event: "login",
            method: None,
            outcome,
        };
        let mac = event_mac_v1(&keys, &prev, &content);
        sqlx::query(
            "INSERT INTO audit_events (id, at_ms, flow_id, username, client_addr, event, outcome, prev_mac, mac) \
             VALUES ($1, $2, 'flow', 'olga', '127.0.0.1', 'login', $3, $4, $5)",
        )
        .bind(id)
        .bind(content.at_ms)
        .bind(outcome)
        .bind(&prev)
        .bind(&mac)
        .execute(&db)
        .await
        .expect("an old event");
        prev = mac.clone();
        macs.push(mac);
    }
    // The first event pruned the old way: an anchor over its id.
    sqlx::query("DELETE FROM audit_events WHERE id = 1")
        .execute(&db)
        .await
        .expect("prune");
    sqlx::query("INSERT INTO audit_anchor (id, last_id, last_mac, mac) VALUES (1, 1, $1, $2)")
        .bind(&macs[0])
        .bind(anchor_mac_v1(&keys, 1, &macs[0]))
        .execute(&db)
        .await
        .expect("an old anchor");
    db.close().await;

    let verified = twofold(dir.path()).args(["audit", "verify"]).output().expect("twofold");
    assert!(verified.status.success(), "{verified:?}");
    assert!(stdout(&verified).contains("2 events verified"), "{}", stdout(&verified));
    let mut adding = twofold(dir.path())
        .args(["user", "add", "olga", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("twofold user add");
    std::io::Write::write_all(
        &mut adding.stdin.take().expect("stdin"),
        b"correct horse battery staple\n",
    )
    .expect("the password");
    let added = adding.wait_with_output().expect("twofold user add");
    assert!(added.status.success(), "{added:?}");
    let verified = twofold(dir.path()).args(["audit", "verify"]).output().expect("twofold");
    assert!(verified.status.success(), "{verified:?}");
    assert!(stdout(&verified).contains("3 events verified"), "{}", stdout(&verified));
    let head = twofold(dir.path()).args(["audit", "head"]).output().expect("twofold");
    assert!(
        stdout(&head).starts_with("3:"),
        "the old events are numbered 1 and 2: {head:?}"
    );
}

// ---- twofold serve -----------------------------------------------------------------------------------------------

/// Kills the child when the test ends, whether it passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// `twofold serve` in `dir` with these variables, its stderr in `serve.log`, once it answers `GET /auth/session`
/// with 401.
async fn serve(dir: &Path, env: &[(&str, &str)]) -> (Server, PathBuf) {
    let port = free_port();
    let log: PathBuf = dir.join("serve.log");
    let mut command = twofold(dir);
    command
        .env("TWOFOLD_LISTEN", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut server = Server(command.spawn().expect("twofold serve started"));
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/auth/session");
    let mut answered = None;
    // Waiting for a process to start listening, not for time to pass: up to ~10 s in 100 ms polls.
    for _ in 0..100 {
        if let Some(status) = server.0.try_wait().expect("child status") {
            panic!(
                "twofold serve exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if let Ok(response) = client.get(&url).send().await {
            answered = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(answered, Some(401), "GET /auth/session; log:\n{log_text}");
    (server, log)
}

#[tokio::test]
async fn serve_starts_creates_its_files_and_answers() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("temporary folder");
    let (server, log) = serve(dir.path(), &[]).await;
    let key = dir.path().join("twofold.key");
    assert!(
        dir.path().join("twofold.db").is_file(),
        "the database file was not created"
    );
    // The database and its WAL files hold sealed secrets and hashes: no other local user may read them.
    for name in ["twofold.key", "twofold.db", "twofold.db-wal", "twofold.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|error| panic!("{name} created: {error}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} mode {:o}", mode & 0o777);
    }
    let content = std::fs::read_to_string(&key).expect("key text");
    assert_eq!(content.trim().len(), 64, "a 32-byte key in hex");
    drop(server);
    // Written to a file, the log is plain text: no colour codes.
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file: {text:?}");
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let (server, log) = serve(dir.path(), &[("TWOFOLD_LOG_FORMAT", "json")]).await;
    drop(server);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect();
    assert!(!lines.is_empty(), "nothing logged");
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|line| line["fields"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("listening"))),
        "{text}"
    );
}
