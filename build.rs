//! Pack the `scanmint` binary's relative relocations (RELR): a position-independent binary of
//! this size carries ~100,000 of them, and the dynamic loader reads and applies the whole table
//! at every start, which every scanner launch through `scanmint exec` pays. RELR keeps the
//! binary position-independent (ASLR), only the table shrinks. See docs/benchmarks.md.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
