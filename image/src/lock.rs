//! The lock file `image/packages.lock`: every outside input, pinned by
//! version and SHA-256.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ImageError;

/// The whole lock file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// The kernel package and the modules taken from it.
    pub kernel: KernelLock,
    /// The userland packages.
    #[serde(rename = "package", default)]
    pub packages: Vec<PackageLock>,
}

/// The pinned kernel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelLock {
    /// Debian package name.
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// SHA-256 of the `.deb`, hex.
    pub sha256: String,
    /// The kernel release (`uname -r`), the directory under `/lib/modules`.
    pub release: String,
    /// Module names to ship; their dependencies are added.
    pub modules: Vec<String>,
}

/// One pinned userland package.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageLock {
    /// Debian package name.
    pub name: String,
    /// Exact Debian version.
    pub version: String,
    /// SHA-256 of the `.deb`, hex.
    pub sha256: String,
    /// Paths copied into the root filesystem ("dir/" = recursively).
    pub include: Vec<String>,
}

/// A package to fetch: name, version and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Debian package name.
    pub name: String,
    /// Exact Debian version.
    pub version: String,
    /// SHA-256 of the `.deb`, hex.
    pub sha256: String,
}

impl Lock {
    /// Reads and checks the lock file.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImageError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the lock file text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ImageError> {
        let lock: Lock = toml::from_str(text).map_err(|e| ImageError::Lock {
            path: PathBuf::from(path),
            message: e.message().to_owned(),
        })?;
        for pin in lock.pins() {
            let ok = pin.sha256.len() == 64 && pin.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(ImageError::Lock {
                    path: path.to_owned(),
                    message: format!("sha256 of {} is not 64 hex digits", pin.name),
                });
            }
        }
        Ok(lock)
    }

    /// Every package to fetch, kernel first.
    pub fn pins(&self) -> Vec<Pin> {
        let mut pins = vec![Pin {
            name: self.kernel.package.clone(),
            version: self.kernel.version.clone(),
            sha256: self.kernel.sha256.clone(),
        }];
        pins.extend(self.packages.iter().map(|p| Pin {
            name: p.name.clone(),
            version: p.version.clone(),
            sha256: p.sha256.clone(),
        }));
        pins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_lock_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packages.lock");
        let lock = Lock::load(&path).unwrap();
        assert!(lock.kernel.modules.iter().any(|m| m == "e1000e"));
        assert!(lock.packages.iter().any(|p| p.name == "busybox-static"));
    }

    #[test]
    fn a_bad_checksum_is_refused_with_the_package_name() {
        let text = r#"
            [kernel]
            package = "k"
            version = "1"
            sha256 = "xyz"
            release = "r"
            modules = []
        "#;
        let err = Lock::parse(text, Path::new("packages.lock")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "packages.lock: sha256 of k is not 64 hex digits"
        );
    }
}
