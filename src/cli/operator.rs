//! The operator's view: `twofold audit` (list, verify, diagram), `twofold diagram`, `twofold session` and
//! `twofold user show`. Output is for people by default and JSON lines where a program reads it.

use clap::{Args, Subcommand};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::timestamp;
use crate::flow::diagram::{flow_diagram, login_diagram, Format};
use crate::flow::{AuditFilter, AuditRecord, Flow, Head, Lock, Pruned, Requester, UserDetails, Verdict};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the MAC chain; names the first edited, inserted or deleted event, a gap in the numbers, or a time
    /// that goes backwards.
    Verify {
        /// A head `audit head` printed earlier (SEQ:MAC): also check that this event is still there, as it was.
        #[arg(long)]
        head: Option<String>,
    },
    /// Print the newest event's number and MAC (SEQ:MAC), to keep somewhere the database's writers cannot reach:
    /// `audit verify --head` then reveals newest events deleted since.
    Head {
        /// As a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Draw one login attempt (all events with this flow id) as a sequence diagram.
    Diagram {
        flow_id: String,
        /// mermaid or zenuml
        #[arg(long, default_value = "mermaid")]
        format: String,
    },
    /// Delete events older than audit_retention now (the server also does this hourly).
    Prune,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this user's events.
    #[arg(long)]
    user: Option<String>,
    /// From this time: RFC 3339 (2026-11-21T08:00:00Z), a date (2026-11-21), or a duration ago (2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Before this time, in the same forms as --since.
    #[arg(long)]
    until: Option<String>,
    /// Only this event (login, second_factor, sms_send, logout, totp_setup, ...).
    #[arg(long)]
    event: Option<String>,
    /// Only this outcome (success, invalid_credentials, invalid_code, replay, locked, ...).
    #[arg(long)]
    outcome: Option<String>,
    /// Only the events of one login attempt.
    #[arg(long)]
    flow: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List live sessions (pending and signed in).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// End a session by its id, or all sessions of a user.
    Revoke {
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<i64>,
        #[arg(long)]
        user: Option<String>,
    },
}

fn format_of(name: &str) -> Result<Format, String> {
    Format::parse(name).ok_or_else(|| format!("--format takes mermaid or zenuml, not {name:?}"))
}

pub fn diagram(format: &str) -> Result<(), String> {
    print!("{}", flow_diagram(format_of(format)?));
    Ok(())
}

/// `text` with what a terminal would act on instead of showing written as `\uXXXX`: control characters (C0 but the
/// line break, DEL, and C1 such as U+009B, which starts an escape sequence like ESC [ does) and the bidirectional
/// controls that reorder what is shown (U+202E makes "exe.txt" read "txt.exe"). Audit events carry text a client
/// chose (its User-Agent), and the operator reads them in a terminal. In a JSON line the escapes are JSON's own, so a
/// program reading it gets the original text back.
fn terminal_safe(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi =
            matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n') || bidi {
            safe.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            safe.push(c);
        }
    }
    safe
}

/// Unix milliseconds from an RFC 3339 time, a date (midnight UTC), or a duration before `now`.
fn parse_time(flag: &str, text: &str, now: OffsetDateTime) -> Result<i64, String> {
    let millis = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(millis(at));
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(text, &day) {
        return Ok(millis(date.midnight().assume_utc()));
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = time::Duration::try_from(ago).map_err(|e| e.to_string())?;
        return Ok(millis(now - ago));
    }
    Err(format!(
        "{flag} takes a time like 2026-11-21T08:00:00Z, a date like 2026-11-21, or a duration ago like 2h, not {text:?}"
    ))
}

fn record_time(record: &AuditRecord) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| record.at_ms.to_string())
}

pub async fn audit(flow: &Flow, command: Option<AuditCommand>, args: AuditArgs) -> Result<(), String> {
    match command {
        Some(AuditCommand::Verify { head }) => {
            let head = head
                .map(|text| {
                    Head::parse(&text)
                        .ok_or_else(|| format!("--head takes SEQ:MAC as `twofold audit head` prints it, not {text:?}"))
                })
                .transpose()?;
            let verdict = flow.verify_audit(head.as_ref()).await.map_err(|e| e.to_string())?;
            println!("{verdict}");
            match verdict {
                Verdict::Intact { .. } => Ok(()),
                _ => Err("the audit trail has been tampered with".into()),
            }
        }
        Some(AuditCommand::Head { json: as_json }) => {
            let head = flow.audit_head().await.map_err(|e| e.to_string())?;
            match (head, as_json) {
                (Some(head), false) => println!("{head}"),
                (Some(head), true) => println!("{}", json!({ "seq": head.seq, "mac": hex::encode(&head.mac) })),
                (None, _) => return Err("the audit trail is empty".into()),
            }
            Ok(())
        }
        Some(AuditCommand::Diagram { flow_id, format }) => {
            let format = format_of(&format)?;
            let filter = AuditFilter {
                flow_id: Some(flow_id.clone()),
                ..AuditFilter::default()
            };
            let events = flow.audit_events(&filter).await.map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err(format!("no audit events have the flow id {flow_id:?}"));
            }
            print!("{}", terminal_safe(&login_diagram(&flow_id, &events, format)));
            Ok(())
        }
        Some(AuditCommand::Prune) => {
            match flow
                .prune_audit(&Requester::command_line())
                .await
                .map_err(|e| e.to_string())?
            {
                Pruned::Events(pruned) => {
                    println!("pruned {pruned} audit events");
                    Ok(())
                }
                Pruned::Refused(verdict) => Err(format!("nothing pruned: {verdict}")),
            }
        }
        None => list(flow, args).await,
    }
}

async fn list(flow: &Flow, args: AuditArgs) -> Result<(), String> {
    let now = flow.now();
    let filter = AuditFilter {
        username: args.user.map(|u| u.to_ascii_lowercase()),
        since_ms: args.since.map(|t| parse_time("--since", &t, now)).transpose()?,
        until_ms: args.until.map(|t| parse_time("--until", &t, now)).transpose()?,
        event: args.event,
        outcome: args.outcome,
        flow_id: args.flow,
    };
    let events = flow.audit_events(&filter).await.map_err(|e| e.to_string())?;
    for event in &events {
        if args.json {
            let line = json!({
                "id": event.id,
                "seq": event.seq,
                "time": record_time(event),
                "flow_id": event.flow_id,
                "user": event.username,
                "client_addr": event.client_addr,
                "user_agent": event.user_agent,
                "event": event.event,
                "method": event.method,
                "outcome": event.outcome,
            });
            println!("{}", terminal_safe(&line.to_string()));
        } else {
            let line = format!(
                "{:<30} {:<26} {:<22} {:<14} {:<24} {:<16} {}",
                record_time(event),
                event.event,
                event.outcome,
                event.method.as_deref().unwrap_or("-"),
                event.username.as_deref().unwrap_or("-"),
                event.client_addr.as_deref().unwrap_or("-"),
                event.flow_id.as_deref().unwrap_or("-"),
            );
            println!("{}", terminal_safe(&line));
        }
    }
    Ok(())
}

pub async fn session(flow: &Flow, command: SessionCommand) -> Result<(), String> {
    match command {
        SessionCommand::List { user } => {
            let sessions = flow.list_sessions(user.as_deref()).await.map_err(|e| e.to_string())?;
            println!(
                "{:>6} {:<24} {:<8} {:<14} {:<26} {:<26} CLIENT",
                "ID", "USER", "STATE", "FACTOR", "STARTED", "LAST SEEN"
            );
            for s in sessions {
                let row = format!(
                    "{:>6} {:<24} {:<8} {:<14} {:<26} {:<26} {}",
                    s.id.0,
                    s.user.username,
                    s.state.0.as_str(),
                    s.second_factor.as_deref().unwrap_or("-"),
                    timestamp(s.created_at),
                    timestamp(s.last_seen_at),
                    s.client_addr.as_deref().unwrap_or("-"),
                );
                println!("{}", terminal_safe(&row));
            }
            Ok(())
        }
        SessionCommand::Revoke { id, user } => {
            match (id, user) {
                (Some(id), _) => {
                    flow.revoke_session(id).await.map_err(|e| e.to_string())?;
                    println!("ended session {id}");
                }
                (None, Some(user)) => {
                    let ended = flow.revoke_user_sessions(&user).await.map_err(|e| e.to_string())?;
                    println!("ended {ended} sessions of {user}");
                }
                (None, None) => return Err("give a session id or --user NAME".into()),
            }
            Ok(())
        }
    }
}

pub fn show_user(user: &UserDetails) {
    let lock = match user.lock {
        Lock::Open => "none".to_owned(),
        Lock::Until(until) => format!("second factor locked until {}", timestamp(until)),
        Lock::UntilUnlocked => "second factor locked until `twofold user unlock`".to_owned(),
    };
    println!("user:                  {}", user.username);
    if let Some(at) = user.disabled_at {
        println!(
            "disabled:              since {} (`twofold user enable` lets them sign in)",
            timestamp(at)
        );
    }
    println!("created:               {}", timestamp(user.created_at));
    let profile = &user.profile;
    println!(
        "email:                 {}",
        terminal_safe(profile.email.as_deref().unwrap_or("-"))
    );
    println!(
        "display name:          {}",
        terminal_safe(profile.display_name.as_deref().unwrap_or("-"))
    );
    let groups: Vec<&str> = profile.groups().collect();
    println!(
        "groups:                {}",
        if groups.is_empty() {
            "-".to_owned()
        } else {
            groups.join(", ")
        }
    );
    println!("authenticator app:     {}", if user.totp { "yes" } else { "no" });
    println!("sms:                   {}", user.sms_phone.as_deref().unwrap_or("no"));
    println!("recovery codes left:   {}", user.recovery_codes_left);
    println!(
        "last sign-in:          {}",
        user.last_login_at.map(timestamp).unwrap_or_else(|| "never".into())
    );
    println!("consecutive failures:  {}", user.consecutive_failures);
    println!("lock:                  {lock}");
    println!("live sessions:         {}", user.sessions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_acts_on_is_escaped() {
        assert_eq!(
            terminal_safe("plain text, ünïcode\nnext line"),
            "plain text, ünïcode\nnext line"
        );
        assert_eq!(terminal_safe("a\u{1b}[2Jb\u{7f}"), "a\\u001b[2Jb\\u007f");
        assert_eq!(terminal_safe("\u{9b}31m"), "\\u009b31m");
        assert_eq!(
            terminal_safe("\u{202e}exe.txt\u{2066}\u{61c}\u{200e}"),
            "\\u202eexe.txt\\u2066\\u061c\\u200e"
        );
    }

    #[test]
    fn times_in_three_forms() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(
            parse_time("--since", "2027-01-15T08:00:00Z", now),
            Ok(1_800_000_000_000)
        );
        assert_eq!(parse_time("--since", "2027-01-15", now), Ok(1_799_971_200_000));
        assert_eq!(parse_time("--since", "2h", now), Ok(1_800_000_000_000 - 7_200_000));
        assert!(parse_time("--since", "yesterdayish", now)
            .unwrap_err()
            .contains("--since"));
    }
}
