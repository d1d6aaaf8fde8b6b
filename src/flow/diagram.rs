//! Sequence diagrams in the style of the seed documents, in Mermaid or ZenUML: the login flow this build implements
//! (drawn from the state machine's own table, [`crate::flow::machine::TRANSITIONS`]) and one real login attempt
//! (drawn from its audit events, in order, with outcomes and elapsed times).

use std::fmt::Write;

use super::machine::{Message, Party, State, TRANSITIONS};
use crate::audit::chain::AuditRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mermaid,
    ZenUml,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mermaid" => Some(Self::Mermaid),
            "zenuml" => Some(Self::ZenUml),
            _ => None,
        }
    }
}

/// A diagram under construction; both syntaxes share the structure (participants, arrows, alternatives, notes).
struct Drawing {
    format: Format,
    out: String,
    depth: usize,
}

impl Drawing {
    fn new(format: Format, title: &str, parties: &[Party]) -> Self {
        let mut drawing = Self {
            format,
            out: String::new(),
            depth: 0,
        };
        match format {
            Format::Mermaid => {
                drawing.line("sequenceDiagram");
                drawing.depth = 1;
                drawing.line(&format!("title {}", clean(title)));
                for party in parties {
                    if party.id() == party.label() {
                        drawing.line(&format!("participant {}", party.id()));
                    } else {
                        drawing.line(&format!("participant {} as {}", party.id(), party.label()));
                    }
                }
            }
            Format::ZenUml => {
                drawing.line(&format!("title {}", clean(title)));
                for party in parties {
                    let kind = match party {
                        Party::User => "@Actor",
                        Party::Client => "@Boundary",
                        Party::Twofold => "@Control",
                        Party::AuthApp | Party::SmsGateway => "@Entity",
                    };
                    drawing.line(&format!("{kind} {}", party.id()));
                }
            }
        }
        drawing
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{}{}", "  ".repeat(self.depth), text);
    }

    fn message(&mut self, from: Party, to: Party, text: &str, reply: bool) {
        let text = clean(text);
        match self.format {
            Format::Mermaid => {
                let arrow = if reply { "-->>" } else { "->>" };
                self.line(&format!("{}{arrow}{}: {text}", from.id(), to.id()));
            }
            Format::ZenUml => self.line(&format!("{}->{}: {text}", from.id(), to.id())),
        }
    }

    fn note(&mut self, over: &[Party], text: &str) {
        let text = clean(text);
        match self.format {
            Format::Mermaid => {
                let over: Vec<&str> = over.iter().map(|p| p.id()).collect();
                self.line(&format!("Note over {}: {text}", over.join(",")));
            }
            Format::ZenUml => self.line(&format!("// {text}")),
        }
    }

    /// Opens the branch `index` of an alternative with its condition.
    fn branch(&mut self, index: usize, condition: &str) {
        let condition = clean(condition);
        match (self.format, index) {
            (Format::Mermaid, 0) => {
                self.line(&format!("alt {condition}"));
                self.depth += 1;
            }
            (Format::Mermaid, _) => {
                self.depth -= 1;
                self.line(&format!("else {condition}"));
                self.depth += 1;
            }
            (Format::ZenUml, 0) => {
                self.line(&format!("if({}) {{", identifier(&condition)));
                self.depth += 1;
            }
            (Format::ZenUml, _) => {
                self.depth -= 1;
                self.line(&format!("}} else if({}) {{", identifier(&condition)));
                self.depth += 1;
            }
        }
    }

    fn end_alternative(&mut self) {
        self.depth -= 1;
        match self.format {
            Format::Mermaid => self.line("end"),
            Format::ZenUml => self.line("}"),
        }
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Keeps diagram text to characters both syntaxes take as plain text.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ';' | '#' | '{' | '}' | '"' | '\n' | '\r' | ':' => ' ',
            other => other,
        })
        .collect()
}

/// ZenUML conditions are expressions: words joined by underscores. An identifier cannot start with a digit (ZenUML's
/// lexer reads `5_minutes` as the number 5 and then fails on the rest), so such a condition is prefixed by `after_`:
/// the conditions that start with a number are the ones that say how much time passed.
fn identifier(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let joined = words.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("after_{joined}")
    } else {
        joined
    }
}

fn draw_messages(drawing: &mut Drawing, messages: &[Message]) {
    for m in messages {
        drawing.message(m.from, m.to, m.text, m.reply);
    }
}

/// The login flow of this build: for each state, the steps that leave it.
pub fn flow_diagram(format: Format) -> String {
    let mut drawing = Drawing::new(format, "Twofold login flow", &Party::ALL);
    for state in [State::SignedOut, State::Pending, State::SignedIn] {
        let steps: Vec<_> = TRANSITIONS.iter().filter(|t| t.from == state).collect();
        drawing.note(&[Party::Client, Party::Twofold], &format!("from {}", state.describe()));
        for (index, transition) in steps.iter().enumerate() {
            let condition = format!("{} then {}", transition.when, transition.to.describe());
            drawing.branch(index, &condition);
            draw_messages(&mut drawing, transition.messages);
        }
        drawing.end_alternative();
    }
    drawing.finish()
}

/// One login attempt as it happened, from its audit events (oldest first).
pub fn login_diagram(flow_id: &str, events: &[AuditRecord], format: Format) -> String {
    let uses = |method: &str| events.iter().any(|e| e.method.as_deref() == Some(method));
    let mut parties = vec![Party::User, Party::Client, Party::Twofold];
    if uses("totp") {
        parties.push(Party::AuthApp);
    }
    if uses("sms") {
        parties.push(Party::SmsGateway);
    }
    let mut drawing = Drawing::new(format, &format!("Login attempt {flow_id}"), &parties);
    let start = events.first().map_or(0, |e| e.at_ms);
    if let Some(first) = events.first() {
        let who = first.username.as_deref().unwrap_or("unknown user");
        let from = first.client_addr.as_deref().unwrap_or("unknown address");
        drawing.note(&[Party::Client, Party::Twofold], &format!("{who} from {from}"));
    }
    for event in events {
        let elapsed = format!("+{:.3} s", (event.at_ms - start) as f64 / 1000.0);
        let outcome = format!("{} ({elapsed})", event.outcome);
        let method = event.method.as_deref().unwrap_or("");
        use Party::{AuthApp, Client, SmsGateway, Twofold, User};
        match event.event.as_str() {
            "login" => {
                drawing.message(User, Client, "username + password", false);
                drawing.message(Client, Twofold, "POST /auth/login", false);
                drawing.message(Twofold, Client, &outcome, true);
            }
            "sms_send" | "sms_setup" => {
                let path = if event.event == "sms_send" {
                    "/auth/2fa/sms/send"
                } else {
                    "/auth/2fa/sms/setup"
                };
                drawing.message(Client, Twofold, &format!("POST {path}"), false);
                if event.outcome == "success" || event.outcome.starts_with("gateway") {
                    drawing.message(Twofold, SmsGateway, "one-time code for the user's phone", false);
                }
                if event.outcome == "success" {
                    drawing.message(SmsGateway, User, "text message", true);
                }
                drawing.message(Twofold, Client, &outcome, true);
            }
            "second_factor" | "totp_confirm" | "totp_remove" | "sms_confirm" => {
                match method {
                    "totp" => {
                        drawing.message(User, AuthApp, "open app", false);
                        drawing.message(AuthApp, User, "6-digit code", true);
                    }
                    "recovery_code" => drawing.message(User, User, "pick a recovery code", false),
                    _ => {}
                }
                drawing.message(User, Client, "enter code", false);
                let request = match event.event.as_str() {
                    "second_factor" => format!("POST /auth/verify-2fa ({method})"),
                    "totp_confirm" => "POST /auth/2fa/totp/confirm".to_owned(),
                    "totp_remove" => "DELETE /auth/2fa/totp".to_owned(),
                    _ => "POST /auth/2fa/sms/confirm".to_owned(),
                };
                drawing.message(Client, Twofold, &request, false);
                drawing.message(Twofold, Client, &outcome, true);
            }
            "logout" => {
                drawing.message(Client, Twofold, "POST /auth/logout", false);
                drawing.message(Twofold, Client, &outcome, true);
            }
            "totp_setup" => {
                drawing.message(Client, Twofold, "POST /auth/2fa/totp/setup", false);
                drawing.message(Twofold, Client, &outcome, true);
            }
            "recovery_codes_regenerate" => {
                drawing.message(Client, Twofold, "POST /auth/2fa/recovery-codes", false);
                drawing.message(Twofold, Client, &outcome, true);
            }
            other => drawing.note(&[Party::Twofold], &format!("{other} {outcome}")),
        }
    }
    drawing.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_diagram_draws_every_transition() {
        for format in [Format::Mermaid, Format::ZenUml] {
            let text = flow_diagram(format);
            for transition in TRANSITIONS {
                for message in transition.messages {
                    assert!(
                        text.contains(&clean(message.text)),
                        "{format:?} lacks {:?}",
                        message.text
                    );
                }
            }
        }
        let mermaid = flow_diagram(Format::Mermaid);
        assert!(mermaid.starts_with("sequenceDiagram\n"));
        assert_eq!(mermaid.matches("\n  alt ").count(), 3);
        assert_eq!(mermaid.matches("\n  end").count(), 3);
        let zenuml = flow_diagram(Format::ZenUml);
        assert_eq!(zenuml.matches('{').count(), zenuml.matches('}').count());
        assert!(zenuml.contains("if(password_right_second_factor_enrolled_then_pending_second_factor"));
    }

    /// ZenUML's own parser (`@zenuml/core/parser`, run by `e2e/diagrams.test.js`) is the real check; this keeps the
    /// shape it needs checkable without Node: every condition is an identifier that does not start with a digit, the
    /// braces of the alternatives nest, and no message text holds a character either syntax treats as markup.
    #[test]
    fn zenuml_conditions_are_identifiers() {
        assert_eq!(
            identifier("5 minutes pass then signed out"),
            "after_5_minutes_pass_then_signed_out"
        );
        assert_eq!(identifier("sign out, then: signed out"), "sign_out_then_signed_out");
        let zenuml = flow_diagram(Format::ZenUml);
        let mut depth = 0i32;
        for line in zenuml.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("if(").or_else(|| line.strip_prefix("} else if(")) {
                let condition = rest.strip_suffix(") {").expect("a condition closes with `) {`");
                assert!(condition.starts_with(|c: char| c.is_ascii_alphabetic()), "{condition}");
                assert!(
                    condition.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{condition}"
                );
            } else if let Some((_, text)) = line.split_once(": ") {
                assert!(!text.contains(['{', '}', ';', '"', '#']), "{line}");
            }
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            assert!(depth >= 0, "a brace closes before it opens: {line}");
        }
        assert_eq!(depth, 0);
    }
}
