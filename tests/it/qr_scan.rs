//! The QR code an authenticator app scans: rendered to PNG by librsvg and read back by zbar, two programs nobody
//! here wrote, it must give exactly the `otpauth_uri` of the same response.

use std::process::Command;

use crate::common::{Client, TestApp, PASSWORD};

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "{name} is missing: run scripts/test, which installs it (Debian: librsvg2-bin, zbar-tools)"
    );
    name.to_owned()
}

#[tokio::test]
async fn the_qr_code_scans_to_the_key_uri() {
    let app = TestApp::spawn().await;
    app.add_user("scanner@example.com", PASSWORD).await;
    let cookie = app
        .login("scanner@example.com", PASSWORD)
        .await
        .cookie()
        .expect("cookie");
    let setup = app.post_empty("/auth/2fa/totp/setup", Some(&cookie)).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let uri = setup.body["otpauth_uri"].as_str().expect("uri");
    let svg_path = app.dir.path().join("qr.svg");
    let png_path = app.dir.path().join("qr.png");
    std::fs::write(&svg_path, setup.body["qr_svg"].as_str().expect("svg")).expect("write svg");

    let rendered = Command::new(tool("rsvg-convert"))
        .arg(&svg_path)
        .arg("-o")
        .arg(&png_path)
        .output()
        .expect("rsvg-convert ran");
    assert!(rendered.status.success(), "{rendered:?}");
    let scanned = Command::new(tool("zbarimg"))
        .args(["--quiet", "--raw"])
        .arg(&png_path)
        .output()
        .expect("zbarimg ran");
    assert!(scanned.status.success(), "{scanned:?}");
    assert_eq!(String::from_utf8_lossy(&scanned.stdout).trim(), uri);
    assert!(
        uri.starts_with("otpauth://totp/Twofold:scanner%40example.com?secret="),
        "{uri}"
    );
}
