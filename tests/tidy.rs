//! The architecture invariants of ARCHITECTURE.md, checked by reading the source files: the
//! layers import only downwards (so no cycle among the top-level modules), the domain names no
//! LSP, HTTP or socket crate and no upper layer, `unsafe` lives only in `platform/`, and no file
//! grows past 800 lines. Each check is also run on a made-up violation, so a check that stopped
//! seeing anything would fail here rather than pass quietly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules under `src/`, bottom up: each may import only from those before it.
const LAYERS: [&str; 5] = ["platform", "domain", "tenant", "serve", "cli"];
/// What the domain core must never name: LSP, HTTP and socket crates, and the layers above it.
const DOMAIN_FORBIDDEN: [&str; 8] = [
    "tower_lsp_server",
    "reqwest",
    "axum",
    "hyper",
    "tokio::net",
    "crate::tenant",
    "crate::serve",
    "crate::cli",
];
const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no Rust files under {}", dir.display());
    out
}

/// The code of a file without its comments (line comments and doc comments), so that prose
/// naming a module is not an import. Strings stay: a path in a string is rare and harmless.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file under `src/` belongs to (`None` for lib.rs and main.rs).
fn layer_of(rel: &Path) -> Option<String> {
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_str()?.to_string();
    parts.next()?;
    Some(first)
}

/// Every `crate::<top>` a piece of code names.
fn named_layers(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `scanmint::...` is the crate seen from outside; only `crate::` is an import from inside.
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if LAYERS.contains(&name.as_str()) {
            out.insert(name);
        }
    }
    out
}

/// (file, layer, code) for every file under `src/` inside a layer.
fn layered_sources() -> Vec<(PathBuf, String, String)> {
    let src = root().join("src");
    rust_files(&src)
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap().to_path_buf();
            let layer = layer_of(&rel)?;
            let code = code_of(&std::fs::read_to_string(&path).unwrap());
            Some((rel, layer, code))
        })
        .collect()
}

/// Imports that go up or sideways across layers: (file, its layer, the layer it names).
fn upward_imports(files: &[(PathBuf, String, String)]) -> Vec<String> {
    let rank = |l: &str| LAYERS.iter().position(|x| *x == l);
    let mut bad = Vec::new();
    for (rel, layer, code) in files {
        let Some(own) = rank(layer) else {
            bad.push(format!("{}: {layer} is not a known layer", rel.display()));
            continue;
        };
        for named in named_layers(code) {
            if rank(&named).is_some_and(|r| r > own) {
                bad.push(format!(
                    "{} ({layer}) imports crate::{named}",
                    rel.display()
                ));
            }
        }
    }
    bad
}

/// A cycle among the top-level modules, if any (depth-first search over the import graph).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn import_graph(files: &[(PathBuf, String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, layer, code) in files {
        let entry = edges.entry(layer.clone()).or_default();
        for named in named_layers(code) {
            if named != *layer {
                entry.insert(named);
            }
        }
    }
    edges
}

fn domain_violations(files: &[(PathBuf, String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (rel, layer, code) in files {
        if layer != "domain" {
            continue;
        }
        for word in DOMAIN_FORBIDDEN {
            if code.contains(word) {
                bad.push(format!("{} names {word}", rel.display()));
            }
        }
    }
    bad
}

/// The launcher's C entry point (`src/main.rs`): exporting `main` is the one `unsafe` word a
/// binary root needs to skip Rust's runtime set-up; it holds no unsafe code.
const ENTRY_POINT: &str = "#[unsafe(no_mangle)]";

fn unsafe_outside_platform(files: &[(PathBuf, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(rel, _)| !rel.starts_with("src/platform"))
        .filter(|(rel, code)| {
            let code = if rel == Path::new("src/main.rs") {
                code.replacen(ENTRY_POINT, "", 1)
            } else {
                code.clone()
            };
            code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|w| w == "unsafe")
        })
        .map(|(rel, _)| rel.display().to_string())
        .collect()
}

/// (path relative to the repository, code) of every file under `src/` and `benches/`.
fn all_sources() -> Vec<(PathBuf, String, usize, String)> {
    let root = root();
    ["src", "benches"]
        .iter()
        .flat_map(|d| rust_files(&root.join(d)))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let rel = path.strip_prefix(&root).unwrap().to_path_buf();
            let first = text.lines().next().unwrap_or_default().to_string();
            (rel, code_of(&text), text.lines().count(), first)
        })
        .collect()
}

#[test]
fn layers_import_only_downwards_and_form_no_cycle() {
    let files = layered_sources();
    let layers: BTreeSet<&str> = files.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(
        layers,
        LAYERS.iter().copied().collect(),
        "the top-level modules under src/ are the layers"
    );
    let bad = upward_imports(&files);
    assert!(
        bad.is_empty(),
        "imports against the layers:\n{}",
        bad.join("\n")
    );
    assert_eq!(find_cycle(&import_graph(&files)), None);
}

#[test]
fn the_domain_names_no_lsp_http_socket_or_upper_layer() {
    let bad = domain_violations(&layered_sources());
    assert!(
        bad.is_empty(),
        "the domain reaches out:\n{}",
        bad.join("\n")
    );
}

#[test]
fn unsafe_lives_only_in_platform() {
    let files: Vec<(PathBuf, String)> = all_sources()
        .into_iter()
        .filter(|(rel, ..)| rel.starts_with("src"))
        .map(|(rel, code, ..)| (rel, code))
        .collect();
    let bad = unsafe_outside_platform(&files);
    assert!(bad.is_empty(), "unsafe outside src/platform: {bad:?}");
    assert!(
        files
            .iter()
            .any(|(rel, code)| rel.starts_with("src/platform") && code.contains("unsafe")),
        "the check would see unsafe in platform/ (it is there today)"
    );
}

#[test]
fn no_file_is_too_long_and_each_says_why_it_exists() {
    let mut bad = Vec::new();
    for (rel, _, lines, first) in all_sources() {
        if lines > MAX_LINES {
            bad.push(format!(
                "{}: {lines} lines (limit {MAX_LINES})",
                rel.display()
            ));
        }
        if !first.starts_with("//") {
            bad.push(format!("{}: does not open with a comment", rel.display()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// The checks themselves, on made-up violations: each must see what it is there to see.

fn fake(rel: &str, layer: &str, code: &str) -> (PathBuf, String, String) {
    (PathBuf::from(rel), layer.to_string(), code_of(code))
}

#[test]
fn the_checks_see_an_upward_import_a_cycle_and_a_domain_reaching_out() {
    let files = vec![
        fake(
            "domain/broker/mod.rs",
            "domain",
            "use crate::serve::lsp::Hub;\n",
        ),
        fake(
            "serve/daemon.rs",
            "serve",
            "use crate::domain::broker::Broker;\n",
        ),
        fake(
            "cli/mod.rs",
            "cli",
            "// crate::serve in a comment is no import\n",
        ),
    ];
    assert_eq!(
        upward_imports(&files),
        ["domain/broker/mod.rs (domain) imports crate::serve"]
    );
    assert_eq!(
        find_cycle(&import_graph(&files)),
        Some(vec!["domain".into(), "serve".into(), "domain".into()])
    );
    let files = vec![
        fake("domain/store/mod.rs", "domain", "use reqwest::Client;\n"),
        fake(
            "domain/clock.rs",
            "domain",
            "let t = tower_lsp_server::x();\n",
        ),
        fake("tenant/connector.rs", "tenant", "use reqwest::Client;\n"),
    ];
    assert_eq!(
        domain_violations(&files),
        [
            "domain/store/mod.rs names reqwest",
            "domain/clock.rs names tower_lsp_server"
        ]
    );
    assert_eq!(find_cycle(&import_graph(&files)), None);
    let files = vec![
        (
            PathBuf::from("src/cli/exec.rs"),
            code_of("unsafe { libc::kill(1, 2) };"),
        ),
        (
            PathBuf::from("src/platform/mod.rs"),
            code_of("unsafe { libc::geteuid() }"),
        ),
        (
            PathBuf::from("src/serve/x.rs"),
            code_of("// unsafe in a comment"),
        ),
        (
            PathBuf::from("src/main.rs"),
            code_of("#[unsafe(no_mangle)]\nextern \"C\" fn main() {}"),
        ),
        (
            PathBuf::from("src/main_core.rs"),
            code_of("#[unsafe(no_mangle)]\nextern \"C\" fn main() {}"),
        ),
        (
            PathBuf::from("src/main.rs"),
            code_of("#[unsafe(no_mangle)]\nfn f() { unsafe { g() } }"),
        ),
    ];
    assert_eq!(
        unsafe_outside_platform(&files),
        ["src/cli/exec.rs", "src/main_core.rs", "src/main.rs"]
    );
}
