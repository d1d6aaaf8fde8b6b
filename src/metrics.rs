//! Prometheus metrics: sign-ins and second-factor checks by method and outcome, SMS sends and their failures,
//! second-factor locks, and request latency by route. Counters are fed from the audit events (every step writes
//! one), so the metrics count exactly what the trail records. Each server has its own registry: no globals.

use prometheus_client::encoding::text::encode;
use std::fmt::Write;

use axum::extract::MatchedPath;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::audit::{AuditEvent, Event, Outcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
    outcome: &'static str,
}

/// Every label of the request histogram comes from a closed set, so no client can make the registry grow: the method
/// is one of the standard ones or `OTHER`, the route a pattern of the router (or `unmatched`), the status one the
/// handlers answer with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    route: RouteLabel,
    status: u16,
}

/// A request's method as a label: the nine of RFC 9110 and PATCH, or `OTHER` for any method a client made up.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum MethodLabel {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    PATCH,
    OPTIONS,
    CONNECT,
    TRACE,
    OTHER,
}

impl MethodLabel {
    pub fn of(method: &axum::http::Method) -> Self {
        use axum::http::Method as M;
        match *method {
            M::GET => Self::GET,
            M::HEAD => Self::HEAD,
            M::POST => Self::POST,
            M::PUT => Self::PUT,
            M::DELETE => Self::DELETE,
            M::PATCH => Self::PATCH,
            M::OPTIONS => Self::OPTIONS,
            M::CONNECT => Self::CONNECT,
            M::TRACE => Self::TRACE,
            _ => Self::OTHER,
        }
    }
}

/// The route pattern that served a request (`/auth/session`), never the raw path, or `unmatched`. Holding the
/// router's own `MatchedPath` costs a reference count, not a copy of the text.
#[derive(Clone, Debug)]
pub struct RouteLabel(Option<MatchedPath>);

impl RouteLabel {
    pub fn new(route: Option<&MatchedPath>) -> Self {
        Self(route.cloned())
    }

    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    logins: Family<OutcomeLabels, Counter>,
    checks: Family<CheckLabels, Counter>,
    sms_sends: Family<OutcomeLabels, Counter>,
    locks: Counter,
    events: Family<EventLabels, Counter>,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    connections: Gauge,
    connection_cap_reached: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let logins = Family::<OutcomeLabels, Counter>::default();
        let checks = Family::<CheckLabels, Counter>::default();
        let sms_sends = Family::<OutcomeLabels, Counter>::default();
        let locks = Counter::default();
        let events = Family::<EventLabels, Counter>::default();
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "twofold_logins",
            "Password steps of sign-ins, by outcome",
            logins.clone(),
        );
        registry.register(
            "twofold_second_factor_checks",
            "Second-factor code checks, by method and outcome",
            checks.clone(),
        );
        registry.register("twofold_sms_sends", "SMS code sends, by outcome", sms_sends.clone());
        registry.register(
            "twofold_second_factor_locks",
            "Times an account's second factor was locked after repeated failures",
            locks.clone(),
        );
        registry.register(
            "twofold_audit_events",
            "Audit events written, by event and outcome",
            events.clone(),
        );
        registry.register(
            "twofold_http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route and status",
            requests.clone(),
        );
        let connections = Gauge::default();
        registry.register("twofold_http_connections", "Open HTTP connections", connections.clone());
        let connection_cap_reached = Counter::default();
        registry.register(
            "twofold_http_connection_cap_reached",
            "Times a new connection had to wait because max_connections were open",
            connection_cap_reached.clone(),
        );
        Self {
            registry,
            logins,
            checks,
            sms_sends,
            locks,
            events,
            requests,
            connections,
            connection_cap_reached,
        }
    }
}

impl Metrics {
    /// Counts an audit event in the metrics it belongs to.
    pub fn observe(&self, event: &AuditEvent) {
        let outcome = event.outcome.as_str();
        self.events
            .get_or_create(&EventLabels {
                event: event.event.as_str(),
                outcome,
            })
            .inc();
        match event.event {
            Event::Login => {
                self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
            }
            Event::SecondFactor
            | Event::TotpConfirm
            | Event::TotpRemove
            | Event::SmsConfirm
            | Event::SmsRemove
            | Event::StepUp => {
                let method = event.method.unwrap_or("none");
                self.checks.get_or_create(&CheckLabels { method, outcome }).inc();
            }
            Event::SmsSend | Event::SmsSetup => {
                self.sms_sends.get_or_create(&OutcomeLabels { outcome }).inc();
            }
            _ => {}
        }
        if event.outcome == Outcome::LockEngaged {
            self.locks.inc();
        }
    }

    pub fn observe_request(&self, method: MethodLabel, route: RouteLabel, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { method, route, status })
            .observe(seconds);
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn connection_cap_reached(&self) {
        self.connection_cap_reached.inc();
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
