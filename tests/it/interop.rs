//! Codes computed by implementations nobody here wrote: `oathtool` (OATH Toolkit, C) and `pyotp` (Python) read the
//! secret or the `otpauth://` URI the server hands out and produce codes the server must accept. If the server's
//! base32, URI or TOTP differed from the rest of the world, an authenticator app would show codes that never work.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::{json, Value};

/// Adds `username`, signs in with the password and sets up TOTP; returns the full session cookie and the setup
/// answer (`secret`, `otpauth_uri`, `qr_svg`), before anything is confirmed.
async fn start_enrolment(app: &TestApp, username: &str) -> (String, Value) {
    app.add_user(username, PASSWORD).await;
    let login = app.login(username, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "authenticated", "{login:?}");
    let cookie = login.cookie().expect("session cookie");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    (cookie, setup.body)
}

/// Confirms the enrolment with `code`, then moves to the next TOTP step so that step is behind us.
async fn confirm(app: &TestApp, cookie: &str, code: &str) {
    let confirmed = app
        .post("/auth/2fa/totp/confirm", Some(cookie), json!({ "code": code }))
        .await;
    assert_eq!(confirmed.status, 200, "confirming with {code}: {confirmed:?}");
    assert_eq!(
        confirmed.body["recovery_codes"].as_array().map(Vec::len),
        Some(10),
        "{confirmed:?}"
    );
    app.advance(30);
}

/// Password, then `code` as the second factor; asserts the sign-in succeeds and that the session is a TOTP one.
async fn sign_in_with(app: &TestApp, username: &str, code: &str) {
    let login = app.login(username, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["status"], "2fa_required", "{login:?}");
    let pending = login.cookie().expect("pending cookie");
    let verified = app.verify(&pending, "totp", code).await;
    assert_eq!(verified.status, 200, "signing in with {code}: {verified:?}");
    assert_eq!(verified.body["status"], "authenticated");
    let full = verified.cookie().expect("full session cookie");
    let session = app.get("/auth/session", Some(&full)).await;
    assert_eq!(session.status, 200, "{session:?}");
    assert_eq!(session.body["username"], username);
    assert_eq!(session.body["second_factor"], "totp");
}

/// The TOTP code `oathtool` computes for the base32 `secret` at unix time `at`. The secret goes in on standard input
/// (`-`), not on the command line where other users of the machine could see it.
fn oathtool(secret: &str, at: i64) -> String {
    let child = Command::new("oathtool")
        .args(["--totp", "--base32", &format!("--now=@{at}"), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run oathtool ({error}). This test needs it: install the oathtool package \
             (Debian/Ubuntu: `apt-get install oathtool`; .ci/run installs it when missing)."
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{secret}\n").as_bytes())
        .expect("write secret to oathtool");
    let output = child.wait_with_output().expect("oathtool finished");
    assert!(
        output.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let code = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "oathtool printed {code:?}"
    );
    code
}

#[tokio::test]
async fn oathtool_codes_confirm_enrolment_and_sign_in() {
    let app = TestApp::spawn().await;
    let (cookie, setup) = start_enrolment(&app, "olivia").await;
    let secret = setup["secret"].as_str().expect("secret").to_owned();

    // The code that confirms the enrolment comes from oathtool too.
    confirm(&app, &cookie, &oathtool(&secret, app.now())).await;

    let code = oathtool(&secret, app.now());
    // Cross-check: oathtool and the server's own TOTP agree on the same secret and time.
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("base32 secret");
    assert_eq!(code, app.code(&raw, 0), "oathtool and the server disagree");
    sign_in_with(&app, "olivia", &code).await;
}

#[tokio::test]
async fn oathtool_code_of_the_neighbouring_steps_signs_in() {
    // An authenticator whose clock is 30 s behind shows the previous step's code; the server accepts t-1.
    let app = TestApp::spawn().await;
    let (cookie, setup) = start_enrolment(&app, "oscar").await;
    let secret = setup["secret"].as_str().expect("secret").to_owned();
    confirm(&app, &cookie, &oathtool(&secret, app.now())).await;
    app.advance(30);
    sign_in_with(&app, "oscar", &oathtool(&secret, app.now() - 30)).await;
}

const PYOTP_SCRIPT: &str = r#"
import json, sys
import pyotp
uri, at = sys.argv[1], int(sys.argv[2])
totp = pyotp.parse_uri(uri)
print(json.dumps({
    "secret": totp.secret,
    "issuer": totp.issuer,
    "name": totp.name,
    "digits": totp.digits,
    "interval": totp.interval,
    "digest": totp.digest().name,
    "code": totp.at(at),
}))
"#;

/// What pyotp reads from `uri`, and the code it computes at unix time `at`.
fn pyotp(uri: &str, at: i64) -> Value {
    let python = python();
    let output = Command::new(&python)
        .args(["-c", PYOTP_SCRIPT, uri, &at.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}; run scripts/test", python.display()));
    assert!(
        output.status.success(),
        "pyotp failed (is pyotp installed in {}? run scripts/test): {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "pyotp printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test]
async fn pyotp_reads_the_uri_and_its_codes_sign_in() {
    let app = TestApp::spawn().await;
    let (cookie, setup) = start_enrolment(&app, "penelope").await;
    let secret = setup["secret"].as_str().expect("secret");
    let uri = setup["otpauth_uri"].as_str().expect("otpauth_uri");

    let parsed = pyotp(uri, app.now());
    assert_eq!(parsed["secret"], secret, "{parsed}");
    assert_eq!(parsed["issuer"], "Twofold", "{parsed}");
    assert_eq!(parsed["name"], "penelope", "{parsed}");
    assert_eq!(parsed["digits"], 6, "{parsed}");
    assert_eq!(parsed["interval"], 30, "{parsed}");
    assert_eq!(parsed["digest"], "sha1", "{parsed}");
    confirm(&app, &cookie, parsed["code"].as_str().expect("code")).await;

    let parsed = pyotp(uri, app.now());
    sign_in_with(&app, "penelope", parsed["code"].as_str().expect("code")).await;
}

#[tokio::test]
async fn pyotp_reads_an_account_name_with_email_characters() {
    // '@' and '.' are allowed in usernames and are percent-encoded in the label; pyotp must get them back intact.
    let app = TestApp::spawn().await;
    let username = "q.user_1@example.com";
    let (cookie, setup) = start_enrolment(&app, username).await;
    let uri = setup["otpauth_uri"].as_str().expect("otpauth_uri");
    let parsed = pyotp(uri, app.now());
    assert_eq!(parsed["name"], username, "{parsed}");
    assert_eq!(parsed["issuer"], "Twofold", "{parsed}");
    assert_eq!(parsed["secret"], setup["secret"], "{parsed}");
    confirm(&app, &cookie, parsed["code"].as_str().expect("code")).await;
    let parsed = pyotp(uri, app.now());
    sign_in_with(&app, username, parsed["code"].as_str().expect("code")).await;
}
