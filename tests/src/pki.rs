//! A test certificate authority made at test time (rcgen): a CA and server
//! certificates for NTS-KE tests, written as PEM files for chronyd and
//! `--nts-ca`. Nothing is shared between tests or kept after them.

use crate::util::TempDir;
use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// A CA whose certificate and issued server certificates live in a
/// private temporary directory.
pub struct TestCa {
    name: String,
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: TempDir,
}

/// A server certificate (with its CA's certificate appended, as chronyd
/// sends the chain it is given) and its key.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, format!("ntp-filter test CA {name}"));
        let cert = p.self_signed(&key)?;
        let dir = TempDir::new(&format!("ca{name}"))?;
        std::fs::write(dir.path().join("ca.pem"), cert.pem())?;
        Ok(Self {
            name: name.into(),
            cert,
            key,
            dir,
        })
    }

    /// The CA certificate as a PEM file (what `--nts-ca` takes).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `names` (host names and IP addresses; an
    /// address becomes an IP SAN), optionally long expired.
    pub fn server_cert(&self, names: &[&str], expired: bool) -> Result<ServerCert> {
        let key = KeyPair::generate()?;
        let mut p =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        let stem = format!(
            "{}-{}{}",
            self.name,
            names.first().copied().unwrap_or("server").replace(':', "_"),
            if expired { "-expired" } else { "" }
        );
        let out = ServerCert {
            cert: self.dir.path().join(format!("{stem}.crt")),
            key: self.dir.path().join(format!("{stem}.key")),
        };
        std::fs::write(&out.cert, format!("{}{}", cert.pem(), self.cert.pem()))
            .with_context(|| format!("writing {}", out.cert.display()))?;
        std::fs::write(&out.key, key.serialize_pem())
            .with_context(|| format!("writing {}", out.key.display()))?;
        Ok(out)
    }
}
