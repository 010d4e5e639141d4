//! Wiping the copies of a secret that our own code makes on the way in and out.
//!
//! `Secret` zeroizes itself, but a key also passes through buffers we own: the JSON `Value` of
//! a login command or a credentials reply, and the bytes of an LSP frame. These helpers overwrite
//! such a copy in place (same allocation, same length, every byte zero) before it is dropped, so
//! freed memory does not keep the key. Copies made inside tower-lsp-server and hyper are beyond
//! our reach: docs/threat-model.md says which.

use serde_json::Value;
use zeroize::Zeroize;

/// Overwrite every string in `value` (nested arrays and objects included) with NUL bytes,
/// keeping each string's length and allocation. Object keys are field names, not secrets, and
/// are left as they are (a `Map` gives no mutable access to them).
pub fn zeroize_strings(value: &mut Value) {
    match value {
        Value::String(s) => {
            let mut bytes = std::mem::take(s).into_bytes();
            zeroize_bytes(&mut bytes);
            // All-zero bytes are valid UTF-8, and the buffer is reused, not reallocated.
            *s = String::from_utf8(bytes).unwrap_or_default();
        }
        Value::Array(items) => items.iter_mut().for_each(zeroize_strings),
        Value::Object(map) => map.values_mut().for_each(zeroize_strings),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Overwrite a byte buffer with zeros, spare capacity included, keeping its length.
pub fn zeroize_bytes(bytes: &mut Vec<u8>) {
    let len = bytes.len();
    // `Vec::zeroize` wipes the whole capacity and clears; refilling with zeros keeps the length
    // (and the allocation) so a caller, or a test, can still see what is left in it.
    bytes.zeroize();
    bytes.resize(len, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "PrimaryKeySecret-0123456789abcdefXYZ";

    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(m) => m.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_string_of_a_value_is_overwritten_in_place() {
        let mut v = json!({
            "key": SECRET,
            "env": { "CORTEX_API_KEY": SECRET, "CORTEX_API_KEY_ID": "7" },
            "arguments": [ { "key": SECRET }, 42, null, true ],
        });
        let before_ptr = v["key"].as_str().unwrap().as_ptr();
        zeroize_strings(&mut v);
        let mut all = Vec::new();
        strings(&v, &mut all);
        assert_eq!(all.len(), 4);
        for s in &all {
            // Same length as before, every byte zero: no byte of the secret is left.
            assert!(s.len() == SECRET.len() || s.len() == 1, "{s:?}");
            assert!(s.bytes().all(|b| b == 0), "{s:?}");
        }
        // The very allocation that held the secret was overwritten, not replaced.
        assert_eq!(v["key"].as_str().unwrap().as_ptr(), before_ptr);
        // Structure and non-strings are kept.
        assert_eq!(v["arguments"][1], json!(42));
        assert!(v["env"].get("CORTEX_API_KEY").is_some());
    }

    #[test]
    fn a_byte_buffer_keeps_its_length_and_holds_only_zeros() {
        let mut buf = format!("{{\"key\":\"{SECRET}\"}}").into_bytes();
        let (ptr, len) = (buf.as_ptr(), buf.len());
        zeroize_bytes(&mut buf);
        assert_eq!((buf.as_ptr(), buf.len()), (ptr, len));
        assert!(buf.iter().all(|&b| b == 0));
    }
}
