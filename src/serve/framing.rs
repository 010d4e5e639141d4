//! Guards in front of the LSP server: a frame-size limit on the input, and lenient params for
//! the custom methods (absent, `null` and `{}` all mean "no parameters").

use std::task::{Context, Poll};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tower_lsp_server::jsonrpc::Request;
use tower_service::Service;
use zeroize::{Zeroize, Zeroizing};

/// No LSP message of ours comes near this; a bigger one is a broken or hostile client.
pub const MAX_FRAME: usize = 16 << 20;
const MAX_HEADER: usize = 8 << 10;
/// What the server sees in place of a header block the guard refuses: a parse error.
pub const REFUSED_HEADER: &[u8] = b"Content-Length: refused\r\n\r\n";

/// What the start of the bytes buffered so far holds, as the guard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole frame: a header block of `header_len` bytes, then its body, `len` bytes in all.
    Complete { header_len: usize, len: usize },
    /// Not a whole frame yet: read more.
    Incomplete,
    /// More than 8 KiB without the end of a header block.
    HeaderTooLong,
    /// A header block (`header_len` bytes) without a usable Content-Length, or one over
    /// [`MAX_FRAME`] (`length`).
    BadLength {
        header_len: usize,
        length: Option<usize>,
    },
}

/// The guard's decision for the bytes at the start of `buf`; pure, so it can be fuzzed.
pub fn split_frame(buf: &[u8]) -> Frame {
    let Some(pos) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEADER {
            Frame::HeaderTooLong
        } else {
            Frame::Incomplete
        };
    };
    let header_len = pos + 4;
    let length = content_length(&buf[..header_len]);
    match length.filter(|l| *l <= MAX_FRAME) {
        Some(body) if buf.len() - header_len >= body => Frame::Complete {
            header_len,
            len: header_len + body,
        },
        Some(_) => Frame::Incomplete,
        None => Frame::BadLength { header_len, length },
    }
}

/// Forward `read` frame by frame, ending the stream (and so only this session) at a frame
/// larger than [`MAX_FRAME`] or a header block that never ends.
pub fn guard<R: AsyncRead + Unpin + Send + 'static>(mut read: R) -> DuplexStream {
    let (mut tx, rx) = tokio::io::duplex(64 << 10);
    tokio::spawn(async move {
        // Both buffers see a login's Primary key and a credentials request: wiped on drop.
        let mut buf = Zeroizing::new(Vec::with_capacity(8 << 10));
        let mut chunk = Zeroizing::new(vec![0u8; 64 << 10]);
        loop {
            match split_frame(&buf) {
                Frame::Complete { len, .. } => {
                    if tx.write_all(&buf[..len]).await.is_err() {
                        return;
                    }
                    consume_frame(&mut buf, len);
                }
                Frame::Incomplete => match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        chunk[..n].zeroize();
                    }
                },
                Frame::HeaderTooLong => {
                    tracing::warn!(
                        "LSP client sent a header block over 8 KiB; closing its session"
                    );
                    return;
                }
                Frame::BadLength { header_len, length } => {
                    tracing::warn!(length = ?length, header_len, "LSP frame without a usable Content-Length or over 16 MiB; closing its session");
                    // Let the server answer a parse error first. Not with the client's header:
                    // the server's codec could read a frame inside a block the guard refused.
                    let _ = tx.write_all(REFUSED_HEADER).await;
                    return;
                }
            }
        }
    });
    rx
}

/// Drop the first `len` bytes (a forwarded frame) and leave no copy of them anywhere in the
/// buffer's allocation: `drain` alone would leave stale bytes in the spare capacity.
pub fn consume_frame(buf: &mut Vec<u8>, len: usize) {
    let before = buf.len();
    buf[..len].zeroize();
    buf.drain(..len);
    // `drain` moved the rest to the front; zero the stale copy it left behind, in place.
    let after = buf.len();
    buf.resize(before, 0);
    buf.truncate(after);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The body length a header block announces, if the server's codec will read the same one.
///
/// tower-lsp-server's codec (httparse) also ends a header line, and so the block, at a bare
/// `\n`, and takes the *last* `Content-Length`: a block with a bare `\n`, or with two lengths
/// that differ, would let it cut the stream elsewhere than the guard, and so read a length the
/// guard never checked. Such a block has no usable length.
fn content_length(header: &[u8]) -> Option<usize> {
    let bare_lf = header
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || header[i - 1] != b'\r'));
    if bare_lf {
        return None;
    }
    let text = std::str::from_utf8(header).ok()?;
    let mut lengths = text
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>().ok());
    let first = lengths.next()??;
    lengths.all(|l| l == Some(first)).then_some(first)
}

/// Wraps the LSP service so `scanmint/*` requests accept absent or `null` params as `{}`.
pub struct OptionalParams<S>(S);

impl<S> OptionalParams<S> {
    pub fn new(inner: S) -> Self {
        OptionalParams(inner)
    }
}

impl<S: Service<Request>> Service<Request> for OptionalParams<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let custom_without_params = req.method().starts_with("scanmint/")
            && matches!(req.params(), None | Some(Value::Null));
        let initialize = req.method() == "initialize";
        if !custom_without_params && !initialize {
            return self.0.call(req);
        }
        let (method, id, params) = req.into_parts();
        let params = if initialize {
            params.map(lenient_initialize)
        } else {
            Some(Value::Object(Default::default()))
        };
        let mut builder = Request::build(method);
        if let Some(params) = params {
            builder = builder.params(params);
        }
        if let Some(id) = id {
            builder = builder.id(id);
        }
        self.0.call(builder.finish())
    }
}

/// Some clients omit fields the LSP types require but we never read (`staleRequestSupport`
/// without `retryOnContentModified`): fill them in rather than refuse the whole session.
fn lenient_initialize(mut params: Value) -> Value {
    if let Some(stale) = params
        .pointer_mut("/capabilities/general/staleRequestSupport")
        .and_then(|v| v.as_object_mut())
    {
        stale
            .entry("retryOnContentModified")
            .or_insert_with(|| Value::Array(Vec::new()));
        stale.entry("cancel").or_insert(Value::Bool(false));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_a_frame_keeps_the_rest_in_order() {
        let mut buf = b"Content-Length: 2\r\n\r\n{}Content-Le".to_vec();
        let Frame::Complete { len, .. } = split_frame(&buf) else {
            panic!("a whole frame")
        };
        consume_frame(&mut buf, len);
        assert_eq!(buf, b"Content-Le");
    }

    #[test]
    fn content_length_is_found_in_any_case() {
        assert_eq!(content_length(b"Content-Length: 12\r\n\r\n"), Some(12));
        assert_eq!(
            content_length(b"content-length:7\r\nContent-Type: x\r\n\r\n"),
            Some(7)
        );
        assert_eq!(content_length(b"Content-Type: x\r\n\r\n"), None);
        assert_eq!(content_length(b"Content-Length: -1\r\n\r\n"), None);
        assert_eq!(
            content_length(b"Content-Length: 7\r\ncontent-length: 7\r\n\r\n"),
            Some(7)
        );
    }

    #[test]
    fn ambiguous_header_blocks_have_no_length() {
        // The codec would take the last length; the guard checked the first.
        assert_eq!(
            content_length(b"Content-Length: 2\r\nContent-Length: 999999999\r\n\r\n"),
            None
        );
        // The codec would end the block at the bare "\n\n" and read a body from here on.
        assert_eq!(content_length(b"Content-Length: 0\n\nX: y\r\n\r\n"), None);
        assert_eq!(content_length(b"X: y\nContent-Length: 9\r\n\r\n"), None);
        assert_eq!(
            split_frame(b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
            Frame::BadLength {
                header_len: 40,
                length: None
            }
        );
    }

    #[tokio::test]
    async fn oversized_frame_ends_the_stream_but_earlier_frames_pass() {
        let good = b"Content-Length: 2\r\n\r\n{}";
        let bad = format!("Content-Length: {}\r\n\r\n", MAX_FRAME + 1);
        let input = [good.as_slice(), bad.as_bytes(), b"more"].concat();
        let mut out = guard(std::io::Cursor::new(input));
        let mut got = Vec::new();
        out.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..good.len()], good);
        assert_eq!(&got[good.len()..], REFUSED_HEADER);
    }
}
