//! The keys of update bundles: the release key named by the vendor, or a
//! development CA and signing key made once on the build host.
//!
//! A node trusts the keyring baked into its image (`/etc/rauc/keyring.pem`):
//! the CA certificate that issued the signing certificate. RAUC installs a
//! bundle only when its CMS signature verifies against that keyring.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host::run;
use crate::{ImageError, io};

/// Subject organisation of the development keys; their certificates say so.
pub const DEVELOPMENT_ORG: &str = "tandem development key";

/// The key that signs bundles and the keyring the node trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// Private key (PEM) of the signing certificate.
    pub key: PathBuf,
    /// The signing certificate (PEM).
    pub cert: PathBuf,
    /// The CA certificate(s) the node trusts (PEM), baked into the image.
    pub keyring: PathBuf,
    /// Made on this host for development: not for customers.
    pub development: bool,
}

impl Signing {
    /// The release key: `key` and `cert` sign, `ca` (the certificate itself
    /// when not given, i.e. a self-signed signing certificate) is what nodes
    /// trust.
    ///
    /// # Errors
    /// A file that does not exist, named.
    pub fn release(key: PathBuf, cert: PathBuf, ca: Option<PathBuf>) -> Result<Self, ImageError> {
        let keyring = ca.unwrap_or_else(|| cert.clone());
        for (what, p) in [
            ("TANDEM_SIGNING_KEY", &key),
            ("TANDEM_SIGNING_CERT", &cert),
            ("TANDEM_SIGNING_CA", &keyring),
        ] {
            if !p.is_file() {
                return Err(ImageError::Missing(format!(
                    "{what} names {}, which is not a file",
                    p.display()
                )));
            }
        }
        Ok(Self {
            key,
            cert,
            keyring,
            development: false,
        })
    }

    /// The development CA and signing key under `dir`, made with openssl the
    /// first time (and kept: images and bundles built later trust and carry
    /// the same keys).
    ///
    /// # Errors
    /// openssl failing, with its last line.
    pub fn development(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Self, ImageError> {
        let s = Self {
            key: dir.join("signing.key.pem"),
            cert: dir.join("signing.cert.pem"),
            keyring: dir.join("ca.cert.pem"),
            development: true,
        };
        if s.key.is_file() && s.cert.is_file() && s.keyring.is_file() {
            return Ok(s);
        }
        log(&format!(
            "no TANDEM_SIGNING_KEY/TANDEM_SIGNING_CERT: making a development CA and signing key in {}",
            dir.display()
        ));
        let tmp = dir.with_extension("new");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        run(Command::new("openssl")
            .current_dir(&tmp)
            .args(["req", "-x509", "-nodes", "-days", "36500"])
            .args(ec)
            .args(["-keyout", "ca.key.pem", "-out", "ca.cert.pem", "-subj"])
            .arg(format!("/O={DEVELOPMENT_ORG}/CN=tandem development CA"))
            .args([
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]))?;
        run(Command::new("openssl")
            .current_dir(&tmp)
            .args(["req", "-nodes"])
            .args(ec)
            .args(["-keyout", "signing.key.pem", "-out", "signing.csr", "-subj"])
            .arg(format!(
                "/O={DEVELOPMENT_ORG}/CN=tandem development signing"
            )))?;
        fs::write(
            tmp.join("signing.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n",
        )
        .map_err(io(&tmp))?;
        run(Command::new("openssl")
            .current_dir(&tmp)
            .args(["x509", "-req", "-days", "36500", "-in", "signing.csr"])
            .args([
                "-CA",
                "ca.cert.pem",
                "-CAkey",
                "ca.key.pem",
                "-CAcreateserial",
            ])
            .args(["-extfile", "signing.ext", "-out", "signing.cert.pem"]))?;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        fs::rename(&tmp, dir).map_err(io(dir))?;
        Ok(s)
    }

    /// One line for build information and the console.
    #[must_use]
    pub fn describe(&self) -> &'static str {
        if self.development {
            "development key (made on the build host, not for customers)"
        } else {
            "release key"
        }
    }
}
