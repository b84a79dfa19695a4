//! The NTS-KE client (RFC 8915 section 4): one TLS 1.3 connection per key
//! establishment, bounded in time and size; the records and the key
//! export are `ntp_proto::nts`'s, the sockets and certificates ours.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use ntp_proto::nts::{
    exporter_context, AeadAlgorithm, KeError, KeResponse, NtsSession, ResponseParser, ALPN,
    EXPORTER_LABEL,
};
use rustls::{pki_types::ServerName, CertificateError, ClientConfig};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

/// A whole key establishment (resolve, connect, handshake, records) must
/// finish within this.
pub const KE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a key establishment gave.
#[derive(Debug)]
pub struct Established {
    pub session: NtsSession,
    pub aead: AeadAlgorithm,
    /// Where NTP goes: the server the KE named, or the KE server itself.
    pub ntp_addr: IpAddr,
    pub ntp_port: u16,
    /// The address the TLS connection went to.
    pub ke_addr: SocketAddr,
    /// TLS bytes each way and the time it all took.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub elapsed: Duration,
    pub warnings: Vec<u16>,
}

/// Why a key establishment failed; `kind()` is the short form status and
/// metrics use, `Display` the line for the log and the status reason.
#[derive(Debug, thiserror::Error)]
pub enum KeFailure {
    #[error("cannot resolve {host}: {err}")]
    Resolve { host: String, err: io::Error },
    #[error("connecting to {addr}: {err}")]
    Connect { addr: SocketAddr, err: io::Error },
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    #[error("connection: {0}")]
    Io(io::Error),
    #[error("the server did not agree to ALPN ntske/1")]
    NoAlpn,
    #[error("NTS-KE: {0}")]
    Protocol(#[from] KeError),
    #[error("exporting the NTP keys: {0}")]
    Export(rustls::Error),
    #[error("the NTP server the KE named, {0:?}, does not resolve")]
    NtpServer(String),
    #[error("the NTP server the KE named, {0}, is already another source")]
    Conflict(SocketAddr),
}

pub use crate::protocol::KeFailureKind as FailureKind;

impl KeFailure {
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Resolve { .. } | Self::NtpServer(_) => FailureKind::Resolve,
            Self::Connect { err, .. } if err.kind() == io::ErrorKind::ConnectionRefused => {
                FailureKind::Refused
            }
            Self::Connect { .. } => FailureKind::Connect,
            Self::Timeout(_) => FailureKind::Timeout,
            Self::Tls(rustls::Error::InvalidCertificate(c)) => match c {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => FailureKind::NameMismatch,
                CertificateError::UnknownIssuer => FailureKind::UnknownIssuer,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    FailureKind::Expired
                }
                _ => FailureKind::Certificate,
            },
            Self::Tls(_) | Self::Io(_) | Self::NoAlpn | Self::Export(_) => FailureKind::Tls,
            Self::Protocol(_) => FailureKind::Protocol,
            Self::Conflict(_) => FailureKind::Conflict,
        }
    }
}

/// rustls reports its errors inside `io::Error`s; take them back out so
/// the certificate problem is named.
fn tls_or_io(e: io::Error) -> KeFailure {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => KeFailure::Tls(tls.clone()),
        None => KeFailure::Io(e),
    }
}

/// Key establishment with `host:port` (a name or an address; the
/// certificate must be valid for it). `ntp_port`: where NTP goes unless
/// the server negotiates another port.
pub async fn establish(
    tls: Arc<ClientConfig>,
    host: &str,
    port: u16,
    ntp_port: u16,
    timeout: Duration,
) -> Result<Established, KeFailure> {
    let started = Instant::now();
    let work = async {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|err| KeFailure::Resolve {
                    host: host.into(),
                    err,
                })?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // The request is one small write after the handshake:
                    // without NODELAY, Nagle waits for the server's delayed
                    // ACK (about 40 ms a key establishment, measured).
                    let _ = stream.set_nodelay(true);
                    let mut done = exchange(stream, tls, host, addr, ntp_port).await?;
                    done.elapsed = started.elapsed();
                    return Ok(done);
                }
                Err(err) => last = Some(KeFailure::Connect { addr, err }),
            }
        }
        Err(last.unwrap_or_else(|| KeFailure::Resolve {
            host: host.into(),
            err: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        }))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| KeFailure::Timeout(timeout))?
}

/// The TLS part over an established byte stream (a TCP connection, or an
/// in-memory pipe in tests).
pub async fn exchange<S>(
    stream: S,
    tls: Arc<ClientConfig>,
    host: &str,
    peer: SocketAddr,
    ntp_port: u16,
) -> Result<Established, KeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_owned()).map_err(|_| KeFailure::Resolve {
            host: host.into(),
            err: io::Error::new(io::ErrorKind::InvalidInput, "not a valid host name"),
        })?,
    };
    let counted = Counted::new(stream);
    let mut tls = TlsConnector::from(tls)
        .connect(name, counted)
        .await
        .map_err(tls_or_io)?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(KeFailure::NoAlpn);
    }
    tls.write_all(&ntp_proto::nts::client_request())
        .await
        .map_err(tls_or_io)?;
    tls.flush().await.map_err(tls_or_io)?;
    let mut parser = ResponseParser::new();
    let mut buf = [0u8; 2048];
    let response: KeResponse = loop {
        let n = tls.read(&mut buf).await.map_err(tls_or_io)?;
        if n == 0 {
            return Err(parser.eof().into());
        }
        if let Some(r) = parser.push(&buf[..n])? {
            break r;
        }
    };
    let aead = response.aead;
    let export = |server_to_client: bool| {
        tls.get_ref()
            .1
            .export_keying_material(
                vec![0u8; aead.key_len()],
                EXPORTER_LABEL,
                Some(&exporter_context(aead, server_to_client)),
            )
            .map_err(KeFailure::Export)
    };
    let (c2s, s2c) = (export(false)?, export(true)?);
    let session = NtsSession::new(aead, &c2s, &s2c, response.cookies)
        .expect("exported keys have the AEAD's length");
    // A polite close; the server closes too, and we have what we need.
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
    let ntp_addr = match &response.server {
        None => peer.ip(),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => tokio::net::lookup_host((s.as_str(), 0))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
                .ok_or_else(|| KeFailure::NtpServer(s.clone()))?,
        },
    };
    let (counted, _) = tls.into_inner();
    Ok(Established {
        session,
        aead,
        ntp_addr,
        ntp_port: response.port.unwrap_or(ntp_port),
        ke_addr: peer,
        bytes_sent: counted.sent,
        bytes_received: counted.received,
        elapsed: started.elapsed(),
        warnings: response.warnings,
    })
}

/// Counts the bytes a stream carries (what a key establishment costs on
/// the wire, TLS included).
struct Counted<S> {
    inner: S,
    sent: u64,
    received: u64,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            sent: 0,
            received: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.received += (buf.filled().len() - before) as u64;
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.sent += n as u64;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
