//! Linux-specific code behind one module, so that a port to another OS is one module's work.

pub mod fs;
