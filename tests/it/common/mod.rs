//! The test harness: a real Twofold server on a random loopback port, with its own database and key and a
//! [`FixedClock`] the test moves by hand. The server runs on its own multi-threaded runtime, like the real binary, so
//! tests exercise real concurrency.
//!
//! One suite, two backends: by default each test gets a fresh SQLite file in a temporary folder; when
//! `TWOFOLD_TEST_DATABASE_URL` names a PostgreSQL database (e.g. `postgres://postgres@127.0.0.1:5432/test`), each test
//! gets a fresh schema there instead, dropped when the test ends, so tests still run in parallel. Tests look at what
//! was stored through [`TestApp::db`] (an `AnyPool`, the same SQL for both) and [`TestApp::rows`].
#![allow(dead_code)]

mod client;
pub mod instances;
mod output;
mod stand;

pub use client::{recovery_codes, Client};
pub use output::{assert_failure_mentioning, assert_success, stderr, stdout};
pub use stand::{six_digits_in, Behaviour, Received, Stand};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use reqwest::header::{HeaderMap, CONTENT_TYPE, SET_COOKIE};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, Row};
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
    /// Configuration keys (`sms.gateway`) and their values as text, as the environment would give them.
    pub settings: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_registration: true,
            public_url: "http://127.0.0.1:8080".into(),
            settings: Vec::new(),
        }
    }
}

/// The PostgreSQL database the tests run against, if `TWOFOLD_TEST_DATABASE_URL` names one.
pub fn postgres_test_url() -> Option<String> {
    std::env::var("TWOFOLD_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// `url` with PostgreSQL's `search_path` set to `schema` for every connection made from it.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let mut url = url::Url::parse(url).expect("TWOFOLD_TEST_DATABASE_URL is a URL");
    url.query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    url.to_string()
}

/// A fresh schema in the PostgreSQL test database, dropped with everything in it when this is dropped.
pub struct PgSchema {
    admin_url: String,
    pub name: String,
    /// The test database's URL with this schema as the search path: what Twofold is given.
    pub url: String,
}

impl PgSchema {
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("twofold_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::postgres::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach TWOFOLD_TEST_DATABASE_URL's PostgreSQL: {e}"));
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create schema");
        let _ = admin.close().await;
        Self {
            admin_url: admin_url.to_owned(),
            url: with_search_path(admin_url, &name),
            name,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future: use a thread with its own.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// One stored value, read the same way from either backend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    /// The value as bytes the way SQLite's `CAST(x AS BLOB)` gives them (integers as their decimal text).
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Self::Null => None,
            Self::Int(n) => Some(n.to_string().into_bytes()),
            Self::Text(text) => Some(text.into_bytes()),
            Self::Bytes(bytes) => Some(bytes),
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Null => f.write_str("NULL"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Text(text) => write!(f, "{text:?}"),
            Self::Bytes(bytes) => write!(f, "X'{}'", hex::encode(bytes)),
        }
    }
}

/// An `AnyPool` (one connection) on `url`, SQLite or PostgreSQL.
pub async fn any_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("database")
}

/// Every row of `table` as cells, in the table's column order, sorted.
pub async fn table_rows(db: &AnyPool, table: &str) -> Vec<Vec<Cell>> {
    let rows = sqlx::query(&format!("SELECT * FROM {table}"))
        .fetch_all(db)
        .await
        .unwrap_or_else(|e| panic!("rows of {table}: {e}"));
    let mut out: Vec<Vec<Cell>> = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    if let Ok(value) = row.try_get::<Option<i64>, _>(i) {
                        value.map_or(Cell::Null, Cell::Int)
                    } else if let Ok(value) = row.try_get::<Option<String>, _>(i) {
                        value.map_or(Cell::Null, Cell::Text)
                    } else {
                        let value: Option<Vec<u8>> =
                            row.try_get(i).unwrap_or_else(|e| panic!("column {i} of {table}: {e}"));
                        value.map_or(Cell::Null, Cell::Bytes)
                    }
                })
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// The tables of Twofold's schema (not sqlx's migration bookkeeping), by name.
pub async fn table_names(db: &AnyPool, postgres: bool) -> Vec<String> {
    let sql = if postgres {
        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' ORDER BY 1"
    } else {
        "SELECT name FROM sqlite_master \
         WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY 1"
    };
    sqlx::query_scalar(sql).fetch_all(db).await.expect("tables")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub clock: Arc<FixedClock>,
    pub dir: TempDir,
    /// What the server was given as `database_url`: an SQLite file in `dir`, or a schema of the PostgreSQL test
    /// database.
    pub db_url: String,
    pub key_path: PathBuf,
    pub http: reqwest::Client,
    state: AppState,
    runtime: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Dropped after the server has stopped.
    schema: Option<PgSchema>,
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

/// The Python interpreter of the test virtual environment: `TWOFOLD_TEST_PYTHON`, else `.venv/bin/python` in the
/// crate. Fails, rather than skipping, when neither exists.
pub fn python() -> PathBuf {
    let from_env = std::env::var_os("TWOFOLD_TEST_PYTHON").map(PathBuf::from);
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let candidate = from_env.unwrap_or(default);
    assert!(
        candidate.exists(),
        "no Python interpreter at {}: run scripts/test, which creates .venv with the packages in \
         tests/requirements.txt (or set TWOFOLD_TEST_PYTHON to a Python with the packages of tests/requirements.txt)",
        candidate.display()
    );
    candidate
}

/// Sends a request and reads the whole answer; an error only when no answer came (connection refused or cut).
pub async fn read(request: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Resp {
        status,
        headers,
        text,
        body,
    })
}

impl Client for TestApp {
    fn base(&self) -> &str {
        &self.base
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let key_path = dir.path().join("twofold.key");
        let schema = match postgres_test_url() {
            Some(url) => Some(PgSchema::create(&url).await),
            None => None,
        };
        let db_url = match &schema {
            Some(schema) => schema.url.clone(),
            None => format!("sqlite://{}", dir.path().join("twofold.db").display()),
        };
        let mut settings = vec![
            ("database_url".to_owned(), db_url.clone()),
            ("secret_key_file".to_owned(), key_path.display().to_string()),
            ("allow_registration".to_owned(), options.allow_registration.to_string()),
            ("public_url".to_owned(), options.public_url.clone()),
            ("listen".to_owned(), "127.0.0.1:0".to_owned()),
        ];
        settings.extend(options.settings);
        let config = Config::load_from(None, settings).expect("test configuration");
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
                let server = twofold::app::build(&config, server_clock).await.expect("server state");
                let state = server.state.clone();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
                let addr = listener.local_addr().expect("address");
                ready_tx
                    .send((addr, state.clone(), tokio::runtime::Handle::current()))
                    .expect("test is waiting");
                let shutdown = async {
                    let _ = shutdown_rx.await;
                };
                twofold::app::serve(server, listener, shutdown).await.expect("server");
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
            db_url,
            key_path,
            http,
            state,
            runtime,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            schema,
        }
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(Duration::seconds(seconds));
    }

    /// A POST with a raw body and content type, for malformed input.
    pub async fn post_raw(&self, path: &str, cookie: Option<&str>, content_type: &str, body: Vec<u8>) -> Resp {
        self.send(
            self.request(reqwest::Method::POST, path, cookie)
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
            .spawn(async move { flow.add_user(&username, &password, &Default::default()).await })
            .await
            .expect("join")
            .expect("user added");
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
        let recovery_codes = recovery_codes(&confirm);
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

    /// Both steps with the current TOTP code, then the clock moves one step on; returns the full session cookie.
    pub async fn sign_in(&self, user: &Enrolled) -> String {
        let pending = self.pending(user).await;
        let verified = self.verify(&pending, "totp", &self.code(&user.secret, 0)).await;
        assert_eq!(verified.status, 200, "{verified:?}");
        self.advance(30);
        verified.cookie().expect("full session cookie")
    }

    /// A step-up on `cookie` with the current code of `secret`, so the session may change the account's factors for
    /// 5 minutes; then the clock moves one step on, so the next code is a new one.
    pub async fn step_up(&self, cookie: &str, secret: &[u8]) {
        let stepped = self
            .post(
                "/auth/step-up",
                Some(cookie),
                json!({ "method": "totp", "code": self.code(secret, 0) }),
            )
            .await;
        assert_eq!(stepped.status, 204, "{stepped:?}");
        self.advance(30);
    }

    /// Whether this test runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.schema.is_some()
    }

    /// A separate connection pool to the server's database, for looking at what was stored. Write the SQL for both
    /// backends: `$1` parameters, no SQLite- or PostgreSQL-only functions.
    pub async fn db(&self) -> AnyPool {
        any_pool(&self.db_url).await
    }

    /// The tables of Twofold's schema.
    pub async fn tables(&self) -> Vec<String> {
        let db = self.db().await;
        let tables = table_names(&db, self.on_postgres()).await;
        db.close().await;
        tables
    }

    /// Every row of `table`, sorted.
    pub async fn rows(&self, table: &str) -> Vec<Vec<Cell>> {
        let db = self.db().await;
        let rows = table_rows(&db, table).await;
        db.close().await;
        rows
    }

    /// Every row of the tables that hold state (not the audit trail), as text, to compare before and after.
    pub async fn state_snapshot(&self) -> String {
        let db = self.db().await;
        let mut out = String::new();
        for table in [
            "users",
            "sessions",
            "recovery_codes",
            "login_throttle",
            "sms_codes",
            "sms_sends",
        ] {
            let rows: Vec<String> = table_rows(&db, table)
                .await
                .iter()
                .map(|row| row.iter().map(Cell::to_string).collect::<Vec<_>>().join(","))
                .collect();
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
            .env("TWOFOLD_DATABASE_URL", &self.db_url)
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
