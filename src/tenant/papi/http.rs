//! Setting up HTTPS to a tenant: the base URL check (https, or plain http to loopback only),
//! extra CA certificates, no proxy for loopback, no redirects.

use std::time::Duration;

use super::client::ClientOptions;
use super::error::{ErrorKind, PapiError};

/// Plain http is only for the local emulator: a key must never cross a network in the clear.
pub(super) fn check_base_url(base_url: &str) -> Result<String, PapiError> {
    let url = reqwest::Url::parse(base_url).map_err(|e| {
        PapiError::new(
            ErrorKind::Config,
            format!("base URL {base_url:?} is not a URL: {e}"),
        )
    })?;
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(PapiError::new(
                ErrorKind::Config,
                format!(
                    "refusing plain http:// to {host}: keys may only travel over https (http is allowed for loopback only)"
                ),
            ));
        }
        other => {
            return Err(PapiError::new(
                ErrorKind::Config,
                format!("unsupported URL scheme {other:?}"),
            ));
        }
    }
    if host.is_empty() {
        return Err(PapiError::new(
            ErrorKind::Config,
            format!("base URL {base_url:?} has no host"),
        ));
    }
    Ok(base_url.trim_end_matches('/').to_string())
}

pub(super) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn build_http(opts: &ClientOptions) -> Result<reqwest::Client, PapiError> {
    // reqwest is built without a default crypto provider; ring is ours. Installing twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(60))
        // The Public API does not redirect; following one would resend a POST as a GET.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scanmint/", env!("CARGO_PKG_VERSION")));
    // Proxies come from the environment, but never for a tenant on this machine.
    let loopback = reqwest::Url::parse(&opts.base_url)
        .ok()
        .and_then(|u| u.host_str().map(is_loopback))
        .unwrap_or(false);
    if loopback {
        builder = builder.no_proxy();
    }
    // A plain-http tenant (loopback only: `check_base_url`) never speaks TLS, and every request
    // goes to its base URL (no redirects): trust no roots rather than parse the system's CA
    // bundle, milliseconds of CPU at every daemon start.
    if opts.base_url.starts_with("http://") {
        builder = builder.tls_certs_only(Vec::new());
    }
    if let Some(ca_file) = &opts.ca_file {
        let pem = std::fs::read(ca_file).map_err(|e| {
            PapiError::new(
                ErrorKind::Config,
                format!("cannot read CA file {}: {e}", ca_file.display()),
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            PapiError::new(
                ErrorKind::Config,
                format!(
                    "CA file {} holds no usable PEM certificate: {e}",
                    ca_file.display()
                ),
            )
        })?;
        // A file without any PEM block parses as an empty bundle: refuse it rather than
        // silently trusting nothing extra.
        if certs.is_empty() {
            return Err(PapiError::new(
                ErrorKind::Config,
                format!("CA file {} holds no PEM certificate", ca_file.display()),
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| PapiError::new(ErrorKind::Config, format!("cannot set up HTTPS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://localhost:1/").is_ok());
        assert!(check_base_url("http://[::1]:9").is_ok());
        assert!(check_base_url("https://api-acme.xdr.us.paloaltonetworks.com").is_ok());
        let err = check_base_url("http://api-acme.example.com").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        assert!(err.message.contains("https"), "{}", err.message);
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("not a url").is_err());
    }
}
