//! The login state machine as data. [`TRANSITIONS`] lists every step a login can take, from which state to which,
//! and what goes over the wire when it does. The states are types (`flow::state`): each change of state goes
//! through [`transition`], named by the types it goes from and to, so a step that is not in the table fails; and a
//! test drives every transition the typed API can make and checks that together they are exactly the table's rows.
//! `twofold diagram` draws the same table, so the drawing cannot drift from the code.

/// Where a client stands with Twofold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    SignedOut,
    /// Password checked; a second factor is outstanding.
    Pending,
    SignedIn,
}

impl State {
    pub fn describe(self) -> &'static str {
        match self {
            Self::SignedOut => "signed out",
            Self::Pending => "pending second factor",
            Self::SignedIn => "signed in",
        }
    }
}

/// What can happen to a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    PasswordRefused,
    PasswordAccepted,
    SecondFactorRequired,
    SmsCodeSent,
    CodeRefused,
    TriesUsedUp,
    CodeAccepted,
    SignOut,
    Expiry,
}

/// Who takes part, named as in the seed documents' sequence diagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    User,
    Client,
    Twofold,
    AuthApp,
    SmsGateway,
}

impl Party {
    pub const ALL: [Party; 5] = [Self::User, Self::Client, Self::Twofold, Self::AuthApp, Self::SmsGateway];

    /// The short name used in diagram source.
    pub fn id(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Client => "Client",
            Self::Twofold => "Twofold",
            Self::AuthApp => "AuthApp",
            Self::SmsGateway => "SMS",
        }
    }

    /// The name shown in a diagram.
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Client => "Browser / API client",
            Self::Twofold => "Twofold",
            Self::AuthApp => "Authenticator app",
            Self::SmsGateway => "SMS gateway",
        }
    }
}

/// One arrow of a sequence diagram.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    pub from: Party,
    pub to: Party,
    pub text: &'static str,
    /// A reply (dashed arrow) rather than a request.
    pub reply: bool,
}

const fn ask(from: Party, to: Party, text: &'static str) -> Message {
    Message {
        from,
        to,
        text,
        reply: false,
    }
}

const fn answer(from: Party, to: Party, text: &'static str) -> Message {
    Message {
        from,
        to,
        text,
        reply: true,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub from: State,
    pub step: Step,
    pub to: State,
    /// When it happens, in a person's words.
    pub when: &'static str,
    pub messages: &'static [Message],
}

use Party::{AuthApp, Client, SmsGateway, Twofold, User};

pub const TRANSITIONS: &[Transition] = &[
    Transition {
        from: State::SignedOut,
        step: Step::PasswordRefused,
        to: State::SignedOut,
        when: "password wrong, unknown user or throttled",
        messages: &[
            ask(User, Client, "username + password"),
            ask(Client, Twofold, "POST /auth/login"),
            ask(Twofold, Twofold, "verify Argon2id hash (hashing thread)"),
            answer(Twofold, Client, "401 invalid_credentials or 429 too_many_attempts"),
        ],
    },
    Transition {
        from: State::SignedOut,
        step: Step::PasswordAccepted,
        to: State::SignedIn,
        when: "password right, no second factor enrolled",
        messages: &[
            ask(User, Client, "username + password"),
            ask(Client, Twofold, "POST /auth/login"),
            answer(Twofold, Client, "200 authenticated + session cookie"),
        ],
    },
    Transition {
        from: State::SignedOut,
        step: Step::SecondFactorRequired,
        to: State::Pending,
        when: "password right, second factor enrolled",
        messages: &[
            ask(User, Client, "username + password"),
            ask(Client, Twofold, "POST /auth/login"),
            ask(Twofold, Twofold, "create pending session (5 min, 5 tries)"),
            answer(Twofold, Client, "200 2fa_required + methods + pending cookie"),
        ],
    },
    Transition {
        from: State::Pending,
        step: Step::SmsCodeSent,
        to: State::Pending,
        when: "SMS chosen",
        messages: &[
            ask(Client, Twofold, "POST /auth/2fa/sms/send"),
            ask(Twofold, SmsGateway, "one-time code for the user's phone"),
            answer(SmsGateway, User, "text message"),
            answer(Twofold, Client, "202 expires_in, resend_after"),
        ],
    },
    Transition {
        from: State::Pending,
        step: Step::CodeAccepted,
        to: State::SignedIn,
        when: "code valid",
        messages: &[
            ask(User, AuthApp, "open app"),
            answer(AuthApp, User, "6-digit code (RFC 6238)"),
            ask(User, Client, "enter code"),
            ask(Client, Twofold, "POST /auth/verify-2fa"),
            ask(Twofold, Twofold, "check code, window, anti-replay, attempt limits"),
            ask(Twofold, Twofold, "replace pending session by a full one (new token)"),
            answer(Twofold, Client, "200 authenticated + session cookie"),
        ],
    },
    Transition {
        from: State::Pending,
        step: Step::CodeRefused,
        to: State::Pending,
        when: "code invalid, expired or replayed, tries left",
        messages: &[
            ask(Client, Twofold, "POST /auth/verify-2fa"),
            answer(
                Twofold,
                Client,
                "401 invalid_2fa_code (tries left) or 429 too_many_attempts",
            ),
        ],
    },
    Transition {
        from: State::Pending,
        step: Step::TriesUsedUp,
        to: State::SignedOut,
        when: "fifth wrong code",
        messages: &[
            ask(Client, Twofold, "POST /auth/verify-2fa"),
            ask(Twofold, Twofold, "end the pending session"),
            answer(Twofold, Client, "401 invalid_2fa_code"),
        ],
    },
    Transition {
        from: State::Pending,
        step: Step::SignOut,
        to: State::SignedOut,
        when: "sign out",
        messages: &[
            ask(Client, Twofold, "POST /auth/logout"),
            answer(Twofold, Client, "204, cookie cleared"),
        ],
    },
    Transition {
        from: State::Pending,
        step: Step::Expiry,
        to: State::SignedOut,
        when: "5 minutes pass",
        messages: &[ask(Twofold, Twofold, "pending session expires")],
    },
    Transition {
        from: State::SignedIn,
        step: Step::SignOut,
        to: State::SignedOut,
        when: "sign out",
        messages: &[
            ask(Client, Twofold, "POST /auth/logout"),
            answer(Twofold, Client, "204, cookie cleared"),
        ],
    },
    Transition {
        from: State::SignedIn,
        step: Step::Expiry,
        to: State::SignedOut,
        when: "12 hours, or 30 minutes idle",
        messages: &[ask(Twofold, Twofold, "session expires")],
    },
];

/// The state `step` leads to from `from`, if the table allows it.
pub fn advance(from: State, step: Step) -> Option<State> {
    TRANSITIONS
        .iter()
        .find(|t| t.from == from && t.step == step)
        .map(|t| t.to)
}

/// A type that is one of the login's states.
pub trait StateKind {
    const STATE: State;
}

/// A change of state the table does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the login state machine has no step {step:?} from {from:?} to {to:?}")]
pub struct IllegalStep {
    pub from: State,
    pub step: Step,
    pub to: State,
}

/// Checks the change of state `step`, from the state of type `From` to the state of type `To`, against the table.
/// Every change of state in the flow goes through here.
pub fn transition<From: StateKind, To: StateKind>(step: Step) -> Result<(), IllegalStep> {
    let (from, to) = (From::STATE, To::STATE);
    #[cfg(test)]
    taken::record(from, step, to);
    match advance(from, step) {
        Some(next) if next == to => Ok(()),
        _ => Err(IllegalStep { from, step, to }),
    }
}

/// The transitions the flow took while the tests ran, for the test that compares them with the table.
#[cfg(test)]
pub(super) mod taken {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::{State, Step};

    static TAKEN: Mutex<Option<HashSet<(State, Step, State)>>> = Mutex::new(None);

    pub fn record(from: State, step: Step, to: State) {
        let mut taken = TAKEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        taken.get_or_insert_with(HashSet::new).insert((from, step, to));
    }

    pub fn all() -> HashSet<(State, Step, State)> {
        let taken = TAKEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        taken.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_reachable_and_can_be_left() {
        for state in [State::Pending, State::SignedIn] {
            assert!(
                TRANSITIONS.iter().any(|t| t.to == state && t.from != state),
                "{state:?} unreachable"
            );
        }
        for state in [State::SignedOut, State::Pending, State::SignedIn] {
            assert!(
                TRANSITIONS.iter().any(|t| t.from == state && t.to != state),
                "{state:?} is a dead end"
            );
        }
    }

    #[test]
    fn illegal_steps_are_refused() {
        assert_eq!(advance(State::SignedOut, Step::CodeAccepted), None);
        assert_eq!(advance(State::SignedIn, Step::CodeAccepted), None);
        assert_eq!(advance(State::SignedIn, Step::SmsCodeSent), None);
        assert_eq!(advance(State::Pending, Step::CodeAccepted), Some(State::SignedIn));
    }
}
