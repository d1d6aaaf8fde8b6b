//! The load generator's two modes, both on the benchmark's single thread: closed loop (N connections, each sending
//! its next request as soon as the last was answered: throughput) and open loop (requests at a fixed rate, latency
//! counted from when each was due, so a slow answer delays no measurement: no coordinated omission).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::{join_all, try_join_all};

use crate::client::Connection;

/// What one iteration of a workload came to.
pub enum Step {
    /// Answered as expected.
    Done,
    /// Answered otherwise; the text says how.
    Refused(String),
    /// Nothing left to send (every prepared sign-in or user of this step is used).
    Exhausted,
}

/// One unit of work (a request, or the two of a login) on a connection.
pub trait Workload {
    async fn iterate(&self, connection: &mut Connection) -> anyhow::Result<Step>;
}

/// A warm-up whose iterations are not counted, then the measuring window.
#[derive(Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// What a run measured: the iterations that ended inside the window (after the warm-up).
pub struct Measured {
    pub completed: u64,
    pub seconds: f64,
    /// Microseconds, sorted.
    latencies: Vec<u64>,
    /// Refused iterations and broken connections over the whole run, warm-up included.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.completed as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The `q` quantile of latency in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let at = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[at] as f64 / 1000.0
    }

    pub fn p50(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub fn p99(&self) -> f64 {
        self.quantile_ms(0.99)
    }
}

struct Recorder {
    from: Instant,
    until: Instant,
    latencies: Vec<u64>,
    last_done: Option<Instant>,
    exhausted: bool,
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    fn new(window: Window) -> Self {
        let from = Instant::now() + window.warmup;
        Self {
            from,
            until: from + window.measure,
            latencies: Vec::new(),
            last_done: None,
            exhausted: false,
            errors: 0,
            first_error: None,
        }
    }

    /// `due` is when the iteration was sent (closed loop) or should have been (open loop).
    fn record(&mut self, due: Instant, outcome: anyhow::Result<Step>) {
        let done = Instant::now();
        match outcome {
            Ok(Step::Done) => {
                if done >= self.from && done <= self.until {
                    self.latencies.push((done - due).as_micros() as u64);
                    self.last_done = Some(done);
                }
            }
            Ok(Step::Exhausted) => self.exhausted = true,
            Ok(Step::Refused(why)) => self.error(why),
            Err(error) => self.error(format!("{error:#}")),
        }
    }

    fn error(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    /// The loop should stop: the window is over, the work is used up, or the connection broke.
    fn stop(&self, broken: bool) -> bool {
        broken || self.exhausted || Instant::now() >= self.until
    }

    fn finish(mut self) -> Measured {
        self.latencies.sort_unstable();
        // A run that used up its work early is measured up to its last answer, not over the whole window.
        let end = match (self.exhausted, self.last_done) {
            (true, Some(last)) => last,
            _ => self.until,
        };
        Measured {
            completed: self.latencies.len() as u64,
            seconds: end.saturating_duration_since(self.from).as_secs_f64(),
            latencies: self.latencies,
            errors: self.errors,
            first_error: self.first_error,
        }
    }
}

async fn open_connections(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<Connection>> {
    try_join_all((0..count).map(|_| Connection::open(addr))).await
}

/// `connections` connections, each running `workload` back to back until the window ends.
pub async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    window: Window,
    workload: &impl Workload,
) -> anyhow::Result<Measured> {
    let connections = open_connections(addr, connections).await?;
    let recorder = RefCell::new(Recorder::new(window));
    join_all(connections.into_iter().map(|mut connection| {
        let recorder = &recorder;
        async move {
            let mut broken = false;
            while !recorder.borrow().stop(broken) {
                let sent = Instant::now();
                let outcome = workload.iterate(&mut connection).await;
                broken = outcome.is_err();
                recorder.borrow_mut().record(sent, outcome);
            }
        }
    }))
    .await;
    Ok(recorder.into_inner().finish())
}

/// `rate` iterations per second spread over `connections` connections, each iteration's latency counted from when it
/// was due.
pub async fn open_loop(
    addr: SocketAddr,
    connections: usize,
    rate: f64,
    window: Window,
    workload: &impl Workload,
) -> anyhow::Result<Measured> {
    let connections = open_connections(addr, connections).await?;
    let start = tokio::time::Instant::now();
    let recorder = RefCell::new(Recorder::new(window));
    let next = Cell::new(0u64);
    join_all(connections.into_iter().map(|mut connection| {
        let (recorder, next) = (&recorder, &next);
        async move {
            let mut broken = false;
            while !recorder.borrow().stop(broken) {
                let index = next.get();
                next.set(index + 1);
                let due = start + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(due).await;
                let outcome = workload.iterate(&mut connection).await;
                broken = outcome.is_err();
                recorder.borrow_mut().record(due.into_std(), outcome);
            }
        }
    }))
    .await;
    Ok(recorder.into_inner().finish())
}
