//! Schemathesis (Python, from tests/requirements.txt) against the real server, driven by its own API document: every
//! operation, signed out, with a pending session and with a full one. No answer may be a 5xx, every answer must match
//! the document (status, content type, headers, body) and none may take longer than `MAX_RESPONSE_SECONDS`.
//!
//! The number of generated examples per operation is bounded for CI; `TWOFOLD_FUZZ_EXAMPLES` raises it
//! (`scripts/fuzz --long`). The seed is fixed, so a failure found here is found again by the same run.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::*;

/// Examples per operation (and per login state) in CI: enough for every operation's coverage cases and some fuzzing,
/// within a couple of minutes on a two-core machine.
const CI_EXAMPLES: u32 = 20;

/// Generous for a debug build on a loaded machine (a password hash is the slowest thing the API does), tight enough
/// to catch a request that waits on something it should not (a lock, a timeout).
const MAX_RESPONSE_SECONDS: &str = "3";

const SEED: &str = "20261202";

fn examples() -> u32 {
    match std::env::var("TWOFOLD_FUZZ_EXAMPLES") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("TWOFOLD_FUZZ_EXAMPLES={value:?} is not a number")),
        Err(_) => CI_EXAMPLES,
    }
}

/// One schemathesis run against `app` with `cookie` (if any) on every request; panics with its report on any failure.
fn schemathesis(app: &TestApp, state: &str, cookie: Option<&str>, filter: &[&str]) {
    let python = python();
    let examples = examples().to_string();
    let origin = "Origin: http://127.0.0.1:8080";
    let mut command = Command::new(&python);
    command
        .args(["-m", "schemathesis.cli", "run", &app.url("/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-response-time", MAX_RESPONSE_SECONDS])
        .args(["--seed", SEED])
        .args(["--max-examples", &examples])
        // One worker: the server's limits count per account and per address, and the order of requests decides
        // which of them a request meets; with one worker a seed gives the same run every time.
        .args(["--workers", "1"])
        // The server's own `public_url` origin: the `Origin` check lets it through, as a browser on the site.
        .args(["--header", origin])
        .args(filter)
        .env("NO_COLOR", "1")
        // Away from the crate, so no schemathesis.toml there can change the run, and reports land in the temp folder.
        .current_dir(app.dir.path())
        .stdin(Stdio::null());
    if let Some(cookie) = cookie {
        command.args(["--header", &format!("Cookie: twofold_session={cookie}")]);
    }
    let started = Instant::now();
    let output = command.output().unwrap_or_else(|error| {
        panic!(
            "cannot run {} -m schemathesis.cli ({error}): run scripts/test, which installs tests/requirements.txt",
            python.display()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures {state} (exit {:?}; is schemathesis installed? run scripts/test):\n{stdout}\n{stderr}",
        output.status.code()
    );
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("test cases") || line.contains("passed") || line.contains("generated"))
        .collect();
    eprintln!(
        "schemathesis {state}: {examples} examples per operation, {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        summary.join("\n")
    );
}

#[tokio::test]
async fn schemathesis_finds_no_failure_signed_out_pending_and_signed_in() {
    // A gateway that always accepts: the sends are real operations, and a 503 from a missing gateway would be the
    // configuration, not the server.
    let app = TestApp::spawn_with(Options {
        settings: vec![("sms.gateway".into(), "console".into())],
        ..Options::default()
    })
    .await;
    // Two accounts, so the wrong codes of one run (which count per account and lock its second factor) do not
    // change what the other run meets.
    let pending_user = app.enroll("pending-fuzz").await;
    let pending = app.pending(&pending_user).await;
    let full_user = app.enroll("signed-in-fuzz").await;
    let full = app.sign_in(&full_user).await;

    let keep_session = [
        "--exclude-path",
        "/auth/logout",
        "--exclude-path",
        "/auth/sessions/{id}",
    ];
    schemathesis(&app, "signed out", None, &[]);
    // Signing out would end the session the rest of the run is meant to use, so the runs with a session leave
    // `/auth/logout` and `/auth/sessions/{id}` (which may name the session itself) out; the last run has them, with
    // nothing after it. The pending session may die during its run
    // (five wrong codes end it), which is the contract too: from then on its answers are those of a signed-out
    // request, still checked against the document.
    schemathesis(&app, "with a pending session", Some(&pending), &keep_session);
    schemathesis(&app, "signed in", Some(&full), &keep_session);
    let session = app.get("/auth/session", Some(&full)).await;
    assert_eq!(session.status, 200, "the full session survived its run: {session:?}");
    schemathesis(
        &app,
        "signing out",
        Some(&full),
        &[
            "--include-path",
            "/auth/logout",
            "--include-path",
            "/auth/sessions/{id}",
        ],
    );
}
