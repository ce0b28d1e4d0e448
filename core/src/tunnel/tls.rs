//! rustls configurations for both ends of the tunnel, from PEM files. The ring provider is the
//! only crypto provider in the tree.
//!
//! The edge trusts exactly the CA it is configured with (never the system roots): the cloud's
//! certificate must chain to it. The cloud may additionally ask for client certificates issued
//! by a client CA; a client without one can still authenticate with a token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// What the file was supposed to hold, e.g. "CA certificate file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the material (e.g. a key that does not match the certificate).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not be used to verify client certificates.
    #[error("client CA unusable: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

/// The cloud's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server certificate chain (leaf first), PEM.
    pub cert_chain: PathBuf,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients may present a certificate issued by this CA (PEM) to authenticate as
    /// the node their certificate names; clients without one still need a token.
    pub client_ca: Option<PathBuf>,
}

/// The edge's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA (PEM, one or more certificates) the cloud's certificate must chain to.
    pub ca: PathBuf,
    /// A client certificate chain and key (PEM) that name this node, if the cloud accepts them.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|error| TlsConfigError::Pem {
        what,
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = read(what, path)?;
    let bad = |reason: String| TlsConfigError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(error.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let what = "private key file";
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| TlsConfigError::Pem {
        what,
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

fn roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(what, path)? {
        roots.add(cert).map_err(|error| TlsConfigError::Pem {
            what,
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
    }
    Ok(roots)
}

/// Builds the cloud's TLS configuration.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = certificates("certificate file", &files.cert_chain)?;
    let key = private_key(&files.key)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match &files.client_ca {
        Some(client_ca) => {
            let roots = roots("client CA file", client_ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
    };
    Ok(Arc::new(config))
}

/// Builds the edge's TLS configuration.
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let roots = roots("CA certificate file", &files.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &files.client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(
            certificates("client certificate file", chain)?,
            private_key(key)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    #[test]
    fn missing_and_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = write(dir.path(), "empty.pem", "");
        let error = client_config(&ClientTlsFiles {
            ca: empty.clone(),
            client_cert: None,
        })
        .expect_err("empty CA");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        assert!(error.to_string().contains("empty.pem"), "{error}");

        let error = server_config(&ServerTlsFiles {
            cert_chain: dir.path().join("absent.pem"),
            key: empty,
            client_ca: None,
        })
        .expect_err("absent");
        assert!(error.to_string().starts_with("certificate file"), "{error}");
        assert!(error.to_string().contains("absent.pem"), "{error}");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(vec!["cloud.test".into()]).expect("cert");
        let other = rcgen::KeyPair::generate().expect("key");
        let files = ServerTlsFiles {
            cert_chain: write(dir.path(), "cert.pem", &cert.cert.pem()),
            key: write(dir.path(), "key.pem", &other.serialize_pem()),
            client_ca: None,
        };
        let error = server_config(&files).expect_err("mismatch");
        assert!(matches!(error, TlsConfigError::Rustls(_)), "{error}");

        let good = ServerTlsFiles {
            key: write(dir.path(), "good.pem", &cert.signing_key.serialize_pem()),
            ..files
        };
        server_config(&good).expect("matching key");
    }
}
