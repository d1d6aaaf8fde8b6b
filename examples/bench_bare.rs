//! The floor of the session-check benchmark: an axum server that answers `GET /auth/session` with 200 and a small
//! JSON body and does nothing else, on a multi-threaded runtime like Twofold's. What it costs is the least any axum
//! handler costs on this machine under the same load generator. Usage: `bench_bare 127.0.0.1:PORT`.

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).context("usage: bench_bare LISTEN_ADDRESS")?;
    let app = Router::new().route(
        "/auth/session",
        get(|| async { Json(json!({ "username": "bench0", "second_factor": "totp" })) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
