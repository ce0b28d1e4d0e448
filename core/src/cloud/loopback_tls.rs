//! TLS for a tunnel that never leaves the machine (`edgetwin up`): a local CA and a server
//! certificate for `localhost` and `127.0.0.1`, made once in a data directory and reused.
//!
//! Files, in `{dir}`: `ca.pem` (what the edge trusts), `server.pem` and `server-key.pem` (mode
//! 0600). The CA's private key is not kept: once the server certificate is signed nothing else
//! can be issued under this CA, so a copied `ca.pem` trusts this one server only. When any of
//! the three files is missing, all three are made again.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// Why the loopback TLS files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackTlsError {
    /// Certificate generation failed.
    #[error("cannot generate the loopback TLS certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file or the directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The loopback TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackTls {
    /// The CA certificate the edge trusts (PEM).
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8, mode 0600).
    pub key: PathBuf,
}

impl LoopbackTls {
    /// The files in `dir`, made (with `dir`) when any is missing.
    pub fn load_or_create(dir: &Path) -> Result<LoopbackTls, LoopbackTlsError> {
        let files = LoopbackTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        };
        if [&files.ca, &files.cert, &files.key]
            .iter()
            .all(|path| path.is_file())
        {
            return Ok(files);
        }
        fs::create_dir_all(dir).map_err(|source| LoopbackTlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let (ca_pem, cert_pem, key_pem) = generate()?;
        write(&files.key, &key_pem, true)?;
        write(&files.cert, &cert_pem, false)?;
        write(&files.ca, &ca_pem, false)?;
        tracing::info!(dir = %dir.display(), "made a local CA and server certificate for the loopback tunnel");
        Ok(files)
    }
}

/// A fresh CA and a server certificate signed by it: `(ca, cert, key)` as PEM.
fn generate() -> Result<(String, String, String), rcgen::Error> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "edgetwin up loopback CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let names: Vec<String> = SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let mut server = CertificateParams::new(names)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "edgetwin up tunnel");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &issuer)?;
    Ok((issuer.pem(), cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), LoopbackTlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|source| LoopbackTlsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::tls::{ClientTlsFiles, ServerTlsFiles, client_config, server_config};

    #[test]
    fn made_once_then_reused_and_usable_by_both_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls_dir = dir.path().join("tls");
        let made = LoopbackTls::load_or_create(&tls_dir).expect("made");
        let ca = fs::read(&made.ca).expect("ca");
        let again = LoopbackTls::load_or_create(&tls_dir).expect("reused");
        assert_eq!(made, again);
        assert_eq!(
            fs::read(&again.ca).expect("ca"),
            ca,
            "the same CA on a second start"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&made.key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        server_config(&ServerTlsFiles {
            cert_chain: made.cert.clone(),
            key: made.key.clone(),
            client_ca: None,
        })
        .expect("the hub accepts the server files");
        client_config(&ClientTlsFiles {
            ca: made.ca.clone(),
            client_cert: None,
        })
        .expect("the edge accepts the CA");

        fs::remove_file(&made.cert).expect("remove");
        let remade = LoopbackTls::load_or_create(&tls_dir).expect("remade");
        assert!(remade.cert.is_file());
        assert_ne!(
            fs::read(&remade.ca).expect("ca"),
            ca,
            "a missing file makes a new CA"
        );
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").expect("file");
        let err = LoopbackTls::load_or_create(&file.join("tls")).expect_err("cannot create");
        assert!(err.to_string().contains("cannot write"), "{err}");
    }
}
