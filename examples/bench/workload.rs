//! What the figures send: session checks, second-factor verifies of prepared pending sessions, and whole two-step
//! logins. Every answer but the expected one counts as an error; no wrong code is ever sent, so no account locks.

use std::cell::{Cell, RefCell};

use rand::Rng;

use crate::client::{Connection, Response};
use crate::load::{Step, Workload};
use crate::users::{self, Users};

/// Which session a session check presents.
pub enum Sessions {
    /// The same one every time.
    Own(String),
    /// A different one of the first `n` users' full sessions each time, so the lookups range over the database.
    Random(usize),
}

pub struct SessionCheck(pub Sessions);

impl Workload for SessionCheck {
    async fn iterate(&self, connection: &mut Connection) -> anyhow::Result<Step> {
        let random;
        let token = match &self.0 {
            Sessions::Own(token) => token,
            Sessions::Random(n) => {
                random = users::full_session(rand::thread_rng().gen_range(0..*n));
                &random
            }
        };
        let response = connection.get("/auth/session", Some(token)).await?;
        Ok(signed_in(&response))
    }
}

/// The second step alone, once for each prepared pending session, with the user's current code.
pub struct Verify<'a> {
    users: &'a RefCell<Users>,
    pending: Vec<(usize, String)>,
    next: Cell<usize>,
}

impl<'a> Verify<'a> {
    /// `pending` pairs a user's index with the token of a pending session of theirs.
    pub fn new(users: &'a RefCell<Users>, pending: Vec<(usize, String)>) -> Self {
        Self {
            users,
            pending,
            next: Cell::new(0),
        }
    }
}

impl Workload for Verify<'_> {
    async fn iterate(&self, connection: &mut Connection) -> anyhow::Result<Step> {
        let Some((index, token)) = self.pending.get(self.next.get()) else {
            return Ok(Step::Exhausted);
        };
        self.next.set(self.next.get() + 1);
        verify(self.users, connection, *index, token).await
    }
}

/// Password, then code, each login by a user not signed in during this TOTP step.
pub struct Login<'a>(pub &'a RefCell<Users>);

impl Workload for Login<'_> {
    async fn iterate(&self, connection: &mut Connection) -> anyhow::Result<Step> {
        let Some(index) = self.0.borrow_mut().take(1).pop() else {
            return Ok(Step::Exhausted);
        };
        let body = format!(
            r#"{{"username":"{}","password":"{}"}}"#,
            users::username(index),
            users::PASSWORD
        );
        let response = connection.post_json("/auth/login", None, &body).await?;
        let pending = match response.session_cookie.as_deref() {
            Some(token) if response.status == 200 && contains(&response.body, br#""status":"2fa_required""#) => {
                token.to_owned()
            }
            _ => return Ok(Step::Refused(format!("login: {}", response.describe()))),
        };
        verify(self.0, connection, index, &pending).await
    }
}

async fn verify(
    users: &RefCell<Users>,
    connection: &mut Connection,
    index: usize,
    token: &str,
) -> anyhow::Result<Step> {
    let code = users.borrow_mut().code(index);
    let body = format!(r#"{{"method":"totp","code":"{code}"}}"#);
    let response = connection.post_json("/auth/verify-2fa", Some(token), &body).await?;
    Ok(match signed_in(&response) {
        Step::Done if response.session_cookie.is_none() => Step::Refused("verify: no new session cookie".into()),
        Step::Refused(why) => Step::Refused(format!("verify: {why}")),
        step => step,
    })
}

fn signed_in(response: &Response) -> Step {
    if response.status == 200 {
        Step::Done
    } else {
        Step::Refused(response.describe())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
