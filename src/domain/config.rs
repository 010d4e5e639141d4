//! Configuration: profiles from `config.toml`, environment overrides, and the XDG directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_PROFILE: &str = "default";
pub const DEFAULT_ROLE: &str = "CLI Read-Only Custom";

/// Where secrets live. `Auto` walks the ladder: Secret Service, keyutils, memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreChoice {
    #[default]
    Auto,
    SecretService,
    Keyutils,
    File,
    Memory,
}

impl std::str::FromStr for StoreChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StoreChoice::Auto),
            "secret-service" => Ok(StoreChoice::SecretService),
            "keyutils" => Ok(StoreChoice::Keyutils),
            "file" => Ok(StoreChoice::File),
            "memory" => Ok(StoreChoice::Memory),
            _ => Err(format!(
                "unknown store {s:?} (expected auto, secret-service, keyutils, file or memory)"
            )),
        }
    }
}

/// One profile, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub base_url: Option<String>,
    pub role: String,
    pub ttl: Duration,
    pub rotate_at: f64,
    pub grace: Duration,
    pub max_live_keys: usize,
    pub store: StoreChoice,
    pub ca_file: Option<PathBuf>,
    pub prefetch: bool,
    /// A `cortex.env` file the daemon keeps holding the current key (opt-in).
    pub cortex_env: Option<PathBuf>,
    /// The role was written down (file or `SCANMINT_ROLE`), not defaulted: CI jobs must say it.
    pub role_given: bool,
    /// Sessions on the daemon's remote (forwarded) socket may get keys for this profile.
    pub remote_socket: bool,
}

impl Profile {
    pub fn defaults(name: &str) -> Profile {
        Profile {
            name: name.to_string(),
            base_url: None,
            role: DEFAULT_ROLE.to_string(),
            ttl: Duration::from_secs(8 * 3600),
            rotate_at: 0.66,
            grace: Duration::from_secs(600),
            max_live_keys: 2,
            store: StoreChoice::Auto,
            ca_file: None,
            prefetch: true,
            cortex_env: None,
            role_given: false,
            remote_socket: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (may not exist).
    pub path: PathBuf,
    pub default_profile: String,
    pub idle_exit: Duration,
    /// The daemon listens on the restricted socket for forwarding (`remote_socket = false`: not).
    pub remote_socket: bool,
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    default_profile: Option<String>,
    idle_exit: Option<Spanned<String>>,
    remote_socket: Option<bool>,
    #[serde(default)]
    profile: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    base_url: Option<String>,
    role: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    rotate_at: Option<Spanned<f64>>,
    grace: Option<Spanned<String>>,
    max_live_keys: Option<Spanned<usize>>,
    store: Option<StoreChoice>,
    ca_file: Option<PathBuf>,
    prefetch: Option<bool>,
    cortex_env: Option<PathBuf>,
    remote_socket: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// `file: line N` for a value read from the file.
fn at_line<T>(file: &Path, text: &str, value: &Spanned<T>) -> String {
    format!(
        "{}: line {}",
        file.display(),
        line_of(text, value.span().start)
    )
}

fn duration(place: &str, key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        ConfigError(format!("{place}: `{key}` = {value:?} is not a duration ({e}); write e.g. \"90s\", \"10m\", \"8h\""))
    })
}

/// Expand a leading `~/` to the home directory.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home_dir().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// A path from the config file: `~/` is the home directory, and a relative path is relative to
/// the config file's own directory, never to the working directory of whichever process
/// started the daemon (a workspace's terminal, say).
fn beside_config(config: &Path, path: &Path) -> PathBuf {
    let path = expand_home(path);
    if path.is_absolute() {
        return path;
    }
    match config.parent() {
        Some(dir) => dir.join(path),
        None => path,
    }
}

impl Config {
    /// Read the config file (`SCANMINT_CONFIG`, else `$XDG_CONFIG_HOME/scanmint/config.toml`),
    /// then apply environment overrides. A missing file means all defaults.
    pub fn load() -> Result<Config, ConfigError> {
        let path = std::env::var_os("SCANMINT_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| config_dir().join("config.toml"));
        // Relative paths in the file are relative to it: anchor it once, here.
        let path = std::path::absolute(&path).unwrap_or(path);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ConfigError(format!("{}: cannot read: {e}", path.display()))),
        };
        let mut config = Config::parse(&path, &text)?;
        config.apply_env()?;
        Ok(config)
    }

    /// Parse and validate. Errors name the file, the line and the key.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            ConfigError(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        let mut profiles = BTreeMap::new();
        let remote_socket = raw.remote_socket.unwrap_or(true);
        for (name, p) in raw.profile {
            let mut profile = Profile::defaults(&name);
            // A profile says yes or no itself, else follows the top level.
            profile.remote_socket = p.remote_socket.unwrap_or(remote_socket);
            let key = |k: &str| format!("profile.{name}.{k}");
            // Where each validated key was written, so its error can name the line.
            let mut places: BTreeMap<&str, String> = BTreeMap::new();
            if let Some(v) = p.base_url {
                profile.base_url = Some(v);
            }
            if let Some(v) = p.role {
                if v.get_ref().trim().is_empty() {
                    return Err(ConfigError(format!(
                        "{}: `{}` must name a role",
                        at_line(path, text, &v),
                        key("role")
                    )));
                }
                profile.role = v.into_inner();
                profile.role_given = true;
            }
            if let Some(v) = p.ttl {
                places.insert("ttl", at_line(path, text, &v));
                profile.ttl = duration(&places["ttl"], &key("ttl"), v.get_ref())?;
            }
            if let Some(v) = p.rotate_at {
                places.insert("rotate_at", at_line(path, text, &v));
                profile.rotate_at = v.into_inner();
            }
            if let Some(v) = p.grace {
                profile.grace = duration(&at_line(path, text, &v), &key("grace"), v.get_ref())?;
            }
            if let Some(v) = p.max_live_keys {
                places.insert("max_live_keys", at_line(path, text, &v));
                profile.max_live_keys = v.into_inner();
            }
            if let Some(v) = p.store {
                profile.store = v;
            }
            profile.ca_file = p.ca_file.map(|f| beside_config(path, &f));
            profile.cortex_env = p.cortex_env.map(|f| beside_config(path, &f));
            if let Some(v) = p.prefetch {
                profile.prefetch = v;
            }
            profile.validate(|k| {
                places
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| path.display().to_string())
            })?;
            profiles.insert(name, profile);
        }
        let idle_exit = match raw.idle_exit {
            Some(v) => duration(&at_line(path, text, &v), "idle_exit", v.get_ref())?,
            None => Duration::from_secs(3600),
        };
        let default_profile = raw
            .default_profile
            .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
        Ok(Config {
            path: path.to_path_buf(),
            default_profile,
            idle_exit,
            remote_socket,
            profiles,
        })
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(name) = env_nonempty("SCANMINT_PROFILE") {
            self.default_profile = name;
        }
        let name = self.default_profile.clone();
        if let Some(url) = env_nonempty("SCANMINT_BASE_URL") {
            self.profile_mut(&name).base_url = Some(url);
        }
        if let Some(role) = env_nonempty("SCANMINT_ROLE") {
            if role.trim().is_empty() {
                return Err(ConfigError("SCANMINT_ROLE must name a role".into()));
            }
            let p = self.profile_mut(&name);
            p.role = role.trim().to_string();
            p.role_given = true;
        }
        if let Some(ttl) = env_nonempty("SCANMINT_TTL") {
            let p = self.profile_mut(&name);
            p.ttl = duration("environment", "SCANMINT_TTL", &ttl)?;
            p.validate(|_| "SCANMINT_TTL".to_string())?;
        }
        if let Some(store) = env_nonempty("SCANMINT_STORE") {
            let choice: StoreChoice = store
                .parse()
                .map_err(|e| ConfigError(format!("SCANMINT_STORE: {e}")))?;
            for p in self.profiles.values_mut() {
                p.store = choice;
            }
            self.profile_mut(&name).store = choice;
        }
        Ok(())
    }

    fn profile_mut(&mut self, name: &str) -> &mut Profile {
        self.profiles
            .entry(name.to_string())
            .or_insert_with(|| Profile::defaults(name))
    }

    /// The named profile (or the default one); an unnamed profile gets the defaults.
    pub fn profile(&self, name: Option<&str>) -> Profile {
        let name = name.unwrap_or(&self.default_profile);
        self.profiles.get(name).cloned().unwrap_or_else(|| {
            let mut p = Profile::defaults(name);
            // Profiles not in the file follow the store chosen for the default one.
            if let Some(d) = self.profiles.get(&self.default_profile) {
                p.store = d.store;
            }
            p
        })
    }
}

impl Profile {
    /// `place(key)` says where the key was written (`file: line N`).
    fn validate(&self, place: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        let at = |k: &str, why: &str| {
            ConfigError(format!("{}: `profile.{}.{k}` {why}", place(k), self.name))
        };
        if !(0.1..=0.95).contains(&self.rotate_at) {
            return Err(at(
                "rotate_at",
                "must be a fraction of the key's lifetime between 0.1 and 0.95",
            ));
        }
        if self.ttl < Duration::from_secs(10) || self.ttl > Duration::from_secs(365 * 86400) {
            return Err(at("ttl", "must be between 10s and 365d"));
        }
        if self.max_live_keys == 0 {
            return Err(at("max_live_keys", "must be at least 1"));
        }
        Ok(())
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => home_dir().join(fallback),
    }
}

pub fn config_dir() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("scanmint")
}

/// The ledger and the daemon's log live here.
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("scanmint")
}

/// The socket lives here: `$XDG_RUNTIME_DIR/scanmint`, or else `run/` inside the (private) state
/// directory. Never a shared temp directory: anyone can create `/tmp/scanmint-<uid>` first and
/// answer our clients (issue 12, finding 2).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p.join("scanmint"),
        _ => state_dir().join("run"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/x/config.toml"), text)
    }

    /// Finding 8 (issue 12): relative paths resolved against the daemon's working directory.
    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let c = parse(
            "[profile.p]\nca_file = \"certs/ca.pem\"\ncortex_env = \"../w/cortex.env\"\n[profile.q]\nca_file = \"/abs/ca.pem\"\n",
        )
        .unwrap();
        let p = c.profile(Some("p"));
        assert_eq!(p.ca_file.unwrap(), Path::new("/etc/x/certs/ca.pem"));
        assert_eq!(p.cortex_env.unwrap(), Path::new("/etc/x/../w/cortex.env"));
        assert_eq!(
            c.profile(Some("q")).ca_file.unwrap(),
            Path::new("/abs/ca.pem")
        );
    }

    #[test]
    fn documented_shape_parses() {
        let c = parse(
            r#"
default_profile = "default"
[profile.default]
base_url = "https://api-acme.xdr.us.paloaltonetworks.com"
role = "CLI Read-Only Custom"
ttl = "8h"
rotate_at = 0.66
grace = "10m"
max_live_keys = 2
store = "auto"
"#,
        )
        .unwrap();
        let p = c.profile(None);
        assert_eq!(p.ttl, Duration::from_secs(8 * 3600));
        assert_eq!(p.grace, Duration::from_secs(600));
        assert_eq!(
            p.base_url.as_deref(),
            Some("https://api-acme.xdr.us.paloaltonetworks.com")
        );
        assert_eq!(p.store, StoreChoice::Auto);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[profile.default]\nttl = \"1h\"\nrotate_after = 3\n")
            .unwrap_err()
            .0;
        assert!(err.contains("/etc/x/config.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("rotate_after"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let err = parse("[profile.w]\nttl = \"soon\"\n").unwrap_err().0;
        assert!(
            err.contains("profile.w.ttl") && err.contains("not a duration"),
            "{err}"
        );
        let err = parse("[profile.w]\nrotate_at = 1.5\n").unwrap_err().0;
        assert!(err.contains("rotate_at"), "{err}");
        let err = parse("[profile.w]\nstore = \"vault\"\n").unwrap_err().0;
        assert!(err.contains("line 2"), "{err}");
        let err = parse("[profile.w\n").unwrap_err().0;
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_role_written_in_the_file_counts_as_given() {
        let c = parse("[profile.a]\nrole = \"CLI Read-Only Custom\"\n[profile.b]\n").unwrap();
        assert!(c.profile(Some("a")).role_given);
        assert!(!c.profile(Some("b")).role_given);
        assert!(!c.profile(Some("none")).role_given);
    }

    #[test]
    fn missing_profile_gets_defaults() {
        let c = parse("").unwrap();
        let p = c.profile(Some("other"));
        assert_eq!(p.role, DEFAULT_ROLE);
        assert_eq!(p.max_live_keys, 2);
        assert!(p.prefetch);
    }
}
