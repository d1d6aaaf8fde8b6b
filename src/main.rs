//! The `twofold` binary: everything is in the library; see `twofold --help`.

fn main() -> std::process::ExitCode {
    twofold::cli::run()
}
