//! The second step of a login, and setting up, confirming and removing second factors.
//!
//! Every code check first claims an attempt in the database (counted as a failure until it succeeds), then checks
//! the code, then consumes it with one conditional statement. So parallel requests can neither guess past the
//! limits nor use one code twice.

use super::machine::{self, Step};
use super::state::{FactorChange, FullSession, PendingLogin, RecentSession, SignedOut};
use super::{rules, Flow, FlowError, FlowResult, Method};
use crate::audit::{AuditEvent, Event, Outcome, Requester};
use crate::crypto::{Keys, SessionToken};
use crate::otp::{self, RecoveryCode, SixDigitCode};
use crate::store::{AttemptClaim, Proof, Refusal, SecondStep, SecondStepRequest, SessionId, Upgrade, User, UserId};

/// A code as typed, parsed for its method.
enum TypedCode {
    Totp(SixDigitCode),
    Sms(SixDigitCode),
    Recovery(RecoveryCode),
}

fn six_digits(raw: &str) -> FlowResult<SixDigitCode> {
    SixDigitCode::parse(raw).ok_or_else(|| FlowError::BadRequest("an authenticator code is 6 digits".into()))
}

impl TypedCode {
    fn parse(method: Method, raw: &str) -> FlowResult<Self> {
        match method {
            Method::Totp => six_digits(raw).map(Self::Totp),
            Method::Sms => six_digits(raw).map(Self::Sms),
            Method::RecoveryCode => RecoveryCode::parse(raw)
                .map(Self::Recovery)
                .ok_or_else(|| FlowError::BadRequest("a recovery code looks like XXXX-XXXX-XXXX-XXXX".into())),
        }
    }
}

/// A freshly set-up authenticator, to be shown once.
#[derive(Debug)]
pub struct TotpSetup {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// The account's second factors, as its owner sees them.
#[derive(Debug, Clone)]
pub struct SecondFactorStatus {
    pub totp: bool,
    /// The active phone, masked (`+1•••••67`).
    pub sms_phone: Option<String>,
    pub recovery_codes_left: i64,
}

/// One code check: whose, from which pending session (none outside a login), and how to audit it.
pub(super) struct Check<'a> {
    pub(super) user: &'a User,
    pub(super) pending: Option<SessionId>,
    pub(super) who: &'a Requester,
    pub(super) flow: Option<&'a str>,
    pub(super) event: Event,
    pub(super) method: Method,
}

impl Check<'_> {
    fn subject(&self) -> Option<(UserId, &str)> {
        Some((self.user.id, self.user.username.as_str()))
    }
}

/// Why a claimed attempt failed; decides the audit outcome and the notices.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Wrong,
    Replay,
}

/// A second step that did not sign in: the answer, and the sign-in if it is still pending (a try used, or the
/// attempt refused before any was counted).
#[derive(Debug)]
pub struct NotVerified {
    pub error: FlowError,
    pub still_pending: Option<PendingLogin>,
}

impl From<super::IllegalStep> for NotVerified {
    fn from(error: super::IllegalStep) -> Self {
        FlowError::from(error).into()
    }
}

impl From<FlowError> for NotVerified {
    fn from(error: FlowError) -> Self {
        Self {
            error,
            still_pending: None,
        }
    }
}

impl Flow {
    /// The second step of a login: `code` for `method` from the pending sign-in, which it consumes. On success the
    /// pending session has become a full one, in place, under the returned new token.
    #[tracing::instrument(level = "debug", name = "flow.verify_second_factor", skip_all)]
    pub async fn verify_second_factor(
        &self,
        pending: PendingLogin,
        method: &str,
        code: &str,
        who: &Requester,
    ) -> Result<SessionToken, NotVerified> {
        let parsed = Method::parse(method)
            .ok_or_else(|| FlowError::BadRequest("method must be \"totp\", \"sms\" or \"recovery_code\"".into()))
            .and_then(|method| Ok((method, TypedCode::parse(method, code)?)));
        let (method, code) = match parsed {
            Ok(parsed) => parsed,
            // Malformed input is no attempt: the sign-in stays as it was.
            Err(error) => {
                return Err(NotVerified {
                    error,
                    still_pending: Some(pending),
                })
            }
        };
        let user = pending.user();
        let check = Check {
            user,
            pending: Some(pending.id()),
            who,
            flow: Some(pending.flow_id()),
            event: Event::SecondFactor,
            method,
        };
        let now = self.now_unix();
        // The code is checked here, but counts only if the store grants the attempt first, in the transaction that
        // would complete the sign-in: so parallel guesses cannot get past the limits. A step at or before the last
        // used one is passed on too; the store refuses it as a replay.
        let proof = match &code {
            TypedCode::Totp(code) => self.matching_step(user, code, now)?.map(Proof::TotpStep),
            TypedCode::Sms(code) => Some(Proof::SmsCode(self.keys.sms_code_digest(user.id.0, code.as_str()))),
            TypedCode::Recovery(code) => Some(Proof::RecoveryCode(self.keys.recovery_code_digest(code.as_str()))),
        };
        let new_token = SessionToken::generate();
        let upgrade = Upgrade {
            token_digest: new_token.digest(),
            user_id: user.id,
            now,
            expires_at: now + self.settings.session_lifetime_seconds,
            second_factor: method.as_str(),
            client_addr: who.client_addr.clone(),
            user_agent: who.user_agent.clone(),
        };
        // The success is recorded in the same transaction as the sign-in it reports: neither exists without the other.
        let success = self.check_event(&check, Outcome::Success);
        let step = SecondStepRequest {
            pending: pending.id(),
            policy: rules::SECOND_FACTOR,
            proof,
            upgrade,
            seal: self.seal(&success),
            audit: success.clone(),
        };
        let outcome = self.store.second_step(step).await.map_err(FlowError::from)?;
        match outcome {
            SecondStep::Done => {
                machine::transition::<PendingLogin, FullSession>(Step::CodeAccepted)?;
                self.audited(&success);
                Ok(new_token)
            }
            SecondStep::Replayed { step } => {
                let error = self.replayed(&check, step, now).await?;
                machine::transition::<PendingLogin, PendingLogin>(Step::CodeRefused)?;
                Err(NotVerified {
                    error,
                    still_pending: Some(pending),
                })
            }
            SecondStep::Failed { account_failures, .. } => {
                let (error, tries_used) = self.fail(&check, Failure::Wrong, account_failures).await?;
                if rules::tries_left(tries_used) == 0 {
                    machine::transition::<PendingLogin, SignedOut>(Step::TriesUsedUp)?;
                    return Err(error.into());
                }
                machine::transition::<PendingLogin, PendingLogin>(Step::CodeRefused)?;
                Err(NotVerified {
                    error,
                    still_pending: Some(pending),
                })
            }
            SecondStep::Refused(refusal) => {
                let error = self.refused(&check, refusal, now).await?;
                if refusal == Refusal::NoPendingLogin {
                    // Expired, ended or out of tries since this request read it.
                    machine::transition::<PendingLogin, SignedOut>(Step::Expiry)?;
                    return Err(error.into());
                }
                machine::transition::<PendingLogin, PendingLogin>(Step::CodeRefused)?;
                Err(NotVerified {
                    error,
                    still_pending: Some(pending),
                })
            }
        }
    }

    pub(super) async fn audit_check(&self, check: &Check<'_>, outcome: Outcome) -> FlowResult<()> {
        self.audit(
            check.event,
            outcome,
            check.who,
            check.subject(),
            check.flow,
            Some(check.method),
        )
        .await
    }

    fn check_event(&self, check: &Check<'_>, outcome: Outcome) -> AuditEvent {
        self.audit_event(
            check.event,
            outcome,
            check.who,
            check.subject(),
            check.flow,
            Some(check.method),
        )
    }

    /// Claims one code check for the account (outside a sign-in: changing a factor). `Ok(Ok(failures))` when
    /// granted, with the account's consecutive failures counting this attempt.
    pub(super) async fn claim(&self, check: &Check<'_>) -> FlowResult<Result<i64, FlowError>> {
        let now = self.now_unix();
        let claim = self
            .store
            .claim_second_factor_attempt(check.user.id, check.pending, &rules::SECOND_FACTOR, now)
            .await?;
        Ok(match claim {
            AttemptClaim::Granted { account_failures } => Ok(account_failures),
            AttemptClaim::Refused(refusal) => Err(self.refused(check, refusal, now).await?),
        })
    }

    /// Audits an attempt the store did not grant; returns the error that answers it.
    async fn refused(&self, check: &Check<'_>, refusal: Refusal, now: i64) -> FlowResult<FlowError> {
        Ok(match refusal {
            Refusal::NoPendingLogin => {
                self.audit_check(check, Outcome::NoPendingLogin).await?;
                FlowError::NoPendingLogin
            }
            Refusal::Locked { failures, locked_until } => {
                self.audit_check(check, Outcome::Locked).await?;
                locked(rules::lock(failures, locked_until, now), now)
            }
        })
    }

    /// Records a failed check and builds the answer; returns it with the tries the pending session (if any) has
    /// used.
    pub(super) async fn fail(
        &self,
        check: &Check<'_>,
        failure: Failure,
        account_failures: i64,
    ) -> FlowResult<(FlowError, i64)> {
        let replay = failure == Failure::Replay;
        let used = self
            .store
            .record_second_factor_failure(
                check.user.id,
                check.pending,
                replay,
                &rules::SECOND_FACTOR,
                self.now_unix(),
            )
            .await?;
        let outcome = if rules::lock_engaged_by(account_failures) {
            Outcome::LockEngaged
        } else if replay {
            Outcome::Replay
        } else {
            Outcome::InvalidCode
        };
        self.audit_check(check, outcome).await?;
        let message = match (check.pending, rules::tries_left(used)) {
            (None, _) => "the code is not valid".to_owned(),
            (Some(_), 0) => "the code is not valid, and this sign-in has used all its tries: sign in again".to_owned(),
            (Some(_), 1) => "the code is not valid; 1 try left".to_owned(),
            (Some(_), left) => format!("the code is not valid; {left} tries left"),
        };
        Ok((FlowError::InvalidCode(message), used))
    }

    /// A sign-in's TOTP code whose step was already used: refused, audited, and told apart for the person, who
    /// most likely typed a code their app still shows; it used no try. It is noted for the next sign-in's notices,
    /// unless it is the code that confirmed the enrolment, typed again from the browser that confirmed it: the
    /// person's own, not someone else's.
    async fn replayed(&self, check: &Check<'_>, step: i64, now: i64) -> FlowResult<FlowError> {
        let user = check.user;
        let browser = Keys::browser_digest(check.who.client_addr.as_deref(), check.who.user_agent.as_deref());
        let own_enrolment =
            user.totp_enrolled_step == Some(step) && user.totp_enrolled_by.as_deref() == Some(browser.as_slice());
        if !own_enrolment {
            self.store.note_replay(user.id, now).await?;
        }
        self.audit_check(check, Outcome::Replay).await?;
        Ok(FlowError::InvalidCode(
            "this code was already used: wait for your app to show the next one (no try was used)".into(),
        ))
    }

    /// [`Flow::fail`] for a check outside a sign-in, as the error that answers it.
    pub(super) async fn fail_change<T>(
        &self,
        check: &Check<'_>,
        failure: Failure,
        account_failures: i64,
    ) -> FlowResult<T> {
        Err(self.fail(check, failure, account_failures).await?.0)
    }

    /// The TOTP step `code` matches for the user's active authenticator, if any.
    fn matching_step(&self, user: &User, code: &SixDigitCode, now: i64) -> FlowResult<Option<i64>> {
        let Some(sealed) = &user.totp_secret else {
            return Ok(None);
        };
        let secret = self.open_totp_secret(user.id, sealed)?;
        Ok(otp::verify_totp(&secret, code, now))
    }

    /// The account as it is now (a change of factors reads it fresh, not from the session's copy).
    pub(super) async fn account(&self, user: UserId) -> FlowResult<User> {
        self.store.user_by_id(user).await?.ok_or(FlowError::Unauthenticated)
    }

    #[tracing::instrument(level = "debug", name = "flow.second_factor_status", skip_all)]
    pub async fn second_factor_status(&self, session: &FullSession) -> FlowResult<SecondFactorStatus> {
        let user = self.account(session.user_id()).await?;
        Ok(SecondFactorStatus {
            totp: user.totp_secret.is_some(),
            sms_phone: self.masked_phone(&user)?,
            recovery_codes_left: user.recovery_codes_left,
        })
    }

    /// Starts setting up an authenticator app. The secret is stored sealed and does nothing until confirmed.
    #[tracing::instrument(level = "debug", name = "flow.totp_setup", skip_all)]
    pub async fn totp_setup(&self, session: &FactorChange, who: &Requester) -> FlowResult<TotpSetup> {
        let secret = otp::generate_totp_secret();
        let sealed = self.keys.seal(&Self::totp_context(session.user_id()), &secret);
        self.store
            .set_pending_totp(session.user_id(), &sealed, self.now_unix())
            .await?;
        self.sessions.forget_user(session.user_id(), None);
        let setup = self.describe_totp(session.username(), &secret)?;
        self.audit(
            Event::TotpSetup,
            Outcome::Success,
            who,
            Some((session.user_id(), session.username())),
            Some(session.flow_id()),
            Some(Method::Totp),
        )
        .await?;
        Ok(setup)
    }

    /// The authenticator app set up last and not confirmed yet, shown again: the set-up page after a reload or a
    /// wrong confirmation code. `None` when no set-up is waiting.
    #[tracing::instrument(level = "debug", name = "flow.totp_setup_in_progress", skip_all)]
    pub async fn totp_setup_in_progress(&self, session: &RecentSession) -> FlowResult<Option<TotpSetup>> {
        let user = self.account(session.user_id()).await?;
        let Some(sealed) = &user.totp_pending_secret else {
            return Ok(None);
        };
        let secret = self.open_totp_secret(user.id, sealed)?;
        self.describe_totp(session.username(), &secret).map(Some)
    }

    fn describe_totp(&self, username: &str, secret: &[u8]) -> FlowResult<TotpSetup> {
        let otpauth_uri = otp::otpauth_uri(&self.settings.issuer, username, secret);
        let qr_svg = otp::qr_svg(&otpauth_uri)
            .map_err(|_| FlowError::BadRequest("the username is too long for a QR code".into()))?;
        Ok(TotpSetup {
            secret: otp::base32(secret),
            otpauth_uri,
            qr_svg,
        })
    }

    /// Activates the authenticator set up last, given a current code from it. Returns a first set of recovery codes
    /// when this is the account's first second factor, else none (the existing set stays). Other sessions of the
    /// account end: they were signed in under the old factors.
    #[tracing::instrument(level = "debug", name = "flow.totp_confirm", skip_all)]
    pub async fn totp_confirm(&self, session: &FactorChange, code: &str, who: &Requester) -> FlowResult<Vec<String>> {
        let code = six_digits(code)?;
        // Read afresh, not as the change was allowed: the setup it confirms came after.
        let user = &self.account(session.user_id()).await?;
        let Some(pending_secret) = user.totp_pending_secret.clone() else {
            return Err(FlowError::BadRequest(
                "there is no authenticator app being set up: call setup first".into(),
            ));
        };
        let check = Check {
            user,
            pending: None,
            who,
            flow: Some(session.flow_id()),
            event: Event::TotpConfirm,
            method: Method::Totp,
        };
        let account_failures = self.claim(&check).await??;
        let secret = self.open_totp_secret(user.id, &pending_secret)?;
        let now = self.now_unix();
        let Some(step) = otp::verify_totp(&secret, &code, now) else {
            return self.fail_change(&check, Failure::Wrong, account_failures).await;
        };
        let first_factor = Method::available_to(user).is_empty();
        let codes = first_factor.then(otp::generate_recovery_codes).unwrap_or_default();
        let digests = self.recovery_code_digests(&codes);
        let activated = self
            .store
            .activate_totp(
                user.id,
                &pending_secret,
                step,
                &Keys::browser_digest(who.client_addr.as_deref(), who.user_agent.as_deref()),
                first_factor.then_some(&digests[..]),
                now,
            )
            .await?;
        if !activated {
            return Err(FlowError::BadRequest(
                "the authenticator set-up changed meanwhile: start the set-up again".into(),
            ));
        }
        self.end_other_sessions(user.id, session).await?;
        self.audit(
            Event::TotpConfirm,
            Outcome::Success,
            who,
            Some((user.id, &user.username)),
            Some(session.flow_id()),
            Some(Method::Totp),
        )
        .await?;
        Ok(codes.iter().map(RecoveryCode::display).collect())
    }

    /// A step-up: `code` for `method` proves a second factor on this signed-in session, which may then change the
    /// account's factors for [`rules::STEP_UP_SECONDS`]. The attempt is claimed and counted like a sign-in's, and a
    /// code is consumed like one (a TOTP step already used, by the sign-in itself too, is a replay).
    #[tracing::instrument(level = "debug", name = "flow.step_up", skip_all)]
    pub async fn step_up(&self, session: &FullSession, method: &str, code: &str, who: &Requester) -> FlowResult<()> {
        let method = Method::parse(method)
            .ok_or_else(|| FlowError::BadRequest("method must be \"totp\", \"sms\" or \"recovery_code\"".into()))?;
        let code = TypedCode::parse(method, code)?;
        let user = self.account(session.user_id()).await?;
        if !Method::available_to(&user).contains(&method) {
            return Err(FlowError::BadRequest(format!(
                "this account does not use {} as a second factor",
                method.as_str()
            )));
        }
        let check = Check {
            user: &user,
            pending: None,
            who,
            flow: Some(session.flow_id()),
            event: Event::StepUp,
            method,
        };
        let account_failures = self.claim(&check).await??;
        let now = self.now_unix();
        let proof = match &code {
            TypedCode::Totp(code) => self.matching_step(&user, code, now)?.map(Proof::TotpStep),
            TypedCode::Sms(code) => Some(Proof::SmsCode(self.keys.sms_code_digest(user.id.0, code.as_str()))),
            TypedCode::Recovery(code) => Some(Proof::RecoveryCode(self.keys.recovery_code_digest(code.as_str()))),
        };
        let failure = match &proof {
            Some(proof) if self.store.step_up(session.id(), user.id, proof, now).await? => None,
            Some(_) if method == Method::Totp => Some(Failure::Replay),
            _ => Some(Failure::Wrong),
        };
        if let Some(failure) = failure {
            return self.fail_change(&check, failure, account_failures).await;
        }
        self.sessions.forget_user(user.id, None);
        self.audit_check(&check, Outcome::Success).await
    }

    /// Removes the authenticator app, given a current code from it; the recovery codes go with it.
    #[tracing::instrument(level = "debug", name = "flow.totp_remove", skip_all)]
    pub async fn totp_remove(&self, session: &RecentSession, code: &str, who: &Requester) -> FlowResult<()> {
        let code = six_digits(code)?;
        let user = self.account(session.user_id()).await?;
        if user.totp_secret.is_none() {
            return Err(FlowError::BadRequest("no authenticator app is set up".into()));
        }
        let check = Check {
            user: &user,
            pending: None,
            who,
            flow: Some(session.flow_id()),
            event: Event::TotpRemove,
            method: Method::Totp,
        };
        let account_failures = self.claim(&check).await??;
        let now = self.now_unix();
        let failure = match self.matching_step(&user, &code, now)? {
            Some(step) if self.store.remove_totp(user.id, step).await? => None,
            Some(_) => Some(Failure::Replay),
            None => Some(Failure::Wrong),
        };
        if let Some(failure) = failure {
            return self.fail_change(&check, failure, account_failures).await;
        }
        self.end_other_sessions(user.id, session).await?;
        self.audit(
            Event::TotpRemove,
            Outcome::Success,
            who,
            Some((user.id, &user.username)),
            Some(session.flow_id()),
            Some(Method::Totp),
        )
        .await?;
        Ok(())
    }

    /// A new set of recovery codes; the old set stops working.
    #[tracing::instrument(level = "debug", name = "flow.regenerate_recovery_codes", skip_all)]
    pub async fn regenerate_recovery_codes(&self, session: &FactorChange, who: &Requester) -> FlowResult<Vec<String>> {
        let user = session.account();
        if Method::available_to(user).is_empty() {
            return Err(FlowError::BadRequest(
                "recovery codes stand in for a second factor: set up an authenticator app first".into(),
            ));
        }
        let codes = otp::generate_recovery_codes();
        let digests = self.recovery_code_digests(&codes);
        self.store
            .replace_recovery_codes(user.id, &digests, self.now_unix())
            .await?;
        self.sessions.forget_user(user.id, None);
        self.audit(
            Event::RecoveryCodesRegenerate,
            Outcome::Success,
            who,
            Some((user.id, &user.username)),
            Some(session.flow_id()),
            Some(Method::RecoveryCode),
        )
        .await?;
        Ok(codes.iter().map(RecoveryCode::display).collect())
    }
}

/// The recovery codes in `text` (a page sent back to be downloaded), written out as they are shown; `None` unless it
/// holds between one and a set's worth of well-formed codes and nothing else, so no other text is ever echoed.
pub fn recovery_codes_in(text: &str) -> Option<Vec<String>> {
    text.split_whitespace()
        .map(|raw| RecoveryCode::parse(raw).map(|code| code.display()))
        .collect::<Option<Vec<_>>>()
        .filter(|codes| !codes.is_empty() && codes.len() <= rules::RECOVERY_CODES_PER_SET)
}

/// The answer to a code refused because the second factor is locked.
pub(super) fn locked(lock: rules::Lock, now: i64) -> FlowError {
    let message = match lock {
        rules::Lock::UntilUnlocked => {
            "too many wrong codes: the second factor of this account is locked until an administrator unlocks it"
        }
        _ => "too many wrong codes: the second factor of this account is locked for a while",
    };
    FlowError::TooManyAttempts {
        retry_after: lock.retry_after(now).unwrap_or(1),
        message: message.to_owned(),
    }
}
