//! SQLite's direct path for the second step of a login: the whole transaction (claim the attempt, consume the
//! proof, turn the pending session into a full one, append the audit event) as one closure run on a connection of
//! its own, on a thread of its own. Through sqlx each of those statements is a hand-off to its connection's thread
//! and back, about ten per second step, all while the database's one write lock is held; here there is one hand-off,
//! and the lock is held only while SQLite works. The statements are the same ones the sqlx path runs
//! (`statements.rs`), so both databases keep one set of rules.
//!
//! Writes from this process never meet at SQLite's lock: a second step holds the store's one sqlx writer connection
//! while it runs here, so other writes queue for that connection as they always do.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

use super::statements;
use super::{AttemptClaim, Proof, Refusal, SecondStep, SecondStepRequest, StoreError, StoreResult};
use crate::audit::chain::MAC_V2;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The connection and the thread that runs closures on it, one at a time.
pub struct Direct {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct(..)")
    }
}

impl Direct {
    /// Opens the database file (which the sqlx store has already created and migrated) with the same settings as
    /// the store's own connections, and starts the thread.
    pub fn open(path: &Path, busy_timeout: Duration) -> StoreResult<Self> {
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(busy_timeout)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("twofold-sqlite".into())
            .spawn(move || {
                for job in queue {
                    job(&mut connection);
                }
            })
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the connection's thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            // The caller may have given up waiting (a timeout); the answer then has nowhere to go.
            let _ = reply.send(work(connection));
        });
        let gone = || StoreError::Unavailable("SQLite's writing thread has stopped".into());
        self.jobs.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn second_step(&self, step: SecondStepRequest) -> StoreResult<SecondStep> {
        self.run(move |connection| second_step(connection, &step)).await
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        // SQLITE_BUSY and SQLITE_LOCKED: the write lock was not free within the busy timeout (another process).
        let busy = matches!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy {
            Self::Unavailable(Box::new(error))
        } else {
            Self::Database(Box::new(error))
        }
    }
}

/// `$1`, `$2`, …: the statements' parameters, bound by name.
const NAMES: [&str; 13] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13",
];

fn named<'a>(values: &'a [&'a dyn ToSql]) -> Vec<(&'static str, &'a dyn ToSql)> {
    NAMES.iter().copied().zip(values.iter().copied()).collect()
}

/// Runs a statement; returns the rows it changed.
fn execute(tx: &Transaction<'_>, sql: &str, values: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(named(values).as_slice())
}

/// The one value of a statement's first row, if it returns one.
fn value<T: rusqlite::types::FromSql>(
    tx: &Transaction<'_>,
    sql: &str,
    values: &[&dyn ToSql],
) -> rusqlite::Result<Option<T>> {
    tx.prepare_cached(sql)?
        .query_row(named(values).as_slice(), |row| row.get(0))
        .optional()
}

/// The same transaction as the sqlx path's `second_step`, statement for statement.
fn second_step(connection: &mut Connection, step: &SecondStepRequest) -> StoreResult<SecondStep> {
    let upgrade = &step.upgrade;
    let (user, now) = (upgrade.user_id.0, upgrade.now);
    let policy = &step.policy;
    // Dropping `tx` without committing rolls it back.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claimed = execute(
        &tx,
        statements::CLAIM_SESSION,
        &[&step.pending.0, &now, &policy.session_tries],
    )?;
    if claimed != 1 {
        return Ok(SecondStep::Refused(Refusal::NoPendingLogin));
    }
    let failures: Option<i64> = value(
        &tx,
        statements::CLAIM_ACCOUNT,
        &[&policy.lock_every, &now, &policy.lock_seconds, &user, &policy.hard_cap],
    )?;
    let claim = match failures {
        Some(account_failures) => AttemptClaim::Granted { account_failures },
        None => {
            let lock = tx
                .prepare_cached(statements::ACCOUNT_LOCK)?
                .query_row(named(&[&user]).as_slice(), |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let (failures, locked_until) = lock.unwrap_or((policy.hard_cap, None));
            AttemptClaim::Refused(Refusal::Locked { failures, locked_until })
        }
    };
    let account_failures = match claim {
        AttemptClaim::Granted { account_failures } => account_failures,
        AttemptClaim::Refused(refusal) => return Ok(SecondStep::Refused(refusal)),
    };
    let consumed = match &step.proof {
        Some(Proof::TotpStep(totp_step)) => execute(&tx, statements::CONSUME_TOTP_STEP, &[totp_step, &user])?,
        Some(Proof::RecoveryCode(digest)) => execute(&tx, statements::CONSUME_RECOVERY_CODE, &[&now, &user, digest])?,
        Some(Proof::SmsCode(digest)) => execute(
            &tx,
            statements::CONSUME_SMS_CODE,
            &[&user, &step.pending.0, digest, &now],
        )?,
        None => 0,
    };
    if let (false, Some(Proof::TotpStep(used))) = (consumed == 1, &step.proof) {
        // A step already used: a replay, which counts toward no limit. Dropping `tx` rolls the claim back.
        return Ok(SecondStep::Replayed { step: *used });
    }
    if consumed != 1 {
        // The attempt stays counted.
        tx.commit()?;
        return Ok(SecondStep::Failed {
            account_failures,
            proof_refused: step.proof.is_some(),
        });
    }
    execute(
        &tx,
        statements::UPGRADE_SESSION,
        &[
            &upgrade.token_digest,
            &upgrade.expires_at,
            &now,
            &upgrade.second_factor,
            &upgrade.client_addr,
            &upgrade.user_agent,
            &user,
            &step.pending.0,
        ],
    )?;
    execute(&tx, statements::SIGNED_IN, &[&now, &user])?;
    let end = |sql: &str| {
        tx.prepare_cached(sql)?
            .query_row([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<Vec<u8>>>(1)?)))
            .optional()
    };
    let (last_seq, prev) = match end(statements::LAST_AUDIT)? {
        Some(last) => last,
        None => end(statements::ANCHOR_END)?.unwrap_or((0, None)),
    };
    let (seq, prev) = (last_seq + 1, prev.unwrap_or_default());
    let mac = (step.seal)(seq, &prev);
    let content = step.audit.content();
    execute(
        &tx,
        statements::INSERT_AUDIT,
        &[
            &content.at_ms,
            &content.flow_id,
            &content.user_id,
            &content.username,
            &content.client_addr,
            &content.user_agent,
            &content.event,
            &content.method,
            &content.outcome,
            &prev,
            &mac,
            &seq,
            &MAC_V2,
        ],
    )?;
    tx.commit()?;
    Ok(SecondStep::Done)
}
