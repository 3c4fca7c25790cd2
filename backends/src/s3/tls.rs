//! TLS for `https` endpoints: the remote's rustls client configuration
//! (from the shared [`crate::tls`] settings, with HTTP/1.1 as ALPN).

use std::sync::Arc;

use rustls::ClientConfig;

use crate::tls::{self, CertificateCheck};
pub use crate::tls::{describe_failure, server_name};
use crate::{BackendError, ErrorKind};

/// Builds the client configuration for one remote; fails on an unusable
/// CA file or a system without trusted roots.
pub fn client_config(
    remote: &str,
    check: &CertificateCheck,
) -> Result<Arc<ClientConfig>, BackendError> {
    let mut config = tls::client_config(check).map_err(|message| {
        BackendError::new(
            ErrorKind::Other,
            "configure",
            "",
            format!("remote `{remote}`: {message}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_names_the_remote() {
        let dir = tempfile::tempdir().unwrap();
        let err = client_config(
            "p",
            &CertificateCheck::RequireMatch {
                ca_file: Some(dir.path().join("missing.pem")),
            },
        )
        .unwrap_err();
        assert!(err.message().starts_with("remote `p`"), "{err}");
        assert!(client_config("p", &CertificateCheck::AllowAny).is_ok());
    }
}
