//! Config parsing: `Config::parse` on any text. Errors must name the file; what parses must
//! hold only valid profiles.

#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use scanmint::config::Config;

const PATH: &str = "/fuzz/scanmint/config.toml";

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match Config::parse(Path::new(PATH), text) {
        Ok(config) => {
            assert_eq!(config.path, Path::new(PATH));
            for (name, p) in &config.profiles {
                assert_eq!(&p.name, name);
                assert!(
                    (0.1..=0.95).contains(&p.rotate_at),
                    "rotate_at {}",
                    p.rotate_at
                );
                assert!(p.ttl >= Duration::from_secs(10));
                assert!(p.ttl <= Duration::from_secs(365 * 86400));
                assert!(p.max_live_keys >= 1);
                assert!(!p.role.trim().is_empty());
            }
            let _ = config.profile(None);
            let _ = config.profile(config.profiles.keys().next().map(String::as_str));
        }
        Err(e) => assert!(e.0.starts_with(PATH), "error without the file: {}", e.0),
    }
});
