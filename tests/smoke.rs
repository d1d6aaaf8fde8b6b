mod common;

use common::TestApp;

#[tokio::test]
async fn enroll_and_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.enroll("alice").await;
    assert_eq!(user.recovery_codes.len(), 10);
    let cookie = app.sign_in(&user).await;
    let session = app.get("/auth/session", Some(&cookie)).await;
    assert_eq!(session.status, 200, "{session:?}");
    assert_eq!(session.body["username"], "alice");
    assert_eq!(session.body["second_factor"], "totp");
}
