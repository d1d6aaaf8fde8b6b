//! Writes the benchmark's users and sessions straight into the server's tables, many rows per statement, so a
//! million users take seconds rather than the hours a million sign-ups would. Rows are what the server itself writes
//! for an enrolled user: its secret sealed with the server key under `totp:{id}`, a real Argon2id hash.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};
use twofold::crypto::Keys;

use crate::users;

/// Rows per `INSERT`: few round trips, and well under either database's limit on parameters.
const ROWS_PER_STATEMENT: usize = 500;
/// Rows per transaction: big enough to be fast, small enough that SQLite's write-ahead log stays modest.
const ROWS_PER_TRANSACTION: usize = 50_000;

/// Full sessions live as long as the server's default `session_lifetime` (12 h).
const SESSION_LIFETIME: i64 = 12 * 60 * 60;
/// Pending sessions live 5 minutes, as the server's do.
const PENDING_LIFETIME: i64 = 5 * 60;
/// Seeded sessions count as seen this far ahead, so the server's once-a-minute idle-timer write never fires during
/// the run: a session check stays the read it is for any session in use (see BENCHMARKS.md).
const SEEN_AHEAD: i64 = 60 * 60;

pub struct Seeder {
    pool: AnyPool,
    postgres: bool,
    keys: Keys,
    password_hash: String,
    users: usize,
    batches: u32,
}

impl Seeder {
    /// A connection to the server's database (which the server has already migrated) and its key file.
    pub async fn connect(url: &str, key_file: &Path, password_hash: String) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .context("connecting to the database to seed it")?;
        Ok(Self {
            pool,
            postgres: url.starts_with("postgres"),
            keys: Keys::load_or_create(key_file)?,
            password_hash,
            users: 0,
            batches: 0,
        })
    }

    /// Adds users (each with a full session) until there are `total`; returns how long that took.
    pub async fn grow_to(&mut self, total: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while self.users < total {
            let end = total.min(self.users + ROWS_PER_TRANSACTION);
            let mut tx = self.pool.begin().await?;
            for chunk in (self.users..end).collect::<Vec<_>>().chunks(ROWS_PER_STATEMENT) {
                self.insert_users(&mut tx, chunk).await.context("inserting users")?;
                insert_full_sessions(&mut tx, self.postgres, chunk)
                    .await
                    .context("inserting sessions")?;
            }
            tx.commit().await?;
            self.users = end;
        }
        if self.postgres {
            // Fresh statistics, as autovacuum would gather shortly after a bulk load.
            sqlx::query("ANALYZE").execute(&self.pool).await?;
        }
        Ok(started.elapsed())
    }

    async fn insert_users(&self, connection: &mut AnyConnection, indices: &[usize]) -> sqlx::Result<()> {
        // The identity column is `GENERATED ALWAYS` on PostgreSQL; the ids must be the ones the secrets are sealed to.
        let overriding = if self.postgres { " OVERRIDING SYSTEM VALUE" } else { "" };
        let sql = format!(
            "INSERT INTO users (id, username, password_hash, created_at, totp_secret, totp_enrolled_at){overriding} \
             VALUES {}",
            placeholders(self.postgres, indices.len(), 6)
        );
        let now = users::unix_now();
        let mut query = sqlx::query(&sql);
        for &index in indices {
            let id = users::user_id(index);
            let sealed = self.keys.seal(&format!("totp:{id}"), &users::totp_secret(index));
            query = query
                .bind(id)
                .bind(users::username(index))
                .bind(self.password_hash.clone())
                .bind(now)
                .bind(sealed)
                .bind(now);
        }
        query.execute(connection).await.map(drop)
    }

    /// A pending session (password accepted, code outstanding) for each of `indices`, in a new batch; returns their
    /// tokens in the same order.
    pub async fn pending_sessions(&mut self, indices: &[usize]) -> anyhow::Result<Vec<String>> {
        self.batches += 1;
        let batch = self.batches;
        let now = users::unix_now();
        let mut tx = self.pool.begin().await?;
        for chunk in indices.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO sessions (token_digest, user_id, state, flow_id, created_at, expires_at, last_seen_at) \
                 VALUES {}",
                placeholders(self.postgres, chunk.len(), 7)
            );
            let mut query = sqlx::query(&sql);
            for &index in chunk {
                query = query
                    .bind(users::token_digest(&users::pending_session(batch, index)))
                    .bind(users::user_id(index))
                    .bind("pending")
                    .bind(format!("bench-pending-{batch}-{index}"))
                    .bind(now)
                    .bind(now + PENDING_LIFETIME)
                    .bind(now);
            }
            query.execute(&mut *tx).await.context("inserting pending sessions")?;
        }
        tx.commit().await?;
        Ok(indices
            .iter()
            .map(|&index| users::pending_session(batch, index))
            .collect())
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

async fn insert_full_sessions(connection: &mut AnyConnection, postgres: bool, indices: &[usize]) -> sqlx::Result<()> {
    let sql = format!(
        "INSERT INTO sessions (token_digest, user_id, state, flow_id, created_at, expires_at, last_seen_at, \
         authenticated_at, second_factor) VALUES {}",
        placeholders(postgres, indices.len(), 9)
    );
    let now = users::unix_now();
    let mut query = sqlx::query(&sql);
    for &index in indices {
        query = query
            .bind(users::token_digest(&users::full_session(index)))
            .bind(users::user_id(index))
            .bind("full")
            .bind(format!("bench-full-{index}"))
            .bind(now)
            .bind(now + SESSION_LIFETIME)
            .bind(now + SEEN_AHEAD)
            .bind(now)
            .bind("totp");
    }
    query.execute(connection).await.map(drop)
}

/// `($1, $2, …), ($n+1, …)…` for `rows` rows of `columns` values on PostgreSQL; `(?, ?, …), …` on SQLite, where
/// binding numbered parameters costs a search through all the statement's parameter names for each one.
fn placeholders(postgres: bool, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|column| {
                    if postgres {
                        format!("${}", row * columns + column)
                    } else {
                        "?".to_owned()
                    }
                })
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
