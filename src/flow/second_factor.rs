//! The second step of a login, and setting up, confirming and removing second factors.
//!
//! Every code check first claims an attempt in the database (counted as a failure until it succeeds), then checks
//! the code, then consumes it with one conditional statement. So parallel requests can neither guess past the
//! limits nor use one code twice.

use super::machine::{State, Step};
use super::{limits, Flow, FlowError, FlowResult, Method};
use crate::audit::{AuditEvent, Event, Outcome, Requester};
use crate::crypto::SessionToken;
use crate::otp::{self, RecoveryCode, SixDigitCode};
use crate::store::{AttemptClaim, NewSession, Proof, SecondStep, SessionId, SessionState, User, UserId};

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

impl Flow {
    /// The second step of a login: `code` for `method` from the pending session `token`. On success the pending
    /// session is gone and the returned token names a new full session.
    pub async fn verify_second_factor(
        &self,
        token: Option<&SessionToken>,
        method: &str,
        code: &str,
        who: &Requester,
    ) -> FlowResult<SessionToken> {
        let method = Method::parse(method)
            .ok_or_else(|| FlowError::BadRequest("method must be \"totp\", \"sms\" or \"recovery_code\"".into()))?;
        let code = TypedCode::parse(method, code)?;
        let Some(pending) = self.pending_session(token).await? else {
            self.audit(
                Event::SecondFactor,
                Outcome::NoPendingLogin,
                who,
                None,
                None,
                Some(method),
            )
            .await?;
            return Err(FlowError::NoPendingLogin);
        };
        let user = self
            .store
            .user_by_id(pending.user_id)
            .await?
            .ok_or(FlowError::NoPendingLogin)?;
        let check = Check {
            user: &user,
            pending: Some(pending.id),
            who,
            flow: Some(pending.flow_id.as_str()),
            event: Event::SecondFactor,
            method,
        };
        let now = self.now_unix();
        // The code is checked here, but counts only if the store grants the attempt first, in the transaction that
        // would complete the sign-in: so parallel guesses cannot get past the limits. A step at or before the last
        // used one is passed on too; the store refuses it as a replay.
        let proof = match &code {
            TypedCode::Totp(code) => self.matching_step(&user, code, now)?.map(Proof::TotpStep),
            TypedCode::Sms(code) => Some(Proof::SmsCode(self.keys.sms_code_digest(user.id.0, code.as_str()))),
            TypedCode::Recovery(code) => Some(Proof::RecoveryCode(self.keys.recovery_code_digest(code.as_str()))),
        };
        let new_token = SessionToken::generate();
        let full = NewSession {
            token_digest: new_token.digest(),
            user_id: user.id,
            state: SessionState::Full,
            flow_id: pending.flow_id.clone(),
            now,
            expires_at: now + self.settings.session_lifetime_seconds,
            second_factor: Some(method.as_str()),
            client_addr: who.client_addr.clone(),
            user_agent: who.user_agent.clone(),
        };
        Self::step(State::Pending, Step::CodeAccepted)?;
        // The success is recorded in the same transaction as the sign-in it reports: neither exists without the other.
        let success = self.check_event(&check, Outcome::Success);
        let policy = &limits::SECOND_FACTOR;
        let seal = self.seal(&success);
        let outcome = self
            .store
            .second_step(pending.id, policy, proof.as_ref(), &full, &success, &*seal)
            .await?;
        match outcome {
            SecondStep::Done => {
                self.audited(&success);
                Ok(new_token)
            }
            SecondStep::Failed {
                account_failures,
                proof_refused,
            } => {
                let failure = if proof_refused && method == Method::Totp {
                    Failure::Replay
                } else {
                    Failure::Wrong
                };
                self.fail(&check, failure, account_failures).await
            }
            SecondStep::Refused(claim) => Err(self.refused(&check, claim, now).await?),
        }
    }

    async fn audit_check(&self, check: &Check<'_>, outcome: Outcome) -> FlowResult<()> {
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

    /// Claims one code check for the account (and the pending session, if any). `Ok(Ok(failures))` when granted,
    /// with the account's consecutive failures counting this attempt.
    pub(super) async fn claim(&self, check: &Check<'_>) -> FlowResult<Result<i64, FlowError>> {
        let now = self.now_unix();
        let claim = self
            .store
            .claim_second_factor_attempt(check.user.id, check.pending, &limits::SECOND_FACTOR, now)
            .await?;
        Ok(match claim {
            AttemptClaim::Granted { account_failures, .. } => Ok(account_failures),
            refused => Err(self.refused(check, refused, now).await?),
        })
    }

    /// Audits an attempt the store did not grant; returns the error that answers it.
    async fn refused(&self, check: &Check<'_>, claim: AttemptClaim, now: i64) -> FlowResult<FlowError> {
        Ok(match claim {
            AttemptClaim::Granted { .. } | AttemptClaim::NoPendingLogin => {
                self.audit_check(check, Outcome::NoPendingLogin).await?;
                FlowError::NoPendingLogin
            }
            AttemptClaim::Locked { until } => {
                self.audit_check(check, Outcome::Locked).await?;
                let (retry_after, message) = match until {
                    Some(until) => (
                        (until - now).max(1),
                        "too many wrong codes: the second factor of this account is locked for a while".to_owned(),
                    ),
                    None => (
                        limits::OPERATOR_LOCK_RETRY_AFTER,
                        "too many wrong codes: the second factor of this account is locked until an administrator unlocks it"
                            .to_owned(),
                    ),
                };
                FlowError::TooManyAttempts { retry_after, message }
            }
        })
    }

    /// Records a failed check and builds the answer, with the tries a pending session has left.
    pub(super) async fn fail<T>(&self, check: &Check<'_>, failure: Failure, account_failures: i64) -> FlowResult<T> {
        let policy = &limits::SECOND_FACTOR;
        let replay = failure == Failure::Replay;
        let left = self
            .store
            .record_second_factor_failure(check.user.id, check.pending, replay, policy, self.now_unix())
            .await?;
        let outcome = if account_failures % policy.lock_every == 0 {
            Outcome::LockEngaged
        } else if replay {
            Outcome::Replay
        } else {
            Outcome::InvalidCode
        };
        if check.pending.is_some() {
            Self::step(
                State::Pending,
                if left == 0 {
                    Step::TriesUsedUp
                } else {
                    Step::CodeRefused
                },
            )?;
        }
        self.audit_check(check, outcome).await?;
        let message = match (check.pending, left) {
            (None, _) => "the code is not valid".to_owned(),
            (Some(_), 0) => "the code is not valid, and this sign-in has used all its tries: sign in again".to_owned(),
            (Some(_), 1) => "the code is not valid; 1 try left".to_owned(),
            (Some(_), left) => format!("the code is not valid; {left} tries left"),
        };
        Err(FlowError::InvalidCode(message))
    }

    /// The TOTP step `code` matches for the user's active authenticator, if any.
    fn matching_step(&self, user: &User, code: &SixDigitCode, now: i64) -> FlowResult<Option<i64>> {
        let Some(sealed) = &user.totp_secret else {
            return Ok(None);
        };
        let secret = self.open_totp_secret(user.id, sealed)?;
        Ok(otp::verify_totp(&secret, code, now))
    }

    async fn signed_in_user(&self, user: UserId) -> FlowResult<User> {
        self.store.user_by_id(user).await?.ok_or(FlowError::Unauthenticated)
    }

    pub async fn second_factor_status(&self, token: Option<&SessionToken>) -> FlowResult<SecondFactorStatus> {
        let view = self.session(token).await?;
        let user = self.signed_in_user(view.user_id).await?;
        Ok(SecondFactorStatus {
            totp: user.totp_secret.is_some(),
            sms_phone: self.masked_phone(&user)?,
            recovery_codes_left: user.recovery_codes_left,
        })
    }

    /// Starts setting up an authenticator app. The secret is stored sealed and does nothing until confirmed.
    pub async fn totp_setup(&self, token: Option<&SessionToken>, who: &Requester) -> FlowResult<TotpSetup> {
        let view = self.recent_session(token).await?;
        let secret = otp::generate_totp_secret();
        let sealed = self.keys.seal(&Self::totp_context(view.user_id), &secret);
        self.store
            .set_pending_totp(view.user_id, &sealed, self.now_unix())
            .await?;
        let setup = self.describe_totp(&view.username, &secret)?;
        self.audit(
            Event::TotpSetup,
            Outcome::Success,
            who,
            Some((view.user_id, &view.username)),
            Some(view.flow_id.as_str()),
            Some(Method::Totp),
        )
        .await?;
        Ok(setup)
    }

    /// The authenticator app set up last and not confirmed yet, shown again: the set-up page after a reload or a
    /// wrong confirmation code. `None` when no set-up is waiting. Same rule as starting one: a recent sign-in.
    pub async fn totp_setup_in_progress(&self, token: Option<&SessionToken>) -> FlowResult<Option<TotpSetup>> {
        let view = self.recent_session(token).await?;
        let user = self.signed_in_user(view.user_id).await?;
        let Some(sealed) = &user.totp_pending_secret else {
            return Ok(None);
        };
        let secret = self.open_totp_secret(user.id, sealed)?;
        self.describe_totp(&view.username, &secret).map(Some)
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
    pub async fn totp_confirm(
        &self,
        token: Option<&SessionToken>,
        code: &str,
        who: &Requester,
    ) -> FlowResult<Vec<String>> {
        let code = six_digits(code)?;
        let view = self.recent_session(token).await?;
        let user = self.signed_in_user(view.user_id).await?;
        let Some(pending_secret) = user.totp_pending_secret.clone() else {
            return Err(FlowError::BadRequest(
                "there is no authenticator app being set up: call setup first".into(),
            ));
        };
        let check = Check {
            user: &user,
            pending: None,
            who,
            flow: Some(view.flow_id.as_str()),
            event: Event::TotpConfirm,
            method: Method::Totp,
        };
        let account_failures = self.claim(&check).await??;
        let secret = self.open_totp_secret(user.id, &pending_secret)?;
        let now = self.now_unix();
        let Some(step) = otp::verify_totp(&secret, &code, now) else {
            return self.fail(&check, Failure::Wrong, account_failures).await;
        };
        let first_factor = Method::available_to(&user).is_empty();
        let codes = first_factor.then(otp::generate_recovery_codes).unwrap_or_default();
        let digests = self.recovery_code_digests(&codes);
        let activated = self
            .store
            .activate_totp(
                user.id,
                &pending_secret,
                step,
                first_factor.then_some(&digests[..]),
                now,
            )
            .await?;
        if !activated {
            return Err(FlowError::BadRequest(
                "the authenticator set-up changed meanwhile: start the set-up again".into(),
            ));
        }
        self.end_other_sessions(user.id, view.session_id).await?;
        self.audit(
            Event::TotpConfirm,
            Outcome::Success,
            who,
            Some((user.id, &user.username)),
            Some(view.flow_id.as_str()),
            Some(Method::Totp),
        )
        .await?;
        Ok(codes.iter().map(RecoveryCode::display).collect())
    }

    /// Removes the authenticator app, given a current code from it; the recovery codes go with it.
    pub async fn totp_remove(&self, token: Option<&SessionToken>, code: &str, who: &Requester) -> FlowResult<()> {
        let code = six_digits(code)?;
        let view = self.recent_session(token).await?;
        let user = self.signed_in_user(view.user_id).await?;
        if user.totp_secret.is_none() {
            return Err(FlowError::BadRequest("no authenticator app is set up".into()));
        }
        let check = Check {
            user: &user,
            pending: None,
            who,
            flow: Some(view.flow_id.as_str()),
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
            return self.fail(&check, failure, account_failures).await;
        }
        self.end_other_sessions(user.id, view.session_id).await?;
        self.audit(
            Event::TotpRemove,
            Outcome::Success,
            who,
            Some((user.id, &user.username)),
            Some(view.flow_id.as_str()),
            Some(Method::Totp),
        )
        .await?;
        Ok(())
    }

    /// A new set of recovery codes; the old set stops working.
    pub async fn regenerate_recovery_codes(
        &self,
        token: Option<&SessionToken>,
        who: &Requester,
    ) -> FlowResult<Vec<String>> {
        let view = self.recent_session(token).await?;
        let user = self.signed_in_user(view.user_id).await?;
        if Method::available_to(&user).is_empty() {
            return Err(FlowError::BadRequest(
                "recovery codes stand in for a second factor: set up an authenticator app first".into(),
            ));
        }
        let codes = otp::generate_recovery_codes();
        let digests = self.recovery_code_digests(&codes);
        self.store
            .replace_recovery_codes(user.id, &digests, self.now_unix())
            .await?;
        self.audit(
            Event::RecoveryCodesRegenerate,
            Outcome::Success,
            who,
            Some((user.id, &user.username)),
            Some(view.flow_id.as_str()),
            Some(Method::RecoveryCode),
        )
        .await?;
        Ok(codes.iter().map(RecoveryCode::display).collect())
    }
}
