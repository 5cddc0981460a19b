//! [`Socket`]: the byte stream of one accepted connection, with the deadlines hyper
//! does not keep itself.
//!
//! - **Preface.** From the moment the connection is handed to HTTP (after its TLS
//!   handshake), the first bytes must arrive within a deadline, and a client that
//!   starts with the HTTP/2 preface must send all 24 bytes of it. hyper-util's
//!   protocol sniffing waits without limit, and hyper's HTTP/1 header timeout starts
//!   only once the protocol is known. The deadline ends at the first byte that is not
//!   the HTTP/2 preface (HTTP/1: hyper's header timeout takes over) or with the whole
//!   preface (HTTP/2: keep-alive pings and the idle limit take over).
//! - **Write stall.** A write or flush that makes no progress (the peer does not read,
//!   its receive window stays full) for longer than a limit fails with `TimedOut`, so
//!   hyper closes the connection and drops what it held for it (a change stream's
//!   frames included).
//!
//! - **Bare answers.** hyper answers a request it cannot parse (a malformed request
//!   line or header, a URL over 64 KiB, more than 100 headers) itself, with 400, 414
//!   or 431 and an empty body, before any handler runs. Such an answer (the only ones
//!   with `content-length: 0` and these statuses: every handler's error carries a
//!   body) is rewritten on its way out into the same answer with the JSON envelope,
//!   so every answer of the center carries one.
//!
//! Level 4 (transport): tokio I/O traits and timers, no HTTP type.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The client connection preface of HTTP/2 (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The statuses hyper answers by itself, with the envelope message of each.
const BARE_ANSWERS: &[(&str, u16, &str)] = &[
    (
        "HTTP/1.1 400 ",
        400,
        "The browser (or proxy) sent a request that this server could not understand.",
    ),
    (
        "HTTP/1.1 414 ",
        414,
        "The length of the requested URL exceeds the capacity limit for this server. The request cannot be processed.",
    ),
    (
        "HTTP/1.1 431 ",
        431,
        "The request has too many header fields (more than 100), or one is too large.",
    ),
];

/// The empty body hyper declares on its own answers.
const EMPTY_BODY: &[u8] = b"\r\ncontent-length: 0\r\n";

/// The bytes to send instead of `head` when it is one of hyper's own bodiless
/// refusals (a whole head, nothing after it): the same head declaring a JSON
/// envelope, then the envelope.
fn with_envelope(head: &[u8]) -> Option<Vec<u8>> {
    let &(_, code, message) = BARE_ANSWERS
        .iter()
        .find(|(status, _, _)| head.starts_with(status.as_bytes()))?;
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let at = head
        .windows(EMPTY_BODY.len())
        .position(|w| w == EMPTY_BODY)?;
    let body = crate::render::envelope_without_data(code, message);
    let mut answer = Vec::with_capacity(head.len() + body.len() + 48);
    answer.extend_from_slice(&head[..at]);
    answer.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(&head[at + EMPTY_BODY.len()..]);
    answer.extend_from_slice(body.as_bytes());
    Some(answer)
}

/// A rewritten answer being written in place of the caller's bytes.
#[derive(Debug)]
struct Rewritten {
    /// What goes out instead.
    bytes: Vec<u8>,
    /// How much of it is written.
    written: usize,
    /// How many of the caller's bytes it stands for (reported once all is written).
    stands_for: usize,
}

/// The deadlines of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Longest wait for the first bytes and the whole HTTP/2 preface.
    pub preface: Duration,
    /// Longest a write may make no progress.
    pub write_stall: Duration,
}

/// An accepted connection's stream (`T`: TCP, or TLS over TCP) with [`Deadlines`].
#[derive(Debug)]
pub struct Socket<T> {
    /// The stream.
    inner: T,
    /// Bytes of the HTTP/2 preface seen so far while the preface deadline runs;
    /// `None` once the protocol is known.
    preface_seen: Option<usize>,
    /// The preface deadline.
    preface_timer: Pin<Box<Sleep>>,
    /// Write stall limit.
    write_stall: Duration,
    /// Runs while a write is pending; `None` until the first pending write.
    stall_timer: Option<Pin<Box<Sleep>>>,
    /// Whether `stall_timer` is running for the current pending write.
    stalled: bool,
    /// One of hyper's bare answers, being written with its envelope.
    rewritten: Option<Rewritten>,
}

impl<T> Socket<T> {
    /// `inner` with `deadlines`, the preface deadline starting now.
    pub fn new(inner: T, deadlines: Deadlines) -> Self {
        Self {
            inner,
            preface_seen: Some(0),
            preface_timer: Box::pin(tokio::time::sleep(deadlines.preface)),
            write_stall: deadlines.write_stall,
            stall_timer: None,
            stalled: false,
            rewritten: None,
        }
    }

    /// Follows the preface through `bytes` just read: the deadline ends at the first
    /// byte off the HTTP/2 preface, or with the whole preface.
    fn saw(&mut self, bytes: &[u8]) {
        let Some(seen) = self.preface_seen else {
            return;
        };
        let mut seen = seen;
        for &byte in bytes {
            if H2_PREFACE.get(seen) != Some(&byte) {
                self.preface_seen = None;
                return;
            }
            seen += 1;
            if seen == H2_PREFACE.len() {
                self.preface_seen = None;
                return;
            }
        }
        self.preface_seen = Some(seen);
    }

    /// A write that returned `Pending`: starts the stall timer (if not running) and
    /// fails once it has run out.
    fn stall<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let deadline = Instant::now() + self.write_stall;
        let timer = self
            .stall_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stalled {
            timer.as_mut().reset(deadline);
            self.stalled = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer took nothing for {} ms",
                    self.write_stall.as_millis()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// What a write returned, with the stall timer kept or stopped.
    fn progress<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Socket<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.preface_seen.is_some() && this.preface_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request or HTTP/2 preface in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> Socket<T> {
    /// Starts rewriting `buf` when it is one of hyper's bare answers; true when a
    /// rewritten answer is (now) being written.
    fn rewriting(&mut self, buf: &[u8]) -> bool {
        if self.rewritten.is_none()
            && let Some(bytes) = with_envelope(buf)
        {
            self.rewritten = Some(Rewritten {
                bytes,
                written: 0,
                stands_for: buf.len(),
            });
        }
        self.rewritten.is_some()
    }

    /// Writes the rewritten answer; done, it reports the caller's bytes as written.
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            let Some(rewritten) = self.rewritten.as_mut() else {
                return Poll::Ready(Ok(0));
            };
            let rest = &rewritten.bytes[rewritten.written..];
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Pending => return self.stall(cx),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.stalled = false;
                    rewritten.written += n;
                    if rewritten.written == rewritten.bytes.len() {
                        let stands_for = rewritten.stands_for;
                        self.rewritten = None;
                        return Poll::Ready(Ok(stands_for));
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Socket<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewriting(buf) {
            return this.poll_rewritten(cx);
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if this.rewriting(first) {
            return this.poll_rewritten(cx);
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> Socket<tokio::io::DuplexStream> {
        let (a, _b) = tokio::io::duplex(64);
        Socket::new(
            a,
            Deadlines {
                preface: Duration::from_secs(1),
                write_stall: Duration::from_secs(1),
            },
        )
    }

    #[test]
    fn only_hypers_bodiless_refusals_are_rewritten() {
        let bare = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 15:48:32 GMT\r\n\r\n";
        let rewritten = String::from_utf8(with_envelope(bare).unwrap()).unwrap();
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\nconnection: close\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.ends_with("date: Mon, 07 Dec 2026 15:48:32 GMT"));
        assert!(body.starts_with(r#"{"code":414,"data":null,"message":"#));
        // A handler's 400 has a body; a 200 is never touched; nor a head with more after it.
        assert!(with_envelope(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(with_envelope(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(with_envelope(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx").is_none());
    }

    #[tokio::test]
    async fn the_preface_deadline_ends_with_the_protocol() {
        let mut h1 = socket();
        h1.saw(b"GET / HTTP/1.1\r\n");
        assert_eq!(h1.preface_seen, None);
        let mut h2 = socket();
        h2.saw(&H2_PREFACE[..10]);
        assert_eq!(h2.preface_seen, Some(10));
        h2.saw(&H2_PREFACE[10..]);
        assert_eq!(h2.preface_seen, None);
        let mut off = socket();
        off.saw(b"PRI * HTTP/1.1");
        assert_eq!(off.preface_seen, None);
    }
}
