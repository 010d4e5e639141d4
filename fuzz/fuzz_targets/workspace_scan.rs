//! `cortex.env` and workspace-file scanning: `find_literal_keys` and the LSP diagnostics made
//! from it (byte columns to UTF-16 columns) on any text, and `is_scanned_file` on any path.
//!
//! Input: one byte choosing the file name, then the text.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scanmint::lsp::diagnostics_for;
use scanmint::scan::{MANAGED_MARKER, find_literal_keys, is_scanned_file};

const PATHS: [&str; 8] = [
    "/w/cortex.env",
    "/w/.env.local",
    "/w/.vscode/settings.json",
    "/w/.github/workflows/ci.yml",
    "/w/.gitlab-ci.yml",
    "/w/.cortex.yaml",
    "/w/.circleci/config.yml",
    "/",
];

const NAMES: [&str; 4] = ["CORTEX_API_KEY", "api-key", "api_key", "--api-key"];

fuzz_target!(|input: &[u8]| {
    let Some((&which, text)) = input.split_first() else {
        return;
    };
    // Any path, as a watcher event could name it.
    let _ = is_scanned_file(Path::new(&*String::from_utf8_lossy(text)));
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let path = Path::new(PATHS[which as usize % PATHS.len()]);
    if which as usize % PATHS.len() < PATHS.len() - 1 {
        assert!(is_scanned_file(path), "{}", path.display());
    }

    let findings = find_literal_keys(text);
    let lines: Vec<&str> = text.lines().collect();
    if lines.first().is_some_and(|l| l.trim() == MANAGED_MARKER) {
        assert!(findings.is_empty());
    }
    let mut last_line = None;
    for f in &findings {
        // One finding per line, in order.
        assert!(last_line.is_none_or(|l| l < f.line));
        last_line = Some(f.line);
        let line = lines[f.line as usize];
        let (start, end) = (f.start as usize, f.end as usize);
        assert!(start <= end && end <= line.len(), "{f:?} on {line:?}");
        assert!(
            line.is_char_boundary(start) && line.is_char_boundary(end),
            "{f:?} on {line:?}"
        );
        let value = &line[start..end];
        assert!(value.len() >= 8, "{value:?}");
        assert!(!value.starts_with('$'), "{value:?}");
        assert!(
            NAMES.iter().any(|n| n.eq_ignore_ascii_case(&f.name)),
            "{f:?}"
        );
        // The name comes before the value.
        assert!(
            line[..start]
                .to_ascii_lowercase()
                .contains(&f.name.to_ascii_lowercase())
        );
    }

    let diagnostics = diagnostics_for(path, text);
    assert_eq!(diagnostics.len(), findings.len());
    for (d, f) in diagnostics.iter().zip(&findings) {
        let line = lines[f.line as usize];
        let utf16 = |byte: u32| line[..byte as usize].encode_utf16().count() as u32;
        assert_eq!(d.range.start.line, f.line);
        assert_eq!(d.range.end.line, f.line);
        assert_eq!(d.range.start.character, utf16(f.start));
        assert_eq!(d.range.end.character, utf16(f.end));
        assert!(d.range.start.character <= d.range.end.character);
    }
});
