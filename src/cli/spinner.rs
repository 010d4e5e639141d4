//! A spinner on a terminal (a plain line otherwise) while a command waits on the daemon.

use super::*;

/// A spinner on a terminal, a plain line otherwise, while `fut` runs.
pub async fn with_spinner<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    let mut stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return fut.await;
    }
    tokio::pin!(fut);
    let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut tick = tokio::time::interval(Duration::from_millis(80));
    let mut i = 0;
    let out = loop {
        tokio::select! {
            out = &mut fut => break out,
            _ = tick.tick() => {
                let _ = write!(stderr, "\r{} {what}…", frames[i % frames.len()]);
                let _ = stderr.flush();
                i += 1;
            }
        }
    };
    let _ = write!(stderr, "\r\x1b[2K");
    out
}
