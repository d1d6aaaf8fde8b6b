//! Where the store repeats a rule in SQL (so that it holds under concurrency, decided by one statement), it decides
//! exactly as `flow::rules` does: the claim of a second-factor attempt (a pending session alive, the account's
//! second factor open, the lock a failure engages) and the purge of expired sessions, over a grid of the values that
//! decide them, on both databases.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use twofold::flow::rules::{self, Lock};
use twofold::store::{AttemptClaim, PoolSettings, PostgresStore, Refusal, SessionId, SqliteStore, Store, UserId};

use crate::common::*;

/// The server's store, opened a second time on the test's database.
async fn store(app: &TestApp) -> Arc<dyn Store> {
    let settings = PoolSettings {
        max_connections: 2,
        timeout: Duration::from_secs(10),
    };
    if app.on_postgres() {
        Arc::new(PostgresStore::open(&app.db_url, &settings).await.expect("store"))
    } else {
        let path = app.db_url.strip_prefix("sqlite://").expect("an SQLite URL");
        Arc::new(
            SqliteStore::open(std::path::Path::new(path), &settings)
                .await
                .expect("store"),
        )
    }
}

async fn user_id(db: &AnyPool, username: &str) -> UserId {
    UserId(
        sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_one(db)
            .await
            .expect("user"),
    )
}

async fn insert_session(
    db: &AnyPool,
    user: UserId,
    token: &str,
    state: &str,
    expires_at: i64,
    last_seen_at: i64,
) -> SessionId {
    SessionId(
        sqlx::query_scalar(
            "INSERT INTO sessions (token_digest, user_id, state, flow_id, created_at, expires_at, last_seen_at) \
             VALUES ($1, $2, $3, 'flow', $4, $5, $6) RETURNING id",
        )
        .bind(token.as_bytes().to_vec())
        .bind(user.0)
        .bind(state)
        .bind(last_seen_at)
        .bind(expires_at)
        .bind(last_seen_at)
        .fetch_one(db)
        .await
        .expect("session"),
    )
}

#[tokio::test]
async fn the_claim_of_an_attempt_decides_as_the_rules_do() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let db = app.db().await;
    let store = store(&app).await;
    let user = user_id(&db, "alice").await;
    let now = app.now();
    let session = insert_session(&db, user, "claim", "pending", now + 300, now).await;
    let policy = rules::SECOND_FACTOR;
    let mut cases = 0;
    for expires_at in [now - 1, now, now + 1] {
        for tries in [0, policy.session_tries - 1, policy.session_tries] {
            for failures in [0, 8, 9, 10, 19, 99, 100, 150] {
                for locked_until in [None, Some(now - 1), Some(now), Some(now + 1)] {
                    sqlx::query("UPDATE sessions SET expires_at = $1, failed_attempts = $2 WHERE id = $3")
                        .bind(expires_at)
                        .bind(tries)
                        .bind(session.0)
                        .execute(&db)
                        .await
                        .expect("session row");
                    sqlx::query(
                        "UPDATE users SET second_factor_failures = $1, second_factor_locked_until = $2 WHERE id = $3",
                    )
                    .bind(failures)
                    .bind(locked_until)
                    .bind(user.0)
                    .execute(&db)
                    .await
                    .expect("user row");
                    let claim = store
                        .claim_second_factor_attempt(user, Some(session), &policy, now)
                        .await
                        .expect("claim");
                    let case = format!(
                        "expires_at now{:+}, {tries} tries, {failures} failures, locked until {:?}",
                        expires_at - now,
                        locked_until.map(|at| at - now)
                    );
                    let alive = rules::pending_alive(expires_at, tries, now);
                    let lock = rules::lock(failures, locked_until, now);
                    match claim {
                        AttemptClaim::Granted { account_failures } => {
                            assert!(alive && lock == Lock::Open, "granted: {case}");
                            assert_eq!(account_failures, failures + 1, "{case}");
                            let stored: Option<i64> =
                                sqlx::query_scalar("SELECT second_factor_locked_until FROM users WHERE id = $1")
                                    .bind(user.0)
                                    .fetch_one(&db)
                                    .await
                                    .expect("lock");
                            let expected = rules::locked_until_after(account_failures, now).or(locked_until);
                            assert_eq!(stored, expected, "the lock this failure engages: {case}");
                        }
                        AttemptClaim::Refused(Refusal::NoPendingLogin) => assert!(!alive, "no pending login: {case}"),
                        AttemptClaim::Refused(Refusal::Locked {
                            failures: seen,
                            locked_until: seen_until,
                        }) => {
                            assert!(alive && lock != Lock::Open, "locked: {case}");
                            assert_eq!(rules::lock(seen, seen_until, now), lock, "{case}");
                        }
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 3 * 3 * 8 * 4);
}

#[tokio::test]
async fn the_purge_keeps_exactly_the_sessions_the_rules_call_alive() {
    let app = TestApp::spawn().await;
    app.add_user("alice", PASSWORD).await;
    let db = app.db().await;
    let store = store(&app).await;
    let user = user_id(&db, "alice").await;
    let now = app.now();
    let idle = 30 * 60;
    let mut expected = Vec::new();
    let mut n = 0;
    for state in ["pending", "full"] {
        for expires_at in [now - 1, now, now + 1, now + 3600] {
            for last_seen_at in [now - idle - 1, now - idle, now - idle + 1, now] {
                n += 1;
                let id = insert_session(&db, user, &format!("purge{n}"), state, expires_at, last_seen_at).await;
                let alive = match state {
                    "pending" => rules::pending_alive(expires_at, 0, now),
                    _ => rules::full_alive(expires_at, last_seen_at, now, idle),
                };
                if alive {
                    expected.push(id.0);
                }
            }
        }
    }
    store.purge_expired_sessions(now, idle).await.expect("purge");
    let mut kept: Vec<i64> = sqlx::query_scalar("SELECT id FROM sessions ORDER BY id")
        .fetch_all(&db)
        .await
        .expect("sessions");
    kept.sort_unstable();
    expected.sort_unstable();
    assert_eq!(kept, expected);
}
