//! Prometheus metrics: sign-ins and second-factor checks by method and outcome, SMS sends and their failures,
//! second-factor locks, and request latency by route. Counters are fed from the audit events (every step writes
//! one), so the metrics count exactly what the trail records. Each server has its own registry: no globals.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
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
        Self {
            registry,
            logins,
            checks,
            sms_sends,
            locks,
            events,
            requests,
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
            Event::SecondFactor | Event::TotpConfirm | Event::TotpRemove | Event::SmsConfirm => {
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

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .observe(seconds);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
