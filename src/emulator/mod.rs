//! The tenant emulator (being written).
