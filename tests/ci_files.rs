//! The ready-made CI integration files, run the way a runner runs them: the shell of the GitHub
//! composite action (`ci/github/action.yml`) and of the GitLab template
//! (`ci/gitlab/scanmint.gitlab-ci.yml`) is cut out of the YAML and run with the variables a
//! runner sets, installing scanmint from a local tarball of the freshly built binary, against
//! the emulator.

#[path = "common/ci_job.rs"]
mod ci_job;
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ci_job::*;
use common::{BIN, CORE, Env};
use tokio::process::Command;

/// The shell of every block scalar opened by a line reading `opener` (`run: |` in the action,
/// `- |` under `script:` in the template) in one of our YAML files, in order. A block ends at
/// the first non-empty line indented no deeper than its opener.
fn yaml_scripts(file: &Path, opener: &str) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut scripts = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == opener {
            let indent_of = |l: &str| l.len() - l.trim_start().len();
            let base = indent_of(lines[i]);
            let mut body = Vec::new();
            i += 1;
            let mut block_indent = None;
            while i < lines.len() {
                let l = lines[i];
                if !l.trim().is_empty() && indent_of(l) <= base {
                    break;
                }
                if !l.trim().is_empty() {
                    let ind = *block_indent.get_or_insert(indent_of(l));
                    body.push(l[ind.min(indent_of(l))..].to_string());
                } else {
                    body.push(String::new());
                }
                i += 1;
            }
            scripts.push(body.join("\n") + "\n");
            continue;
        }
        i += 1;
    }
    scripts
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A release-style tarball holding the freshly built binary, as the integration files fetch it.
fn local_tarball(env: &Env) -> PathBuf {
    let stage = env.path("release/scanmint-test");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::copy(BIN, stage.join("scanmint")).unwrap();
    std::fs::copy(CORE, stage.join("scanmint-core")).unwrap();
    let tarball = env.path("release/scanmint-test.tar.gz");
    let ok = std::process::Command::new("tar")
        // Fastest gzip: the debug binary is large, and the format is what matters here.
        .args(["-I", "gzip -1", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(env.path("release"))
        .arg("scanmint-test")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar works");
    tarball
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_action_scripts_run_green_like_a_runner_runs_them() {
    let env = Env::new().await;
    let scripts = yaml_scripts(&repo("ci/github/action.yml"), "run: |");
    assert_eq!(scripts.len(), 2, "install and scan steps: {scripts:?}");
    let tarball = local_tarball(&env);
    let github_path = env.path("gh/path");
    let github_env = env.path("gh/env");
    let tool_dir = env.path("gh/tool");
    std::fs::create_dir_all(env.path("gh")).unwrap();
    std::fs::write(&github_path, "").unwrap();
    std::fs::write(&github_env, "").unwrap();
    let dump = env.path("gh/child.env");
    let scanner = format!("env > '{}'; exit 1", dump.display());
    let run_step = |script: &str, extra_path: Option<String>| {
        let path = match extra_path {
            Some(p) => format!("{p}:{}", std::env::var("PATH").unwrap_or_default()),
            None => std::env::var("PATH").unwrap_or_default(),
        };
        let mut cmd = Command::new("bash");
        cmd.args(["-e", "-c", script])
            .env_clear()
            .env("PATH", path)
            .env("HOME", env.path("job/home"))
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_RUN_ID", "5151")
            .env("GITHUB_JOB", "scan")
            .env("GITHUB_PATH", &github_path)
            .env("GITHUB_ENV", &github_env)
            .env("RUNNER_TEMP", env.path("gh"))
            .env("RUNNER_TOOL_CACHE", &tool_dir)
            .env("XDG_CONFIG_HOME", env.path("job/config"))
            .env("XDG_STATE_HOME", env.path("job/state"))
            .env("XDG_RUNTIME_DIR", env.path("job/run"))
            .env("SCANMINT_LOG", "trace")
            // What the action's `env:` maps from its inputs.
            .env("SCANMINT_VERSION", "test")
            .env("SCANMINT_INSTALL_FROM", &tarball)
            .env("SCANMINT_BASE_URL", env.emulator.base_url())
            .env(
                "SCANMINT_PRIMARY_KEY_ID",
                env.emulator.primary_key_id().to_string(),
            )
            .env("SCANMINT_PRIMARY_KEY", env.emulator.primary_key().expose())
            .env("SCANMINT_ROLE", "CLI Read-Only Custom")
            .env("SCANMINT_TTL", "30m")
            .env("SCANMINT_SCAN", &scanner)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let install = finish(&mut run_step(&scripts[0], None)).await;
    assert_eq!(install.code, 0, "{}\n{}", install.stdout, install.stderr);
    let added = std::fs::read_to_string(&github_path).unwrap();
    let bin_dir = added
        .lines()
        .last()
        .expect("the install step adds to GITHUB_PATH");
    assert!(Path::new(bin_dir).join("scanmint").exists(), "{added}");
    // The step after sees GITHUB_PATH's directories first, as on a runner.
    let scan = finish(&mut run_step(&scripts[1], Some(bin_dir.to_string()))).await;
    assert_eq!(
        scan.code, 1,
        "the scanner's findings fail the step: {}",
        scan.stderr
    );
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(seen.contains("CORTEX_API_KEY="), "{seen}");
    assert!(!seen.contains("SCANMINT_PRIMARY"), "{seen}");
    let keys = minted(&env);
    assert_eq!(keys.len(), 1);
    assert!(keys[0].comment.contains("ci/github/5151/scan"), "{keys:?}");
    assert_eq!(minutes_to_live(&keys[0]), 30);
    assert_no_live_minted(&env, "after the action").await;
    assert!(scan.stdout.contains("::add-mask::"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_template_script_runs_green_like_a_runner_runs_it() {
    let env = Env::new().await;
    let scripts = yaml_scripts(&repo("ci/gitlab/scanmint.gitlab-ci.yml"), "- |");
    assert!(!scripts.is_empty(), "the template has a script");
    let script = scripts.join("\n");
    // The template installs from a plain binary here (the action test covers tarballs).
    let install_from = PathBuf::from(BIN);
    let dump = env.path("gl-child.env");
    let scanner = format!("env > '{}'", dump.display());
    std::fs::create_dir_all(env.path("gl")).unwrap();
    let out = finish(
        Command::new("sh")
            .args(["-e", "-c", &script])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", env.path("job/home"))
            .env("CI", "true")
            .env("GITLAB_CI", "true")
            .env("CI_JOB_ID", "8080")
            .env("CI_PROJECT_DIR", env.path("gl"))
            .env("XDG_CONFIG_HOME", env.path("job/config"))
            .env("XDG_STATE_HOME", env.path("job/state"))
            .env("XDG_RUNTIME_DIR", env.path("job/run"))
            .env("SCANMINT_LOG", "trace")
            .env("SCANMINT_INSTALL_FROM", &install_from)
            .env("SCANMINT_BASE_URL", env.emulator.base_url())
            .env(
                "SCANMINT_PRIMARY_KEY_ID",
                env.emulator.primary_key_id().to_string(),
            )
            .env("SCANMINT_PRIMARY_KEY", env.emulator.primary_key().expose())
            .env("SCANMINT_ROLE", "CLI Read-Only Custom")
            .env("SCANMINT_SCAN", &scanner)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true),
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(seen.contains("CORTEX_API_KEY="), "{seen}");
    assert!(!seen.contains("SCANMINT_PRIMARY"), "{seen}");
    let keys = minted(&env);
    assert_eq!(keys.len(), 1);
    assert!(keys[0].comment.contains("ci/gitlab/8080"), "{keys:?}");
    assert!(!out.stdout.contains("::add-mask::"), "not on GitHub");
    for secret in env.emulator.issued_secrets() {
        assert_no_secret(
            &format!("{}{}", out.stdout, out.stderr),
            secret.expose(),
            "the job log",
        );
    }
    assert_no_live_minted(&env, "after the template").await;
}
