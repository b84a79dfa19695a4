//! Whom NTS-KE trusts: the system's roots plus the operator's `--nts-ca`
//! PEM files, in one rustls client configuration (TLS 1.3 only, ALPN
//! `ntske/1`) shared by every key establishment.

use std::{path::Path, sync::Arc};

use anyhow::{bail, Context as _, Result};
use rustls::{
    pki_types::{pem::PemObject as _, CertificateDer},
    ClientConfig, RootCertStore,
};

/// The certificates of one `--nts-ca` file; an error names the file when
/// it cannot be read or holds no certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("--nts-ca {}: cannot read the file", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--nts-ca {}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--nts-ca {}: holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            path.display()
        );
    }
    Ok(certs)
}

/// Checks every `--nts-ca` file up front (start-up and check-config).
pub fn check_ca_files(paths: &[impl AsRef<Path>]) -> Result<()> {
    for p in paths {
        let certs = read_ca_file(p.as_ref())?;
        let mut store = RootCertStore::empty();
        for c in certs {
            store.add(c).with_context(|| {
                format!(
                    "--nts-ca {}: a certificate is not a usable trust anchor",
                    p.as_ref().display()
                )
            })?;
        }
    }
    Ok(())
}

/// The TLS client configuration for NTS-KE. `system_roots`: also trust
/// the system's certificate store (tests turn it off to prove the test CA
/// alone decides).
pub fn client_config(ca_files: &[impl AsRef<Path>], system_roots: bool) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if system_roots {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("system certificate store: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system trust anchors for NTS-KE");
    }
    for p in ca_files {
        for c in read_ca_file(p.as_ref())? {
            roots.add(c).with_context(|| {
                format!(
                    "--nts-ca {}: not a usable trust anchor",
                    p.as_ref().display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ntp_proto::nts::ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("nf-nts-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = format!("{:#}", read_ca_file(&missing).unwrap_err());
        assert!(
            err.starts_with(&format!("--nts-ca {}: cannot read", missing.display())),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let err = format!("{:#}", check_ca_files(&[&empty]).unwrap_err());
        assert!(err.contains("empty.pem: holds no certificate"), "{err}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let good = dir.join("good.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        check_ca_files(&[&good]).unwrap();
        let config = client_config(&[&good], false).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"ntske/1".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
