//! What a run of the `twofold` binary printed, and assertions on how it ended.

use std::process::Output;

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// Asserts a failed run whose standard error contains every one of `words` (case-insensitive).
#[track_caller]
pub fn assert_failure_mentioning(output: &Output, words: &[&str]) {
    assert!(
        !output.status.success(),
        "expected a failure, got exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    let text = stderr(output).to_lowercase();
    for word in words {
        assert!(
            text.contains(&word.to_lowercase()),
            "stderr should mention {word:?}: {}",
            stderr(output)
        );
    }
}
