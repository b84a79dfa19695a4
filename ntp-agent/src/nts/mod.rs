//! NTS (RFC 8915) in the agent: the trust anchors and the NTS-KE client
//! over TLS. The packet side (cookies, authenticators) is sans-IO in
//! `ntp_proto::nts`.

pub mod ke;
pub mod source;
pub mod trust;
