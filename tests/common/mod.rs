//! The test harness: a real Twofold server on a random loopback port, with its own SQLite file and key in a fresh
//! temporary folder and a [`FixedClock`] the test moves by hand. The server runs on its own multi-threaded runtime,
//! like the real binary, so tests exercise real concurrency.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::SqlitePool;
use tempfile::TempDir;
use time::Duration;
use twofold::clock::{Clock, FixedClock};
use twofold::config::Config;
use twofold::http::AppState;

/// Mid-way through a TOTP step (1_800_000_000 is a multiple of 30), so a test has 15 s either side.
pub const START: i64 = 1_800_000_015;

pub struct Options {
    pub allow_registration: bool,
    pub public_url: String,
    pub extra_env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_registration: true,
            public_url: "http://127.0.0.1:8080".into(),
            extra_env: Vec::new(),
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub clock: Arc<FixedClock>,
    pub dir: TempDir,
    pub db_path: PathBuf,
    pub key_path: PathBuf,
    pub http: reqwest::Client,
    state: AppState,
    runtime: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An HTTP answer, read completely.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    /// The `twofold_session` value this answer sets, if any (empty when it clears the cookie).
    pub fn cookie(&self) -> Option<String> {
        self.set_cookie()
            .and_then(|header| header.split(';').next().map(str::to_owned))
            .and_then(|pair| pair.strip_prefix("twofold_session=").map(str::to_owned))
    }

    /// The whole `Set-Cookie` header for `twofold_session`.
    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("twofold_session="))
            .map(str::to_owned)
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Asserts the contract's error body: `{"error": code, "message": non-empty}` with this status.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(self.error(), code, "error code of {self:?}");
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message of {self:?}"
        );
    }
}

/// A user with an authenticator app, as a test sees them.
pub struct Enrolled {
    pub username: String,
    pub password: String,
    pub secret: Vec<u8>,
    pub recovery_codes: Vec<String>,
    /// The full session used to enroll.
    pub cookie: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let db_path = dir.path().join("twofold.db");
        let key_path = dir.path().join("twofold.key");
        let mut env = vec![
            (
                "TWOFOLD_DATABASE_URL".to_owned(),
                format!("sqlite://{}", db_path.display()),
            ),
            (
                "TWOFOLD_ALLOW_REGISTRATION".to_owned(),
                options.allow_registration.to_string(),
            ),
            ("TWOFOLD_PUBLIC_URL".to_owned(), options.public_url.clone()),
            ("TWOFOLD_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ];
        env.extend(options.extra_env);
        let config = Config::load_from(None, env).expect("test configuration");
        let clock = Arc::new(FixedClock::at_unix(START));
        let server_clock: Arc<dyn Clock> = clock.clone();

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let state = twofold::app::build(&config, server_clock).await.expect("server state");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
                let addr = listener.local_addr().expect("address");
                ready_tx
                    .send((addr, state.clone(), tokio::runtime::Handle::current()))
                    .expect("test is waiting");
                let shutdown = async {
                    let _ = shutdown_rx.await;
                };
                twofold::app::serve(state, listener, shutdown).await.expect("server");
            });
        });
        let (addr, state, runtime) = tokio::task::spawn_blocking(move || ready_rx.recv().expect("server started"))
            .await
            .expect("join");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            addr,
            base: format!("http://{addr}"),
            clock,
            dir,
            db_path,
            key_path,
            http,
            state,
            runtime,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(Duration::seconds(seconds));
    }

    /// Sends any request and reads the whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Resp {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder, cookie: Option<&str>) -> reqwest::RequestBuilder {
        match cookie {
            Some(value) => request.header(COOKIE, format!("twofold_session={value}")),
            None => request,
        }
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        self.send(self.with_cookie(self.http.get(self.url(path)), cookie)).await
    }

    pub async fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> Resp {
        self.send(self.with_cookie(self.http.post(self.url(path)), cookie).json(&body))
            .await
    }

    /// A POST with no body at all (logout, setup, recovery codes).
    pub async fn post_empty(&self, path: &str, cookie: Option<&str>) -> Resp {
        self.send(self.with_cookie(self.http.post(self.url(path)), cookie))
            .await
    }

    pub async fn delete(&self, path: &str, cookie: Option<&str>, body: Value) -> Resp {
        self.send(self.with_cookie(self.http.delete(self.url(path)), cookie).json(&body))
            .await
    }

    /// A POST with a raw body and content type, for malformed input.
    pub async fn post_raw(&self, path: &str, cookie: Option<&str>, content_type: &str, body: Vec<u8>) -> Resp {
        self.send(
            self.with_cookie(self.http.post(self.url(path)), cookie)
                .header(CONTENT_TYPE, content_type)
                .body(body),
        )
        .await
    }

    /// Runs `work` with the server's login flow on the server's runtime (for operator actions under the test clock).
    pub async fn on_server<F, Fut, T>(&self, work: F) -> T
    where
        F: FnOnce(Arc<twofold::flow::Flow>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let future = work(self.state.flow.clone());
        self.runtime.spawn(future).await.expect("join")
    }

    /// Creates a user through the same code path as `twofold user add`, on the server's runtime.
    pub async fn add_user(&self, username: &str, password: &str) {
        let flow = self.state.flow.clone();
        let (username, password) = (username.to_owned(), password.to_owned());
        self.runtime
            .spawn(async move { flow.add_user(&username, &password).await })
            .await
            .expect("join")
            .expect("user added");
    }

    pub async fn login(&self, username: &str, password: &str) -> Resp {
        self.post(
            "/auth/login",
            None,
            json!({ "username": username, "password": password }),
        )
        .await
    }

    /// The current TOTP code for `secret` on the server's clock, `offset` steps away.
    pub fn code(&self, secret: &[u8], offset: i64) -> String {
        let at = self.now() + offset * 30;
        twofold::otp::totp(secret, at as u64, 30, 6, twofold::otp::Algorithm::Sha1)
    }

    /// Adds `username`, signs in, sets up and confirms an authenticator app, then moves the clock to the next TOTP
    /// step so the code used to confirm is behind. Returns the secret and the first recovery codes.
    pub async fn enroll(&self, username: &str) -> Enrolled {
        self.add_user(username, PASSWORD).await;
        let login = self.login(username, PASSWORD).await;
        assert_eq!(login.status, 200, "{login:?}");
        assert_eq!(login.body["status"], "authenticated");
        let cookie = login.cookie().expect("session cookie");
        let setup = self.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
        assert_eq!(setup.status, 200, "{setup:?}");
        let secret = data_encoding::BASE32_NOPAD
            .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
            .expect("base32 secret");
        let confirm = self
            .post(
                "/auth/2fa/totp/confirm",
                Some(&cookie),
                json!({ "code": self.code(&secret, 0) }),
            )
            .await;
        assert_eq!(confirm.status, 200, "{confirm:?}");
        let recovery_codes = confirm.body["recovery_codes"]
            .as_array()
            .expect("recovery codes")
            .iter()
            .map(|c| c.as_str().expect("code").to_owned())
            .collect();
        self.advance(30);
        Enrolled {
            username: username.to_owned(),
            password: PASSWORD.to_owned(),
            secret,
            recovery_codes,
            cookie,
        }
    }

    /// Password step for an enrolled user; returns the pending session's cookie.
    pub async fn pending(&self, user: &Enrolled) -> String {
        let login = self.login(&user.username, &user.password).await;
        assert_eq!(login.status, 200, "{login:?}");
        assert_eq!(login.body["status"], "2fa_required", "{login:?}");
        login.cookie().expect("pending cookie")
    }

    pub async fn verify(&self, cookie: &str, method: &str, code: &str) -> Resp {
        self.post(
            "/auth/verify-2fa",
            Some(cookie),
            json!({ "method": method, "code": code }),
        )
        .await
    }

    /// Both steps with the current TOTP code, then the clock moves one step on; returns the full session cookie.
    pub async fn sign_in(&self, user: &Enrolled) -> String {
        let pending = self.pending(user).await;
        let verified = self.verify(&pending, "totp", &self.code(&user.secret, 0)).await;
        assert_eq!(verified.status, 200, "{verified:?}");
        self.advance(30);
        verified.cookie().expect("full session cookie")
    }

    /// A separate connection pool to the server's database, for looking at what was stored.
    pub async fn db(&self) -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite://{}", self.db_path.display()))
            .await
            .expect("database")
    }

    /// Every row of the tables that hold state (not the audit trail), as text, to compare before and after.
    pub async fn state_snapshot(&self) -> String {
        let db = self.db().await;
        let mut out = String::new();
        for table in ["users", "sessions", "recovery_codes", "login_throttle"] {
            let columns: Vec<(String,)> = sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(&db)
                .await
                .expect("columns");
            let row = columns
                .iter()
                .map(|(name,)| format!("quote({name})"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT {row} FROM {table} ORDER BY 1"))
                .fetch_all(&db)
                .await
                .expect("rows");
            out.push_str(&format!("{table}: {rows:?}\n"));
        }
        db.close().await;
        out
    }

    /// Runs the `twofold` binary against this test's database and key.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_twofold"));
        command
            .args(args)
            .env("TWOFOLD_DATABASE_URL", format!("sqlite://{}", self.db_path.display()))
            .env("TWOFOLD_SECRET_KEY_FILE", &self.key_path)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("twofold binary");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("twofold finished")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
