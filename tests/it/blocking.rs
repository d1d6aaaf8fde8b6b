//! Password hashing does not block the server. Argon2id (m = 19 MiB, t = 2) runs on one hashing thread per core, so
//! a burst of logins queues there for several hash-times while the async workers keep answering other requests. The test shows this by order, not by timing: session checks sent while logins are still hashing
//! are answered before the last login is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::*;

const LOGINS: usize = 8;

#[tokio::test]
async fn session_checks_are_answered_while_logins_hash() {
    let app = Arc::new(TestApp::spawn().await);
    app.add_user("alice", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;
    assert_eq!(bob.status, 200, "{bob:?}");
    let bob = bob.cookie().expect("bob's session");

    let completed = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..LOGINS {
        let (app, completed, done_tx) = (app.clone(), completed.clone(), done_tx.clone());
        tokio::spawn(async move {
            let login = app.login("alice", PASSWORD).await;
            let order = completed.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = done_tx.send((order, login));
        });
    }
    drop(done_tx);

    // Once one login has come back, the others are at the server, queued for or inside the hasher.
    let (first, login) = done_rx.recv().await.expect("a login finished");
    assert_eq!(first, 1);
    assert_eq!(login.status, 200, "{login:?}");

    let anonymous = app.get("/auth/session", None).await;
    let done_at_anonymous = completed.load(Ordering::SeqCst);
    anonymous.assert_error(401, "unauthenticated");

    // A signed-in session check reads the database too; it is not stuck behind the hashing either.
    let signed_in = app.get("/auth/session", Some(&bob)).await;
    let done_at_signed_in = completed.load(Ordering::SeqCst);
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    assert_eq!(signed_in.body["username"], "bob");

    assert!(
        done_at_anonymous < LOGINS,
        "the session check was answered only after all {LOGINS} logins: hashing blocks the server"
    );
    assert!(
        done_at_signed_in < LOGINS,
        "the signed-in session check was answered only after all {LOGINS} logins: hashing blocks the server"
    );

    // Every login still succeeds in the end.
    let mut finished = 1;
    while let Some((_, login)) = done_rx.recv().await {
        assert_eq!(login.status, 200, "{login:?}");
        assert_eq!(login.body["status"], "authenticated");
        finished += 1;
    }
    assert_eq!(finished, LOGINS);
    assert_eq!(completed.load(Ordering::SeqCst), LOGINS);
}
