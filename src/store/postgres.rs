//! PostgreSQL: one database shared by any number of Twofold instances. Transactions run at PostgreSQL's default READ
//! COMMITTED level; a transaction that writes several rows of one account first locks the account's `users` row
//! (`FOR NO KEY UPDATE`: the lock an `UPDATE` of the row would take, which still lets other sessions' foreign keys
//! point at it), so such transactions on one account run one after the other whichever instance runs them.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Postgres};

use super::sql::Backend;
use super::{PoolSettings, PostgresStore, StoreError, StoreResult};

/// The schema's history on PostgreSQL, compiled into the binary; the same versions as SQLite's.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

impl Backend for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_USER: Option<&'static str> = Some("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE");

    const LOCK_AUDIT: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(2454021987)");

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl PostgresStore {
    /// Connects, brings the schema up to date, and opens the pool. The URL is a libpq-style `postgres://` URL; its
    /// `options` parameter (e.g. `-c search_path=twofold`) reaches every connection.
    pub async fn open(url: &str, settings: &PoolSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?;
        // Migrations run on a connection of their own. sqlx's PostgreSQL migrator holds an advisory lock
        // (`pg_advisory_lock`, keyed by the database's name) on it from before it reads the applied versions until it
        // has applied the missing ones, so instances that start together apply each migration exactly once and the
        // others wait, then find nothing to do. If anything fails, closing the connection releases the lock.
        let mut connection = tokio::time::timeout(settings.timeout, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::TimedOut(settings.timeout))??;
        MIGRATIONS.run(&mut connection).await?;
        connection.close().await?;
        // The server gives up on its side too, so a statement or transaction abandoned by a timed-out call (or by an
        // instance that hangs) does not keep holding an account's lock.
        let millis = u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let options = options.options([
            ("statement_timeout", millis),
            ("idle_in_transaction_session_timeout", millis.saturating_mul(2)),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.timeout)
            // Connections the database dropped (a restart) are found by the check before each use and replaced.
            .test_before_acquire(true)
            .idle_timeout(Some(Duration::from_secs(600)))
            .connect_lazy_with(options);
        Ok(Self::new(pool.clone(), pool, settings.timeout, None))
    }
}
