//! Wiring: from a validated [`Config`] and a [`Clock`] to a running server. Kept apart from `main` so tests start
//! the real thing on a port of their choosing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::{Config, DatabaseKind};
use crate::crypto::password::{HashError, PasswordHasher};
use crate::crypto::{KeyError, Keys};
use crate::flow::{Flow, FlowSettings, Pruned, Requester};
use crate::http::connections::{self, ConnectionLimits};
use crate::http::{router, AppState, WebSettings};
use crate::metrics::Metrics;
use crate::sms::Sender;
use crate::store::{
    PoolSettings, PostgresStore, SqliteStore, Store, StoreError, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS,
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "cannot open the database {url}: {source}. Check database_url (for SQLite, that the file's folder exists and \
         is writable)."
    )]
    Database { url: String, source: StoreError },
    #[error(
        "cannot reach the database {url}: {source}. Check that PostgreSQL is running and that the host, port, user, \
         password and database in database_url are right (database_timeout = {timeout:?})."
    )]
    Unreachable {
        url: String,
        timeout: Duration,
        source: StoreError,
    },
    #[error(
        "the database {url} has schema version {version}, newer than this Twofold binary knows (up to {known}): it was \
         upgraded by a newer Twofold. Run that version (on every instance), or point database_url at another database."
    )]
    SchemaTooNew { url: String, version: i64, known: i64 },
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("cannot set up the SMS gateway's HTTP client: {0}")]
    Sms(String),
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The store the URL's scheme names, its schema brought up to date.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartupError> {
    let settings = PoolSettings {
        max_connections: config.database_pool_size,
        timeout: config.database_timeout,
    };
    let opened: Result<Arc<dyn Store>, StoreError> = match config.database_url.kind() {
        Some(DatabaseKind::Sqlite(path)) => SqliteStore::open(&path, &settings)
            .await
            .map(|store| Arc::new(store) as Arc<dyn Store>),
        // Validation let through only the two kinds; anything else is tried as PostgreSQL and fails with its reason.
        Some(DatabaseKind::Postgres) | None => PostgresStore::open(config.database_url.expose(), &settings)
            .await
            .map(|store| Arc::new(store) as Arc<dyn Store>),
    };
    let url = config.database_url.to_string();
    opened.map_err(|source| match source {
        StoreError::Migration(MigrateError::VersionMissing(version)) => StartupError::SchemaTooNew {
            url,
            version,
            known: known_schema_version(config),
        },
        source if source.is_unavailable() => StartupError::Unreachable {
            url,
            timeout: config.database_timeout,
            source,
        },
        source => StartupError::Database { url, source },
    })
}

/// The newest migration this binary carries for the configured database.
fn known_schema_version(config: &Config) -> i64 {
    let migrator = match config.database_url.kind() {
        Some(DatabaseKind::Sqlite(_)) => &SQLITE_MIGRATIONS,
        _ => &POSTGRES_MIGRATIONS,
    };
    migrator.iter().map(|migration| migration.version).max().unwrap_or(0)
}

/// Opens the database and the key and builds the login flow; the command line's user commands need only this.
pub async fn open_flow(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Flow>, StartupError> {
    let store = open_store(config).await?;
    let keys = Arc::new(Keys::load_or_create(&config.secret_key_file)?);
    let hasher = PasswordHasher::new()?;
    let sms = config
        .sms
        .as_ref()
        .map(Sender::from_config)
        .transpose()
        .map_err(|error| StartupError::Sms(error.to_string()))?;
    let settings = FlowSettings {
        issuer: config.issuer.clone(),
        allow_registration: config.allow_registration,
        session_lifetime_seconds: seconds(config.session_lifetime),
        session_idle_seconds: seconds(config.session_idle_timeout),
        audit_retention_seconds: seconds(config.audit_retention),
        session_cache: config.session_cache,
        sms_budget_per_hour: config
            .sms
            .as_ref()
            .and_then(|sms| sms.budget_per_hour)
            .unwrap_or(crate::flow::rules::SMS_BUDGET_PER_HOUR),
    };
    let metrics = Arc::new(Metrics::default());
    Ok(Arc::new(Flow::new(store, clock, keys, hasher, sms, metrics, settings)))
}

/// Everything a request handler needs, and how connections are bounded.
pub struct Server {
    pub state: AppState,
    pub limits: ConnectionLimits,
    /// The database connections one instance opens, which the connection cap leaves room for.
    pub database_pool: u32,
}

/// The server `config` describes, not yet serving.
pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Server, StartupError> {
    let flow = open_flow(config, clock).await?;
    let web = WebSettings {
        secure_cookies: config.secure_cookies(),
        public_origin: config.public_origin(),
        trusted_proxies: config.trusted_proxies.clone(),
        session_lifetime_seconds: seconds(config.session_lifetime),
        site_name: config.issuer.clone(),
        body_read_timeout: config.body_read_timeout,
    };
    let limits = ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        keep_alive_timeout: config.keep_alive_timeout,
        max_connections: config.max_connections,
    };
    Ok(Server {
        state: AppState::new(flow, web),
        limits,
        database_pool: config.database_pool_size,
    })
}

/// Serves until `shutdown` resolves, meanwhile purging expired sessions once a minute and audit events past the
/// retention period once an hour.
pub async fn serve(
    server: Server,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flow = server.state.flow.clone();
    let metrics = flow.metrics_handle();
    let purger = tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        for minute in 0u64.. {
            every_minute.tick().await;
            if let Err(error) = flow.purge_expired_sessions().await {
                tracing::warn!(%error, "could not purge expired sessions");
            }
            if minute % 60 == 0 {
                match flow.prune_audit(&Requester::default()).await {
                    Ok(Pruned::Events(0)) => {}
                    Ok(Pruned::Events(pruned)) => {
                        tracing::info!(pruned, "pruned audit events past the retention period")
                    }
                    Ok(Pruned::Refused(verdict)) => {
                        tracing::error!(%verdict, "the audit trail does not verify: nothing pruned")
                    }
                    Err(error) => tracing::warn!(%error, "could not prune the audit trail"),
                }
            }
        }
    });
    let app = router(server.state);
    let served = connections::serve(app, listener, server.limits, server.database_pool, metrics, shutdown).await;
    purger.abort();
    served
}
