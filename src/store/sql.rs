//! The one implementation of [`Store`], generic over the sqlx database it runs on. The SQL is written once, in the
//! common dialect of SQLite and PostgreSQL (`$N` parameters, `ON CONFLICT`, `RETURNING`, `CASE` instead of `MAX` or
//! `GREATEST`); a backend contributes only how a writing transaction begins and how it locks an account
//! ([`Backend`]), plus how it connects and migrates (`sqlite.rs`, `postgres.rs`).
//!
//! Concurrency, on both backends: a rule that one statement can decide is one conditional `UPDATE`/`DELETE`/upsert,
//! which both databases apply atomically per row (PostgreSQL, at READ COMMITTED, re-checks the `WHERE` against the
//! latest committed row after waiting for a concurrent writer). A rule that needs several statements runs in one
//! transaction begun by [`SqlStore::write_for`], which takes the account's lock first: on SQLite `BEGIN IMMEDIATE`
//! holds the database's write lock, on PostgreSQL the user's row is locked before anything else. Every such
//! transaction therefore takes its locks in the same order (user row, then the user's sessions, codes and sends), so
//! two instances racing on one account run one after the other and cannot deadlock. Every call is bounded by the
//! configured database timeout.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};

use super::statements;
use super::*;
use crate::audit::chain::{AuditAnchor, AuditRecord, Cut, Head, MAC_V2};
use crate::audit::{AuditEvent, AuditFilter};

/// What differs between the databases, beyond connecting: two statements, and where a statement's row count is.
pub trait Backend: Database {
    /// Begins a transaction that will write.
    const BEGIN_WRITE: &'static str;
    /// Run first in a transaction that writes several rows of one account (`$1` is the user's id), so that such
    /// transactions on one account never interleave. `None` where [`Backend::BEGIN_WRITE`] already serialises every
    /// writer.
    const LOCK_USER: Option<&'static str>;
    /// Run first in a transaction that appends to the audit chain, so appends from several instances queue. `None`
    /// where [`Backend::BEGIN_WRITE`] already serialises every writer.
    const LOCK_AUDIT: Option<&'static str>;
    /// Rows a statement inserted, changed or deleted.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// Pool size and timeout, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// The longest one store call may take, waiting for a connection included; past it the call fails as
    /// [`StoreError::TimedOut`].
    pub timeout: Duration,
}

/// The store, on SQLite ([`SqliteStore`]) or PostgreSQL ([`PostgresStore`]).
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    /// Connections for transactions and statements that write. On SQLite just one: writers queue here, in order,
    /// instead of sleeping in SQLite's busy handler while another connection holds the file's write lock.
    writer: Pool<DB>,
    /// Connections for reads that need no lock. On SQLite, read-only connections that WAL lets run beside the
    /// writer; on PostgreSQL the same pool as `writer`.
    reader: Pool<DB>,
    timeout: Duration,
    /// SQLite's direct path for the second step (`direct.rs`); `None` on PostgreSQL.
    direct: Option<super::direct::Direct>,
}

/// The columns of a [`User`], from `users u`.
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.password_hash, u.created_at, u.totp_secret, u.totp_pending_secret, u.totp_last_step, \
         u.sms_phone, u.sms_pending_phone, u.second_factor_failures, u.second_factor_locked_until, u.last_login_at, \
         u.disabled_at, u.totp_enrolled_step, u.totp_enrolled_by, u.email, u.display_name, u.groups, (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = u.id AND r.used_at IS NULL) AS recovery_codes_left"
    };
}

const USER_COLUMNS: &str = user_columns!();

/// The columns of a [`Session`] with its account, from `sessions s JOIN users u ON u.id = s.user_id`. The session's
/// own id and creation time are renamed, as the account has columns of those names.
const SESSION_COLUMNS: &str = concat!(
    "s.id AS session_id, s.user_id, s.state, s.flow_id, s.created_at AS session_created_at, s.expires_at, \
     s.last_seen_at, s.authenticated_at, s.second_factor, s.failed_attempts, s.client_addr, s.user_agent, \
     s.notice_failures, s.notice_replays, s.notice_last_at, s.stepped_up_at, ",
    user_columns!()
);

// The bounds say what the shared SQL needs from a database: connections that run queries, and the few Rust types it
// binds and reads. Rust does not let a trait imply bounds like these, so the `Store` impl below repeats them.
impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> UserId: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> Option<Vec<u8>>: Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    pub(super) fn new(
        writer: Pool<DB>,
        reader: Pool<DB>,
        timeout: Duration,
        direct: Option<super::direct::Direct>,
    ) -> Self {
        Self {
            writer,
            reader,
            timeout,
            direct,
        }
    }

    /// Fails `work` as [`StoreError::TimedOut`] if it takes longer than the configured timeout, so a database that
    /// stops answering (rather than refusing) cannot hold a request.
    async fn bounded<T>(&self, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(StoreError::TimedOut(self.timeout)))
    }

    /// A transaction for a write that involves no account, or only one statement's worth of rows.
    async fn write(&self) -> StoreResult<Transaction<'static, DB>> {
        Ok(self.writer.begin_with(DB::BEGIN_WRITE).await?)
    }

    /// A transaction for several writes to one account's rows, holding the account's lock from its first statement.
    async fn write_for(&self, user: UserId) -> StoreResult<Transaction<'static, DB>> {
        let mut tx = self.write().await?;
        if let Some(lock) = DB::LOCK_USER {
            sqlx::query(lock).bind(user).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    async fn insert_recovery_codes(
        tx: &mut Transaction<'static, DB>,
        id: UserId,
        digests: &[Vec<u8>],
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        for digest in digests {
            sqlx::query("INSERT INTO recovery_codes (user_id, digest, created_at) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(digest.as_slice())
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Inserts a session; the caller holds the account's lock ([`SqlStore::write_for`]).
    async fn insert_session_in(tx: &mut Transaction<'static, DB>, session: &NewSession) -> StoreResult<SessionId> {
        let full = session.state == SessionState::Full;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sessions (token_digest, user_id, state, flow_id, created_at, expires_at, last_seen_at, \
                 authenticated_at, client_addr, user_agent, notice_failures, notice_replays, notice_last_at) \
             SELECT $1, id, $2, $3, $4, $5, $4, CASE WHEN $6 THEN $4 END, $7, $8, \
                 CASE WHEN $6 THEN notice_failures ELSE 0 END, CASE WHEN $6 THEN notice_replays ELSE 0 END, \
                 CASE WHEN $6 THEN notice_last_at END \
             FROM users WHERE id = $9 RETURNING id",
        )
        .bind(session.token_digest.as_slice())
        .bind(session.state.as_str())
        .bind(session.flow_id.as_str())
        .bind(session.now)
        .bind(session.expires_at)
        .bind(full)
        .bind(session.client_addr.as_deref())
        .bind(session.user_agent.as_deref())
        .bind(session.user_id)
        .fetch_one(&mut **tx)
        .await?;
        if full {
            Self::signed_in_in(tx, session.user_id, session.now).await?;
        }
        Ok(SessionId(id))
    }

    /// A completed sign-in, inside `tx` which holds the account's lock: the account's notices have been handed to
    /// the new full session, and the run of failures is over.
    async fn signed_in_in(tx: &mut Transaction<'static, DB>, user: UserId, now: i64) -> StoreResult<()> {
        sqlx::query(statements::SIGNED_IN)
            .bind(now)
            .bind(user)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Counts a second-factor attempt against the pending session (if any) and the account, inside `tx` which holds
    /// the account's lock: the session's try and the account's failure are counted together or not at all (the
    /// caller rolls back anything but [`AttemptClaim::Granted`]).
    async fn claim_in(
        tx: &mut Transaction<'static, DB>,
        id: UserId,
        pending: Option<SessionId>,
        policy: &AttemptPolicy,
        now: i64,
    ) -> StoreResult<AttemptClaim> {
        if let Some(session) = pending {
            // `flow::rules::pending_alive`, as one conditional statement.
            let counted = sqlx::query(statements::CLAIM_SESSION)
                .bind(session)
                .bind(now)
                .bind(policy.session_tries)
                .execute(&mut **tx)
                .await?;
            if DB::rows_affected(&counted) != 1 {
                return Ok(AttemptClaim::Refused(Refusal::NoPendingLogin));
            }
        }
        // `flow::rules::lock` is open, and `flow::rules::locked_until_after` for the failure this counts.
        let failures: Option<i64> = sqlx::query_scalar(statements::CLAIM_ACCOUNT)
            .bind(policy.lock_every)
            .bind(now)
            .bind(policy.lock_seconds)
            .bind(id)
            .bind(policy.hard_cap)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(account_failures) = failures {
            return Ok(AttemptClaim::Granted { account_failures });
        }
        let (failures, locked_until): (i64, Option<i64>) = sqlx::query_as(statements::ACCOUNT_LOCK)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .unwrap_or((policy.hard_cap, None));
        Ok(AttemptClaim::Refused(Refusal::Locked { failures, locked_until }))
    }

    /// Uses up a second-factor proof of `user`, inside `tx` which holds the account's lock: a TOTP step, a recovery
    /// code, or the SMS code texted to `session` (`sms`: the statement for the code's purpose, `CONSUME_SMS_CODE` or
    /// `CONSUME_STEP_UP_SMS_CODE`). False if it was already used or never valid.
    async fn consume_proof_in(
        tx: &mut Transaction<'static, DB>,
        user: UserId,
        session: SessionId,
        proof: &Proof,
        sms: &'static str,
        now: i64,
    ) -> StoreResult<bool> {
        let consumed = match proof {
            Proof::TotpStep(step) => {
                sqlx::query(statements::CONSUME_TOTP_STEP)
                    .bind(*step)
                    .bind(user)
                    .execute(&mut **tx)
                    .await?
            }
            Proof::RecoveryCode(digest) => {
                sqlx::query(statements::CONSUME_RECOVERY_CODE)
                    .bind(now)
                    .bind(user)
                    .bind(digest.as_slice())
                    .execute(&mut **tx)
                    .await?
            }
            Proof::SmsCode(digest) => {
                sqlx::query(sms)
                    .bind(user)
                    .bind(session)
                    .bind(digest.as_slice())
                    .bind(now)
                    .execute(&mut **tx)
                    .await?
            }
        };
        Ok(DB::rows_affected(&consumed) == 1)
    }

    /// Counts one attempt against every key inside `tx`; on the first key over its limit, stops with when to try
    /// again (the caller rolls back, so it is all keys or none). Each key is one upsert that counts only under the
    /// limit (atomic per row on both databases). Callers pass keys in a fixed order, so two transactions lock shared
    /// rows in the same order and cannot deadlock.
    async fn throttle_in(
        tx: &mut Transaction<'static, DB>,
        keys: &[ThrottleKey],
        now: i64,
    ) -> StoreResult<Result<(), Throttled>> {
        for key in keys {
            let window_opened = now - key.window_seconds;
            let counted = sqlx::query(
                "INSERT INTO login_throttle (key, attempts, window_start) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                     attempts = CASE WHEN login_throttle.window_start <= $3 \
                         THEN 1 ELSE login_throttle.attempts + 1 END, \
                     window_start = CASE WHEN login_throttle.window_start <= $3 \
                         THEN $2 ELSE login_throttle.window_start END \
                 WHERE login_throttle.window_start <= $3 OR login_throttle.attempts < $4",
            )
            .bind(key.key.as_str())
            .bind(now)
            .bind(window_opened)
            .bind(key.limit)
            .execute(&mut **tx)
            .await?;
            if DB::rows_affected(&counted) == 0 {
                let started: i64 = sqlx::query_scalar("SELECT window_start FROM login_throttle WHERE key = $1")
                    .bind(key.key.as_str())
                    .fetch_one(&mut **tx)
                    .await?;
                return Ok(Err(Throttled {
                    retry_after: (started + key.window_seconds - now).max(1),
                }));
            }
        }
        Ok(Ok(()))
    }

    /// Gives back one attempt under each key (it was no failure, or was never made), inside `tx`.
    async fn refund_in(tx: &mut Transaction<'static, DB>, keys: &[ThrottleKey]) -> StoreResult<()> {
        for key in keys {
            sqlx::query("UPDATE login_throttle SET attempts = attempts - 1 WHERE key = $1 AND attempts > 0")
                .bind(key.key.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Deletes the account's recovery codes if it has no second factor left: without one they would be a way in that
    /// nothing asks for.
    async fn drop_orphaned_recovery_codes_in(tx: &mut Transaction<'static, DB>, id: UserId) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM recovery_codes WHERE user_id = $1 AND EXISTS \
                 (SELECT 1 FROM users WHERE id = $1 AND totp_secret IS NULL AND sms_phone IS NULL)",
        )
        .bind(id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Appends `event` to the audit chain inside `tx`. Appends form one chain across all instances: each takes the
    /// chain's lock (where the backend needs one) before reading the chain's end.
    async fn append_audit_in(tx: &mut Transaction<'static, DB>, event: &AuditEvent, seal: &Seal) -> StoreResult<()> {
        if let Some(lock) = DB::LOCK_AUDIT {
            sqlx::query(lock).execute(&mut **tx).await?;
        }
        let last: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as(statements::LAST_AUDIT).fetch_optional(&mut **tx).await?;
        let (last_seq, prev) = match last {
            Some(last) => last,
            None => sqlx::query_as(statements::ANCHOR_END)
                .fetch_optional(&mut **tx)
                .await?
                .unwrap_or((0, None)),
        };
        let (seq, prev) = (last_seq + 1, prev.unwrap_or_default());
        let mac = seal(seq, &prev);
        let content = event.content();
        sqlx::query(statements::INSERT_AUDIT)
            .bind(content.at_ms)
            .bind(content.flow_id)
            .bind(content.user_id)
            .bind(content.username)
            .bind(content.client_addr)
            .bind(content.user_agent)
            .bind(content.event)
            .bind(content.method)
            .bind(content.outcome)
            .bind(prev.as_slice())
            .bind(mac.as_slice())
            .bind(seq)
            .bind(MAC_V2)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> UserId: Encode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> Option<SessionId>: Encode<'q, DB>,
    for<'q> Option<UserId>: Encode<'q, DB>,
    for<'r> Option<i64>: Decode<'r, DB>,
    for<'r> User: FromRow<'r, DB::Row>,
    for<'r> Session: FromRow<'r, DB::Row>,
    for<'r> UserSummary: FromRow<'r, DB::Row>,
    for<'r> AuditRecord: FromRow<'r, DB::Row>,
    for<'r> AuditAnchor: FromRow<'r, DB::Row>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> Option<Vec<u8>>: Decode<'r, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
{
    #[tracing::instrument(level = "debug", name = "store.create_user", skip_all)]
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        profile: &Profile,
        now: i64,
    ) -> StoreResult<UserId> {
        self.bounded(async {
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO users (username, password_hash, created_at, email, display_name, groups) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING RETURNING id",
            )
            .bind(username)
            .bind(password_hash)
            .bind(now)
            .bind(profile.email.as_deref())
            .bind(profile.display_name.as_deref())
            .bind(profile.groups.as_str())
            .fetch_optional(&self.writer)
            .await?;
            inserted.map(UserId).ok_or(StoreError::UsernameTaken)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.set_profile", skip_all)]
    async fn set_profile(&self, id: UserId, profile: &Profile) -> StoreResult<bool> {
        self.bounded(async {
            let changed = sqlx::query("UPDATE users SET email = $1, display_name = $2, groups = $3 WHERE id = $4")
                .bind(profile.email.as_deref())
                .bind(profile.display_name.as_deref())
                .bind(profile.groups.as_str())
                .bind(id)
                .execute(&self.writer)
                .await?;
            Ok(DB::rows_affected(&changed) == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.user_by_name", skip_all)]
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        self.bounded(async {
            let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1");
            Ok(sqlx::query_as(&sql).bind(username).fetch_optional(&self.reader).await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.user_by_id", skip_all)]
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        self.bounded(async {
            let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1");
            Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.reader).await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.list_users", skip_all)]
    async fn list_users(&self) -> StoreResult<Vec<UserSummary>> {
        self.bounded(async {
            Ok(sqlx::query_as(
                "SELECT username, created_at, totp_secret IS NOT NULL AS totp, sms_phone IS NOT NULL AS sms, \
                     (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = users.id AND r.used_at IS NULL) \
                         AS recovery_codes_left, \
                     second_factor_failures, second_factor_locked_until, last_login_at, disabled_at, groups \
                 FROM users ORDER BY username",
            )
            .fetch_all(&self.reader)
            .await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.delete_user", skip_all)]
    async fn delete_user(&self, id: UserId) -> StoreResult<bool> {
        self.bounded(async {
            let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&self.writer)
                .await?;
            Ok(DB::rows_affected(&deleted) == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.reset_second_factors", skip_all)]
    async fn reset_second_factors(&self, id: UserId) -> StoreResult<()> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            sqlx::query(
                "UPDATE users SET totp_secret = NULL, totp_enrolled_at = NULL, totp_pending_secret = NULL, \
                     totp_pending_at = NULL, sms_phone = NULL, sms_enrolled_at = NULL, sms_pending_phone = NULL, \
                     second_factor_failures = 0, second_factor_locked_until = NULL \
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Self::insert_recovery_codes(&mut tx, id, &[], 0).await?;
            sqlx::query("DELETE FROM sms_codes WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.change_password", skip_all)]
    async fn change_password(&self, change: &PasswordChange<'_>) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.write_for(change.user).await?;
            let changed =
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND ($3 IS NULL OR password_hash = $3)")
                    .bind(change.new_hash)
                    .bind(change.user)
                    .bind(change.expected_hash)
                    .execute(&mut *tx)
                    .await?;
            if DB::rows_affected(&changed) != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            Self::refund_in(&mut tx, change.refund).await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2)")
                .bind(change.user)
                .bind(change.keep)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.set_disabled", skip_all)]
    async fn set_disabled(&self, id: UserId, now: Option<i64>) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            let changed = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if now.is_some() {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(DB::rows_affected(&changed) == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.unlock_second_factor", skip_all)]
    async fn unlock_second_factor(&self, id: UserId) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query("UPDATE users SET second_factor_failures = 0, second_factor_locked_until = NULL WHERE id = $1")
                .bind(id)
                .execute(&self.writer)
                .await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.set_pending_totp", skip_all)]
    async fn set_pending_totp(&self, id: UserId, sealed_secret: &[u8], now: i64) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query("UPDATE users SET totp_pending_secret = $1, totp_pending_at = $2 WHERE id = $3")
                .bind(sealed_secret)
                .bind(now)
                .bind(id)
                .execute(&self.writer)
                .await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.activate_totp", skip_all)]
    async fn activate_totp(
        &self,
        id: UserId,
        sealed_secret: &[u8],
        step: i64,
        enrolled_by: &[u8],
        recovery_codes: Option<&[Vec<u8>]>,
        now: i64,
    ) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            // A re-enrolment keeps the old last step if it is later, so a code already used can never be used again.
            let activated = sqlx::query(
                "UPDATE users SET totp_secret = totp_pending_secret, totp_enrolled_at = $1, \
                     totp_last_step = CASE WHEN totp_last_step > $2 THEN totp_last_step ELSE $2 END, \
                     totp_enrolled_step = $2, totp_enrolled_by = $5, \
                     totp_pending_secret = NULL, totp_pending_at = NULL, \
                     second_factor_failures = 0, second_factor_locked_until = NULL \
                 WHERE id = $3 AND totp_pending_secret = $4",
            )
            .bind(now)
            .bind(step)
            .bind(id)
            .bind(sealed_secret)
            .bind(enrolled_by)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&activated) != 1 {
                return Ok(false);
            }
            if let Some(digests) = recovery_codes {
                Self::insert_recovery_codes(&mut tx, id, digests, now).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.remove_totp", skip_all)]
    async fn remove_totp(&self, id: UserId, step: i64) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            let removed = sqlx::query(
                "UPDATE users SET totp_secret = NULL, totp_enrolled_at = NULL, totp_last_step = $1, \
                     second_factor_failures = 0, second_factor_locked_until = NULL \
                 WHERE id = $2 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $1)",
            )
            .bind(step)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&removed) != 1 {
                return Ok(false);
            }
            Self::drop_orphaned_recovery_codes_in(&mut tx, id).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.remove_sms", skip_all)]
    async fn remove_sms(&self, id: UserId, session: SessionId, digest: &[u8], now: i64) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            let consumed = sqlx::query(statements::CONSUME_STEP_UP_SMS_CODE)
                .bind(id)
                .bind(session)
                .bind(digest)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if DB::rows_affected(&consumed) != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(
                "UPDATE users SET sms_phone = NULL, sms_enrolled_at = NULL, sms_pending_phone = NULL, \
                     second_factor_failures = 0, second_factor_locked_until = NULL \
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sms_codes WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            Self::drop_orphaned_recovery_codes_in(&mut tx, id).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.reserve_sms_send", skip_all)]
    async fn reserve_sms_send(
        &self,
        id: UserId,
        policy: &SmsSendPolicy,
        shared: &[ThrottleKey],
        now: i64,
    ) -> StoreResult<Result<SendSlot, Throttled>> {
        self.bounded(async {
            // Count, then insert: only correct because the account's lock is held, so a racing send on another
            // instance counts after this one has inserted (or given up).
            let mut tx = self.write_for(id).await?;
            let hour_ago = now - 3600;
            sqlx::query("DELETE FROM sms_sends WHERE user_id = $1 AND sent_at <= $2")
                .bind(id)
                .bind(hour_ago)
                .execute(&mut *tx)
                .await?;
            let (count, latest, oldest): (i64, Option<i64>, Option<i64>) =
                sqlx::query_as("SELECT COUNT(*), MAX(sent_at), MIN(sent_at) FROM sms_sends WHERE user_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            if let Some(retry_after) = policy.wait(count, latest, oldest, now) {
                tx.rollback().await?;
                return Ok(Err(Throttled { retry_after }));
            }
            // The limits shared by all accounts: texts to this number, and all texts of the hour.
            if let Err(throttled) = Self::throttle_in(&mut tx, shared, now).await? {
                tx.rollback().await?;
                return Ok(Err(throttled));
            }
            let slot: i64 = sqlx::query_scalar("INSERT INTO sms_sends (user_id, sent_at) VALUES ($1, $2) RETURNING id")
                .bind(id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Ok(SendSlot(slot)))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.sms_send_wait", skip_all)]
    async fn sms_send_wait(&self, id: UserId, policy: &SmsSendPolicy, now: i64) -> StoreResult<Option<i64>> {
        self.bounded(async {
            let (count, latest, oldest): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MAX(sent_at), MIN(sent_at) FROM sms_sends WHERE user_id = $1 AND sent_at > $2",
            )
            .bind(id)
            .bind(now - 3600)
            .fetch_one(&self.reader)
            .await?;
            Ok(policy.wait(count, latest, oldest, now))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.sms_code_waiting", skip_all)]
    async fn sms_code_waiting(
        &self,
        id: UserId,
        purpose: SmsPurpose,
        session: Option<SessionId>,
        now: i64,
    ) -> StoreResult<bool> {
        self.bounded(async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sms_codes \
                 WHERE user_id = $1 AND purpose = $2 AND ($3 IS NULL OR session_id = $3) AND expires_at > $4",
            )
            .bind(id)
            .bind(purpose.as_str())
            .bind(session)
            .bind(now)
            .fetch_one(&self.reader)
            .await?;
            Ok(waiting > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.release_sms_send", skip_all)]
    async fn release_sms_send(&self, slot: SendSlot, shared: &[ThrottleKey]) -> StoreResult<()> {
        self.bounded(async {
            let mut tx = self.write().await?;
            sqlx::query("DELETE FROM sms_sends WHERE id = $1")
                .bind(slot.0)
                .execute(&mut *tx)
                .await?;
            Self::refund_in(&mut tx, shared).await?;
            // A send that never went out leaves no trace of the number it was for.
            for key in shared {
                sqlx::query("DELETE FROM login_throttle WHERE key = $1 AND attempts = 0")
                    .bind(key.key.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.store_sms_code", skip_all)]
    async fn store_sms_code(&self, code: &NewSmsCode) -> StoreResult<()> {
        self.bounded(async {
            let mut tx = self.write_for(code.user_id).await?;
            sqlx::query(
                "INSERT INTO sms_codes (user_id, purpose, session_id, digest, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (user_id, purpose) DO UPDATE SET session_id = excluded.session_id, \
                     digest = excluded.digest, created_at = excluded.created_at, expires_at = excluded.expires_at",
            )
            .bind(code.user_id)
            .bind(code.purpose.as_str())
            .bind(code.session)
            .bind(code.digest.as_slice())
            .bind(code.now)
            .bind(code.expires_at)
            .execute(&mut *tx)
            .await?;
            if let Some(phone) = &code.pending_phone {
                sqlx::query("UPDATE users SET sms_pending_phone = $1 WHERE id = $2")
                    .bind(phone.as_slice())
                    .bind(code.user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.activate_sms", skip_all)]
    async fn activate_sms(
        &self,
        id: UserId,
        digest: &[u8],
        recovery_codes: Option<&[Vec<u8>]>,
        now: i64,
    ) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            let consumed = sqlx::query(
                "DELETE FROM sms_codes WHERE user_id = $1 AND purpose = 'enroll' AND digest = $2 AND expires_at > $3",
            )
            .bind(id)
            .bind(digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&consumed) != 1 {
                return Ok(false);
            }
            let activated = sqlx::query(
                "UPDATE users SET sms_phone = sms_pending_phone, sms_pending_phone = NULL, sms_enrolled_at = $1, \
                     second_factor_failures = 0, second_factor_locked_until = NULL \
                 WHERE id = $2 AND sms_pending_phone IS NOT NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&activated) != 1 {
                return Ok(false);
            }
            if let Some(digests) = recovery_codes {
                Self::insert_recovery_codes(&mut tx, id, digests, now).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.step_up", skip_all)]
    async fn step_up(&self, session: SessionId, user: UserId, proof: &Proof, now: i64) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.write_for(user).await?;
            let sms = statements::CONSUME_STEP_UP_SMS_CODE;
            if !Self::consume_proof_in(&mut tx, user, session, proof, sms, now).await? {
                tx.commit().await?;
                return Ok(false);
            }
            sqlx::query("UPDATE sessions SET stepped_up_at = $1 WHERE id = $2 AND user_id = $3")
                .bind(now)
                .bind(session)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE users SET second_factor_failures = 0, second_factor_locked_until = NULL WHERE id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.replace_recovery_codes", skip_all)]
    async fn replace_recovery_codes(&self, id: UserId, digests: &[Vec<u8>], now: i64) -> StoreResult<()> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            Self::insert_recovery_codes(&mut tx, id, digests, now).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.claim_second_factor_attempt", skip_all)]
    async fn claim_second_factor_attempt(
        &self,
        id: UserId,
        pending: Option<SessionId>,
        policy: &AttemptPolicy,
        now: i64,
    ) -> StoreResult<AttemptClaim> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            let claim = Self::claim_in(&mut tx, id, pending, policy, now).await?;
            if matches!(claim, AttemptClaim::Granted { .. }) {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(claim)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.record_second_factor_failure", skip_all)]
    async fn record_second_factor_failure(
        &self,
        id: UserId,
        pending: Option<SessionId>,
        replay: bool,
        policy: &AttemptPolicy,
        now: i64,
    ) -> StoreResult<i64> {
        self.bounded(async {
            let mut tx = self.write_for(id).await?;
            sqlx::query(
                "UPDATE users SET notice_failures = notice_failures + 1, \
                     notice_replays = notice_replays + $1, notice_last_at = $2 WHERE id = $3",
            )
            .bind(i64::from(replay))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let mut used = 0;
            if let Some(session) = pending {
                // The tries were counted by the claim; a session that has used them all is no longer
                // `flow::rules::pending_alive` and goes now rather than at its expiry.
                used = sqlx::query_scalar("SELECT failed_attempts FROM sessions WHERE id = $1 AND state = 'pending'")
                    .bind(session)
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(policy.session_tries);
                sqlx::query("DELETE FROM sessions WHERE id = $1 AND state = 'pending' AND failed_attempts >= $2")
                    .bind(session)
                    .bind(policy.session_tries)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(used)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.second_step", skip_all)]
    async fn second_step(&self, step: SecondStepRequest) -> StoreResult<SecondStep> {
        self.bounded(async {
            if let Some(direct) = &self.direct {
                // Holding the one writer connection keeps this process's other writes away from SQLite's lock
                // while the direct path has it.
                let _turn = self.writer.acquire().await?;
                return direct.second_step(step).await;
            }
            let full = &step.upgrade;
            // All under the account's lock: of two racing requests (on any instances) with one code, the second finds
            // the step, code or session used; and a proof counts only after its attempt was counted.
            let mut tx = self.write_for(full.user_id).await?;
            let claim = Self::claim_in(&mut tx, full.user_id, Some(step.pending), &step.policy, full.now).await?;
            let account_failures = match claim {
                AttemptClaim::Granted { account_failures } => account_failures,
                AttemptClaim::Refused(refusal) => {
                    tx.rollback().await?;
                    return Ok(SecondStep::Refused(refusal));
                }
            };
            let consumed = match &step.proof {
                Some(proof) => {
                    let sms = statements::CONSUME_SMS_CODE;
                    Self::consume_proof_in(&mut tx, full.user_id, step.pending, proof, sms, full.now).await?
                }
                None => false,
            };
            if let (false, Some(Proof::TotpStep(used))) = (consumed, &step.proof) {
                // A step already used: a replay, which counts toward no limit (and can never sign in).
                tx.rollback().await?;
                return Ok(SecondStep::Replayed { step: *used });
            }
            if !consumed {
                // The attempt stays counted.
                tx.commit().await?;
                return Ok(SecondStep::Failed {
                    account_failures,
                    proof_refused: step.proof.is_some(),
                });
            }
            // The claim above holds the pending session's row, so it is still there to turn into a full one, which
            // takes over the account's notices.
            sqlx::query(statements::UPGRADE_SESSION)
                .bind(full.token_digest.as_slice())
                .bind(full.expires_at)
                .bind(full.now)
                .bind(full.second_factor)
                .bind(full.client_addr.as_deref())
                .bind(full.user_agent.as_deref())
                .bind(full.user_id)
                .bind(step.pending)
                .execute(&mut *tx)
                .await?;
            Self::signed_in_in(&mut tx, full.user_id, full.now).await?;
            Self::append_audit_in(&mut tx, &step.audit, &*step.seal).await?;
            tx.commit().await?;
            Ok(SecondStep::Done)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.note_replay", skip_all)]
    async fn note_replay(&self, id: UserId, now: i64) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query(
                "UPDATE users SET notice_failures = notice_failures + 1, notice_replays = notice_replays + 1, \
                     notice_last_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.open_session", skip_all)]
    async fn open_session(
        &self,
        refund: &[ThrottleKey],
        user: UserId,
        plan: &PlanOpening<'_>,
    ) -> StoreResult<Option<Opened>> {
        self.bounded(async {
            let mut tx = self.write_for(user).await?;
            Self::refund_in(&mut tx, refund).await?;
            // Read under the account's lock: a factor enrolled meanwhile is seen here, and none can be enrolled
            // until this session exists; an account disabled meanwhile gets none.
            let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 AND u.disabled_at IS NULL");
            let Some(account) = sqlx::query_as::<_, User>(&sql)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?
            else {
                tx.rollback().await?;
                return Ok(None);
            };
            let opening = plan(&account);
            let id = Self::insert_session_in(&mut tx, &opening.session).await?;
            Self::append_audit_in(&mut tx, &opening.audit, &*opening.seal).await?;
            tx.commit().await?;
            Ok(Some(Opened {
                id,
                opening,
                user: account,
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.session_by_digest", skip_all)]
    async fn session_by_digest(&self, digest: &[u8]) -> StoreResult<Option<Session>> {
        self.bounded(async {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_digest = $1"
            );
            Ok(sqlx::query_as(&sql).bind(digest).fetch_optional(&self.reader).await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.touch_session", skip_all)]
    async fn touch_session(&self, id: SessionId, now: i64) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
                .bind(now)
                .bind(id)
                .execute(&self.writer)
                .await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.delete_session", skip_all)]
    async fn delete_session(&self, digest: &[u8]) -> StoreResult<Option<Session>> {
        self.bounded(async {
            let mut tx = self.write().await?;
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_digest = $1"
            );
            let session: Option<Session> = sqlx::query_as(&sql).bind(digest).fetch_optional(&mut *tx).await?;
            let deleted = sqlx::query("DELETE FROM sessions WHERE token_digest = $1")
                .bind(digest)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            // Of two logouts racing on two instances, only the one that deleted the row reports (and audits) it.
            Ok(session.filter(|_| DB::rows_affected(&deleted) == 1))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.delete_user_sessions", skip_all)]
    async fn delete_user_sessions(&self, id: UserId, keep: Option<SessionId>) -> StoreResult<u64> {
        self.bounded(async {
            let deleted = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2)")
                .bind(id)
                .bind(keep)
                .execute(&self.writer)
                .await?;
            Ok(DB::rows_affected(&deleted))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.purge_expired_sessions", skip_all)]
    async fn purge_expired_sessions(&self, now: i64, idle_seconds: i64) -> StoreResult<u64> {
        self.bounded(async {
            // Two statements, each answered by an index (`sessions_expires`, `sessions_last_seen`): one statement with
            // `OR` reads the whole table.
            let expired = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.writer)
                .await?;
            let idle = sqlx::query("DELETE FROM sessions WHERE last_seen_at <= $1 AND state = 'full'")
                .bind(now - idle_seconds)
                .execute(&self.writer)
                .await?;
            Ok(DB::rows_affected(&expired) + DB::rows_affected(&idle))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.reserve_password_attempt", skip_all)]
    async fn reserve_password_attempt(&self, keys: &[ThrottleKey], now: i64) -> StoreResult<Result<(), Throttled>> {
        self.bounded(async {
            let mut tx = self.write().await?;
            let counted = Self::throttle_in(&mut tx, keys, now).await?;
            if counted.is_ok() {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(counted)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.list_sessions", skip_all)]
    async fn list_sessions(&self, user: Option<UserId>) -> StoreResult<Vec<Session>> {
        self.bounded(async {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE ($1 IS NULL OR s.user_id = $1) ORDER BY s.created_at DESC, s.id DESC"
            );
            Ok(sqlx::query_as(&sql).bind(user).fetch_all(&self.reader).await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.delete_session_by_id", skip_all)]
    async fn delete_session_by_id(&self, id: SessionId, owner: Option<UserId>) -> StoreResult<Option<Session>> {
        self.bounded(async {
            let mut tx = self.write().await?;
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.id = $1 AND ($2 IS NULL OR s.user_id = $2)"
            );
            let session: Option<Session> = sqlx::query_as(&sql)
                .bind(id)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM sessions WHERE id = $1 AND ($2 IS NULL OR user_id = $2)")
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(session.filter(|_| DB::rows_affected(&deleted) == 1))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.ping", skip_all)]
    async fn ping(&self) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query("SELECT 1").execute(&self.reader).await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.record_audit", skip_all)]
    async fn record_audit(&self, event: &AuditEvent, seal: &Seal) -> StoreResult<()> {
        self.bounded(async {
            let mut tx = self.write().await?;
            Self::append_audit_in(&mut tx, event, seal).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.audit_events", skip_all)]
    async fn audit_events(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        self.bounded(async {
            Ok(sqlx::query_as(
                "SELECT id, seq, at_ms, flow_id, user_id, username, client_addr, user_agent, event, method, \
                     outcome, prev_mac, mac, mac_version \
                 FROM audit_events \
                 WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR at_ms >= $2) \
                     AND ($3 IS NULL OR at_ms < $3) AND ($4 IS NULL OR event = $4) \
                     AND ($5 IS NULL OR outcome = $5) AND ($6 IS NULL OR flow_id = $6) \
                 ORDER BY seq",
            )
            .bind(filter.username.as_deref())
            .bind(filter.since_ms)
            .bind(filter.until_ms)
            .bind(filter.event.as_deref())
            .bind(filter.outcome.as_deref())
            .bind(filter.flow_id.as_deref())
            .fetch_all(&self.reader)
            .await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.audit_page", skip_all)]
    async fn audit_page(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        self.bounded(async {
            Ok(sqlx::query_as(
                "SELECT id, seq, at_ms, flow_id, user_id, username, client_addr, user_agent, event, method, \
                     outcome, prev_mac, mac, mac_version \
                 FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.audit_anchor", skip_all)]
    async fn audit_anchor(&self) -> StoreResult<Option<AuditAnchor>> {
        self.bounded(async {
            Ok(sqlx::query_as(
                "SELECT last_id, last_seq, last_at_ms, last_mac, mac, version FROM audit_anchor WHERE id = 1",
            )
            .fetch_optional(&self.reader)
            .await?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.audit_head", skip_all)]
    async fn audit_head(&self) -> StoreResult<Option<Head>> {
        self.bounded(async {
            let last: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(statements::LAST_AUDIT)
                .fetch_optional(&self.reader)
                .await?;
            let end = match last {
                Some(last) => Some(last),
                None => {
                    sqlx::query_as(statements::ANCHOR_END)
                        .fetch_optional(&self.reader)
                        .await?
                }
            };
            Ok(end.map(|(seq, mac)| Head {
                seq,
                mac: mac.unwrap_or_default(),
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.prune_audit", skip_all)]
    async fn prune_audit(&self, cut: &Cut, anchor_mac: &[u8]) -> StoreResult<u64> {
        self.bounded(async {
            let mut tx = self.write().await?;
            if let Some(lock) = DB::LOCK_AUDIT {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            // The cut was decided on a read before this transaction: prune only if its event is still there, as it
            // was (another instance may have pruned past it meanwhile).
            let last: Option<(i64, Option<Vec<u8>>)> =
                sqlx::query_as("SELECT id, mac FROM audit_events WHERE seq = $1")
                    .bind(cut.seq)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((last_id, Some(mac))) = last else {
                return Ok(0);
            };
            if mac != cut.mac {
                return Ok(0);
            }
            sqlx::query(
                "INSERT INTO audit_anchor (id, last_id, last_seq, last_at_ms, last_mac, mac, version) \
                 VALUES (1, $1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_seq = excluded.last_seq, \
                     last_at_ms = excluded.last_at_ms, last_mac = excluded.last_mac, mac = excluded.mac, \
                     version = excluded.version",
            )
            .bind(last_id)
            .bind(cut.seq)
            .bind(cut.at_ms)
            .bind(cut.mac.as_slice())
            .bind(anchor_mac)
            .bind(MAC_V2)
            .execute(&mut *tx)
            .await?;
            let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                .bind(cut.seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(DB::rows_affected(&deleted))
        })
        .await
    }
}
