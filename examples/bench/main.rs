//! Twofold's benchmark suite: every figure of BENCHMARKS.md in one run, each beside a floor measured in the same run
//! on the same machine. Run it through `bench/run`, which builds the server, this program and the bare handler, and
//! gives it a scratch folder.
//!
//! The order keeps the whole run short: the bare handler first, then one SQLite server whose database grows in place
//! from the smallest scale to the largest, with figures 2 to 4 (and the Argon2id bound) at the middle one, then the
//! verify figure on PostgreSQL.

mod client;
mod hash;
mod load;
mod report;
mod seed;
mod server;
mod table;
mod users;
mod workload;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sqlx::Connection as _;
use twofold::crypto::password::{Password, PasswordHasher};

use load::{closed_loop, open_loop, Measured, Window};
use report::{count, Headline, Report, ScalePoint, Setting};
use seed::Seeder;
use server::Server;
use users::Users;
use workload::{Login, SessionCheck, Sessions, Verify};

/// Figure 1's load: a busy front end's worth of connections.
const SESSION_CONNECTIONS: usize = 64;
/// Verifies queue for the database's write lock; more connections than this only lengthen the queue.
const VERIFY_CONNECTIONS: usize = 16;
/// Enough logins in flight to keep every core hashing.
const LOGIN_CONNECTIONS: usize = 8;
/// Figure 4: session checks at a fixed rate, spread over a few connections so a slow answer delays no other check.
const ISOLATION_RATE: f64 = 200.0;
const ISOLATION_CONNECTIONS: usize = 4;

/// Figure 3's targets, verifies per second on this 2-core machine: one per database.
const VERIFY_TARGET_SQLITE: f64 = 2_000.0;
const VERIFY_TARGET_POSTGRES: f64 = 1_500.0;

#[derive(Parser)]
#[command(about = "Twofold's benchmark suite; run it through bench/run")]
struct Args {
    /// A scratch folder for the servers' databases, key and logs.
    #[arg(long)]
    dir: PathBuf,
    /// A few seconds on a tiny SQLite database, to check that the suite works; the numbers mean little.
    #[arg(long)]
    smoke: bool,
    /// A PostgreSQL database for the PostgreSQL row of figure 3; the run uses a schema of its own there.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Also print the table as Markdown.
    #[arg(long)]
    markdown: bool,
}

/// How big and how long: the full suite, or the smoke test.
struct Profile {
    window: Window,
    /// The database sizes of figure 5, smallest first; figures 2 to 4 run at the second.
    scales: Vec<usize>,
    /// The most verifies a run prepares pending sessions for: more than the window can use at the target rate.
    verify_cap: usize,
    postgres_users: usize,
    /// The whole run stops with an error after this long, whatever hangs.
    deadline: Duration,
    smoke: bool,
}

impl Profile {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                window: Window {
                    warmup: Duration::from_millis(200),
                    measure: Duration::from_millis(500),
                },
                scales: vec![200, 1_000],
                // Half the larger scale, so that the logins after it find users whose code of this step is unused.
                verify_cap: 500,
                postgres_users: 0,
                deadline: Duration::from_secs(120),
                smoke,
            }
        } else {
            Self {
                window: Window {
                    warmup: Duration::from_secs(1),
                    measure: Duration::from_secs(6),
                },
                scales: vec![1_000, 100_000, 1_000_000],
                verify_cap: 40_000,
                postgres_users: 50_000,
                deadline: Duration::from_secs(15 * 60),
                smoke,
            }
        }
    }

    /// A verify run that has fewer users than it could use ends early, so its warm-up is shortened to match. A smoke
    /// run always has fewer: a fast machine used all of its pending sessions in the full warm-up and measured nothing.
    fn verify_window(&self, users: usize) -> Window {
        if users < self.verify_cap || self.smoke {
            Window {
                warmup: self.window.warmup / 10,
                measure: self.window.measure,
            }
        } else {
            self.window
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let profile = Profile::new(args.smoke);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::time::timeout(profile.deadline, run(&args, &profile))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the run took longer than {:?}", profile.deadline)))
    });
    match outcome {
        Ok(report) => {
            print!("{}", report.table.text());
            if args.markdown {
                print!("\n{}", report.table.markdown());
            }
            for failure in &report.failures {
                eprintln!("bench: FAILED: {failure}");
            }
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("bench: FAILED: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, profile: &Profile) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let window = profile.window;
    let dir = args.dir.as_path();

    let hasher = PasswordHasher::new()?;
    let password_hash = hasher.hash(Password::new(users::PASSWORD).context("password")?).await?;

    progress("bare handler: session checks");
    let bare = Server::bare(dir).await?;
    let bare_idle = bare.memory()?;
    let own = SessionCheck(Sessions::Own(users::full_session(0)));
    let bare_check = report.check(
        "bare handler",
        closed_loop(bare.addr, SESSION_CONNECTIONS, window, &own).await?,
    );
    let bare_peak = bare.memory()?;
    drop(bare);

    let sqlite_url = format!("sqlite://{}", dir.join("twofold.db").display());
    let mut sqlite = Server::twofold(dir, "sqlite", &sqlite_url).await?;
    let mut seeder = Seeder::connect(&sqlite_url, &server::key_file(dir), password_hash.clone()).await?;
    // Random-session checks measure the database's path: with the session cache (default 1 s) a small database fits
    // in it and a large one does not, which would measure the cache's hit rate instead of the database's size. A
    // second server on the same file, with the cache off, serves them.
    let uncached =
        Server::twofold_with(dir, "sqlite-uncached", &sqlite_url, &[("TWOFOLD_SESSION_CACHE", "0s")]).await?;
    let users = RefCell::new(Users::default());
    let mut points = Vec::new();
    let mut idle = None;
    let mut before_logins = None;
    let mut headline = None;
    for (position, &size) in profile.scales.iter().enumerate() {
        let took = seeder.grow_to(size).await?;
        users.borrow_mut().grow_to(size);
        progress(&format!(
            "SQLite, {} users (seeded in {:.1} s)",
            count(size),
            took.as_secs_f64()
        ));
        if idle.is_none() {
            idle = Some(sqlite.memory()?);
        }
        let scale = count(size);
        let own = report.check(
            &format!("session check, own session, {scale} users"),
            closed_loop(sqlite.addr, SESSION_CONNECTIONS, window, &own).await?,
        );
        let random = report.check(
            &format!("session check, random session, {scale} users"),
            closed_loop(
                uncached.addr,
                SESSION_CONNECTIONS,
                window,
                &SessionCheck(Sessions::Random(size)),
            )
            .await?,
        );
        let verify = report.check(
            &format!("verify, SQLite, {scale} users"),
            verify(&mut seeder, &users, sqlite.addr, profile).await?,
        );
        if position == 1 {
            before_logins = Some(sqlite.memory()?);
            let bound = Bound {
                hasher: &hasher,
                stored: &password_hash,
            };
            headline = Some(logins(&mut report, &users, &sqlite, bound, window).await?);
        }
        sqlite.check_alive()?;
        points.push(ScalePoint {
            users: size,
            own,
            random,
            verify,
        });
    }
    let peak = sqlite.memory()?;
    seeder.close().await;
    drop(uncached);
    drop(sqlite);

    let postgres = match &args.postgres_url {
        Some(url) if profile.postgres_users > 0 => {
            progress(&format!("PostgreSQL, {} users", count(profile.postgres_users)));
            let schema = PgSchema::create(url).await?;
            let measured = postgres_verify(dir, &schema.url, &password_hash, profile).await;
            schema.drop().await;
            Some(report.check("verify, PostgreSQL", measured?))
        }
        _ => None,
    };

    let headline = headline.context("no second scale")?;
    let [first, middle, ..] = points.as_slice() else {
        anyhow::bail!("fewer than two scales");
    };
    report.sessions(middle, &bare_check);
    report.logins(&headline.logins, headline.bound);
    report.verifies(
        middle,
        postgres.as_ref().map(|measured| (measured, profile.postgres_users)),
    );
    report.isolation(&headline);
    report.scale(first, &points[1..]);
    let largest = points.last().map_or(0, |point| point.users);
    let middle_users = count(middle.users);
    report.memory(
        (
            format!("6 memory idle ({} users)", count(first.users)),
            idle.context("no idle sample")?.resident_kb,
        ),
        [
            (
                format!("6 memory peak, figures 1, 3 (to {middle_users} users)"),
                before_logins.context("no sample before the logins")?.peak_kb,
            ),
            (
                format!("6 memory peak, + figures 2, 4 ({middle_users} users)"),
                headline.peak.peak_kb,
            ),
            (format!("6 memory peak, to {} users", count(largest)), peak.peak_kb),
        ],
        (&bare_idle, &bare_peak),
    );
    let postgres_shown = args
        .postgres_url
        .as_deref()
        .filter(|_| postgres.is_some())
        .map(without_password);
    let logs = format!("{}/*.log (bench/run --keep keeps them)", dir.display());
    report.footer(&Setting {
        smoke: args.smoke,
        window,
        headline_users: middle.users,
        postgres: postgres_shown.as_deref(),
        logs: &logs,
    });
    Ok(report)
}

/// The second step for users not signed in during this step, each from a pending session prepared just before.
async fn verify(
    seeder: &mut Seeder,
    users: &RefCell<Users>,
    addr: SocketAddr,
    profile: &Profile,
) -> anyhow::Result<Measured> {
    let indices = users.borrow_mut().take(profile.verify_cap);
    let tokens = seeder.pending_sessions(&indices).await?;
    let window = profile.verify_window(indices.len());
    let workload = Verify::new(users, indices.into_iter().zip(tokens).collect());
    closed_loop(addr, VERIFY_CONNECTIONS, window, &workload).await
}

/// What figure 2's floor is measured with: the server's hasher and the users' stored hash.
struct Bound<'a> {
    hasher: &'a PasswordHasher,
    stored: &'a str,
}

/// Figures 2 and 4. The Argon2id bound is measured just before the logins, so that both see the same machine (other
/// work on a shared machine comes and goes).
async fn logins(
    report: &mut Report,
    users: &RefCell<Users>,
    server: &Server,
    bound: Bound<'_>,
    window: Window,
) -> anyhow::Result<Headline> {
    progress("Argon2id bound: password checks on all cores");
    let bound = hash::checks_per_second(bound.hasher, users::PASSWORD, bound.stored, window).await?;
    progress("logins");
    let addr = server.addr;
    let login = Login(users);
    let own = SessionCheck(Sessions::Own(users::full_session(0)));
    let logins = report.check(
        "two-step login",
        closed_loop(addr, LOGIN_CONNECTIONS, window, &login).await?,
    );
    let checks_alone = report.check(
        "session checks at a fixed rate",
        open_loop(addr, ISOLATION_CONNECTIONS, ISOLATION_RATE, window, &own).await?,
    );
    let (checks_during, logins_during) = tokio::join!(
        open_loop(addr, ISOLATION_CONNECTIONS, ISOLATION_RATE, window, &own),
        closed_loop(addr, LOGIN_CONNECTIONS, window, &login)
    );
    Ok(Headline {
        bound,
        logins,
        checks_alone,
        checks_during: report.check("session checks during logins", checks_during?),
        logins_during: report.check("logins beside session checks", logins_during?),
        peak: server.memory()?,
    })
}

async fn postgres_verify(dir: &Path, url: &str, password_hash: &str, profile: &Profile) -> anyhow::Result<Measured> {
    let server = Server::twofold(dir, "postgres", url).await?;
    let mut seeder = Seeder::connect(url, &server::key_file(dir), password_hash.to_owned()).await?;
    let took = seeder.grow_to(profile.postgres_users).await?;
    progress(&format!("PostgreSQL seeded in {:.1} s", took.as_secs_f64()));
    // This database's users have signed in nowhere yet, whatever the SQLite figures used.
    let users = RefCell::new(Users::default());
    users.borrow_mut().grow_to(profile.postgres_users);
    let measured = verify(&mut seeder, &users, server.addr, profile)
        .await
        .map_err(|error| server.failure(error));
    seeder.close().await;
    measured
}

/// `url` with any password masked, for the footer.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot carry a password, which this one just did.
            let _ = parsed.set_password(Some("********"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A schema of its own in the PostgreSQL database, so the run neither sees nor leaves anything there.
struct PgSchema {
    admin_url: String,
    name: String,
    url: String,
}

impl PgSchema {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("bench_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::postgres::PgConnection::connect(admin_url)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL")?;
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={name}"));
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop(self) {
        let dropped = async {
            let mut admin = sqlx::postgres::PgConnection::connect(&self.admin_url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
                .execute(&mut admin)
                .await?;
            admin.close().await
        };
        if let Err(error) = dropped.await {
            progress(&format!("could not drop the schema {}: {error}", self.name));
        }
    }
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}
