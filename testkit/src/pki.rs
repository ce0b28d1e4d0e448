//! A throwaway certificate authority that writes PEM files, for TLS tests of real endpoints.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// Why a test certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A CA whose certificate is in `{dir}/{name}-ca.pem`; it issues leaf certificates into `dir`.
pub struct TestCa {
    dir: PathBuf,
    ca_file: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// Creates a CA called `name` and writes its certificate into `dir`.
    pub fn new(dir: &Path, name: &str) -> Result<TestCa, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_file = dir.join(format!("{name}-ca.pem"));
        write(&ca_file, &issuer.pem())?;
        Ok(TestCa {
            dir: dir.to_owned(),
            ca_file,
            issuer,
        })
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Issues a certificate for the DNS names or IP addresses in `names` (the first one names
    /// the files: `{dir}/{first}.pem` and `{dir}/{first}-key.pem`).
    pub fn issue(&self, names: &[&str]) -> Result<IssuedFiles, PkiError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let stem = names.first().cloned().unwrap_or_else(|| "leaf".into());
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, stem.clone());
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = IssuedFiles {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}-key.pem")),
        };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}
