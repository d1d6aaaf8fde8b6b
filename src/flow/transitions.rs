//! The login's transitions, each driven through the typed API with a fixed clock on a real (SQLite) store, and the
//! check that together they are exactly the machine's table: every row is a step the typed API takes, and every step
//! it takes is a row.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::machine::{self, TRANSITIONS};
use super::*;
use crate::clock::FixedClock;
use crate::crypto::password::PasswordHasher;
use crate::crypto::Keys;
use crate::sms::{AttemptError, PhoneNumber, Sender, SmsGateway};
use crate::store::{PoolSettings, SqliteStore};

const START: i64 = 1_800_000_015;
const PASSWORD: &str = "correct horse battery staple";

/// Keeps the texts it is given, so a test can read the codes.
#[derive(Default)]
struct Texts(Mutex<Vec<String>>);

#[async_trait]
impl SmsGateway for Texts {
    async fn attempt(&self, _: &PhoneNumber, message: &str, _: Duration) -> Result<(), AttemptError> {
        self.0.lock().unwrap().push(message.to_owned());
        Ok(())
    }
}

impl Texts {
    fn last_code(&self) -> String {
        let texts = self.0.lock().unwrap();
        texts.last().unwrap()[..6].to_owned()
    }
}

struct Harness {
    flow: Flow,
    clock: Arc<FixedClock>,
    texts: Arc<Texts>,
    who: Requester,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = PoolSettings {
            max_connections: 2,
            timeout: Duration::from_secs(5),
        };
        let store = SqliteStore::open(&dir.path().join("twofold.db"), &settings)
            .await
            .unwrap();
        let clock = Arc::new(FixedClock::at_unix(START));
        let texts = Arc::new(Texts::default());
        let flow = Flow::new(
            Arc::new(store),
            clock.clone(),
            Arc::new(Keys::from_master(&[7; 32])),
            PasswordHasher::new().unwrap(),
            Some(Sender::new(texts.clone(), Duration::from_secs(1))),
            Arc::new(crate::metrics::Metrics::default()),
            FlowSettings {
                issuer: "Twofold".into(),
                allow_registration: false,
                session_lifetime_seconds: 12 * 3600,
                session_idle_seconds: 30 * 60,
                audit_retention_seconds: 90 * 86_400,
                session_cache: Duration::ZERO,
                sms_budget_per_hour: rules::SMS_BUDGET_PER_HOUR,
            },
        );
        Self {
            flow,
            clock,
            texts,
            who: Requester::default(),
            _dir: dir,
        }
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(time::Duration::seconds(seconds));
    }

    async fn state(&self, token: &SessionToken) -> LoginState {
        self.flow.resolve(Some(token)).await.unwrap()
    }

    async fn full(&self, token: &SessionToken) -> FullSession {
        match self.state(token).await {
            LoginState::SignedIn(session) => session,
            other => panic!("not signed in: {other:?}"),
        }
    }

    async fn change(&self, token: &SessionToken) -> FlowResult<FactorChange> {
        let recent = self.flow.recent(self.full(token).await).unwrap();
        self.flow.factor_change(recent).await
    }

    async fn pending(&self, token: &SessionToken) -> PendingLogin {
        match self.state(token).await {
            LoginState::Pending(pending) => pending,
            other => panic!("not pending: {other:?}"),
        }
    }

    async fn login(&self) -> LoginOutcome {
        self.flow.login("alice", PASSWORD, &self.who).await.unwrap()
    }

    async fn pending_login(&self) -> (SessionToken, PendingLogin) {
        let LoginOutcome::SecondFactorRequired { token, .. } = self.login().await else {
            panic!("no second step");
        };
        let pending = self.pending(&token).await;
        (token, pending)
    }
}

/// "000000"…"999999" that the authenticator does not show now.
fn wrong_code(secret: &[u8], now: i64) -> String {
    (0..10)
        .map(|n| n.to_string().repeat(6))
        .find(|code| {
            let code = crate::otp::SixDigitCode::parse(code).unwrap();
            crate::otp::verify_totp(secret, &code, now).is_none()
        })
        .unwrap()
}

#[tokio::test]
async fn the_typed_transitions_are_exactly_the_table() {
    let h = Harness::new().await;
    h.flow.add_user("alice", PASSWORD, &Default::default()).await.unwrap();

    // Signed out: a wrong password, then the right one without a second factor.
    let refused = h.flow.login("alice", "not the password at all", &h.who).await;
    assert!(matches!(refused, Err(FlowError::InvalidCredentials)));
    let LoginOutcome::Authenticated(token) = h.login().await else {
        panic!("a first sign-in has no second step");
    };

    // Signed in: set up an authenticator and a phone.
    let change = h.change(&token).await.unwrap();
    let setup = h.flow.totp_setup(&change, &h.who).await.unwrap();
    let secret = data_encoding::BASE32_NOPAD.decode(setup.secret.as_bytes()).unwrap();
    let code = |at: i64| crate::otp::totp(&secret, at as u64, 30, 6, crate::otp::Algorithm::Sha1);
    h.flow.totp_confirm(&change, &code(START), &h.who).await.unwrap();
    // With a factor on the account, the next change needs a step-up on this session (not a row of the table: the
    // login state stays signed in).
    h.advance(30);
    assert!(matches!(h.change(&token).await, Err(FlowError::StepUpRequired)));
    let now = h.flow.now_unix();
    h.flow
        .step_up(&h.full(&token).await, "totp", &code(now), &h.who)
        .await
        .unwrap();
    let change = h.change(&token).await.unwrap();
    h.flow.sms_setup(&change, "+15551234567", &h.who).await.unwrap();
    h.flow.sms_confirm(&change, &h.texts.last_code(), &h.who).await.unwrap();
    h.flow.logout(h.state(&token).await, &h.who).await.unwrap();
    assert!(matches!(h.state(&token).await, LoginState::SignedOut));
    h.advance(30);

    // Pending: a text, a wrong code (a try used), then the right one.
    let (token, pending) = h.pending_login().await;
    h.flow.send_login_sms(&pending, &h.who).await.unwrap();
    let refused = h
        .flow
        .verify_second_factor(pending, "totp", &wrong_code(&secret, h.flow.now_unix()), &h.who)
        .await
        .unwrap_err();
    assert!(matches!(refused.error, FlowError::InvalidCode(_)));
    let pending = refused.still_pending.expect("a try used, still pending");
    let full = h
        .flow
        .verify_second_factor(pending, "totp", &code(h.flow.now_unix()), &h.who)
        .await
        .unwrap();
    assert!(matches!(h.state(&full).await, LoginState::SignedIn(_)));
    assert!(
        matches!(h.state(&token).await, LoginState::SignedOut),
        "the pending token died"
    );

    // A full session expires after 12 hours (used every 20 minutes, so not idle).
    for _ in 0..36 {
        h.advance(20 * 60);
        h.state(&full).await;
    }
    h.advance(60);
    assert!(matches!(h.state(&full).await, LoginState::SignedOut));

    // A pending sign-in signed out, one that expires, and one that uses all its tries.
    let (_, pending) = h.pending_login().await;
    h.flow.logout(LoginState::Pending(pending), &h.who).await.unwrap();
    let (token, _) = h.pending_login().await;
    h.advance(5 * 60);
    assert!(matches!(h.state(&token).await, LoginState::SignedOut));
    let (token, mut pending) = h.pending_login().await;
    for tries in 1..=5 {
        let wrong = wrong_code(&secret, h.flow.now_unix());
        let refused = h
            .flow
            .verify_second_factor(pending, "totp", &wrong, &h.who)
            .await
            .unwrap_err();
        match refused.still_pending {
            Some(still) if tries < 5 => pending = still,
            None if tries == 5 => break,
            other => panic!("after {tries} tries: {other:?}"),
        }
    }
    assert!(matches!(h.state(&token).await, LoginState::SignedOut));

    let rows: HashSet<_> = TRANSITIONS.iter().map(|t| (t.from, t.step, t.to)).collect();
    let taken = machine::taken::all();
    assert!(
        taken.is_subset(&rows),
        "steps not in the table: {:?}",
        taken.difference(&rows)
    );
    assert_eq!(
        rows.difference(&taken).collect::<Vec<_>>(),
        Vec::<&(State, Step, State)>::new(),
        "rows of the table the typed API never took"
    );
}

#[tokio::test]
async fn a_pending_session_cannot_verify_twice_and_a_full_one_cannot_verify_at_all() {
    // The types already say so (`verify_second_factor` consumes its `PendingLogin`, and a `FullSession` is not
    // one); what remains for the database is a stale copy of a pending sign-in racing its own success.
    let h = Harness::new().await;
    h.flow.add_user("alice", PASSWORD, &Default::default()).await.unwrap();
    let LoginOutcome::Authenticated(token) = h.login().await else {
        panic!("a first sign-in has no second step");
    };
    let change = h.change(&token).await.unwrap();
    let setup = h.flow.totp_setup(&change, &h.who).await.unwrap();
    let secret = data_encoding::BASE32_NOPAD.decode(setup.secret.as_bytes()).unwrap();
    let code = |at: i64| crate::otp::totp(&secret, at as u64, 30, 6, crate::otp::Algorithm::Sha1);
    h.flow.totp_confirm(&change, &code(START), &h.who).await.unwrap();
    h.advance(30);
    let (token, pending) = h.pending_login().await;
    let stale = h.pending(&token).await;
    h.flow
        .verify_second_factor(pending, "totp", &code(h.flow.now_unix()), &h.who)
        .await
        .unwrap();
    h.advance(30);
    let again = h
        .flow
        .verify_second_factor(stale, "totp", &code(h.flow.now_unix()), &h.who)
        .await
        .unwrap_err();
    assert!(matches!(again.error, FlowError::NoPendingLogin), "{:?}", again.error);
    assert!(again.still_pending.is_none());
}
