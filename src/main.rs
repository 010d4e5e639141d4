//! `scanmint`, the launcher: every scan starts this binary, so it is small and starts without
//! Rust's runtime set-up (no stack-guard probe of `/proc/self/maps`, no signal handlers): with a
//! daemon running it serves the launch itself, and hands anything else to `scanmint-core`
//! (`cli/launcher.rs`).

// A test build (`cargo test --bins`) keeps the harness's own `main`.
#![cfg_attr(not(test), no_main)]

/// The C entry point, called by libc's start-up code: `std::env::args_os` still works (glibc
/// passes the arguments to Rust's initialisers), only `fn main`'s runtime set-up is skipped.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    scanmint::cli::launcher::run()
}
