//! LSP framing and message decoding, both directions.
//!
//! Server side: the bytes a client sends go through the frame guard's pure splitter
//! (`framing::split_frame`, what `framing::guard` runs on its buffer), then through a model of
//! tower-lsp-server 0.23's codec (httparse headers, `Content-Length` taken from the last such
//! header), then each body is decoded as a `jsonrpc::Request` and passed through
//! `OptionalParams`. The guard exists so the server never buffers a frame over `MAX_FRAME`:
//! that only holds if the codec cuts the stream exactly where the guard did, so any
//! disagreement about where a frame starts or how long it is, is a crash here.
//!
//! Client side: the same bytes are read with `client::read_frame` (what the CLI reads from
//! the daemon) until the end or an error.

#![no_main]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use scanmint::framing::{Frame, MAX_FRAME, OptionalParams, REFUSED_HEADER, split_frame};
use tower_lsp_server::jsonrpc::{Request, Response};
use tower_service::Service;

/// Hands the (possibly rewritten) request back.
struct Echo;

impl Service<Request> for Echo {
    type Response = Request;
    type Error = Infallible;
    type Future = Ready<Result<Request, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        ready(Ok(req))
    }
}

/// A frame the guard forwarded: where it starts in the forwarded stream, its header and total length.
struct Forwarded {
    start: usize,
    header_len: usize,
    len: usize,
}

/// Run the guard's splitter over `input` as one buffer; returns what it forwards.
fn guard(input: &[u8]) -> (Vec<u8>, Vec<Forwarded>) {
    let mut out = Vec::new();
    let mut frames = Vec::new();
    let mut rest = input;
    loop {
        match split_frame(rest) {
            Frame::Complete { header_len, len } => {
                assert!(header_len <= len && len <= rest.len());
                assert!(len - header_len <= MAX_FRAME);
                assert!(rest[..header_len].ends_with(b"\r\n\r\n"));
                // The decision depends on the frame's own bytes only.
                assert_eq!(
                    split_frame(&rest[..len]),
                    Frame::Complete { header_len, len }
                );
                frames.push(Forwarded {
                    start: out.len(),
                    header_len,
                    len,
                });
                out.extend_from_slice(&rest[..len]);
                rest = &rest[len..];
            }
            Frame::BadLength { header_len, length } => {
                assert!(header_len <= rest.len());
                assert!(length.is_none_or(|l| l > MAX_FRAME));
                // The server is told a parse error; the stream ends after it.
                out.extend_from_slice(REFUSED_HEADER);
                return (out, frames);
            }
            Frame::Incomplete | Frame::HeaderTooLong => return (out, frames),
        }
    }
}

/// tower-lsp-server 0.23 `codec.rs`, `decode_headers`: only `Content-Length` (exact case) and
/// `Content-Type` are read; the last `Content-Length` wins.
fn codec_content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    let mut content_len = None;
    for header in headers {
        match header.name {
            "Content-Length" => {
                content_len = Some(std::str::from_utf8(header.value).ok()?.parse().ok()?);
            }
            "Content-Type" => {
                let value = std::str::from_utf8(header.value).ok()?;
                let charset = value
                    .split(';')
                    .skip(1)
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix("charset="));
                if !matches!(charset, Some("utf-8" | "utf8")) {
                    return None;
                }
            }
            _ => {}
        }
    }
    content_len
}

/// tower-lsp-server 0.23's `LanguageServerCodec::decode` over the forwarded stream: its first
/// error ends the session (tokio-util's `FramedRead` ends the stream after an error).
fn codec(stream: &[u8], frames: &[Forwarded]) {
    let mut pos = 0;
    loop {
        let src = &stream[pos..];
        let mut slots = [httparse::EMPTY_HEADER; 2];
        let (header_len, length) = match httparse::parse_headers(src, &mut slots) {
            Ok(httparse::Status::Complete((n, headers))) => match codec_content_length(headers) {
                Some(length) => (n, length),
                None => return,
            },
            _ => return,
        };
        // The server's codec found a frame: it must be one the guard forwarded, same cut.
        match frames.iter().find(|f| f.start == pos) {
            Some(f) => {
                assert_eq!(
                    header_len, f.header_len,
                    "the codec's header block ends elsewhere than the guard's"
                );
                assert_eq!(
                    length,
                    f.len - f.header_len,
                    "the codec reads another Content-Length than the guard"
                );
            }
            None => {
                // Only the refused header the guard forwards last may be read here, and the
                // stream ends right after it.
                assert!(
                    src.len() == header_len,
                    "the codec found a frame at {pos}, where the guard did not cut"
                );
                return;
            }
        }
        let Some(body) = src.get(header_len..header_len + length) else {
            return;
        };
        pos += header_len + length;
        if body.is_empty() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return;
        };
        decode_message(text);
    }
}

/// The codec's `Message` is `Response` or `Request` (untagged); requests go on to the service.
fn decode_message(text: &str) {
    if serde_json::from_str::<Response>(text).is_ok() {
        return;
    }
    let Ok(req) = serde_json::from_str::<Request>(text) else {
        return;
    };
    let method = req.method().to_string();
    let id = req.id().cloned();
    let mut service = OptionalParams::new(Echo);
    let out = futures_executor::block_on(service.call(req)).unwrap();
    assert_eq!(out.method(), method);
    assert_eq!(out.id(), id.as_ref());
    if method.starts_with("scanmint/") {
        assert!(out.params().is_some_and(|p| !p.is_null()));
    }
    // What the server sends back must serialize.
    serde_json::to_vec(&out).unwrap();
}

/// The CLI's side: read frames until the end, as `LspClient` does.
fn client(input: &[u8]) {
    let mut reader = tokio::io::BufReader::new(input);
    futures_executor::block_on(async {
        for _ in 0..input.len() + 1 {
            match scanmint::client::read_frame(&mut reader).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
        panic!("read_frame returned more frames than there are bytes");
    });
}

fuzz_target!(|input: &[u8]| {
    let (stream, frames) = guard(input);
    codec(&stream, &frames);
    client(input);
});
