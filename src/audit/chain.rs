//! The MAC chain that makes the audit trail tamper-evident. Each event's MAC covers its content and the MAC of the
//! event before it, under a key derived from the server key: editing an event breaks its own MAC, inserting one
//! needs the key, and deleting one breaks the link of the next. Pruning old events leaves an anchor (the last pruned
//! event's id and MAC, itself MAC'd) where the kept chain starts.
//!
//! A chain cannot reveal that its newest events were cut off: compare the newest event with what the logs or a
//! monitoring system last saw.

use crate::crypto::Keys;

/// An event as stored, with its place in the chain.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub flow_id: Option<String>,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub event: String,
    pub method: Option<String>,
    pub outcome: String,
    pub prev_mac: Option<Vec<u8>>,
    pub mac: Option<Vec<u8>>,
}

/// Where the kept chain starts after pruning.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditAnchor {
    pub last_id: i64,
    pub last_mac: Vec<u8>,
    pub mac: Vec<u8>,
}

/// The fields of an event that its MAC covers, in a fixed order.
pub struct Content<'a> {
    pub at_ms: i64,
    pub flow_id: Option<&'a str>,
    pub user_id: Option<i64>,
    pub username: Option<&'a str>,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub event: &'a str,
    pub method: Option<&'a str>,
    pub outcome: &'a str,
}

impl<'a> Content<'a> {
    pub fn of(record: &'a AuditRecord) -> Self {
        Self {
            at_ms: record.at_ms,
            flow_id: record.flow_id.as_deref(),
            user_id: record.user_id,
            username: record.username.as_deref(),
            client_addr: record.client_addr.as_deref(),
            user_agent: record.user_agent.as_deref(),
            event: &record.event,
            method: record.method.as_deref(),
            outcome: &record.outcome,
        }
    }

    /// Each field length-prefixed (absent fields marked apart from empty ones), so no two contents encode alike.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        let mut text = |value: Option<&str>| match value {
            None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            Some(value) => {
                let length = u32::try_from(value.len()).unwrap_or(u32::MAX - 1);
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(value.as_bytes());
            }
        };
        text(self.flow_id);
        text(self.user_id.map(|id| id.to_string()).as_deref());
        text(self.username);
        text(self.client_addr);
        text(self.user_agent);
        text(Some(self.event));
        text(self.method);
        text(Some(self.outcome));
        out
    }
}

/// The MAC of an event that follows the event whose MAC is `prev` (empty for the very first event).
pub fn event_mac(keys: &Keys, prev: &[u8], content: &Content<'_>) -> Vec<u8> {
    keys.audit_mac(&[b"event", prev, &content.encode()])
}

pub fn anchor_mac(keys: &Keys, last_id: i64, last_mac: &[u8]) -> Vec<u8> {
    keys.audit_mac(&[b"anchor", &last_id.to_be_bytes(), last_mac])
}

/// What `twofold audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        events: usize,
    },
    /// The first event whose MAC does not match its content: edited, or inserted without the key.
    Altered {
        id: i64,
    },
    /// The event's own MAC is right but it does not follow the event before it: events were deleted in between.
    Deleted {
        before_id: i64,
    },
    /// The pruning anchor was changed.
    AnchorAltered,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Intact { events } => write!(f, "the audit trail is intact: {events} events verified"),
            Self::Altered { id } => write!(
                f,
                "event {id} was edited or inserted: its MAC does not match its content and the chain before it"
            ),
            Self::Deleted { before_id } => write!(f, "one or more events just before event {before_id} were deleted"),
            Self::AnchorAltered => f.write_str("the record of pruned events was altered"),
        }
    }
}

/// Checks `events` (in id order) against the anchor left by pruning, if any.
pub fn verify(keys: &Keys, anchor: Option<&AuditAnchor>, events: &[AuditRecord]) -> Verdict {
    let mut expected_prev: Vec<u8> = match anchor {
        Some(anchor) => {
            let expected = anchor_mac(keys, anchor.last_id, &anchor.last_mac);
            if !constant_time_eq(&expected, &anchor.mac) {
                return Verdict::AnchorAltered;
            }
            anchor.last_mac.clone()
        }
        None => Vec::new(),
    };
    for record in events {
        let (Some(prev), Some(mac)) = (&record.prev_mac, &record.mac) else {
            return Verdict::Altered { id: record.id };
        };
        let computed = event_mac(keys, prev, &Content::of(record));
        if !constant_time_eq(&computed, mac) {
            return Verdict::Altered { id: record.id };
        }
        if !constant_time_eq(prev, &expected_prev) {
            return Verdict::Deleted { before_id: record.id };
        }
        expected_prev = mac.clone();
    }
    Verdict::Intact { events: events.len() }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(keys: &Keys, n: i64) -> Vec<AuditRecord> {
        let mut prev = Vec::new();
        (1..=n)
            .map(|id| {
                let mut record = AuditRecord {
                    id,
                    at_ms: 1_000 * id,
                    flow_id: Some("flow".into()),
                    user_id: Some(7),
                    username: Some("alice".into()),
                    client_addr: Some("127.0.0.1".into()),
                    user_agent: None,
                    event: "login".into(),
                    method: None,
                    outcome: "success".into(),
                    prev_mac: Some(prev.clone()),
                    mac: None,
                };
                let mac = event_mac(keys, &prev, &Content::of(&record));
                record.mac = Some(mac.clone());
                prev = mac;
                record
            })
            .collect()
    }

    #[test]
    fn finds_edits_insertions_and_deletions() {
        let keys = Keys::from_master(&[3; 32]);
        let events = chain(&keys, 5);
        assert_eq!(verify(&keys, None, &events), Verdict::Intact { events: 5 });

        let mut edited = events.clone();
        edited[2].outcome = "invalid_credentials".into();
        assert_eq!(verify(&keys, None, &edited), Verdict::Altered { id: 3 });

        let mut deleted = events.clone();
        deleted.remove(1);
        assert_eq!(verify(&keys, None, &deleted), Verdict::Deleted { before_id: 3 });

        let mut inserted = events.clone();
        let mut forged = inserted[1].clone();
        forged.id = 10;
        forged.prev_mac = inserted[1].mac.clone();
        inserted.insert(2, forged);
        assert_eq!(verify(&keys, None, &inserted), Verdict::Altered { id: 10 });

        let other = Keys::from_master(&[4; 32]);
        assert_eq!(verify(&other, None, &events), Verdict::Altered { id: 1 });
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_anchor() {
        let keys = Keys::from_master(&[3; 32]);
        let events = chain(&keys, 5);
        let last = &events[1];
        let last_mac = last.mac.clone().unwrap_or_default();
        let anchor = AuditAnchor {
            last_id: last.id,
            mac: anchor_mac(&keys, last.id, &last_mac),
            last_mac,
        };
        assert_eq!(
            verify(&keys, Some(&anchor), &events[2..]),
            Verdict::Intact { events: 3 }
        );
        assert_eq!(
            verify(&keys, Some(&anchor), &events[3..]),
            Verdict::Deleted { before_id: 4 }
        );
        let forged = AuditAnchor {
            last_id: 3,
            ..anchor.clone()
        };
        assert_eq!(verify(&keys, Some(&forged), &events[2..]), Verdict::AnchorAltered);
    }
}
