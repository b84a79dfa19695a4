//! Used by `tests/prog_test_run.rs`: the test
//! network's addresses, frame builders, and a harness that loads the real
//! XDP program into a private pin directory for BPF_PROG_TEST_RUN.

pub mod addrs;
pub mod frames;
pub mod harness;
