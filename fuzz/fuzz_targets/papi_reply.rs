//! Public API reply decoding: the three error envelopes (`parse_error_body`, then the message a
//! `PapiError` builds from it), and the `generate`, `get_api_keys` and `delete` replies.
//!
//! Input: two bytes of HTTP status, then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scanmint::papi::wire::{self, KeyRecord, ListReply, parse_error_body};
use scanmint::papi::{
    ErrorKind, PapiError, decode_delete_reply, decode_generate_reply, decode_list_reply,
};

/// The error fields are cut to 512 bytes, plus the `…` marking the cut.
const MAX_FIELD: usize = 512 + '…'.len_utf8();

fn check_error_envelopes(status: u16, body: &[u8]) {
    let parsed = parse_error_body(body);
    if let Some(e) = &parsed {
        assert!(e.err_code.is_some() || e.err_msg.is_some() || e.err_extra.is_some());
        for field in [&e.err_code, &e.err_msg, &e.err_extra]
            .into_iter()
            .flatten()
        {
            assert!(field.len() <= MAX_FIELD, "an error field was not cut");
        }
    } else if serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        ["/reply/err_msg", "/err_msg", "/data/err_msg"]
            .iter()
            .any(|p| v.pointer(p).is_some_and(|m| m.is_string()))
    }) {
        // A string `err_msg` in any of the three places is always found.
        panic!("err_msg not found in {}", String::from_utf8_lossy(body));
    }
    let detail = parsed.and_then(|e| e.err_msg);
    let err = PapiError::from_status(status, detail);
    assert_eq!(err.status, Some(status));
    match status {
        400 => assert_eq!(err.kind, ErrorKind::BadRequest),
        401 => assert_eq!(err.kind, ErrorKind::Unauthorized),
        500..=599 => assert_eq!(err.kind, ErrorKind::Server),
        _ => {}
    }
    let _ = err.to_string();
}

fn check_generate(body: &[u8]) {
    let reply = decode_generate_reply(body);
    let sent_key = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/reply/key")?.as_str().map(str::to_string));
    match reply {
        Ok(r) => {
            assert!(r.id > 0);
            assert!(!r.key.expose().is_empty());
            assert_eq!(Some(r.key.expose()), sent_key.as_deref());
        }
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Malformed);
            // The reply may hold a new secret: an error never quotes it.
            if let Some(key) =
                sent_key.filter(|k| k.len() >= 4 && !k.bytes().all(|b| b.is_ascii_digit()))
            {
                assert!(
                    !e.message.contains(&key),
                    "the error quotes the key: {}",
                    e.message
                );
            }
        }
    }
}

fn check_list(body: &[u8]) {
    match decode_list_reply(body) {
        Ok(list) => {
            // What we decode, we can write back and read again (the emulator speaks the same shapes).
            let again: ListReply =
                serde_json::from_slice(&serde_json::to_vec(&list).unwrap()).unwrap();
            assert_eq!(again.data, list.data);
            assert_eq!(again.total_count, list.total_count);
            assert_eq!(again.filter_count, list.filter_count);
        }
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Malformed);
            // serde's text is cut to 200 bytes in the message.
            assert!(e.message.len() < 300, "{}", e.message.len());
        }
    }
    // Records alone, as the inventory holds them.
    if let Ok(record) = serde_json::from_slice::<KeyRecord>(body) {
        let again: KeyRecord =
            serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(again, record);
    }
}

fn check_delete(body: &[u8]) {
    if let Err(e) = decode_delete_reply(body) {
        assert_eq!(e.kind, ErrorKind::Malformed);
    }
}

fn check_truncate(max: usize, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let cut = wire::truncate(&text, max);
    if text.len() <= max {
        assert_eq!(cut, text);
    } else {
        let kept = cut.strip_suffix('…').expect("a cut is marked");
        assert!(kept.len() <= max);
        assert!(text.starts_with(kept));
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((status, body)) = input.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_le_bytes(*status);
    check_error_envelopes(status, body);
    check_generate(body);
    check_list(body);
    check_delete(body);
    check_truncate(status as usize, body);
});
