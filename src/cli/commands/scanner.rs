//! The demo's scanner: authenticate with the environment's key the way the Cortex CLI does.

use super::*;

/// The demo's scanner: authenticate with the environment's key the way the Cortex CLI does.
pub(crate) async fn stand_in_scanner() -> anyhow::Result<i32> {
    let (Ok(base_url), Ok(id), Ok(key)) = (
        std::env::var("CORTEX_API_BASE_URL"),
        std::env::var("CORTEX_API_KEY_ID"),
        std::env::var("CORTEX_API_KEY"),
    ) else {
        eprintln!("scanner: CORTEX_API_BASE_URL, CORTEX_API_KEY_ID and CORTEX_API_KEY must be set");
        return Ok(deliver::EXIT_PLATFORM_FAILURE);
    };
    let key = Secret::new(key);
    let id: i64 = id.parse().context("CORTEX_API_KEY_ID is not an integer")?;
    let mut opts =
        crate::tenant::papi::ClientOptions::new(&base_url, id, key, SecurityLevel::Standard);
    opts.retry = crate::tenant::papi::RetryPolicy::none();
    opts.ca_file = std::env::var_os("SCANMINT_SCANNER_CA").map(PathBuf::from);
    let client = crate::tenant::papi::Client::new(opts)?;
    // Like the vendor's SDK, the scanner waits out the tenant-wide rate limit (429), which the
    // broker's own calls share; anything else (a 401 above all) fails the scan at once.
    let mut reply = client.download_link().await;
    for wait_ms in [250, 500, 1000, 2000] {
        match &reply {
            Err(e) if e.kind == crate::tenant::papi::ErrorKind::RateLimited => {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                reply = client.download_link().await;
            }
            _ => break,
        }
    }
    match reply {
        Ok(link) => {
            println!(
                "scanner: authenticated with key {id}; CLI download link for {}",
                link.file_name
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("scanner: the platform refused key {id}: {e}");
            Ok(deliver::EXIT_PLATFORM_FAILURE)
        }
    }
}
