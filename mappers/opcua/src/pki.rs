//! The mapper's OPC UA application identity and trust list, in its data directory:
//!
//! ```text
//! DATA/pki/own/cert.der          the mapper's application instance certificate (generated on
//! DATA/pki/private/private.pem   first start when absent, with its key, mode 0600)
//! DATA/pki/trusted/              server certificates the mapper trusts
//! DATA/pki/rejected/             server certificates it refused: move one to trusted/ to trust it
//! ```
//!
//! A device may bring its own client certificate (`certificate`/`privateKey`) and name server
//! certificates to trust (`serverCertificate`); those are copied into `trusted/`, which is the
//! trust list of the mapper as one OPC UA application.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use opcua::crypto::{CertificateStore, X509, X509Data};
use opcua::types::{ApplicationDescription, ApplicationType, LocalizedText};

/// The application URI of the mapper's generated certificate.
pub const APPLICATION_URI: &str = "urn:edgetwin:mapper-opcua";
/// The application name the mapper announces.
pub const APPLICATION_NAME: &str = "edgetwin OPC-UA mapper";
/// The product URI the mapper announces.
pub const PRODUCT_URI: &str = "urn:edgetwin";
/// How long a generated certificate is valid.
pub const CERTIFICATE_DAYS: u32 = 5 * 365;

/// Why the certificate store could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(String);

/// The certificate store in the data directory.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    /// Held while the own certificate is checked or generated, so devices connecting at the same
    /// time generate it once.
    own: Mutex<()>,
}

impl Pki {
    /// The store under `data_dir/pki`; nothing is touched until it is used.
    pub fn new(data_dir: &Path) -> Pki {
        Pki {
            dir: data_dir.join("pki"),
            own: Mutex::new(()),
        }
    }

    /// `DATA/pki`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mapper's own certificate.
    pub fn own_certificate(&self) -> PathBuf {
        self.dir.join("own/cert.der")
    }

    /// The mapper's own private key.
    pub fn own_private_key(&self) -> PathBuf {
        self.dir.join("private/private.pem")
    }

    /// The trusted server certificates.
    pub fn trusted_dir(&self) -> PathBuf {
        self.dir.join("trusted")
    }

    /// Server certificates that were refused.
    pub fn rejected_dir(&self) -> PathBuf {
        self.dir.join("rejected")
    }

    /// Makes sure the store's folders and the mapper's own certificate exist; generates the
    /// certificate (and logs how to trust it on the server) when it does not.
    pub fn ensure_own(&self) -> Result<(), PkiError> {
        let _guard = self.own.lock().unwrap_or_else(|p| p.into_inner());
        for dir in [self.trusted_dir(), self.rejected_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| PkiError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let (cert, key) = (self.own_certificate(), self.own_private_key());
        if cert.exists() && key.exists() {
            return Ok(());
        }
        let thumbprint = generate(&cert, &key)?;
        tracing::warn!(
            certificate = %cert.display(),
            application_uri = APPLICATION_URI,
            thumbprint = %thumbprint,
            "generated the mapper's OPC-UA client certificate; a server that checks client \
             certificates (every Sign or SignAndEncrypt endpoint) must trust it: copy it into the \
             server's trusted certificates (e.g. its pki/trusted folder) or accept it in the \
             server's configuration tool"
        );
        Ok(())
    }

    /// Copies server certificates (DER or PEM files) into the trust list, under the name OPC UA's
    /// certificate store looks them up by. Returns what each one was trusted as.
    pub fn trust(&self, certificates: &[PathBuf]) -> Result<Vec<PathBuf>, PkiError> {
        let mut trusted = Vec::with_capacity(certificates.len());
        for path in certificates {
            let cert = CertificateStore::read_cert(path).map_err(|e| {
                PkiError(format!(
                    "serverCertificate {}: not a readable certificate ({e})",
                    path.display()
                ))
            })?;
            let target = self
                .trusted_dir()
                .join(CertificateStore::cert_file_name(&cert));
            if !target.exists() {
                let der = cert
                    .to_der()
                    .map_err(|e| PkiError(format!("serverCertificate {}: {e}", path.display())))?;
                std::fs::write(&target, der)
                    .map_err(|e| PkiError(format!("cannot write {}: {e}", target.display())))?;
                tracing::info!(certificate = %path.display(), trusted = %target.display(), "server certificate trusted");
            }
            trusted.push(target);
        }
        Ok(trusted)
    }
}

/// The description the mapper announces, with `application_uri`.
pub fn application_description(application_uri: &str) -> ApplicationDescription {
    ApplicationDescription {
        application_uri: application_uri.into(),
        product_uri: PRODUCT_URI.into(),
        application_name: LocalizedText::new("", APPLICATION_NAME),
        application_type: ApplicationType::Client,
        ..Default::default()
    }
}

/// Writes a new self-signed certificate and its key (the key readable by the owner only);
/// returns the certificate's thumbprint.
fn generate(cert_path: &Path, key_path: &Path) -> Result<String, PkiError> {
    let mut data = X509Data::from(application_description(APPLICATION_URI));
    data.certificate_duration_days = CERTIFICATE_DAYS;
    for path in [cert_path, key_path] {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| PkiError(format!("cannot create {}: {e}", parent.display())))?;
        }
    }
    // Created empty with mode 0600 first: the store's writer truncates it and keeps the mode.
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut key_file = options
        .open(key_path)
        .map_err(|e| PkiError(format!("cannot create {}: {e}", key_path.display())))?;
    key_file
        .flush()
        .map_err(|e| PkiError(format!("cannot write {}: {e}", key_path.display())))?;
    drop(key_file);
    let (cert, _key) =
        CertificateStore::create_certificate_and_key(&data, true, cert_path, key_path)
            .map_err(|e| PkiError(format!("cannot generate the client certificate: {e}")))?;
    Ok(thumbprint(&cert))
}

/// The SHA-1 thumbprint of a certificate, in hex, as servers show it.
pub fn thumbprint(cert: &X509) -> String {
    cert.thumbprint().as_hex_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_certificate_is_generated_once_with_a_private_key_only_the_owner_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path());
        pki.ensure_own().expect("generated");
        let cert = std::fs::read(pki.own_certificate()).expect("certificate written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(pki.own_private_key())
                .expect("key written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
        }
        assert!(pki.trusted_dir().is_dir() && pki.rejected_dir().is_dir());
        pki.ensure_own().expect("kept");
        assert_eq!(
            std::fs::read(pki.own_certificate()).expect("certificate"),
            cert,
            "a second start keeps the certificate"
        );
    }

    #[test]
    fn named_server_certificates_join_the_trust_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path());
        pki.ensure_own().expect("generated");
        // Any certificate will do: trust the mapper's own.
        let trusted = pki.trust(&[pki.own_certificate()]).expect("trusted");
        assert_eq!(trusted.len(), 1);
        assert!(trusted[0].starts_with(pki.trusted_dir()), "{trusted:?}");
        assert!(trusted[0].exists());
        let error = pki
            .trust(&[dir.path().join("missing.der")])
            .expect_err("missing file");
        assert!(error.to_string().contains("missing.der"), "{error}");
    }
}
