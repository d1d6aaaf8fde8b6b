//! SMS codes: sending one to a pending sign-in, and enrolling a phone. A code is stored only after the gateway
//! accepted it, and a send it did not accept counts toward no limit, so an outage leaves nothing half-written.

use super::machine::{self, Step};
use super::second_factor::{locked, Check, Failure};
use super::state::{FactorChange, FullSession, PendingLogin, RecentSession};
use super::{rules, Flow, FlowError, FlowResult, Method};
use crate::audit::{Event, Outcome, Requester};
use crate::otp::{self, RecoveryCode, SixDigitCode};
use crate::sms::{PhoneNumber, Sender, SmsError};
use crate::store::{NewSmsCode, SessionId, SmsPurpose, User, UserId};

/// A code is on its way.
#[derive(Debug, Clone, Copy)]
pub struct SmsSent {
    pub expires_in: i64,
    pub resend_after: i64,
}

/// An SMS code as a page shows it: the phone it goes to (masked), whether one is waiting to be entered, and how long
/// until the send limits allow another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsChallenge {
    /// Masked, like `+1•••••67`: a page never shows the whole number.
    pub phone: String,
    pub code_sent: bool,
    /// Seconds until a new code may be sent; 0 when it may be now.
    pub resend_in: i64,
}

/// One send: to whom, why, and for which pending sign-in.
struct Send<'a> {
    user: &'a User,
    phone: &'a PhoneNumber,
    purpose: SmsPurpose,
    session: Option<SessionId>,
    pending_phone: Option<Vec<u8>>,
    event: Event,
    flow: Option<&'a str>,
    who: &'a Requester,
}

impl Flow {
    fn sender(&self) -> FlowResult<&Sender> {
        self.sms
            .as_ref()
            .ok_or_else(|| FlowError::SmsUnavailable("SMS codes are not set up on this server".into()))
    }

    fn open_phone(&self, user: UserId, sealed: &[u8]) -> FlowResult<PhoneNumber> {
        self.keys
            .open(&Self::phone_context(user), sealed)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| PhoneNumber::parse(&text))
            .ok_or(FlowError::SecretUnreadable)
    }

    /// The masked number of the user's active phone, for showing back to them.
    pub(super) fn masked_phone(&self, user: &User) -> FlowResult<Option<String>> {
        user.sms_phone
            .as_deref()
            .map(|sealed| self.open_phone(user.id, sealed).map(|phone| phone.masked()))
            .transpose()
    }

    /// Whether this server can send SMS codes (an `[sms]` gateway is configured); else the pages do not offer them.
    pub fn offers_sms(&self) -> bool {
        self.sms.is_some()
    }

    /// Where a code for `purpose` goes (`user`'s `sealed` phone), whether one is waiting, and when another may be sent.
    async fn challenge(
        &self,
        user: &User,
        sealed: &[u8],
        purpose: SmsPurpose,
        session: Option<SessionId>,
    ) -> FlowResult<SmsChallenge> {
        let now = self.now_unix();
        let phone = self.open_phone(user.id, sealed)?.masked();
        let code_sent = self.store.sms_code_waiting(user.id, purpose, session, now).await?;
        let resend_in = self
            .store
            .sms_send_wait(user.id, &rules::SMS_SENDS, now)
            .await?
            .unwrap_or(0);
        Ok(SmsChallenge {
            phone,
            code_sent,
            resend_in,
        })
    }

    /// The SMS side of a pending sign-in: `None` when its account has no phone. The second step shows it, before
    /// and after a code is sent.
    #[tracing::instrument(level = "debug", name = "flow.pending_sms", skip_all)]
    pub async fn pending_sms(&self, pending: &PendingLogin) -> FlowResult<Option<SmsChallenge>> {
        let user = pending.user();
        let Some(sealed) = user.sms_phone.as_deref() else {
            return Ok(None);
        };
        self.challenge(user, sealed, SmsPurpose::Login, Some(pending.id()))
            .await
            .map(Some)
    }

    /// The phone being enrolled and not confirmed yet, for the confirmation page; `None` when there is none.
    #[tracing::instrument(level = "debug", name = "flow.sms_setup_in_progress", skip_all)]
    pub async fn sms_setup_in_progress(&self, session: &RecentSession) -> FlowResult<Option<SmsChallenge>> {
        let user = self.account(session.user_id()).await?;
        let Some(sealed) = user.sms_pending_phone.as_deref() else {
            return Ok(None);
        };
        self.challenge(&user, sealed, SmsPurpose::Enroll, None).await.map(Some)
    }

    /// Sends a sign-in code to the phone of the pending sign-in's account.
    #[tracing::instrument(level = "debug", name = "flow.send_login_sms", skip_all)]
    pub async fn send_login_sms(&self, pending: &PendingLogin, who: &Requester) -> FlowResult<SmsSent> {
        let user = pending.user();
        let flow = Some(pending.flow_id());
        let Some(sealed) = user.sms_phone.as_deref() else {
            return Err(FlowError::BadRequest("this account has no phone for SMS codes".into()));
        };
        // A locked second factor would refuse the code anyway; don't pay for a text message nobody can use.
        let now = self.now_unix();
        let lock = rules::lock(user.second_factor_failures, user.second_factor_locked_until, now);
        if lock != rules::Lock::Open {
            self.audit(
                Event::SmsSend,
                Outcome::Locked,
                who,
                Some((user.id, &user.username)),
                flow,
                Some(Method::Sms),
            )
            .await?;
            return Err(locked(lock, now));
        }
        let phone = self.open_phone(user.id, sealed)?;
        let send = Send {
            user,
            phone: &phone,
            purpose: SmsPurpose::Login,
            session: Some(pending.id()),
            pending_phone: None,
            event: Event::SmsSend,
            flow,
            who,
        };
        let sent = self.send_code(send).await?;
        machine::transition::<PendingLogin, PendingLogin>(Step::SmsCodeSent)?;
        Ok(sent)
    }

    /// Sends a step-up code to the account's phone, for a signed-in session about to change its factors.
    #[tracing::instrument(level = "debug", name = "flow.send_step_up_sms", skip_all)]
    pub async fn send_step_up_sms(&self, session: &FullSession, who: &Requester) -> FlowResult<SmsSent> {
        let user = self.account(session.user_id()).await?;
        let Some(sealed) = user.sms_phone.as_deref() else {
            return Err(FlowError::BadRequest("this account has no phone for SMS codes".into()));
        };
        let phone = self.open_phone(user.id, sealed)?;
        let send = Send {
            user: &user,
            phone: &phone,
            purpose: SmsPurpose::StepUp,
            session: Some(session.id()),
            pending_phone: None,
            event: Event::SmsSend,
            flow: Some(session.flow_id()),
            who,
        };
        self.send_code(send).await
    }

    /// The step-up code side of a signed-in session: `None` when the account has no phone.
    pub async fn step_up_sms(&self, session: &FullSession) -> FlowResult<Option<SmsChallenge>> {
        let user = self.account(session.user_id()).await?;
        let Some(sealed) = user.sms_phone.as_deref() else {
            return Ok(None);
        };
        self.challenge(&user, sealed, SmsPurpose::StepUp, Some(session.id()))
            .await
            .map(Some)
    }

    /// Starts enrolling a phone: sends a code to it. The number becomes a second factor only once the code is
    /// confirmed.
    #[tracing::instrument(level = "debug", name = "flow.sms_setup", skip_all)]
    pub async fn sms_setup(&self, session: &FactorChange, phone: &str, who: &Requester) -> FlowResult<SmsSent> {
        let phone = PhoneNumber::parse(phone).ok_or(FlowError::InvalidPhone)?;
        let user = session.account();
        let sealed = self.keys.seal(&Self::phone_context(user.id), phone.as_str().as_bytes());
        let send = Send {
            user,
            phone: &phone,
            purpose: SmsPurpose::Enroll,
            session: None,
            pending_phone: Some(sealed),
            event: Event::SmsSetup,
            flow: Some(session.flow_id()),
            who,
        };
        self.send_code(send).await
    }

    /// Confirms the phone being enrolled with the code sent to it. Returns a first set of recovery codes when this
    /// is the account's first second factor, else none. Other sessions of the account end.
    #[tracing::instrument(level = "debug", name = "flow.sms_confirm", skip_all)]
    pub async fn sms_confirm(&self, session: &FactorChange, code: &str, who: &Requester) -> FlowResult<Vec<String>> {
        let code = SixDigitCode::parse(code).ok_or_else(|| FlowError::BadRequest("an SMS code is 6 digits".into()))?;
        // Read afresh, not as the change was allowed: the setup it confirms came after.
        let user = &self.account(session.user_id()).await?;
        if user.sms_pending_phone.is_none() {
            return Err(FlowError::BadRequest(
                "there is no phone being set up: call setup first".into(),
            ));
        }
        let check = Check {
            user,
            pending: None,
            who,
            flow: Some(session.flow_id()),
            event: Event::SmsConfirm,
            method: Method::Sms,
        };
        let account_failures = self.claim(&check).await??;
        let first_factor = Method::available_to(user).is_empty();
        let codes = first_factor.then(otp::generate_recovery_codes).unwrap_or_default();
        let digests = self.recovery_code_digests(&codes);
        let digest = self.keys.sms_code_digest(user.id.0, code.as_str());
        let activated = self
            .store
            .activate_sms(user.id, &digest, first_factor.then_some(&digests[..]), self.now_unix())
            .await?;
        if !activated {
            return self.fail_change(&check, Failure::Wrong, account_failures).await;
        }
        self.end_other_sessions(user.id, session).await?;
        self.audit(
            Event::SmsConfirm,
            Outcome::Success,
            who,
            Some((user.id, &user.username)),
            Some(session.flow_id()),
            Some(Method::Sms),
        )
        .await?;
        Ok(codes.iter().map(RecoveryCode::display).collect())
    }

    /// Removes the phone, given the step-up code just texted to it for this session (`POST /auth/2fa/sms/send`), as
    /// removing the authenticator takes a code from it. When no authenticator is left, the recovery codes go too and
    /// the account signs in with its password alone. Other sessions of the account end.
    #[tracing::instrument(level = "debug", name = "flow.sms_remove", skip_all)]
    pub async fn sms_remove(&self, session: &RecentSession, code: &str, who: &Requester) -> FlowResult<()> {
        let code = SixDigitCode::parse(code).ok_or_else(|| FlowError::BadRequest("an SMS code is 6 digits".into()))?;
        let user = &self.account(session.user_id()).await?;
        if user.sms_phone.is_none() {
            return Err(FlowError::BadRequest("this account has no phone for SMS codes".into()));
        }
        let check = Check {
            user,
            pending: None,
            who,
            flow: Some(session.flow_id()),
            event: Event::SmsRemove,
            method: Method::Sms,
        };
        let account_failures = self.claim(&check).await??;
        let digest = self.keys.sms_code_digest(user.id.0, code.as_str());
        if !self
            .store
            .remove_sms(user.id, session.id(), &digest, self.now_unix())
            .await?
        {
            return self.fail_change(&check, Failure::Wrong, account_failures).await;
        }
        self.end_other_sessions(user.id, session).await?;
        self.audit_check(&check, Outcome::Success).await
    }

    /// Counts the send, calls the gateway (with its retries), and stores the code only if the gateway took it.
    async fn send_code(&self, send: Send<'_>) -> FlowResult<SmsSent> {
        let sender = self.sender()?;
        let subject = Some((send.user.id, send.user.username.as_str()));
        let now = self.now_unix();
        let shared = rules::sms_throttle_keys(
            &self.keys.sms_destination(send.phone.as_str()),
            self.settings.sms_budget_per_hour,
        );
        let slot = match self
            .store
            .reserve_sms_send(send.user.id, &rules::SMS_SENDS, &shared, now)
            .await?
        {
            Ok(slot) => slot,
            Err(throttled) => {
                self.audit(
                    send.event,
                    Outcome::Throttled,
                    send.who,
                    subject,
                    send.flow,
                    Some(Method::Sms),
                )
                .await?;
                return Err(FlowError::TooManyAttempts {
                    retry_after: throttled.retry_after,
                    message:
                        "a code was sent a moment ago, or too many were sent to this account or number lately; wait \
                              before asking again"
                            .into(),
                });
            }
        };
        let code = SixDigitCode::random();
        let message = match send.purpose {
            SmsPurpose::Login => format!(
                "{} is your {} sign-in code. It expires in 5 minutes. Never share it.",
                code.as_str(),
                self.settings.issuer
            ),
            SmsPurpose::Enroll => format!(
                "{} is your {} code to confirm this phone. It expires in 5 minutes.",
                code.as_str(),
                self.settings.issuer
            ),
            SmsPurpose::StepUp => format!(
                "{} is your {} code to confirm a change to how you sign in. It expires in 5 minutes. Never share it.",
                code.as_str(),
                self.settings.issuer
            ),
        };
        if let Err(error) = sender.send(send.phone, &message).await {
            self.store.release_sms_send(slot, &shared).await?;
            let outcome = match error {
                SmsError::Unavailable { .. } => Outcome::GatewayUnavailable,
                SmsError::Refused(_) => Outcome::GatewayRefused,
            };
            tracing::warn!(%error, "SMS not sent");
            self.audit(send.event, outcome, send.who, subject, send.flow, Some(Method::Sms))
                .await?;
            return Err(FlowError::SmsUnavailable(
                "the text message could not be sent right now; try again in a minute, or use another method".into(),
            ));
        }
        self.store
            .store_sms_code(&NewSmsCode {
                user_id: send.user.id,
                purpose: send.purpose,
                session: send.session,
                digest: self.keys.sms_code_digest(send.user.id.0, code.as_str()),
                now,
                expires_at: now + rules::SMS_CODE_SECONDS,
                pending_phone: send.pending_phone,
            })
            .await?;
        self.audit(
            send.event,
            Outcome::Success,
            send.who,
            subject,
            send.flow,
            Some(Method::Sms),
        )
        .await?;
        Ok(SmsSent {
            expires_in: rules::SMS_CODE_SECONDS,
            resend_after: rules::SMS_SENDS.min_interval_seconds,
        })
    }
}
