//! Ledger parsing: any bytes as the ledger file (`LedgerFile::load` decodes it with serde_json),
//! then what the broker does with a loaded ledger: prune, look keys up, issue a generation,
//! queue a delete, and save it again.
//!
//! Input: eight bytes of "now" (epoch ms), one byte choosing which numbers of the file are
//! replaced by boundary values (blind mutation rarely writes a whole `i64::MAX` over a number
//! and keeps the JSON valid), then the file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scanmint::ledger::{KeyState, Ledger};
use serde_json::Value;

const BOUNDS: [i128; 6] = [
    i64::MAX as i128,
    i64::MIN as i128,
    u64::MAX as i128,
    u32::MAX as i128,
    i64::MAX as i128 - 1,
    -1,
];

/// Replace the k-th integer of `v` (depth first) by a boundary value when bit `k % 8` of `mask`
/// is set; the number's last digit picks which.
fn substitute(v: &mut Value, mask: u8, k: &mut u32) {
    match v {
        Value::Number(n) => {
            let picked = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
            if let Some(n) = picked {
                if mask & (1 << (*k % 8)) != 0 {
                    let b = BOUNDS[(n.rem_euclid(10) as usize) % BOUNDS.len()];
                    *v = serde_json::from_str(&b.to_string()).unwrap();
                }
                *k += 1;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, mask, k)),
        Value::Object(map) => map.values_mut().for_each(|i| substitute(i, mask, k)),
        _ => {}
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((now, rest)) = input.split_first_chunk::<8>() else {
        return;
    };
    let now = i64::from_le_bytes(*now);
    let Some((&mask, file)) = rest.split_first() else {
        return;
    };
    let parsed = if mask == 0 {
        serde_json::from_slice::<Ledger>(file)
    } else {
        let Ok(mut value) = serde_json::from_slice::<Value>(file) else {
            return;
        };
        substitute(&mut value, mask, &mut 0);
        serde_json::from_value::<Ledger>(value)
    };
    let Ok(mut ledger) = parsed else {
        return;
    };

    // What is saved reads back the same.
    let saved = serde_json::to_vec_pretty(&ledger).unwrap();
    assert_eq!(serde_json::from_slice::<Ledger>(&saved).unwrap(), ledger);

    // Pruning drops only revoked entries.
    let live_before = ledger
        .keys
        .iter()
        .filter(|k| k.state != KeyState::Revoked)
        .count();
    for now in [now, 0, i64::MIN, i64::MAX] {
        ledger.prune(now);
    }
    let live_after = ledger
        .keys
        .iter()
        .filter(|k| k.state != KeyState::Revoked)
        .count();
    assert_eq!(live_before, live_after);

    let profiles: Vec<String> = ledger
        .keys
        .iter()
        .map(|k| k.profile.clone())
        .chain(ledger.generations.keys().cloned())
        .collect();
    for profile in &profiles {
        if let Some(active) = ledger.active(profile) {
            assert_eq!(active.state, KeyState::Active);
        }
        let _ = ledger.live(profile).count();
        // Generations only grow (and stop at u64::MAX).
        let before = ledger.generations.get(profile).copied().unwrap_or(0);
        let next = ledger.next_generation(profile);
        assert!(
            next > before || next == u64::MAX,
            "generation {next} after {before}"
        );
    }
    let tags: Vec<String> = ledger.keys.iter().map(|k| k.tag.clone()).collect();
    for tag in &tags {
        assert!(ledger.key_mut(tag).is_some());
    }
    let outbox: Vec<(i64, String)> = ledger
        .outbox
        .iter()
        .map(|o| (o.id, o.profile.clone()))
        .collect();
    for (id, profile) in &outbox {
        let _ = ledger.by_id_mut(*id);
        ledger.queue_delete(*id, profile, "retry", now);
    }
    ledger.queue_delete(now, "p", "new", now);

    let saved = serde_json::to_vec_pretty(&ledger).unwrap();
    assert_eq!(serde_json::from_slice::<Ledger>(&saved).unwrap(), ledger);
});
