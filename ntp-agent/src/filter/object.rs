//! The XDP program object, embedded at build time.

use aya::include_bytes_aligned;

/// The ELF object built from `ntp-filter-ebpf` by this crate's build script.
pub static PROGRAM_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ntp-filter"));
