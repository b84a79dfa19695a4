//! Network Time Security for NTP (RFC 8915), client side, sans-IO: the
//! NTS-KE records the caller exchanges over its TLS connection, the AEAD
//! keys it exports from that connection, and the per-source session that
//! authenticates every NTP request and reply. The TLS connection, its
//! certificate checks and timeouts belong to the caller.

pub mod aead;
pub mod backoff;
pub mod cookies;
pub mod ext;
pub mod ke;
pub mod session;

pub use aead::{exporter_context, AeadAlgorithm, AeadKey, EXPORTER_LABEL};
pub use backoff::KeBackoff;
pub use cookies::CookieJar;
pub use ke::{client_request, KeError, KeResponse, ResponseParser, ALPN, DEFAULT_KE_PORT};
pub use session::{NtsReject, NtsSession};
