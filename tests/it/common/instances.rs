//! Real `twofold serve` processes, for the tests that need several instances on one database or must kill one, and a
//! private PostgreSQL server that a test starts, stops and starts again. These processes use the real clock, so
//! codes come from [`code_at_step`] with real time steps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::{read, recovery_codes, Client, Resp, PASSWORD};

/// The TOTP step of the wall clock now.
pub fn current_step() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_secs()).expect("seconds fit") / 30
}

/// The code `secret` shows during TOTP step `step`.
pub fn code_at_step(secret: &[u8], step: i64) -> String {
    twofold::otp::totp(secret, (step * 30) as u64, 30, 6, twofold::otp::Algorithm::Sha1)
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// A user enrolled through an instance's API: the authenticator's secret and the step whose code confirmed it. Codes
/// of `step + 1` (accepted until step + 2 ends) are good for the next sign-in without waiting for the clock.
pub struct RealUser {
    pub username: String,
    pub secret: Vec<u8>,
    pub step: i64,
    pub recovery_codes: Vec<String>,
}

/// One `twofold serve` process on a free loopback port, killed when dropped. Its API is [`Api`]'s methods.
pub struct Instance {
    api: Api,
    child: Child,
    log: PathBuf,
}

impl std::ops::Deref for Instance {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The HTTP API of one instance; cheap to clone into tasks that send traffic.
#[derive(Clone)]
pub struct Api {
    pub name: String,
    pub base: String,
    pub http: reqwest::Client,
}

impl Instance {
    /// Starts `twofold serve` (without waiting for it: see [`Instance::ready`]) with its working directory and log
    /// in `dir`, allowing registration.
    pub fn spawn(name: &str, database_url: &str, key_file: &Path, dir: &Path, extra_env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_twofold"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TWOFOLD_LISTEN", format!("127.0.0.1:{port}"))
            .env("TWOFOLD_DATABASE_URL", database_url)
            .env("TWOFOLD_SECRET_KEY_FILE", key_file)
            .env("TWOFOLD_ALLOW_REGISTRATION", "true")
            .env("TWOFOLD_LOG", "info")
            .current_dir(dir)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn().expect("twofold serve started");
        let api = Api {
            name: name.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        };
        Self { api, child, log }
    }

    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// Waits until the process answers HTTP (up to 30 s), failing the test with its log if it exits first.
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            if self.http.get(self.url("/auth/session")).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not answer within 30 s:\n{}", self.name, self.log());
    }

    /// Waits for the process to exit by itself (a start-up failure), returning its exit code and log.
    pub async fn exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return (status.code(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} kept running:\n{}", self.name, self.log());
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Client for Api {
    fn base(&self) -> &str {
        &self.base
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn now(&self) -> i64 {
        current_step() * 30
    }
}

impl Api {
    /// This API as a trusting instance sees it behind a proxy that forwards for `client`: its own client, whose
    /// requests all say `X-Forwarded-For: client`.
    pub fn forwarded_for(&self, client: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", client.parse().expect("an address header"));
        Api {
            name: self.name.clone(),
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(headers)
                .build()
                .expect("client"),
        }
    }

    /// A GET whose failure to connect is the test's to judge (an instance killed or a database down).
    pub async fn try_get(&self, path: &str, cookie: Option<&str>) -> Result<Resp, reqwest::Error> {
        read(self.request(Method::GET, path, cookie)).await
    }

    /// As [`Api::try_get`], for a POST with an optional JSON body.
    pub async fn try_post(
        &self,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Result<Resp, reqwest::Error> {
        let request = self.request(Method::POST, path, cookie);
        read(match body {
            Some(body) => request.json(&body),
            None => request,
        })
        .await
    }

    pub async fn register(&self, username: &str) {
        let body = json!({ "username": username, "password": PASSWORD });
        let registered = self.post("/auth/register", None, body).await;
        assert_eq!(registered.status, 201, "{registered:?}");
    }

    /// Registers `username` and sets up and confirms an authenticator app, all on this instance.
    pub async fn enroll(&self, username: &str) -> RealUser {
        self.register(username).await;
        let login = self.login(username, PASSWORD).await;
        assert_eq!(login.body["status"], "authenticated", "{login:?}");
        let cookie = login.cookie().expect("session cookie");
        let setup = self.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
        assert_eq!(setup.status, 200, "{setup:?}");
        let secret = data_encoding::BASE32_NOPAD
            .decode(setup.body["secret"].as_str().expect("secret").as_bytes())
            .expect("base32 secret");
        let step = current_step();
        let body = json!({ "code": code_at_step(&secret, step) });
        let confirm = self.post("/auth/2fa/totp/confirm", Some(&cookie), body).await;
        assert_eq!(confirm.status, 200, "{confirm:?}");
        let recovery_codes = recovery_codes(&confirm);
        RealUser {
            username: username.to_owned(),
            secret,
            step,
            recovery_codes,
        }
    }

    /// The password step for an enrolled user; the pending session's cookie.
    pub async fn pending(&self, username: &str) -> String {
        let login = self.login(username, PASSWORD).await;
        assert_eq!(login.body["status"], "2fa_required", "{login:?}");
        login.cookie().expect("pending cookie")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where PostgreSQL's server programs are: on `PATH`, or in Debian's versioned folder.
fn postgres_program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    on_path
        .into_iter()
        .chain(debian)
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("PostgreSQL's {name} was not found: install Debian's postgresql package"))
}

fn output_of(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect(program);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A PostgreSQL server of the test's own: `initdb` into a temporary folder, listening on a free loopback port with
/// trust authentication, stopped and removed when dropped. PostgreSQL refuses to run as root, so as root it runs as
/// the `postgres` user.
pub struct PrivatePostgres {
    pub port: u16,
    dir: TempDir,
    run_as: Option<String>,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let run_as = (output_of("id", &["-u"]) == "0").then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let uid = output_of("id", &["-u", user])
                .parse()
                .expect("the postgres user exists");
            let gid = output_of("id", &["-g", user])
                .parse()
                .expect("the postgres group exists");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let server = Self {
            port: free_port(),
            dir,
            run_as,
        };
        let data = server.data();
        server.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        );
        server.start_again();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = postgres_program(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let output = command.args(args).output().expect("PostgreSQL program ran");
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server the way an operator's restart does: running sessions are ended at once.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "60", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let program = postgres_program("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&program)
                .args(args)
                .output(),
            None => Command::new(&program).args(args).output(),
        };
    }
}
