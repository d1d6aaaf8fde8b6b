//! The command line: `twofold serve` and the operator's commands (`user`, `session`, `audit`, `diagram`).

mod operator;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::app;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::flow::{Flow, FlowError, Lock, ProfileChange};

#[derive(Debug, Parser)]
#[command(name = "twofold", version, about = "A two-factor authentication server")]
pub struct Cli {
    /// A TOML config file; every key can also be set as TWOFOLD_<KEY> in the environment.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// List or end sessions.
    Session {
        #[command(subcommand)]
        command: operator::SessionCommand,
    },
    /// Read the audit trail (filters below), verify it, or draw one login attempt.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<operator::AuditCommand>,
        #[command(flatten)]
        filter: operator::AuditArgs,
    },
    /// Print the login flow this build implements as a sequence diagram.
    Diagram {
        /// mermaid or zenuml
        #[arg(long, default_value = "mermaid")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; asks for the password twice unless --password-stdin is given.
    Add {
        name: String,
        /// Read the password from standard input (one line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        profile: ProfileArgs,
        /// A group the user is in (a-z, 0-9, _ and -); repeat for several.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Change what apps are told about a user: email, display name, groups ("" removes the email or the name).
    Edit {
        name: String,
        #[command(flatten)]
        profile: ProfileArgs,
        /// Put the user in this group; repeat for several.
        #[arg(long = "add-group", value_name = "GROUP")]
        add_groups: Vec<String>,
        /// Take the user out of this group; repeat for several.
        #[arg(long = "remove-group", value_name = "GROUP")]
        remove_groups: Vec<String>,
    },
    /// List users with their second factors and lock state.
    List,
    /// Set a user's password and end their sessions (the second factors stay); asks for it twice unless
    /// --password-stdin is given.
    Passwd {
        name: String,
        /// Read the password from standard input (one line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Stop a user from signing in and end their sessions; their password and second factors are kept.
    Disable { name: String },
    /// Let a disabled user sign in again.
    Enable { name: String },
    /// Remove a user's second factors and end their sessions (for a lost phone).
    #[command(name = "reset-2fa")]
    Reset2fa { name: String },
    /// Lift a user's second-factor lock.
    Unlock { name: String },
    /// Delete a user with their sessions and codes.
    Delete { name: String },
    /// Show a user's second factors, recovery codes left, last sign-in, lock state and sessions.
    Show { name: String },
}

/// What apps behind Twofold are told about a user, as `user add` and `user edit` take it.
#[derive(Debug, clap::Args)]
struct ProfileArgs {
    /// The user's email address.
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// The user's name as apps show it.
    #[arg(long, value_name = "NAME")]
    display_name: Option<String>,
}

/// Runs the command line; the exit code is 2 for a configuration problem and 1 for any other failure.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("twofold: {error}");
            return ExitCode::from(2);
        }
    };
    // The operator's one-shot commands print their own result; the log only speaks up for problems.
    let level = match cli.command {
        Command::Serve => config.log.as_str(),
        _ => "warn",
    };
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file, a journal or a log collector they are noise that
    // hides the text being searched for. NO_COLOR (no-color.org) turns them off at a terminal too.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("twofold: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("twofold: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, config: Config) -> Result<(), String> {
    let flow = || async {
        app::open_flow(&config, Arc::new(SystemClock))
            .await
            .map_err(|e| e.to_string())
    };
    match command {
        Command::Serve => serve(config).await,
        Command::Diagram { format } => operator::diagram(&format),
        Command::User { command } => user(&*flow().await?, command).await.map_err(|e| e.to_string()),
        Command::Session { command } => operator::session(&*flow().await?, command).await,
        Command::Audit { command, filter } => operator::audit(&*flow().await?, command, filter).await,
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|error| {
        format!(
            "cannot listen on {}: {error}. Is another program using that port? Set `listen` or TWOFOLD_LISTEN.",
            config.listen
        )
    })?;
    let server = app::build(&config, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        listen = %config.listen,
        public_url = %config.public_url,
        database = %config.database_url,
        "Twofold is listening"
    );
    if config.sms.as_ref().is_some_and(|sms| sms.is_console()) {
        tracing::warn!(
            "[sms] gateway = \"console\": SMS codes are written to this log and sent to nobody. For development only."
        );
    }
    if config.allow_registration {
        tracing::warn!("allow_registration is on: anyone who can reach this server can create an account");
    }
    let shutdown = async {
        // If the signal handler cannot be installed the server simply runs until killed.
        let _ = tokio::signal::ctrl_c().await;
    };
    app::serve(server, listener, shutdown)
        .await
        .map_err(|error| format!("the server stopped: {error}"))
}

async fn user(flow: &Flow, command: UserCommand) -> Result<(), FlowError> {
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            profile,
            groups,
        } => {
            let change = ProfileChange {
                email: profile.email,
                display_name: profile.display_name,
                add_groups: groups,
                remove_groups: Vec::new(),
            };
            let password = read_password(password_stdin).map_err(FlowError::BadRequest)?;
            let name = flow.add_user(&name, &password, &change).await?;
            println!("added user {name}");
        }
        UserCommand::Edit {
            name,
            profile,
            add_groups,
            remove_groups,
        } => {
            let change = ProfileChange {
                email: profile.email,
                display_name: profile.display_name,
                add_groups,
                remove_groups,
            };
            flow.edit_user(&name, &change).await?;
            println!("changed the profile of {name}");
        }
        UserCommand::List => {
            let users = flow.list_users().await?;
            println!(
                "{:<32} {:<5} {:>14} {:<5} {:<20} {:<20} {:<8} GROUPS",
                "USERNAME", "TOTP", "RECOVERY CODES", "SMS", "LOCK", "LAST SIGN-IN", "DISABLED"
            );
            for user in users {
                let lock = match user.lock {
                    Lock::UntilUnlocked => "until unlocked".to_owned(),
                    Lock::Until(until) => format!("until {}", timestamp(until)),
                    Lock::Open => "-".to_owned(),
                };
                println!(
                    "{:<32} {:<5} {:>14} {:<5} {:<20} {:<20} {:<8} {}",
                    user.username,
                    if user.totp { "yes" } else { "no" },
                    user.recovery_codes_left,
                    if user.sms { "yes" } else { "no" },
                    lock,
                    user.last_login_at.map(timestamp).unwrap_or_else(|| "never".into()),
                    if user.disabled { "yes" } else { "no" },
                    if user.groups.is_empty() {
                        "-".to_owned()
                    } else {
                        user.groups.join(",")
                    },
                );
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            let password = read_password(password_stdin).map_err(FlowError::BadRequest)?;
            flow.set_password(&name, &password).await?;
            println!("set the password of {name} and ended their sessions; their second factors are unchanged");
        }
        UserCommand::Disable { name } => {
            flow.disable_user(&name).await?;
            println!("disabled {name} and ended their sessions; `twofold user enable {name}` undoes it");
        }
        UserCommand::Enable { name } => {
            flow.enable_user(&name).await?;
            println!("enabled {name}: they can sign in again");
        }
        UserCommand::Reset2fa { name } => {
            flow.reset_second_factors(&name).await?;
            println!("removed the second factors of {name} and ended their sessions; they sign in with the password alone until they set up a new one");
        }
        UserCommand::Unlock { name } => {
            flow.unlock(&name).await?;
            println!("unlocked the second factor of {name}");
        }
        UserCommand::Show { name } => operator::show_user(&flow.user_details(&name).await?),
        UserCommand::Delete { name } => {
            flow.delete_user(&name).await?;
            println!("deleted user {name}");
        }
    }
    Ok(())
}

pub(crate) fn timestamp(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        return Ok(line.strip_suffix('\r').unwrap_or(line).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to ask for the password: pass --password-stdin and pipe it in".into());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
    let second =
        rpassword::prompt_password("Password again: ").map_err(|e| format!("cannot read the password: {e}"))?;
    if first != second {
        return Err("the two passwords differ".into());
    }
    Ok(first)
}
