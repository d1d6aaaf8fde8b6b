//! What an unauthenticated client can do to the server's resources: invent HTTP methods (the metrics' labels), hold
//! connections open idle or trickle a header or body (the timeouts), open more connections than the process has
//! file descriptors (the cap), and leave a body unread on a kept-alive connection. Each test waits for the server's
//! own timeouts, configured short, to act; none sleeps to let time pass for the login flow, whose clock is fixed.

use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any of these tests waits for the server to act on a timeout of well under a second.
const PATIENCE: Duration = Duration::from_secs(5);

async fn spawn(limits: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(Options {
        settings: limits
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ..Options::default()
    })
    .await
}

/// Reads until the server closes the connection (or resets it), at most [`PATIENCE`]; returns what was read and how
/// long it took. Panics if the connection is still open then.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE.saturating_sub(started.elapsed()), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answer, started.elapsed()),
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {PATIENCE:?}; read so far: {:?}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
}

/// Reads one whole HTTP answer (head and a `Content-Length` body) from a kept-alive connection.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("an answer within the patience")
            .expect("read");
        assert!(read > 0, "the connection closed before a whole answer: {text:?}");
        answer.extend_from_slice(&buffer[..read]);
    }
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    let before = app.get("/metrics", None).await.text.len();
    for n in 0..400 {
        let method = reqwest::Method::from_bytes(format!("M{n:06}AAAAAAAAAAAAAAAA").as_bytes()).expect("a method");
        let answer = app.send(app.http.request(method, app.url("/healthz"))).await;
        assert!(answer.status < 500, "{answer:?}");
    }
    let metrics = app.get("/metrics", None).await.text;
    assert!(!metrics.contains("M000"), "a client's method became a label");
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
    // 400 label sets would add about 17 lines of some 100 bytes each; a closed set adds a handful of series.
    assert!(
        metrics.len() < before + 16 * 1024,
        "/metrics grew from {before} to {} bytes",
        metrics.len()
    );
    let series = metrics
        .lines()
        .filter(|line| line.starts_with("twofold_http_request_duration_seconds_count"))
        .count();
    assert!(series <= 4, "{series} request series:\n{metrics}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_keep_alive_timeout() {
    let app = spawn(&[("keep_alive_timeout", "300ms")]).await;
    // A socket that never sends a byte.
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    let (read, waited) = read_until_closed(&mut silent).await;
    assert!(read.is_empty());
    assert!(waited >= Duration::from_millis(250), "closed after {waited:?}");
    // A kept-alive connection after an answer.
    let mut used = TcpStream::connect(app.addr).await.expect("connect");
    used.write_all(b"GET /healthz HTTP/1.1\r\nHost: twofold\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(status_of(&read_answer(&mut used).await), 200);
    let (rest, _) = read_until_closed(&mut used).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // The server still serves.
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn a_header_trickled_a_byte_at_a_time_is_cut_off() {
    let app = spawn(&[("header_read_timeout", "500ms"), ("keep_alive_timeout", "10s")]).await;
    let stream = TcpStream::connect(app.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // Slowloris: a byte every 50 ms, so the connection is never idle, but the header never ends.
    let trickle = tokio::spawn(async move {
        let _ = writer.write_all(b"GET /healthz HTTP/1.1\r\nHost: twofold\r\n").await;
        for byte in b"X-Padding: ".iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buffer = [0u8; 1024];
    let outcome = tokio::time::timeout(PATIENCE, reader.read(&mut buffer)).await;
    trickle.abort();
    let waited = started.elapsed();
    match outcome {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "an answer to a header that never ended: {:?}",
            String::from_utf8_lossy(&buffer[..n])
        ),
        Err(_) => panic!("the trickled header was still being read after {PATIENCE:?}"),
    }
    assert!(waited >= Duration::from_millis(450), "cut off after {waited:?}");
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    let app = spawn(&[("body_read_timeout", "300ms")]).await;
    app.add_user("alice", PASSWORD).await;
    let before = app.state_snapshot().await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: twofold\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .expect("write");
    let (answer, waited) = read_until_closed(&mut stream).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(waited >= Duration::from_millis(250), "answered after {waited:?}");
    assert_eq!(before, app.state_snapshot().await);
}

#[tokio::test]
async fn connections_past_the_cap_wait_and_are_served_when_one_closes() {
    let app = spawn(&[("max_connections", "16"), ("keep_alive_timeout", "500ms")]).await;
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    // The kernel completes the handshake; the server takes the connection only when one of the 16 closes, which
    // the keep-alive timeout sees to.
    let started = Instant::now();
    let answer = tokio::time::timeout(PATIENCE, app.http.get(app.url("/healthz")).send())
        .await
        .expect("served once an idle connection timed out")
        .expect("answer");
    assert_eq!(answer.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "served after {:?}: the cap did not hold",
        started.elapsed()
    );
    let metrics = app.get("/metrics", None).await.text;
    let reached = metrics
        .lines()
        .find_map(|line| line.strip_prefix("twofold_http_connection_cap_reached_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no cap counter in:\n{metrics}"));
    assert!(reached >= 1.0, "{metrics}");
    drop(idle);
}

/// hyper closes a connection whose request body was left unread when the answer went out; a client that reused the
/// connection in that moment got no answer. The body is sent only after the server had time to answer without it.
async fn ignored_body_keeps_the_connection(app: &TestApp, path: &str, cookie: Option<&str>) {
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let body = format!("{{\"ignored\":\"{}\"}}", "x".repeat(2000));
    let cookie = cookie
        .map(|c| format!("Cookie: twofold_session={c}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: twofold\r\nContent-Type: application/json\r\n{cookie}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(body.as_bytes()).await.expect("write body");
    let first = read_answer(&mut stream).await;
    assert!(status_of(&first) < 500, "{first}");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: twofold\r\n\r\n")
        .await
        .expect("write the second request");
    let second = read_answer(&mut stream).await;
    assert_eq!(status_of(&second), 200, "{second}");
}

#[tokio::test]
async fn a_post_whose_body_is_ignored_keeps_its_connection() {
    let app = TestApp::spawn().await;
    ignored_body_keeps_the_connection(&app, "/auth/logout", None).await;
    let user = app.enroll("alice").await;
    ignored_body_keeps_the_connection(&app, "/auth/2fa/recovery-codes", Some(&user.cookie)).await;
    ignored_body_keeps_the_connection(&app, "/auth/logout", Some(&user.cookie)).await;
}

#[tokio::test]
async fn a_thousand_requests_on_reused_connections_all_get_answers() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()
        .expect("client");
    let mut failures = Vec::new();
    for n in 0..1000 {
        let request = if n % 2 == 0 {
            client
                .post(app.url("/auth/logout"))
                .header("Content-Type", "application/json")
                .body(format!("{{\"n\":{n}}}"))
        } else {
            client.get(app.url("/healthz"))
        };
        match request.send().await {
            Ok(answer) if answer.status().as_u16() < 500 => {}
            Ok(answer) => failures.push(format!("{n}: {}", answer.status())),
            Err(error) => failures.push(format!("{n}: {error}")),
        }
    }
    assert!(failures.is_empty(), "{} failed: {failures:?}", failures.len());
}

/// `twofold serve` started by `sh` after `ulimit` flags, on a free port; returns the child and its log file.
fn serve_under_ulimit(dir: &std::path::Path, ulimit: &str) -> (std::process::Child, u16, std::path::PathBuf) {
    let port = crate::common::instances::free_port();
    let log = dir.join("serve.log");
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_twofold"))
        .env("TWOFOLD_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "TWOFOLD_DATABASE_URL",
            format!("sqlite://{}", dir.join("twofold.db").display()),
        )
        .env("TWOFOLD_SECRET_KEY_FILE", dir.join("twofold.key"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("sh");
    (child, port, log)
}

async fn wait_for_healthz(port: u16, child: &mut std::process::Child, log: &std::path::Path) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.try_wait().expect("status") {
            panic!(
                "twofold exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no answer: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// The soft and hard "Max open files" of a process.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[tokio::test]
async fn the_descriptor_limit_is_raised_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, port, log) = serve_under_ulimit(dir.path(), "-Sn 256");
    wait_for_healthz(port, &mut child, &log).await;
    let (soft, hard) = open_files_limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(soft, hard, "the soft limit stayed below the hard one");
    assert_ne!(soft, "256");
}

#[tokio::test]
async fn a_descriptor_limit_below_the_cap_lowers_it_and_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, port, log) = serve_under_ulimit(dir.path(), "-n 300");
    wait_for_healthz(port, &mut child, &log).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("file-descriptor limit") && log.contains("max_connections"),
        "{log}"
    );
}
