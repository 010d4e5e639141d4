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
    match client.download_link().await {
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
