//! The server's connections, below the routes: accepting, per-connection time limits, a cap on open
//! connections, and a shutdown that drains for a bounded time.
//!
//! hyper serves each connection (HTTP/1.1, keep-alive); around it every connection is in one [`Phase`],
//! driven by the bytes it reads and by the requests it carries, and closed when it stays too long:
//! - `Idle` (no request in flight, nothing of the next one read) longer than the idle timeout;
//! - `ReadingHead` (the next request's first bytes read, the head not complete) longer than the header
//!   timeout, which stops slowloris clients and unfinished heads;
//! - `Busy` requests have their own limits (the body read timeout, the generation timeout).
//!
//! At the connection cap (derived from the process's open-file limit unless given), a new connection
//! closes the longest-idle one; when none is idle it is answered 503 and closed. On shutdown the listener
//! closes, idle connections close at once, and requests in flight get the drain time to finish; whatever
//! is left then is closed, whatever clients hold open.
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection-level limits (`nanochat serve` flags).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectionLimits {
    /// Longest time from a request's first byte to its complete head.
    pub header_timeout: Duration,
    /// Longest time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long requests in flight may finish after a shutdown signal.
    pub drain_timeout: Duration,
}

/// File descriptors kept free for the model, logs and the process itself when the cap is derived.
const RESERVED_FDS: u64 = 64;

/// A cap on connections that fits the process's open-file limit (soft RLIMIT_NOFILE), at most 4096.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur } else { 1024 };
    soft.saturating_sub(RESERVED_FDS).clamp(16, 4096) as usize
}

/// Where a connection stands, and since when (ms on the server's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle { since: u64 },
    ReadingHead { since: u64 },
    Busy { requests: usize },
}

/// One connection's phase, shared by its byte stream, its requests' bodies and the server.
struct Activity {
    phase: Mutex<Phase>,
    clock: Arc<Clock>,
    close: tokio::sync::Notify,
    /// Chosen to make room at the cap (so the next choice is another connection).
    evicted: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn update(&self, f: impl FnOnce(Phase, u64) -> Phase) {
        if let Ok(mut phase) = self.phase.lock() {
            *phase = f(*phase, self.clock.now_ms());
        }
    }

    fn phase(&self) -> Phase {
        self.phase.lock().map(|p| *p).unwrap_or(Phase::Busy { requests: 1 })
    }

    /// When the current phase runs out, if it can.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<u64> {
        match self.phase() {
            Phase::Idle { since } => Some(since + limits.idle_timeout.as_millis() as u64),
            Phase::ReadingHead { since } => Some(since + limits.header_timeout.as_millis() as u64),
            Phase::Busy { .. } => None,
        }
    }
}

/// Milliseconds since the server started.
struct Clock(Instant);

impl Clock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    fn instant(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// The open connections, for the cap.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn len(&self) -> usize {
        self.open.lock().map_or(0, |m| m.len())
    }

    /// Asks the connection idle the longest to close; false when none is idle.
    fn close_longest_idle(&self) -> bool {
        let Ok(open) = self.open.lock() else { return false };
        let oldest = open
            .values()
            .filter(|a| !a.evicted.load(Ordering::Relaxed))
            .filter_map(|a| match a.phase() {
                Phase::Idle { since } => Some((since, a)),
                _ => None,
            })
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, activity)) => {
                activity.evicted.store(true, Ordering::Relaxed);
                activity.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at most `limits.drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let clock = Arc::new(Clock(Instant::now()));
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: free one and try again shortly.
                    log::warn!("accept failed: {e}; closing the longest-idle connection");
                    registry.close_longest_idle();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        if registry.len() >= limits.max_connections && !registry.close_longest_idle() {
            tasks.spawn(refuse_busy(stream));
            continue;
        }
        let activity = Arc::new(Activity {
            phase: Mutex::new(Phase::Idle { since: clock.now_ms() }),
            clock: clock.clone(),
            close: tokio::sync::Notify::new(),
            evicted: Default::default(),
        });
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = registry.open.lock() {
            open.insert(id, activity.clone());
        }
        let (app, registry, stop) = (app.clone(), registry.clone(), stop_rx.clone());
        tasks.spawn(async move {
            serve_connection(stream, peer, app, activity, limits, stop).await;
            if let Ok(mut open) = registry.open.lock() {
                open.remove(&id);
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = registry.len();
    if open > 0 {
        log::info!("shutting down: {open} connection(s) open, up to {} s to finish", limits.drain_timeout.as_secs());
    }
    let drained = tokio::time::timeout(limits.drain_timeout, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        log::warn!("{} connection(s) still open after the drain time; closing them", registry.len());
        tasks.shutdown().await;
    }
}

/// A connection over the cap while every open one is busy: one 503 and close.
async fn refuse_busy(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = super::error::ApiError::busy(1, "too many open connections; try again").body().to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let io = TokioIo::new(TrackedStream { inner: stream, activity: activity.clone() });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let (app, activity) = (app.clone(), service_activity.clone());
        async move {
            activity.update(|phase, _| match phase {
                Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
                _ => Phase::Busy { requests: 1 },
            });
            let in_flight = RequestInFlight(activity);
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = app.oneshot(request.map(Body::new)).await.unwrap_or_else(|never| match never {});
            // The request stays in flight until its response body (a stream included) is done or dropped.
            Ok::<_, Infallible>(hold_until_body_ends(response, in_flight))
        }
    });
    // The header and idle limits are this module's (hyper's own header timer also runs while idle).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits).map(|ms| activity.clock.instant(ms));
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut connection => return,
            _ = timer => {
                if activity.deadline(&limits).is_some_and(|ms| ms <= activity.clock.now_ms()) {
                    return; // idle or head too long: dropping the connection closes it
                }
            }
            _ = activity.close.notified() => {
                if matches!(activity.phase(), Phase::Idle { .. }) {
                    return;
                }
                activity.evicted.store(false, Ordering::Relaxed); // a request arrived first: it stays
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_err() || !matches!(activity.phase(), Phase::Busy { .. }) {
                    return;
                }
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// `response` with `guard` dropped when its body (a stream included) ends or is dropped.
pub(super) fn hold_until_body_ends(response: Response, guard: impl Send + 'static) -> Response {
    let (parts, body) = response.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _ = &guard;
        chunk
    }));
    Response::from_parts(parts, body)
}

/// Held by a response body: its request is in flight until the body is done or dropped.
struct RequestInFlight(Arc<Activity>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.0.update(|phase, now| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy { requests: requests - 1 },
            _ => Phase::Idle { since: now },
        });
    }
}

/// The TCP stream, telling the connection's [`Activity`] when the next request's first bytes arrive.
struct TrackedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.update(|phase, now| match phase {
                Phase::Idle { .. } => Phase::ReadingHead { since: now },
                other => other,
            });
        }
        result
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cap_leaves_room_under_the_file_limit() {
        let cap = default_max_connections();
        assert!((16..=4096).contains(&cap), "{cap}");
    }

    #[test]
    fn phases_give_the_deadlines_of_their_limits() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(7),
            max_connections: 4,
            drain_timeout: Duration::from_secs(1),
        };
        let activity = Activity {
            phase: Mutex::new(Phase::Idle { since: 100 }),
            clock: Arc::new(Clock(Instant::now())),
            close: tokio::sync::Notify::new(),
            evicted: Default::default(),
        };
        assert_eq!(activity.deadline(&limits), Some(7100));
        *activity.phase.lock().unwrap() = Phase::ReadingHead { since: 200 };
        assert_eq!(activity.deadline(&limits), Some(3200));
        *activity.phase.lock().unwrap() = Phase::Busy { requests: 1 };
        assert_eq!(activity.deadline(&limits), None);
    }
}
