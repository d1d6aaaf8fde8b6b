//! Twofold's integration tests, one binary: each module tests one area against a real server on a random loopback
//! port (see [`common`]), on SQLite or, when `TWOFOLD_TEST_DATABASE_URL` names one, on PostgreSQL. The tests of
//! several instances and of faults need PostgreSQL and are ignored unless `scripts/test`'s PostgreSQL half runs them
//! (`--include-ignored`).
// Tests fail by panicking; the crate's lints against it are for the server's own code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod audit;
mod bad_input;
mod blocking;
mod cli;
mod common;
mod connections;
mod contract;
mod fuzz;
mod instances;
mod interop;
mod layers;
mod limits;
mod openapi;
mod otp_vectors;
mod outage;
mod pages;
mod qr_scan;
mod replay;
mod rules;
mod sms;
mod step_up;
