//! TLS for the gateway's HTTP listeners (the S3 endpoint, the admin API
//! and console): a rustls acceptor from PEM files, on the aws-lc-rs
//! provider already in the tree, TLS 1.2 and 1.3.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

/// Loads the certificate chain and key named by `section.certificate` and
/// `section.private_key` (`section` only names them in errors).
pub fn tls_acceptor(
    cert: &Path,
    key: &Path,
    section: &str,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "cannot read the certificate {} ({section}.certificate)",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "{} holds no certificate ({section}.certificate)",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read the private key {} ({section}.private_key)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!("the certificate and private key of [{section}] do not go together")
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
