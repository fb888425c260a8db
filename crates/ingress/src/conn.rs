//! Connection-level limits of the webhook listener: a cap on open connections, and an
//! account of how each connection ended.
//!
//! [`LimitAcceptor`] wraps axum-server's acceptor (plain TCP or rustls). A connection over
//! the cap is closed as soon as it is accepted, before any byte of it is read or a TLS
//! handshake is started, and counted. An accepted connection holds a semaphore permit until
//! it is dropped; the stream wrapper records whether a response was ever written on it, so
//! the connections that hyper closes for not sending a request in time (header read timeout:
//! slow or idle clients), or that sent garbage, are counted apart from those that were
//! served.
//!
//! The wrapper also bounds the one wait hyper's header read timeout does not cover:
//! axum-server serves every connection through hyper-util's protocol detection, which reads
//! until it has seen 24 bytes (the length of HTTP/2's preface) or a byte that differs from
//! it, with no timer. A client that sends nothing, or a prefix of the preface, would be held
//! forever. So until 24 bytes were read or a response was written, a read that has not
//! completed by `first_bytes_timeout` after the accept fails the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use futures::future::BoxFuture;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Sleep};

/// Bytes hyper-util's protocol detection reads at most (HTTP/2's connection preface).
const DETECTION_BYTES: usize = 24;

/// What the acceptor counts.
#[derive(Clone)]
pub(crate) struct ConnMetrics {
    /// Connections open now.
    pub open: IntGauge,
    /// Closed at once: `max_connections` were open.
    pub refused: IntCounter,
    /// Closed without a response ever written: no complete request in time (header read
    /// timeout), a malformed request, or a TLS handshake that failed or timed out.
    pub no_request: IntCounter,
    /// Closed after at least one response.
    pub served: IntCounter,
}

/// An [`Accept`] that admits at most `max` connections at a time.
#[derive(Clone)]
pub(crate) struct LimitAcceptor<A> {
    inner: A,
    slots: Arc<Semaphore>,
    metrics: ConnMetrics,
    first_bytes_timeout: Duration,
}

impl<A> LimitAcceptor<A> {
    pub fn new(inner: A, max: usize, first_bytes_timeout: Duration, metrics: ConnMetrics) -> Self {
        LimitAcceptor {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            metrics,
            first_bytes_timeout,
        }
    }
}

impl<A, I, S> Accept<I, S> for LimitAcceptor<A>
where
    A: Accept<I, S> + Clone + Send + Sync + 'static,
    A::Future: Send,
    A::Stream: Send,
    A::Service: Send,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Counted<A::Stream>;
    type Service = A::Service;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.slots.clone().try_acquire_owned();
        let metrics = self.metrics.clone();
        let inner = self.inner.clone();
        let deadline = tokio::time::sleep(self.first_bytes_timeout);
        Box::pin(async move {
            let Ok(permit) = permit else {
                metrics.refused.inc();
                tracing::debug!("webhook connection refused: max_connections open");
                // Dropping `stream` closes the socket.
                return Err(io::Error::other("max_connections reached"));
            };
            metrics.open.inc();
            let guard = Guard {
                _permit: permit,
                metrics,
                responded: false,
            };
            // A failed or timed-out TLS handshake drops `guard`: counted as no_request.
            let (stream, service) = inner.accept(stream, service).await?;
            Ok((
                Counted {
                    inner: stream,
                    guard,
                    first_bytes: Some(Box::pin(deadline)),
                    read: 0,
                },
                service,
            ))
        })
    }
}

struct Guard {
    _permit: OwnedSemaphorePermit,
    metrics: ConnMetrics,
    responded: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.metrics.open.dec();
        if self.responded {
            self.metrics.served.inc();
        } else {
            self.metrics.no_request.inc();
        }
    }
}

/// A connection's stream, holding its slot until dropped.
pub(crate) struct Counted<S> {
    inner: S,
    guard: Guard,
    /// Armed until [`DETECTION_BYTES`] were read or a response was written.
    first_bytes: Option<Pin<Box<Sleep>>>,
    read: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read = this.read.saturating_add(buf.filled().len() - before);
                if this.read >= DETECTION_BYTES {
                    this.first_bytes = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .first_bytes
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request line in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.guard.responded = true;
            this.first_bytes = None;
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.guard.responded = true;
            this.first_bytes = None;
        }
        r
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
