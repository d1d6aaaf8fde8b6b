//! From measurements to the table's rows: each figure with its floor, ratio and target, and the footer that says
//! where and how the numbers were taken. Failures (errors, empty windows) are collected here too.

use crate::load::{Measured, Window};
use crate::server::Memory;
use crate::table::{Row, Table};
use crate::{
    ISOLATION_RATE, LOGIN_CONNECTIONS, SESSION_CONNECTIONS, VERIFY_CONNECTIONS, VERIFY_TARGET_POSTGRES,
    VERIFY_TARGET_SQLITE,
};

#[derive(Default)]
pub struct Report {
    pub table: Table,
    pub failures: Vec<String>,
}

/// What the SQLite server measured at one database size.
pub struct ScalePoint {
    pub users: usize,
    pub own: Measured,
    pub random: Measured,
    pub verify: Measured,
}

/// Figures 2 and 4 with their floors: the Argon2id bound, and figure 4's session checks without logins.
pub struct Headline {
    /// Password checks per second on all cores: figure 2's floor.
    pub bound: f64,
    pub logins: Measured,
    pub checks_alone: Measured,
    pub checks_during: Measured,
    pub logins_during: Measured,
    /// The server's memory after figures 1 to 4.
    pub peak: Memory,
}

/// What the footer says about the run.
pub struct Setting<'a> {
    pub smoke: bool,
    pub window: Window,
    pub headline_users: usize,
    pub postgres: Option<&'a str>,
    pub logs: &'a str,
}

impl Report {
    /// Notes as failures a run that saw errors or completed nothing; passes the measurement on.
    pub fn check(&mut self, what: &str, measured: Measured) -> Measured {
        if measured.errors > 0 {
            self.failures.push(format!(
                "{what}: {} requests failed, the first with: {}",
                measured.errors,
                measured.first_error.as_deref().unwrap_or("?")
            ));
        } else if measured.completed == 0 {
            self.failures.push(format!("{what}: nothing completed in the window"));
        }
        measured
    }

    fn row(&mut self, row: Row) {
        self.table.rows.push(row);
    }

    /// Figure 1 at the middle scale, against the bare handler.
    pub fn sessions(&mut self, point: &ScalePoint, bare: &Measured) {
        let own = &point.own;
        self.row(
            Row::new(
                format!(
                    "1 session check, {SESSION_CONNECTIONS} conn ({} users)",
                    count(point.users)
                ),
                per_second(own.rate()),
            )
            .floor(
                format!("{} bare", per_second(bare.rate())),
                ratio(own.rate() / bare.rate()),
            )
            .target("≥ 0.80×", own.rate() >= 0.8 * bare.rate()),
        );
        self.row(
            Row::new("  latency p50 / p99", format!("{} / {}", ms(own.p50()), ms(own.p99())))
                .floor(
                    format!("{} / {} bare", ms(bare.p50()), ms(bare.p99())),
                    ratio(own.p99() / bare.p99()),
                )
                .target("p99 < 5 ms", own.p99() < 5.0),
        );
    }

    /// Figure 2 against the Argon2id bound.
    pub fn logins(&mut self, logins: &Measured, bound: f64) {
        self.row(
            Row::new(
                format!("2 two-step login, {LOGIN_CONNECTIONS} conn"),
                per_second(logins.rate()),
            )
            .floor(format!("{} Argon2id", per_second(bound)), ratio(logins.rate() / bound))
            .target("≥ 0.90×", logins.rate() >= 0.9 * bound),
        );
        self.row(Row::new(
            "  latency p50 / p99",
            format!("{} / {}", ms(logins.p50()), ms(logins.p99())),
        ));
    }

    /// Figure 3 on both databases, each against its target (there is no natural floor).
    pub fn verifies(&mut self, point: &ScalePoint, postgres: Option<(&Measured, usize)>) {
        let verify_row = |database: &str, measured: &Measured, users: usize, target: f64| {
            Row::new(
                format!(
                    "3 verify, {database}, {VERIFY_CONNECTIONS} conn ({} users)",
                    count(users)
                ),
                format!("{}, p99 {}", per_second(measured.rate()), ms(measured.p99())),
            )
            .floor(
                format!("{} (target)", per_second(target)),
                ratio(measured.rate() / target),
            )
            .target(format!("≥ {}", per_second(target)), measured.rate() >= target)
        };
        self.row(verify_row("SQLite", &point.verify, point.users, VERIFY_TARGET_SQLITE));
        self.row(match postgres {
            Some((measured, users)) => verify_row("PostgreSQL", measured, users, VERIFY_TARGET_POSTGRES),
            None => Row::new("3 verify, PostgreSQL", "skipped"),
        });
    }

    /// Figure 4: session checks at a fixed rate while logins take every core, against the same checks alone.
    pub fn isolation(&mut self, headline: &Headline) {
        let (during, alone) = (&headline.checks_during, &headline.checks_alone);
        self.row(
            Row::new(
                format!("4 session p99 at {ISOLATION_RATE}/s during logins"),
                format!(
                    "{} ({} logins)",
                    ms(during.p99()),
                    per_second(headline.logins_during.rate())
                ),
            )
            .floor(
                format!("{} without logins", ms(alone.p99())),
                ratio(during.p99() / alone.p99()),
            )
            .target("< 10 ms", during.p99() < 10.0),
        );
    }

    /// Figure 5: the cost of a request (the inverse of the rate under full load) at each larger scale, relative to
    /// the smallest.
    pub fn scale(&mut self, first: &ScalePoint, larger: &[ScalePoint]) {
        type Pick = fn(&ScalePoint) -> &Measured;
        let figures: [(&str, Pick); 3] = [
            ("session check, own session", |point| &point.own),
            ("session check, random session, no cache", |point| &point.random),
            ("verify, SQLite", |point| &point.verify),
        ];
        for (name, measured) in figures {
            let base = measured(first).rate();
            for point in larger {
                let rate = measured(point).rate();
                let cost = base / rate;
                self.row(
                    Row::new(format!("5 {name}, {} users", count(point.users)), per_second(rate))
                        .floor(
                            format!("{} at {}", per_second(base), count(first.users)),
                            format!("cost {}", ratio(cost)),
                        )
                        .target("cost ≤ 1.20×", cost <= 1.2),
                );
            }
        }
    }

    /// Figure 6: the server's resident memory, against the bare handler's.
    pub fn memory(&mut self, idle: (String, u64), peaks: [(String, u64); 3], bare: (&Memory, &Memory)) {
        let (bare_idle, bare_peak) = (bare.0.resident_kb, bare.1.peak_kb);
        self.row(
            Row::new(idle.0, mb(idle.1))
                .floor(
                    format!("{} bare idle", mb(bare_idle)),
                    ratio(idle.1 as f64 / bare_idle as f64),
                )
                .target("< 20 MB", idle.1 < 20 * 1024),
        );
        for (figure, kb) in peaks {
            self.row(Row::new(figure, mb(kb)).floor(
                format!("{} bare peak", mb(bare_peak)),
                ratio(kb as f64 / bare_peak as f64),
            ));
        }
    }

    pub fn footer(&mut self, setting: &Setting) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_default();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let mut footer = vec![
            format!("{date}; nproc {cores}; {cpu}"),
            format!(
                "The load generator (one thread, examples/bench) shares the same {cores} cores with the server: every \
                 figure includes its cost."
            ),
            format!(
                "Each figure: {:.1} s warm-up, then {:.1} s measured; figures 1-4 at {} users; loopback only.",
                setting.window.warmup.as_secs_f64(),
                setting.window.measure.as_secs_f64(),
                count(setting.headline_users)
            ),
            format!(
                "Servers: twofold serve with default settings; PostgreSQL: {}; logs: {}",
                setting.postgres.unwrap_or("skipped"),
                setting.logs
            ),
        ];
        if setting.smoke {
            footer.push("SMOKE RUN: tiny database and short windows, to check that the suite works.".into());
        }
        self.table.footer = footer;
    }
}

/// 1k, 100k, 1M; exact otherwise.
pub fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// A rate with its thousands separated (12,345/s); one decimal below 100.
fn per_second(rate: f64) -> String {
    if rate < 100.0 {
        return format!("{rate:.1}/s");
    }
    let digits = (rate.round() as u64).to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out + "/s"
}

fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2} ms")
    } else {
        format!("{value:.1} ms")
    }
}

fn ratio(value: f64) -> String {
    format!("{value:.2}×")
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
