//! The web console's TLS certificate: made on first boot, kept on the
//! configuration partition, its fingerprint shown on the console screen so
//! the operator can check what the browser shows.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Certificate handling failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating the certificate failed.
    #[error("generating the certificate")]
    Generate(#[source] rcgen::Error),
    /// The stored files are not a usable certificate and key.
    #[error("{path} holds no usable {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// rustls refused the pair.
    #[error("the certificate and key do not fit together")]
    Rustls(#[source] rustls::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Paths of the pair inside `dir`.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Makes a self-signed certificate for `name` and `address` in `dir` unless
/// one is there; returns the SHA-256 fingerprint of the certificate in use.
pub fn ensure(dir: &Path, name: &str, address: &str) -> Result<String, TlsError> {
    let (cert_path, key_path) = paths(dir);
    if !(cert_path.exists() && key_path.exists()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned(), address.to_owned()])
            .map_err(TlsError::Generate)?;
        write_atomic(&key_path, ck.key_pair.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&cert_path, ck.cert.pem().as_bytes(), 0o644)?;
    }
    let der = load_cert(&cert_path)?;
    Ok(fingerprint(&der))
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(())
}

fn load_cert(path: &Path) -> Result<rustls::pki_types::CertificateDer<'static>, TlsError> {
    let pem = fs::read(path).map_err(io(path))?;
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .and_then(Result::ok)
        .ok_or(TlsError::Invalid {
            path: path.to_owned(),
            what: "certificate",
        })
}

/// `AB:CD:…` SHA-256 of a DER certificate, as browsers show it.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A rustls server configuration from the pair in `dir`.
pub fn server_config(dir: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let (cert_path, key_path) = paths(dir);
    let cert = load_cert(&cert_path)?;
    let pem = fs::read(&key_path).map_err(io(&key_path))?;
    let key = rustls_pemfile::private_key(&mut &pem[..])
        .ok()
        .flatten()
        .ok_or(TlsError::Invalid {
            path: key_path.clone(),
            what: "private key",
        })?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(TlsError::Rustls)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A TLS acceptor with a certificate made for the test (tests of the listeners).
#[cfg(test)]
pub(crate) fn tests_acceptor() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("config");
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept() {
        let dir = std::env::temp_dir().join(format!("tandem-tls-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = ensure(&dir, "node1", "192.168.100.101").unwrap();
        let b = ensure(&dir, "node1", "192.168.100.101").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32 * 3 - 1);
        server_config(&dir).unwrap();
        let mode = fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(dir.join("cert.pem"), "garbage").unwrap();
        assert!(matches!(
            ensure(&dir, "n", "a"),
            Err(TlsError::Invalid { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
