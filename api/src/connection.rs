//! One HTTP connection: served by hyper, closed once idle too long, shut down gracefully (the
//! response in flight finishes) when the server drains.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Why a connection ended: the label of `connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client closed it, or a response said `Connection: close`, or the server drained it.
    Closed,
    /// No request in flight and no byte moved for the keep-alive timeout.
    Idle,
    /// A request head took longer than the header-read timeout.
    HeaderTimeout,
    /// Broken by the client (reset, malformed HTTP) or by a failed write.
    Error,
}

impl Ended {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Idle => "idle",
            Ended::HeaderTimeout => "header_timeout",
            Ended::Error => "error",
        }
    }
}

/// Serves `stream` with `router` until the client leaves, a limit closes it, or — after
/// `shutdown` — its response in flight is sent.
pub(crate) async fn serve(
    stream: TcpStream,
    router: Router,
    http: http1::Builder,
    keep_alive: Duration,
    shutdown: CancellationToken,
) -> Ended {
    // Responses are written whole or streamed in large chunks: Nagle would only delay the last
    // segment of each.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let handling = activity.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let busy = handling.begin();
        let response = router.clone().oneshot(request.map(Body::new));
        async move {
            let response = response.await;
            drop(busy);
            response
        }
    });
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    // Dropping the connection future closes the socket: what the idle limit does, since an idle
    // connection has nothing to finish and a stalled one will not finish.
    tokio::select! {
        result = connection.as_mut() => ended(result),
        () = activity.idle_for(keep_alive) => Ended::Idle,
        () = shutdown.cancelled() => {
            // Idle connections close now; one in the middle of a response closes after it.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => ended(result),
                () = activity.idle_for(keep_alive) => Ended::Idle,
            }
        }
    }
}

fn ended(result: Result<(), hyper::Error>) -> Ended {
    match result {
        Ok(()) => Ended::Closed,
        // hyper's only timer on an HTTP/1 server connection is the header-read timeout.
        Err(e) if e.is_timeout() => Ended::HeaderTimeout,
        Err(e) => {
            tracing::debug!(error = %e, "connection ended with an error");
            Ended::Error
        }
    }
}

/// When a connection last moved a byte, and whether a request is being handled: what the idle
/// limit looks at.
struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last byte read or written or request begun or ended.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Marks a request as being handled until the guard drops (when its response head is ready;
    /// its body then moves bytes, which count as activity).
    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    /// Resolves once no request has been handled and no byte has moved for `limit`. A request
    /// being handled is bounded by the response timeout, not by this.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let deadline = self.last() + limit;
            let now = Instant::now();
            if self.busy.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep_until(now + limit).await;
            } else if now >= deadline {
                return;
            } else {
                tokio::time::sleep_until(deadline).await;
            }
        }
    }
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that records its activity on every byte read or written.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_limit_after_the_last_activity_and_never_while_busy() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_secs(5);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        activity.touch();
        activity.idle_for(limit).await;
        assert_eq!(started.elapsed(), Duration::from_secs(8));

        let busy = activity.begin();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(limit).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "idle while a request was handled");
        let ended = Instant::now();
        drop(busy);
        waiting.await.unwrap();
        assert!(ended.elapsed() >= limit, "{:?}", ended.elapsed());
        assert!(ended.elapsed() <= limit * 2, "{:?}", ended.elapsed());
    }
}
