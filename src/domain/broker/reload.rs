//! A running broker takes an edited configuration: the next mint uses the new `ttl` and `role`,
//! a profile whose tenant URL changed starts over (a new tenant needs its own login), and a
//! file that does not parse is reported while the previous configuration keeps serving.

use super::*;

impl Broker {
    /// Use `config` from now on and clear any reported problem with the file.
    pub async fn apply_config(&self, config: Config) {
        let old = self.config();
        let mut names: Vec<String> = old.profiles.keys().cloned().collect();
        names.extend(config.profiles.keys().cloned());
        names.push(old.default_profile.clone());
        names.sort();
        names.dedup();
        let moved: Vec<String> = names
            .into_iter()
            .filter(|n| old.profile(Some(n)).base_url != config.profile(Some(n)).base_url)
            .collect();
        *self.inner.config.write().unwrap() = Arc::new(config);
        *self.inner.config_problem.lock().unwrap() = None;
        for profile in &moved {
            // Not under a mint: a mint in flight finishes against the tenant it started with.
            let lock = self.mint_lock(profile);
            let _guard = lock.lock().await;
            tracing::info!(
                profile,
                "the tenant URL changed: the profile is loaded again"
            );
            self.with_state(profile, |s| {
                let leases = std::mem::take(&mut s.leases);
                *s = ProfileState {
                    leases,
                    ..Default::default()
                };
            });
        }
        for profile in self.known_profiles() {
            self.emit_status(&profile);
        }
        self.inner.wake.notify_one();
    }

    /// The file on disk does not parse: keep serving the configuration in use, and say why.
    pub fn set_config_problem(&self, problem: String) {
        *self.inner.config_problem.lock().unwrap() = Some(problem);
        for profile in self.known_profiles() {
            self.emit_status(&profile);
        }
    }

    pub fn config_problem(&self) -> Option<String> {
        self.inner.config_problem.lock().unwrap().clone()
    }
}
