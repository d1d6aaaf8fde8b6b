//! The MAC chain that makes the audit trail tamper-evident. Events are numbered 1, 2, 3, ... in the order they were
//! appended, across all instances; each event's MAC covers its number, its content and the MAC of the event before
//! it, under a key derived from the server key. Editing an event breaks its own MAC, inserting one needs the key, and
//! deleting one leaves a gap in the numbers (renumbering breaks the MACs) and breaks the next event's link. Pruning
//! old events leaves an anchor (the last pruned event's number, time and MAC, itself MAC'd) where the kept chain
//! starts. Pruning deletes only a verified run of events from the chain's start (`flow::operator`), so a backdated
//! event cannot take newer ones with it.
//!
//! A chain cannot reveal that its newest events were cut off: `twofold audit head` prints the newest number and MAC
//! for the operator to keep elsewhere, and `twofold audit verify --head SEQ:MAC` checks that event is still there.

use crate::crypto::Keys;

/// Events are appended in number order, but each takes its time when its request starts, and requests on several
/// instances finish in any order: an event may be this much older than one before it without being reported. More
/// than this is a clock that jumped, or a time that was edited.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The MAC of events written before events were numbered: number not covered.
const MAC_V1: i64 = 1;
/// The MAC of numbered events.
pub const MAC_V2: i64 = 2;

/// An event as stored, with its place in the chain.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub seq: i64,
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
    pub mac_version: i64,
}

/// Where the kept chain starts after pruning.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditAnchor {
    /// The last pruned event's id: what a version 1 anchor's MAC covers.
    pub last_id: i64,
    pub last_seq: i64,
    pub last_at_ms: i64,
    pub last_mac: Vec<u8>,
    pub mac: Vec<u8>,
    pub version: i64,
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

/// The MAC of event number `seq`, which follows the event whose MAC is `prev` (empty for the very first event).
pub fn event_mac(keys: &Keys, seq: i64, prev: &[u8], content: &Content<'_>) -> Vec<u8> {
    keys.audit_mac(&[b"event-v2", &seq.to_be_bytes(), prev, &content.encode()])
}

/// The MAC events had before they were numbered, which verifying them still needs.
pub fn event_mac_v1(keys: &Keys, prev: &[u8], content: &Content<'_>) -> Vec<u8> {
    keys.audit_mac(&[b"event", prev, &content.encode()])
}

/// The MAC of the anchor left when events up to number `last_seq` (at `last_at_ms`, with MAC `last_mac`) were pruned.
pub fn anchor_mac(keys: &Keys, last_seq: i64, last_at_ms: i64, last_mac: &[u8]) -> Vec<u8> {
    keys.audit_mac(&[
        b"anchor-v2",
        &last_seq.to_be_bytes(),
        &last_at_ms.to_be_bytes(),
        last_mac,
    ])
}

/// The MAC anchors had before events were numbered.
pub fn anchor_mac_v1(keys: &Keys, last_id: i64, last_mac: &[u8]) -> Vec<u8> {
    keys.audit_mac(&[b"anchor", &last_id.to_be_bytes(), last_mac])
}

/// An event's number and MAC, as `twofold audit head` prints them for the operator to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub mac: Vec<u8>,
}

impl Head {
    /// `SEQ:MAC` with the MAC in hex, as `twofold audit head` prints it.
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, mac) = text.trim().split_once(':')?;
        let seq = seq.parse().ok().filter(|seq| *seq > 0)?;
        let mac = hex::decode(mac).ok().filter(|mac| !mac.is_empty())?;
        Some(Self { seq, mac })
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, hex::encode(&self.mac))
    }
}

/// What `twofold audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        events: usize,
    },
    /// The first event whose MAC does not match its number, content and the chain before it: edited, renumbered, or
    /// inserted without the key.
    Altered {
        seq: i64,
    },
    /// Numbers are missing before this event: the events between were deleted.
    Gap {
        expected: i64,
        found: i64,
    },
    /// The event's own MAC is right but it does not follow the event before it: events were deleted in between.
    Deleted {
        before_seq: i64,
    },
    /// The event's time is more than [`CLOCK_SKEW_MS`] before an earlier event's.
    TimeBackwards {
        seq: i64,
    },
    /// The pruning anchor was changed.
    AnchorAltered,
    /// The event the operator recorded as the head is gone: the newest events were cut off.
    HeadMissing {
        seq: i64,
        newest: i64,
    },
    /// The event at the recorded head's number is not the one recorded.
    HeadDiffers {
        seq: i64,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Intact { events } => write!(f, "the audit trail is intact: {events} events verified"),
            Self::Altered { seq } => write!(
                f,
                "event #{seq} was edited or inserted: its MAC does not match its number, content and the chain before it"
            ),
            Self::Gap { expected, found } if found - 1 == *expected => write!(f, "event #{expected} was deleted"),
            Self::Gap { expected, found } => write!(f, "events #{expected} to #{} were deleted", found - 1),
            Self::Deleted { before_seq } => write!(f, "one or more events just before event #{before_seq} were deleted"),
            Self::TimeBackwards { seq } => write!(
                f,
                "event #{seq} is timed more than {} minutes before an earlier event: a clock jumped or its time was edited",
                CLOCK_SKEW_MS / 60_000
            ),
            Self::AnchorAltered => f.write_str("the record of pruned events was altered"),
            Self::HeadMissing { seq, newest } => write!(
                f,
                "the recorded head #{seq} is gone (the newest event is #{newest}): the newest events were deleted"
            ),
            Self::HeadDiffers { seq } => write!(f, "event #{seq} is not the one recorded as the head"),
        }
    }
}

/// Checks a chain event by event, in number order, so that a trail of any length is checked in constant memory:
/// [`Checker::new`] with the pruning anchor (if any) and a head the operator recorded (if given), then
/// [`Checker::check`] for each event, then [`Checker::finish`].
pub struct Checker<'k> {
    keys: &'k Keys,
    expected_prev: Vec<u8>,
    expected_seq: i64,
    latest_ms: i64,
    /// Whether a numbered event was seen: no unnumbered one may follow it.
    numbered: bool,
    events: usize,
    head: Option<Head>,
    head_seen: bool,
}

impl<'k> Checker<'k> {
    pub fn new(keys: &'k Keys, anchor: Option<&AuditAnchor>, head: Option<&Head>) -> Result<Self, Verdict> {
        let mut checker = Self {
            keys,
            expected_prev: Vec::new(),
            expected_seq: 1,
            latest_ms: i64::MIN,
            numbered: false,
            events: 0,
            head: head.cloned(),
            head_seen: false,
        };
        if let Some(anchor) = anchor {
            let expected = match anchor.version {
                MAC_V1 => anchor_mac_v1(keys, anchor.last_id, &anchor.last_mac),
                _ => anchor_mac(keys, anchor.last_seq, anchor.last_at_ms, &anchor.last_mac),
            };
            if !constant_time_eq(&expected, &anchor.mac) {
                return Err(Verdict::AnchorAltered);
            }
            checker.expected_prev = anchor.last_mac.clone();
            checker.expected_seq = anchor.last_seq + 1;
            checker.latest_ms = anchor.last_at_ms;
            // A head that has since been pruned can only be checked when it was the last pruned event; the anchor's
            // own MAC vouches for the rest.
            checker.see_head(anchor.last_seq, &anchor.last_mac)?;
            if checker.head.as_ref().is_some_and(|head| head.seq < anchor.last_seq) {
                checker.head_seen = true;
            }
        }
        Ok(checker)
    }

    /// The next event, which must follow the last one checked.
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), Verdict> {
        let (Some(prev), Some(mac)) = (&record.prev_mac, &record.mac) else {
            return Err(Verdict::Altered { seq: record.seq });
        };
        let content = Content::of(record);
        // Once events are numbered, an unnumbered MAC can only be an old event moved or a forgery.
        let computed = match record.mac_version {
            MAC_V1 if !self.numbered => event_mac_v1(self.keys, prev, &content),
            MAC_V2 => event_mac(self.keys, record.seq, prev, &content),
            _ => return Err(Verdict::Altered { seq: record.seq }),
        };
        if !constant_time_eq(&computed, mac) {
            return Err(Verdict::Altered { seq: record.seq });
        }
        self.numbered |= record.mac_version == MAC_V2;
        if record.seq != self.expected_seq {
            return Err(Verdict::Gap {
                expected: self.expected_seq,
                found: record.seq,
            });
        }
        if !constant_time_eq(prev, &self.expected_prev) {
            return Err(Verdict::Deleted { before_seq: record.seq });
        }
        if record.at_ms < self.latest_ms.saturating_sub(CLOCK_SKEW_MS) {
            return Err(Verdict::TimeBackwards { seq: record.seq });
        }
        self.see_head(record.seq, mac)?;
        self.latest_ms = self.latest_ms.max(record.at_ms);
        self.expected_prev.clone_from(mac);
        self.expected_seq += 1;
        self.events += 1;
        Ok(())
    }

    /// After the newest event: whether the recorded head was among the events.
    pub fn finish(self) -> Verdict {
        match &self.head {
            Some(head) if !self.head_seen => Verdict::HeadMissing {
                seq: head.seq,
                newest: self.expected_seq - 1,
            },
            _ => Verdict::Intact { events: self.events },
        }
    }

    fn see_head(&mut self, seq: i64, mac: &[u8]) -> Result<(), Verdict> {
        match &self.head {
            Some(head) if head.seq == seq => {
                if !constant_time_eq(mac, &head.mac) {
                    return Err(Verdict::HeadDiffers { seq });
                }
                self.head_seen = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Where pruning cuts: the last event to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub seq: i64,
    pub at_ms: i64,
    pub mac: Vec<u8>,
}

impl Cut {
    pub fn at(record: &AuditRecord) -> Self {
        Self {
            seq: record.seq,
            at_ms: record.at_ms,
            mac: record.mac.clone().unwrap_or_default(),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole of `events` through a [`Checker`], as `twofold audit verify` runs it page by page.
    fn verify(keys: &Keys, anchor: Option<&AuditAnchor>, events: &[AuditRecord], head: Option<&Head>) -> Verdict {
        let mut checker = match Checker::new(keys, anchor, head) {
            Ok(checker) => checker,
            Err(verdict) => return verdict,
        };
        for record in events {
            if let Err(verdict) = checker.check(record) {
                return verdict;
            }
        }
        checker.finish()
    }

    fn record(seq: i64, at_ms: i64, prev: &[u8]) -> AuditRecord {
        AuditRecord {
            id: seq,
            seq,
            at_ms,
            flow_id: Some("flow".into()),
            user_id: Some(7),
            username: Some("alice".into()),
            client_addr: Some("127.0.0.1".into()),
            user_agent: None,
            event: "login".into(),
            method: None,
            outcome: "success".into(),
            prev_mac: Some(prev.to_vec()),
            mac: None,
            mac_version: MAC_V2,
        }
    }

    /// Events numbered 1..=n, one second apart, sealed as the store seals them.
    fn chain(keys: &Keys, n: i64) -> Vec<AuditRecord> {
        let mut prev = Vec::new();
        (1..=n)
            .map(|seq| {
                let mut record = record(seq, 1_000 * seq, &prev);
                reseal(keys, &mut record);
                prev = record.mac.clone().unwrap_or_default();
                record
            })
            .collect()
    }

    fn reseal(keys: &Keys, record: &mut AuditRecord) {
        let prev = record.prev_mac.clone().unwrap_or_default();
        record.mac = Some(event_mac(keys, record.seq, &prev, &Content::of(record)));
    }

    fn anchor_after(keys: &Keys, last: &AuditRecord) -> AuditAnchor {
        let last_mac = last.mac.clone().unwrap_or_default();
        AuditAnchor {
            last_id: last.id,
            last_seq: last.seq,
            last_at_ms: last.at_ms,
            mac: anchor_mac(keys, last.seq, last.at_ms, &last_mac),
            last_mac,
            version: MAC_V2,
        }
    }

    #[test]
    fn finds_edits_insertions_and_deletions() {
        let keys = Keys::from_master(&[3; 32]);
        let events = chain(&keys, 5);
        assert_eq!(verify(&keys, None, &events, None), Verdict::Intact { events: 5 });

        let mut edited = events.clone();
        edited[2].outcome = "invalid_credentials".into();
        assert_eq!(verify(&keys, None, &edited, None), Verdict::Altered { seq: 3 });

        let mut deleted = events.clone();
        deleted.remove(1);
        assert_eq!(
            verify(&keys, None, &deleted, None),
            Verdict::Gap { expected: 2, found: 3 }
        );
        // Renumbering after the deletion to close the gap breaks the MACs, which cover the numbers.
        for record in &mut deleted[1..] {
            record.seq -= 1;
            record.id -= 1;
        }
        assert_eq!(verify(&keys, None, &deleted, None), Verdict::Altered { seq: 2 });

        let mut inserted = events.clone();
        let mut forged = inserted[1].clone();
        forged.id = 10;
        forged.prev_mac = inserted[1].mac.clone();
        inserted.insert(2, forged);
        assert_eq!(verify(&keys, None, &inserted, None), Verdict::Altered { seq: 2 });

        let other = Keys::from_master(&[4; 32]);
        assert_eq!(verify(&other, None, &events, None), Verdict::Altered { seq: 1 });
    }

    #[test]
    fn a_time_far_before_an_earlier_events_is_reported() {
        let keys = Keys::from_master(&[3; 32]);
        let mut events = chain(&keys, 4);
        // Within the skew an event may be older than the one before it (requests finish in any order).
        events[2].at_ms = events[1].at_ms - CLOCK_SKEW_MS;
        reseal(&keys, &mut events[2]);
        events[3].prev_mac = events[2].mac.clone();
        reseal(&keys, &mut events[3]);
        assert_eq!(verify(&keys, None, &events, None), Verdict::Intact { events: 4 });
        // Even with the key (a server whose clock jumped back), more than the skew is reported.
        events[2].at_ms -= 1;
        reseal(&keys, &mut events[2]);
        events[3].prev_mac = events[2].mac.clone();
        reseal(&keys, &mut events[3]);
        assert_eq!(verify(&keys, None, &events, None), Verdict::TimeBackwards { seq: 3 });
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_anchor() {
        let keys = Keys::from_master(&[3; 32]);
        let events = chain(&keys, 5);
        let anchor = anchor_after(&keys, &events[1]);
        assert_eq!(
            verify(&keys, Some(&anchor), &events[2..], None),
            Verdict::Intact { events: 3 }
        );
        assert_eq!(
            verify(&keys, Some(&anchor), &events[3..], None),
            Verdict::Gap { expected: 3, found: 4 }
        );
        let forged = AuditAnchor {
            last_seq: 3,
            ..anchor.clone()
        };
        assert_eq!(verify(&keys, Some(&forged), &events[2..], None), Verdict::AnchorAltered);
    }

    #[test]
    fn events_from_before_numbering_verify_and_cannot_follow_numbered_ones() {
        let keys = Keys::from_master(&[3; 32]);
        let mut prev = Vec::new();
        let mut events: Vec<AuditRecord> = (1..=3)
            .map(|seq| {
                let mut old = record(seq, 1_000 * seq, &prev);
                old.mac_version = MAC_V1;
                old.mac = Some(event_mac_v1(&keys, &prev, &Content::of(&old)));
                prev = old.mac.clone().unwrap_or_default();
                old
            })
            .collect();
        let mut new = record(4, 4_000, &prev);
        reseal(&keys, &mut new);
        events.push(new);
        assert_eq!(verify(&keys, None, &events, None), Verdict::Intact { events: 4 });
        // An old event moved after a numbered one no longer verifies.
        let mut moved = events.clone();
        let mut old = events[0].clone();
        old.seq = 5;
        moved.push(old);
        assert_eq!(verify(&keys, None, &moved, None), Verdict::Altered { seq: 5 });
        // An anchor written before numbering still vouches for the chain after it.
        let last_mac = events[0].mac.clone().unwrap_or_default();
        let old_anchor = AuditAnchor {
            last_id: 1,
            last_seq: 0,
            last_at_ms: 0,
            mac: anchor_mac_v1(&keys, 1, &last_mac),
            last_mac,
            version: MAC_V1,
        };
        let mut renumbered = events[1..].to_vec();
        for record in &mut renumbered[..2] {
            record.seq -= 1;
        }
        renumbered[2].seq = 3;
        renumbered[2].prev_mac = renumbered[1].mac.clone();
        reseal(&keys, &mut renumbered[2]);
        assert_eq!(
            verify(&keys, Some(&old_anchor), &renumbered, None),
            Verdict::Intact { events: 3 }
        );
    }

    #[test]
    fn a_recorded_head_reveals_a_cut_off_end() {
        let keys = Keys::from_master(&[3; 32]);
        let events = chain(&keys, 5);
        let head = |record: &AuditRecord| Head {
            seq: record.seq,
            mac: record.mac.clone().unwrap_or_default(),
        };
        let recorded = head(&events[3]);
        assert_eq!(Head::parse(&recorded.to_string()), Some(recorded.clone()));
        assert_eq!(
            verify(&keys, None, &events, Some(&recorded)),
            Verdict::Intact { events: 5 }
        );
        assert_eq!(
            verify(&keys, None, &events[..3], Some(&recorded)),
            Verdict::HeadMissing { seq: 4, newest: 3 }
        );
        let other = Head {
            mac: vec![0; 32],
            ..recorded.clone()
        };
        assert_eq!(
            verify(&keys, None, &events, Some(&other)),
            Verdict::HeadDiffers { seq: 4 }
        );
        // Pruned past the head: the anchor still matches it when it was the last pruned event.
        let anchor = anchor_after(&keys, &events[3]);
        assert_eq!(
            verify(&keys, Some(&anchor), &events[4..], Some(&recorded)),
            Verdict::Intact { events: 1 }
        );
        for bad in ["", "4", "0:ab", "x:ab", "4:", "4:zz"] {
            assert_eq!(Head::parse(bad), None, "{bad:?}");
        }
    }
}
