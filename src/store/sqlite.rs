//! SQLite: one file, WAL mode, writes serialised by `BEGIN IMMEDIATE` so a transaction never has to upgrade a read
//! lock (which SQLite answers with an immediate "busy" instead of waiting). Only one machine can use the file, so
//! holding the database's write lock is the account lock too. All of this process's writes go through one
//! connection and queue for it; reads run on read-only connections beside it.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use super::direct::Direct;
use super::sql::Backend;
use super::{PoolSettings, SqliteStore, StoreError, StoreResult};

/// The schema's history on SQLite, compiled into the binary.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

impl Backend for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_USER: Option<&'static str> = None;

    const LOCK_AUDIT: Option<&'static str> = None;

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and brings its schema up to date.
    pub async fn open(path: &Path, settings: &PoolSettings) -> StoreResult<Self> {
        create_private(path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // A writer waits this long for another's lock, then the call fails as unavailable (503).
            .busy_timeout(settings.timeout);
        // A file does not drop its connections, so no check before each use: that would be one more hand-off to the
        // connection's thread on every store call.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.timeout)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.timeout)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        let direct = Direct::open(path, settings.timeout)?;
        Ok(Self::new(writer, reader, settings.timeout, Some(direct)))
    }
}

/// Creates the database file readable by its owner only, as the key file is, when it does not exist yet. SQLite
/// gives its `-wal` and `-shm` files the database file's mode, so they are private too. Left to SQLite, all three
/// would follow the umask (usually 0644: readable by every local user).
fn create_private(path: &Path) -> StoreResult<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // Another instance starting beside this one may have created it first: that file is as private.
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Database(Box::new(error))),
    }
}
