//! Accepting connections and keeping each one honest. A client that opens a socket and sends nothing, trickles a
//! request's header a byte at a time, or stops reading its answer must not hold a file descriptor for ever: with
//! about a thousand of them a process runs out and stops answering everyone. So every connection is watched at the
//! byte level ([`Watched`]):
//!
//! - **header**: from the first byte of a request until its header has been read (the handler is called), at most
//!   `header_read_timeout`;
//! - **idle**: no byte read or written for `keep_alive_timeout` while no handler is running (an idle keep-alive
//!   connection, a client that does not read its answer) closes the connection;
//! - **body**: reading a request's body is bounded by `body_read_timeout`, where the body is read (see
//!   `service::around_requests`).
//!
//! And at most `max_connections` are open at once: past that, new connections wait in the kernel's queue until one
//! ends (the timeouts above make sure one soon does), and the log says so. The file-descriptor limit is raised to
//! the hard limit at start, and the cap lowered to what that limit allows.
//!
//! HTTP/1.1 only: reverse proxies and API clients speak it to upstreams, and one protocol keeps one set of rules.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// The limits on connections, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub max_connections: usize,
}

/// File descriptors kept back from the connection cap: the database pool, the listener, logs, the SMS client.
const DESCRIPTORS_KEPT: u64 = 64;

/// Raises the soft file-descriptor limit to the hard one where the system allows, and returns the connection cap
/// that fits under it (never more than asked for).
fn fit_to_descriptor_limit(wanted: usize, database_pool: u32) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the file-descriptor limit; keeping max_connections as set");
            return wanted;
        }
    };
    let room = limit.saturating_sub(DESCRIPTORS_KEPT + u64::from(database_pool));
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            descriptor_limit = limit,
            serving = room,
            "the file-descriptor limit (ulimit -n) is too low for max_connections; serving at most {room} \
             connections at once. Raise the limit (LimitNOFILE= in a systemd unit) or lower max_connections."
        );
    }
    room.min(wanted)
}

/// How often the log may say that the connection cap is reached.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in flight finish (for up to ten
/// seconds).
pub async fn serve(
    router: Router,
    listener: TcpListener,
    limits: ConnectionLimits,
    database_pool: u32,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = fit_to_descriptor_limit(limits.max_connections, database_pool);
    let permits = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header timeout is [`Watched`]'s, counted from the first byte rather than from when the server started
    // waiting, so that an idle keep-alive connection is governed by `keep_alive_timeout` alone.
    http.header_read_timeout(None);
    let mut last_cap_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics.connection_cap_reached();
                if last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
                    last_cap_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = cap,
                        "the connection cap is reached: new connections wait until one closes (idle ones close \
                         after keep_alive_timeout, slow ones after header_read_timeout)"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small answers go out at once rather than waiting for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched::new(stream, activity.clone(), limits));
        let service = TowerToHyperService::new(Tracked {
            router: router.clone(),
            activity,
            peer,
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.connection_opened();
            // A connection that ends in an error (a timeout, a reset) has nothing left to answer.
            let _ = connection.await;
            metrics.connection_closed();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy ten seconds after the shutdown began; closing them");
    }
    Ok(())
}

/// An `accept` that failed: a connection reset before it was accepted is nothing; running out of file descriptors
/// (or memory) is waited out rather than spun on.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        error.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    ) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Where a connection is in its current request.
const IDLE: u8 = 0;
/// Bytes of a request have arrived; its header is not complete yet.
const READING_HEAD: u8 = 1;
/// A handler is running.
const BUSY: u8 = 2;

/// What one connection is doing, shared by its byte stream ([`Watched`]) and its request handler ([`Tracked`]),
/// which run in the same task (atomics only because the task may move between threads).
struct Activity {
    phase: AtomicU8,
    /// When the current request's first byte arrived (milliseconds since `epoch`).
    head_since: AtomicU64,
    /// When a byte was last read or written.
    last: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(IDLE),
            head_since: AtomicU64::new(0),
            last: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }

    fn read_bytes(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.head_since.store(now, Ordering::Relaxed);
            self.phase.store(READING_HEAD, Ordering::Relaxed);
        }
    }

    fn wrote_bytes(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    fn handler_started(&self) {
        self.phase.store(BUSY, Ordering::Relaxed);
    }

    fn handler_finished(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.phase.store(IDLE, Ordering::Relaxed);
    }

    /// When the connection must have made progress by; `None` while a handler runs (handlers have their own
    /// timeout).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let idle = self.at(self.last.load(Ordering::Relaxed)) + limits.keep_alive_timeout;
        match self.phase.load(Ordering::Relaxed) {
            IDLE => Some(idle),
            READING_HEAD => {
                let head = self.at(self.head_since.load(Ordering::Relaxed)) + limits.header_read_timeout;
                Some(idle.min(head))
            }
            _ => None,
        }
    }
}

/// A TCP stream that fails with `TimedOut` once its connection stops making progress (see the module's
/// introduction), which makes hyper close it.
struct Watched {
    stream: TcpStream,
    /// Boxed so the stream stays `Unpin`, as hyper wants its connections.
    timer: Pin<Box<Sleep>>,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
}

impl Watched {
    fn new(stream: TcpStream, activity: Arc<Activity>, limits: ConnectionLimits) -> Self {
        let timer = Box::pin(tokio::time::sleep(limits.keep_alive_timeout));
        Self {
            stream,
            timer,
            activity,
            limits,
        }
    }
}

/// Called when the stream has nothing to read or no room to write: fails once the deadline has passed, else makes
/// sure the task is woken at the deadline to check again.
fn overdue(timer: &mut Pin<Box<Sleep>>, activity: &Activity, limits: &ConnectionLimits, cx: &mut Context<'_>) -> bool {
    let Some(deadline) = activity.deadline(limits) else {
        return false;
    };
    if Instant::now() >= deadline {
        return true;
    }
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    // Registers the waker; the deadline is in the future, so this is pending (or the clock just passed it, and the
    // next poll finds it overdue).
    let _ = timer.as_mut().poll(cx);
    false
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "the connection made no progress in time")
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.read_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if overdue(&mut this.timer, &this.activity, &this.limits, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.activity.wrote_bytes();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if overdue(&mut this.timer, &this.activity, &this.limits, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.activity.wrote_bytes();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if overdue(&mut this.timer, &this.activity, &this.limits, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router for one connection: tells [`Activity`] when a handler runs, and gives handlers the peer's address.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

impl tower::Service<hyper::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Handled<<Router as tower::Service<hyper::Request<Incoming>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<hyper::Request<Incoming>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: hyper::Request<Incoming>) -> Self::Future {
        self.activity.handler_started();
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Handled {
            inner: tower::Service::call(&mut self.router, request),
            activity: self.activity.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A handler's future that marks the connection idle again when it finishes.
    struct Handled<F> {
        #[pin]
        inner: F,
        activity: Arc<Activity>,
    }
}

impl<F: Future> Future for Handled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        this.activity.handler_finished();
        Poll::Ready(output)
    }
}
