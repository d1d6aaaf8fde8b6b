//! The Argon2id bound of figure 2: password checks per second with the server's own hasher (production parameters,
//! one check per core at a time), on all cores, in this process. A login costs one such check, so no server can sign
//! people in faster on this machine.

use std::cell::Cell;
use std::time::Instant;

use anyhow::bail;
use futures::future::join_all;
use twofold::crypto::password::{Password, PasswordHasher};

use crate::load::Window;

/// Checks of `password` against `stored` per second, as many at once as there are cores, over `window`.
pub async fn checks_per_second(
    hasher: &PasswordHasher,
    password: &str,
    stored: &str,
    window: Window,
) -> anyhow::Result<f64> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let from = Instant::now() + window.warmup;
    let until = from + window.measure;
    let counted = Cell::new(0u32);
    let failed = Cell::new(false);
    join_all((0..cores).map(|_| async {
        while Instant::now() < until && !failed.get() {
            let Some(password) = Password::new(password) else {
                failed.set(true);
                return;
            };
            let matched = hasher.verify(password, Some(stored.to_owned())).await;
            let done = Instant::now();
            if !matches!(matched, Ok(true)) {
                failed.set(true);
            } else if done >= from && done <= until {
                counted.set(counted.get() + 1);
            }
        }
    }))
    .await;
    if failed.get() {
        bail!("the password did not check against its own hash");
    }
    Ok(f64::from(counted.get()) / window.measure.as_secs_f64())
}
