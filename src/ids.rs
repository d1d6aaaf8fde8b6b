//! The ids of accounts and sessions, as the database numbers them. They have their home here, below everything that
//! names an account or a session (the store, the audit trail, the login flow), so none of those has to import
//! another for them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct UserId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct SessionId(pub i64);
