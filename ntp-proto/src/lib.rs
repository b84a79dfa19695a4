//! Sans-IO NTP protocol core: packets and timer ticks go in, packets to send
//! and clock actions come out. The caller owns sockets, the system clock and
//! time; nothing here performs I/O or reads a clock.
//!
//! Typical agent loop:
//! - `System::new(SystemConfig)`, optionally `set_frequency(drift, mono)`;
//!   `add_source(SourceConfig::server(addr) / ::peer(addr), mono)` per address.
//! - Sleep until `next_wakeup()` (monotonic), then
//!   `handle_timers(mono, clock_reading, &mut rng)`.
//! - On a datagram from a source's address (`source_by_address`):
//!   `handle_packet(id, bytes, receive_clock_reading, mono)`.
//! - Every returned `Action::Send` goes to the source (peers: from port 123);
//!   every `Action::Clock` is applied to the disciplined clock immediately.
//! - `status()` / `source_status()` give serde-serialisable snapshots;
//!   `frequency()` is what the drift file stores; `server_state()` feeds
//!   `build_reply` when answering clients.
//!
//! Time is typed (see `time`): `NtpInstant` for the caller's monotonic
//! clock, `NtpTimestamp` for readings of the disciplined clock and the
//! wire, `NtpDuration` for spans and offsets, `Frequency` for rates. Only the
//! serialisable status uses plain numbers, in the units its field names say
//! (`_ms`, `_ppm`).

pub mod discipline;
pub mod filter;
pub mod nts;
pub mod packet;
pub mod regress;
pub mod select;
pub mod server;
pub mod source;
pub mod system;
pub mod time;

pub use discipline::{ClockAction, DisciplineConfig};
pub use packet::{KissCode, LeapIndicator, Mode, NtpPacket, PacketError, RefId};
pub use select::Tally;
pub use server::{build_kod, build_kod_rate, build_reply, ServerState};
pub use source::{KodState, RejectCounters, RejectReason, SourceConfig, SourceKind};
pub use system::{
    Action, SourceId, SourceStatus, System, SystemConfig, SystemStatus, UnsyncReason,
};
pub use time::{Frequency, NtpDuration, NtpInstant, NtpShort, NtpTimestamp};
