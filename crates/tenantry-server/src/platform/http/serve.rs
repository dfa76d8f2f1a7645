//! The HTTP/1.1 server loop: hyper under the router, with the protections a public listener
//! needs and `axum::serve` does not give.
//!
//! - **Timeouts.** A request head must arrive within `header_timeout_ms` of its first byte (else
//!   `408`), a keep-alive connection with no request for `idle_timeout_ms` is closed, and a request
//!   body that delivers nothing for `body_timeout_ms` fails the extractor reading it (`408`).
//! - **A bound on open connections** (`max_connections`): past it, a new connection gets `503`
//!   with `Retry-After` and is closed.
//! - **Problem+JSON for hyper's own answers.** hyper answers a request it cannot parse (`400`,
//!   `414`, `431`) before the router sees it, with an empty body. The connection wrapper
//!   recognises those (a response written while no request is in the service) and sends a
//!   problem in their place.
//! - **Lingering close.** When a connection closes with a request body still arriving (a `413`
//!   answered before the body was read), the rest is read and discarded, up to a bound, so a
//!   client that writes its whole body before reading gets the answer instead of a reset.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::problem::Kind;
use crate::config::{ConfigError, invalid};

/// `[http]`: the listener's limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Milliseconds a request head (request line and headers) may take from its first byte.
    pub header_timeout_ms: u64,
    /// Milliseconds a request body may go without delivering a byte.
    pub body_timeout_ms: u64,
    /// Milliseconds a keep-alive connection may wait for its next request.
    pub idle_timeout_ms: u64,
    /// Connections open at once; more are answered `503` and closed.
    pub max_connections: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
        }
    }
}

/// Environment variables of this section: (`TENANTRY_` + name, key path).
pub const ENV: &[(&str, &str)] = &[
    ("http_header_timeout_ms", "http.header_timeout_ms"),
    ("http_body_timeout_ms", "http.body_timeout_ms"),
    ("http_idle_timeout_ms", "http.idle_timeout_ms"),
    ("http_max_connections", "http.max_connections"),
];

impl HttpConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, ms) in [
            ("http.header_timeout_ms", self.header_timeout_ms),
            ("http.body_timeout_ms", self.body_timeout_ms),
            ("http.idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&ms) {
                return Err(invalid(key, "must be between 100 and 3600000 (one hour)"));
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(invalid(
                "http.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        Ok(())
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            header: Duration::from_millis(self.header_timeout_ms),
            idle: Duration::from_millis(self.idle_timeout_ms),
        }
    }
}

/// hyper's read buffer, which bounds a request head: a 64 KiB URI still fits (hyper answers
/// `414` past 65 534 bytes), more headers than this do not (`431`).
const MAX_HEAD_BYTES: usize = 128 * 1024;
/// Header fields in one request (hyper answers `431` past it).
const MAX_HEADERS: usize = 100;
/// After an answer, a body still arriving is read and discarded while it keeps coming (each
/// read within `LINGER_QUIET`), up to `LINGER_BYTES` and `LINGER_TOTAL`.
const LINGER_QUIET: Duration = Duration::from_secs(1);
const LINGER_TOTAL: Duration = Duration::from_secs(10);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets each
/// connection finish its request, and returns when every connection is closed.
pub async fn run(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let timeouts = config.timeouts();
    let body_timeout = Duration::from_millis(config.body_timeout_ms);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // out of file descriptors and the like: back off instead of spinning
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let phase = Arc::new(AtomicU8::new(IDLE));
            let io = TokioIo::new(Guarded::new(stream, Arc::clone(&phase), timeouts));
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                phase.store(IN_SERVICE, Ordering::Release);
                let read = Arc::new(AtomicBool::new(http_body::Body::is_end_stream(req.body())));
                let req = req.map(|b| {
                    Body::new(ReadToEnd {
                        inner: Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, b)),
                        read: Arc::clone(&read),
                    })
                });
                let answer = router.clone().oneshot(req);
                let phase = Arc::clone(&phase);
                async move {
                    let mut resp = answer.await;
                    if let Ok(r) = resp.as_mut()
                        && !read.load(Ordering::Acquire)
                    {
                        // answered before the body was read (a 413, a 401…): the connection
                        // cannot carry another request, and the client must know not to reuse it
                        r.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    phase.store(IDLE, Ordering::Release);
                    resp
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS)
                // only a backstop: the wrapper answers first. With it hyper also reads again
                // when a connection goes idle, which is when the wrapper arms the idle timer
                // (without it, a read left pending during the request is never repeated)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeouts.idle + timeouts.header + Duration::from_secs(1))
                .serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // every connection holds a slot until it closes
    let _ = slots.acquire_many(config.max_connections).await;
}

/// A request body that records whether it was read to its end.
struct ReadToEnd {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for ReadToEnd {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.read.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a connection over `max_connections`.
async fn refuse_busy(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let bytes = raw_problem(
        Kind::ServiceUnavailable,
        "the server has too many open connections; retry shortly",
        &[("retry-after", "1")],
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A complete `HTTP/1.1` problem response that closes the connection, for answers given below
/// the router (which the edge middleware never sees: they get their own trace id and log line).
pub fn raw_problem(kind: Kind, detail: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let trace_id = hex::encode(rand::random::<[u8; 16]>());
    let status = kind.status();
    tracing::info!(
        trace_id = %trace_id,
        status = status.as_u16(),
        problem = kind.code(),
        detail,
        "request refused before routing"
    );
    metrics::counter!("http_refused_total", "problem" => kind.code()).increment(1);
    let body = serde_json::json!({
        "type": kind.type_uri(),
        "title": kind.title(),
        "status": status.as_u16(),
        "detail": detail,
        "traceId": trace_id,
    })
    .to_string();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\ntraceparent: 00-{trace_id}-{}-01\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        super::problem::CONTENT_TYPE,
        body.len(),
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        hex::encode(rand::random::<[u8; 8]>()),
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// The problem standing in for one of hyper's automatic answers, from its status line.
fn replacement_for(hyper_head: &[u8]) -> Vec<u8> {
    let status = hyper_head.get(9..12).unwrap_or_default();
    let (kind, detail) = match status {
        b"414" => (
            Kind::UriTooLong,
            "the request target is longer than the server accepts (64 KiB)",
        ),
        b"431" => (
            Kind::HeadersTooLarge,
            "the request has more header fields (100) or more header bytes (128 KiB) than the server accepts",
        ),
        _ => (
            Kind::BadRequest,
            "the request is not valid HTTP/1.1: a malformed request line or header field (a byte not allowed in the path, a control character such as NUL in a header value, a bad Content-Length)",
        ),
    };
    raw_problem(kind, detail, &[])
}

/// Whether `buf` is one of hyper's automatic answers: `400`, `414` or `431` with no
/// `content-type` (every error of the router's is a problem, with one).
fn is_hyper_refusal(buf: &[u8]) -> bool {
    let refusal = [&b"HTTP/1.1 400 "[..], b"HTTP/1.1 414 ", b"HTTP/1.1 431 "]
        .iter()
        .any(|line| buf.starts_with(line));
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    refusal
        && !buf[..head_end]
            .to_ascii_lowercase()
            .windows(13)
            .any(|w| w == b"content-type:")
}

// What the connection is doing, as the service and the connection wrapper see it.
/// Waiting for the first byte of a request.
const IDLE: u8 = 0;
/// Bytes of a request head have arrived; the service has not been called.
const HEAD: u8 = 1;
/// The service is answering a request.
const IN_SERVICE: u8 = 2;

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// The TCP stream under hyper, with the timeouts, the problem rewriting and the lingering close.
struct Guarded {
    inner: TcpStream,
    phase: Arc<AtomicU8>,
    timeouts: Timeouts,
    /// The read deadline in force (idle or head), re-armed as the phase changes.
    deadline: Pin<Box<Sleep>>,
    armed_for: Option<u8>,
    /// Bytes of our own to write before anything else (a problem in place of hyper's answer).
    out: Vec<u8>,
    out_pos: usize,
    /// hyper's answer is being replaced: its bytes are swallowed.
    swallowing: bool,
    /// The last write took only part of hyper's buffer.
    mid_write: bool,
    /// Set once the head timed out: reads end.
    read_closed: bool,
    linger: Option<Linger>,
}

struct Linger {
    drained: usize,
    until: Instant,
}

impl Guarded {
    fn new(inner: TcpStream, phase: Arc<AtomicU8>, timeouts: Timeouts) -> Self {
        Self {
            inner,
            phase,
            timeouts,
            deadline: Box::pin(tokio::time::sleep(timeouts.idle)),
            armed_for: None,
            out: Vec::new(),
            out_pos: 0,
            swallowing: false,
            mid_write: false,
            read_closed: false,
            linger: None,
        }
    }

    fn arm(&mut self, phase: u8) {
        if self.armed_for != Some(phase) {
            let wait = if phase == HEAD {
                self.timeouts.header
            } else {
                self.timeouts.idle
            };
            self.deadline.as_mut().reset(Instant::now() + wait);
            self.armed_for = Some(phase);
        }
    }

    /// Writes out our own pending bytes.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_closed {
            return Poll::Ready(Ok(()));
        }
        let phase = this.phase.load(Ordering::Acquire);
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if phase == IDLE && buf.filled().len() > before {
                    let _ = this.phase.compare_exchange(
                        IDLE,
                        HEAD,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    this.arm(HEAD);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // a request in the service has its body timeout; only heads and idle waits
                // are timed here
                if phase == IN_SERVICE {
                    this.armed_for = None;
                    return Poll::Pending;
                }
                this.arm(phase);
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if phase == HEAD && this.out.is_empty() {
                    this.out = raw_problem(
                        Kind::RequestTimeout,
                        "the request head (request line and headers) did not arrive in time",
                        &[],
                    );
                    this.out_pos = 0;
                }
                // the idle connection ends quietly; a late head gets its 408 first
                ready!(this.poll_out(cx))?;
                this.read_closed = true;
                this.swallowing = true;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.swallowing
            && !this.mid_write
            && this.phase.load(Ordering::Acquire) != IN_SERVICE
            && is_hyper_refusal(buf)
        {
            // no request is in the service: this is hyper answering one it could not parse
            this.out = replacement_for(buf);
            this.out_pos = 0;
            this.swallowing = true;
        }
        if this.swallowing {
            ready!(this.poll_out(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        // hyper writes the rest of this buffer next: it does not start a response
        this.mid_write = n < buf.len();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_out(cx))?;
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(Linger {
                drained: 0,
                until: Instant::now() + LINGER_TOTAL,
            });
            this.deadline.as_mut().reset(Instant::now() + LINGER_QUIET);
        }
        // read and discard what the client is still sending, so that closing does not reset
        // the connection under the answer it has not read yet
        let mut scratch = [0u8; 16 * 1024];
        loop {
            let Some(linger) = this.linger.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if linger.drained >= LINGER_BYTES || Instant::now() >= linger.until {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    linger.drained += rb.filled().len();
                    this.deadline.as_mut().reset(Instant::now() + LINGER_QUIET);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match this.deadline.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then flattens each response into one buffer: a response starts a write
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_problems_are_complete_responses() {
        let bytes = raw_problem(Kind::RequestTimeout, "late", &[("retry-after", "1")]);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains("content-type: application/problem+json\r\n"));
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(head.contains("retry-after: 1"));
        let p: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(p["type"], "urn:tenantry:problem:request_timeout");
        assert_eq!(p["traceId"].as_str().map(str::len), Some(32));
    }

    #[test]
    fn hyper_answers_map_to_problem_kinds() {
        for (line, code) in [
            (&b"HTTP/1.1 400 Bad Request\r\n"[..], "bad_request"),
            (b"HTTP/1.1 414 URI Too Long\r\n", "uri_too_long"),
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                "headers_too_large",
            ),
        ] {
            let text = String::from_utf8(replacement_for(line)).unwrap();
            assert!(
                text.contains(&format!("urn:tenantry:problem:{code}")),
                "{text}"
            );
        }
    }
}
