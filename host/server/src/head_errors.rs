//! The HTTP layer's own error answers, given the JSON body every error has: hyper answers
//! a request head it cannot read by itself, with an empty body ([`JsonErrors`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite};

/// A connection as hyper sees it, whose writes are watched for hyper's own error answers.
///
/// hyper answers a request head it cannot parse (a NUL or other control character in a
/// header, a header folded onto the next line, two different `Content-Length`s, a head past
/// `--max-header-bytes`, …) by itself, with a status and an empty body, and offers no way
/// to give that answer a body; the contract says every error is `{"error": "…"}`. Such an
/// answer is the only one this server sends with a 4xx status, `content-length: 0` and no
/// `content-type` (every answer of the routes has a body and a type), so it is recognised
/// in the first bytes hyper writes for a response and replaced by the same status with a
/// JSON body naming the limit or fault.
pub(crate) struct JsonErrors<I> {
    inner: I,
    /// The largest request head, for the 431's message.
    max_header_bytes: usize,
    /// A replacement answer being written, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<I> JsonErrors<I> {
    pub(crate) fn new(inner: I, max_header_bytes: usize) -> JsonErrors<I> {
        JsonErrors {
            inner,
            max_header_bytes,
            pending: None,
        }
    }

    /// The replacement of `head`, if it is a whole answer of hyper's own to a request it
    /// could not parse.
    fn replacement(&self, head: &[u8]) -> Option<Vec<u8>> {
        let head = std::str::from_utf8(head).ok()?;
        let fields = head.strip_suffix("\r\n\r\n")?;
        if fields.contains("\r\n\r\n") {
            return None;
        }
        let (status_line, rest) = fields.split_once("\r\n")?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
            .get(..3)?;
        let message = match status {
            "400" => "cannot read request: its head is malformed: HTTP/1.1 does not allow its \
                      method, path, version or a header (a control character in a header, a \
                      header folded onto the next line, `Content-Length` given twice, …)"
                .to_string(),
            "414" => "cannot read request: its path is too long".to_string(),
            "431" => format!(
                "cannot read request: its head (request line and headers) is larger than {} \
                 bytes (`--max-header-bytes`)",
                self.max_header_bytes
            ),
            _ => return None,
        };
        let mut lines: Vec<&str> = rest.split("\r\n").collect();
        let named = |line: &&str, name: &str| {
            line.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        };
        if lines.iter().any(|l| named(l, "content-type"))
            || !lines
                .iter()
                .any(|l| named(l, "content-length") && l.ends_with(": 0"))
        {
            return None;
        }
        lines.retain(|l| !named(l, "content-length") && !named(l, "connection"));
        let body = serde_json::json!({ "error": message }).to_string();
        let mut answer = format!("{status_line}\r\n");
        for line in lines {
            answer.push_str(line);
            answer.push_str("\r\n");
        }
        answer.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        Some(answer.into_bytes())
    }
}

impl<I: AsyncWrite + Unpin> JsonErrors<I> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((answer, written)) = &mut self.pending {
            if *written == answer.len() {
                self.pending = None;
                break;
            }
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))? {
                0 => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                n => *written += n,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `head` (all of what hyper writes) in place of a replacement, if it has one.
    fn poll_replace(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
    ) -> Option<Poll<std::io::Result<usize>>> {
        // Cheap tests first, as every response passes here: only a whole head (no body)
        // with one of hyper's statuses can be its own answer.
        let status = head.get(..13)?;
        if !(status.starts_with(b"HTTP/1.")
            && matches!(&status[9..], b"400 " | b"414 " | b"431 ")
            && head.ends_with(b"\r\n\r\n"))
        {
            return None;
        }
        let answer = self.replacement(head)?;
        self.pending = Some((answer, 0));
        // hyper's bytes are taken; the replacement follows now or at the next flush.
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for JsonErrors<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for JsonErrors<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(replaced) = this.poll_replace(cx, buf) {
            return replaced;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // hyper's own answer is a head alone, in one slice.
        let mut written = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(head), None) = (written.next(), written.next())
            && let Some(replaced) = this.poll_replace(cx, head)
        {
            return replaced;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_http_layer_s_empty_error_answers_are_replaced() {
        let io = JsonErrors::new((), 1024);
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 12:00:00 GMT\r\n\r\n";
        let replaced = String::from_utf8(io.replacement(own).unwrap()).unwrap();
        let (head, body) = replaced.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains("\r\ndate: Mon, 07 Dec 2026 12:00:00 GMT\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(!head.contains("content-length: 0"), "{head}");
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("cannot read request: ")
        );
        let large = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let replaced = String::from_utf8(io.replacement(large).unwrap()).unwrap();
        assert!(
            replaced.contains("larger than 1024 bytes (`--max-header-bytes`)"),
            "{replaced}"
        );

        // Answers of the routes keep their own bodies: they always have a type.
        for kept in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}\r\n\r\n",
        ] {
            assert!(io.replacement(kept).is_none(), "{}", String::from_utf8_lossy(kept));
        }
    }
}
