//! Twofold: a two-factor authentication server.
//!
//! Data flows one way: `http` → `flow` → (`otp`, `crypto`, `store`). The `http` layer turns requests into calls on
//! the login state machine in `flow`; `flow` owns every rule (limits, expiry, replay) and talks to the database only
//! through the `store` trait; `otp` and `crypto` are pure building blocks.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod flow;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod otp;
pub mod sms;
pub mod store;
