//! Faults, on a PostgreSQL server of the test's own (`initdb` into a temporary folder, a free port): stopping the
//! database mid-traffic gets `503 database_unavailable` within the configured timeout (never a hang, never a 500),
//! and service comes back by itself when the database does; killing an instance with SIGKILL mid-traffic loses and
//! half-writes nothing.
//!
//! Part of the PostgreSQL half: they are ignored unless it runs them (with `TWOFOLD_TEST_DATABASE_URL` set, as
//! `.ci/run` does). They need PostgreSQL's server programs (`initdb`, `pg_ctl`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::instances::*;
use crate::common::*;
use serde_json::json;

/// These tests are ignored unless the PostgreSQL half runs them; run on their own they say what they need.
fn require_postgres_half() {
    assert!(
        postgres_test_url().is_some(),
        "this test is part of the PostgreSQL half: set TWOFOLD_TEST_DATABASE_URL=postgres://..."
    );
}

/// One answer seen by the traffic loop.
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    latency: Duration,
    status: u16,
    error: String,
}

/// The configured `database_timeout` of the instance under test.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn a_database_outage_is_answered_503_and_service_returns_without_a_restart() {
    require_postgres_half();
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start).await.expect("join");
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = dir.path().join("twofold.key");
    let mut instance = Instance::spawn(
        "A",
        &postgres.url(),
        &key,
        dir.path(),
        &[("TWOFOLD_DATABASE_TIMEOUT", "1s")],
    );
    instance.ready().await;
    instance.register("erin").await;
    let login = instance.login("erin", PASSWORD).await;
    let cookie = login.cookie().expect("session cookie");

    // Traffic from four clients: session checks (reads) and sign-ins (writes), over and over, until told to stop.
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let traffic: Vec<_> = (0..4u64)
        .map(|client| {
            let (api, samples, running, cookie) = (instance.api(), samples.clone(), running.clone(), cookie.clone());
            tokio::spawn(async move {
                let mut n = client;
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = Instant::now();
                    let answer = if n % 2 == 0 {
                        api.try_get("/auth/session", Some(&cookie)).await
                    } else {
                        let body = json!({ "username": "erin", "password": PASSWORD });
                        api.try_post("/auth/login", None, Some(body)).await
                    };
                    let answer = answer.expect("Twofold itself stays up and answers");
                    samples.lock().expect("samples").push(Sample {
                        sent,
                        latency: sent.elapsed(),
                        status: answer.status,
                        error: answer.error().to_owned(),
                    });
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    tokio::task::block_in_place(|| postgres.stop());
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // PostgreSQL accepts connections a moment before `pg_ctl start` returns: the outage ends when the start begins.
    let restarting = Instant::now();
    tokio::task::block_in_place(|| postgres.start_again());
    let restarted = Instant::now();
    // Service returns by itself: wait (bounded) for a success sent after the database came back.
    let deadline = restarted + Duration::from_secs(20);
    let recovered = loop {
        let first_success = samples
            .lock()
            .expect("samples")
            .iter()
            .find(|sample| sample.sent >= restarted && sample.status == 200)
            .map(|sample| sample.sent + sample.latency);
        if let Some(at) = first_success {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "no success within 20 s of PostgreSQL's return"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    for client in traffic {
        client.await.expect("traffic loop");
    }

    let samples = samples.lock().expect("samples").clone();
    for sample in &samples {
        assert!(
            sample.status == 200 || (sample.status == 503 && sample.error == "database_unavailable"),
            "only successes and 503 database_unavailable: {sample:?}"
        );
    }
    let outage: Vec<&Sample> = samples
        .iter()
        .filter(|sample| sample.sent >= stopped && sample.sent + sample.latency <= restarting)
        .collect();
    assert!(!outage.is_empty(), "requests were sent while PostgreSQL was down");
    assert!(
        outage.iter().all(|sample| sample.status == 503),
        "no success without a database: {outage:?}"
    );
    let unavailable: Vec<Duration> = samples
        .iter()
        .filter(|sample| sample.status == 503)
        .map(|sample| sample.latency)
        .collect();
    let slowest = samples.iter().map(|sample| sample.latency).max().unwrap_or_default();
    // A request makes a few store calls; the first that finds the database gone fails within the timeout. A sign-in
    // may have passed one call, hashed the password, and then wait out the timeout once: about twice the timeout.
    let bound = DATABASE_TIMEOUT * 2 + Duration::from_millis(1500);
    assert!(slowest <= bound, "slowest answer {slowest:?} exceeds {bound:?}");
    let mut sorted = unavailable.clone();
    sorted.sort();
    println!(
        "outage: {} answers, {} were 503 database_unavailable (latency min {:?}, median {:?}, max {:?}); \
         pg_ctl stop took {:?}; first success {:?} after PostgreSQL was back",
        samples.len(),
        sorted.len(),
        sorted.first().copied().unwrap_or_default(),
        sorted.get(sorted.len() / 2).copied().unwrap_or_default(),
        sorted.last().copied().unwrap_or_default(),
        stopped - stopping,
        recovered.saturating_duration_since(restarted),
    );

    // Same process, same session: nothing was restarted and nothing lost.
    let session = instance.get("/auth/session", Some(&cookie)).await;
    assert_eq!(session.status, 200, "{session:?}");
    assert!(
        instance.log().contains("database unavailable"),
        "the outage is logged:\n{}",
        instance.log()
    );
}

/// What the clients of the killed instance were told had happened; all of it must still be true afterwards.
#[derive(Default)]
struct Acknowledged {
    /// Users whose authenticator confirmation was answered 200.
    enrolled: Vec<RealUser>,
    /// Full sessions handed out (cookies).
    sessions: Vec<String>,
    /// TOTP steps accepted at sign-in, per user.
    accepted_steps: Vec<(String, i64)>,
    /// Recovery codes accepted at sign-in, per user.
    used_recovery_codes: Vec<(String, String)>,
    /// Requests that got no answer because the instance died.
    cut_off: usize,
}

/// Registers, enrolls and signs in users (a TOTP code, then a recovery code) on `api` until it stops answering. Each
/// round comes from a client address of its own (through the trusted loopback proxy), so the per-address limits on
/// registrations and password attempts never refuse the traffic the kill is to cut.
async fn sign_up_and_in(api: Api, worker: usize, acknowledged: Arc<Mutex<Acknowledged>>) {
    for round in 0..65_536 {
        let username = format!("w{worker}r{round}");
        let api = api.forwarded_for(&format!("10.{worker}.{}.{}", round / 256, round % 256));
        let step = async {
            let body = json!({ "username": username, "password": PASSWORD });
            api.try_post("/auth/register", None, Some(body.clone())).await?;
            let login = api.try_post("/auth/login", None, Some(body.clone())).await?;
            let Some(cookie) = login.cookie() else { return Ok(()) };
            let setup = api.try_post("/auth/2fa/totp/setup", Some(&cookie), None).await?;
            let Some(secret) = setup.body["secret"].as_str() else {
                return Ok(());
            };
            let secret = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).expect("base32");
            let step = current_step();
            let confirm = json!({ "code": code_at_step(&secret, step) });
            let confirmed = api
                .try_post("/auth/2fa/totp/confirm", Some(&cookie), Some(confirm))
                .await?;
            if confirmed.status != 200 {
                return Ok(());
            }
            let recovery_codes: Vec<String> = confirmed.body["recovery_codes"]
                .as_array()
                .map(|codes| codes.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            acknowledged.lock().expect("record").enrolled.push(RealUser {
                username: username.clone(),
                secret: secret.clone(),
                step,
                recovery_codes: recovery_codes.clone(),
            });
            for (method, code) in [
                ("totp", code_at_step(&secret, step + 1)),
                ("recovery_code", recovery_codes[0].clone()),
            ] {
                let pending = api.try_post("/auth/login", None, Some(body.clone())).await?;
                let Some(pending) = pending.cookie() else { return Ok(()) };
                let verify = json!({ "method": method, "code": code });
                let verified = api.try_post("/auth/verify-2fa", Some(&pending), Some(verify)).await?;
                if let (200, Some(full)) = (verified.status, verified.cookie()) {
                    let mut record = acknowledged.lock().expect("record");
                    record.sessions.push(full);
                    match method {
                        "totp" => record.accepted_steps.push((username.clone(), step + 1)),
                        _ => record.used_recovery_codes.push((username.clone(), code.clone())),
                    }
                }
            }
            Ok::<(), reqwest::Error>(())
        };
        if step.await.is_err() {
            acknowledged.lock().expect("record").cut_off += 1;
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL only: scripts/test runs it in its PostgreSQL half (TWOFOLD_TEST_DATABASE_URL set, --include-ignored)"]
async fn killing_an_instance_mid_traffic_loses_and_half_writes_nothing() {
    require_postgres_half();
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start).await.expect("join");
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = dir.path().join("twofold.key");
    let behind_proxy = [("TWOFOLD_TRUSTED_PROXIES", "127.0.0.1")];
    let mut victim = Instance::spawn("victim", &postgres.url(), &key, dir.path(), &behind_proxy);
    let mut survivor = Instance::spawn("survivor", &postgres.url(), &key, dir.path(), &behind_proxy);
    victim.ready().await;
    survivor.ready().await;

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let workers: Vec<_> = (0..4)
        .map(|worker| tokio::spawn(sign_up_and_in(victim.api(), worker, acknowledged.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    victim.kill();
    for worker in workers {
        worker.await.expect("worker");
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("record"));
    assert!(acknowledged.cut_off > 0, "the kill cut requests off mid-traffic");
    assert!(
        !acknowledged.enrolled.is_empty(),
        "traffic enrolled users before the kill"
    );

    // Nothing acknowledged is lost: the survivor sees every enrolment, session and used code.
    for user in &acknowledged.enrolled {
        let login = survivor.login(&user.username, PASSWORD).await;
        assert_eq!(
            login.body["status"], "2fa_required",
            "{} enrolled: {login:?}",
            user.username
        );
    }
    for cookie in &acknowledged.sessions {
        let session = survivor.get("/auth/session", Some(cookie)).await;
        assert_eq!(session.status, 200, "an acknowledged session: {session:?}");
    }
    for (username, code) in &acknowledged.used_recovery_codes {
        let pending = survivor.pending(username).await;
        let reused = survivor.verify(&pending, "recovery_code", code).await;
        reused.assert_error(401, "invalid_2fa_code");
    }
    let db = any_pool(&postgres.url()).await;
    for (username, step) in &acknowledged.accepted_steps {
        let last: Option<i64> = sqlx::query_scalar("SELECT totp_last_step FROM users WHERE username = $1")
            .bind(username)
            .fetch_one(&db)
            .await
            .expect("user row");
        assert!(
            last >= Some(*step),
            "{username}'s accepted step {step} is recorded as used: {last:?}"
        );
    }

    // Nothing is half-written: every transaction the kill interrupted left no trace.
    let checks = [
        (
            "an authenticator without its enrolment time or used step",
            "SELECT COUNT(*) FROM users WHERE totp_secret IS NOT NULL \
             AND (totp_enrolled_at IS NULL OR totp_last_step IS NULL)",
        ),
        (
            "a first factor without its full set of 10 recovery codes",
            "SELECT COUNT(*) FROM users u WHERE totp_secret IS NOT NULL \
             AND (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = u.id) <> 10",
        ),
        (
            "recovery codes without a second factor",
            "SELECT COUNT(*) FROM users u WHERE totp_secret IS NULL \
             AND EXISTS (SELECT 1 FROM recovery_codes r WHERE r.user_id = u.id)",
        ),
        (
            "a full session without a sign-in time, or a pending one with",
            "SELECT COUNT(*) FROM sessions WHERE (state = 'full') <> (authenticated_at IS NOT NULL)",
        ),
        (
            "a session signed in with a second factor its user does not have",
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.second_factor = 'totp' AND u.totp_secret IS NULL",
        ),
        (
            "a used recovery code on a sign-in that never happened",
            "SELECT COUNT(*) FROM recovery_codes r JOIN users u ON u.id = r.user_id \
             WHERE r.used_at IS NOT NULL AND (u.last_login_at IS NULL OR u.last_login_at < r.used_at)",
        ),
    ];
    for (what, sql) in checks {
        let found: i64 = sqlx::query_scalar(sql).fetch_one(&db).await.expect(what);
        assert_eq!(found, 0, "{what}");
    }
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&db)
        .await
        .expect("users");
    db.close().await;
    println!(
        "kill -9: {users} users stored, {} enrolments, {} sessions, {} TOTP steps and {} recovery codes acknowledged \
         before the kill, {} requests cut off; all found intact on the surviving instance",
        acknowledged.enrolled.len(),
        acknowledged.sessions.len(),
        acknowledged.accepted_steps.len(),
        acknowledged.used_recovery_codes.len(),
        acknowledged.cut_off,
    );
}
