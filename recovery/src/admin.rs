//! The management (`admin`) password set on the node's local console (R13.1).
//!
//! The console writes it as `admin.hash` in the config directory (`/config/admin.hash` on a
//! node): one argon2id PHC string and a newline, owner root, group of the unprivileged
//! web console (gid [`WEB_GROUP`]), mode 0640, replaced atomically (temporary file, fsync,
//! rename, fsync of the directory). The web console reads it at every login:
//!
//! - recovery mode (unconfigured node): it replaces the factory password;
//! - configured node: it opens this node's web console in place of the configuration's
//!   management password, until the management password is set again on the Passwords
//!   page (the manual's procedure): that change removes the file on both nodes
//!   ([`tandem_runtime::confsync::CONSOLE_PASSWORD`]).
//!
//! A file that cannot be read or holds no valid hash refuses every password (fail
//! closed); setting the password again on the console repairs it.

use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, fchown};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tandem_config::PasswordHash;
use tandem_config::secrets::{hash_password, verify_password};

use crate::web::FACTORY_PASSWORD;

/// File name in the config directory.
pub const FILE: &str = tandem_runtime::confsync::CONSOLE_PASSWORD;
/// The web console's group (user and group `tandem-web` in the system image).
pub const WEB_GROUP: u32 = 101;
/// Shortest password the console accepts.
pub const MIN_LEN: usize = 8;

/// Why the console-set password could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AdminHashError {
    /// Reading or writing the file failed.
    #[error("{path}: i/o failed")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something other than an argon2id hash.
    #[error("{path} {reason} (set the password again on the node's console)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The new password is not acceptable.
    #[error("the password {0}")]
    Password(String),
}

/// Which password a login gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPassword {
    /// The one set on the console.
    Reset,
    /// The factory password (and no password was set on the console).
    Factory,
    /// Neither.
    Wrong,
}

impl AdminPassword {
    /// Whether it opens the web console: the console-set password always, the factory
    /// password only on an unconfigured node.
    #[must_use]
    pub fn opens(self, configured: bool) -> bool {
        match self {
            Self::Reset => true,
            Self::Factory => !configured,
            Self::Wrong => false,
        }
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The console-set hash in `dir`, `None` when no password was set there.
///
/// # Errors
/// The file exists but cannot be read or holds no valid argon2id hash.
pub fn read(dir: &Path) -> Result<Option<PasswordHash>, AdminHashError> {
    let p = path(dir);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AdminHashError::Io { path: p, source }),
    };
    text.trim()
        .parse::<PasswordHash>()
        .map(Some)
        .map_err(|reason| AdminHashError::Invalid { path: p, reason })
}

/// Hashes `password` (argon2id) and stores it in `dir`, group `group` when given.
///
/// # Errors
/// The password is shorter than [`MIN_LEN`] characters or too long, or writing failed;
/// the previous file is then unchanged.
pub fn set(dir: &Path, password: &str, group: Option<u32>) -> Result<(), AdminHashError> {
    if password.chars().count() < MIN_LEN {
        return Err(AdminHashError::Password(format!(
            "has fewer than {MIN_LEN} characters"
        )));
    }
    let hash = hash_password(password).map_err(AdminHashError::Password)?;
    write(dir, &hash, group)
}

fn write(dir: &Path, hash: &PasswordHash, group: Option<u32>) -> Result<(), AdminHashError> {
    let target = path(dir);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| AdminHashError::Io { path: p, source }
    };
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(io(&tmp))?;
    if let Some(gid) = group {
        fchown(&f, Some(0), Some(gid)).map_err(io(&tmp))?;
    }
    f.write_all(format!("{}\n", hash.as_str()).as_bytes())
        .map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(io(&target))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// Which password `password` is, given the config directory `dir` (none: only the
/// factory password exists). An unreadable or damaged file is reported on stderr and
/// refuses every password.
#[must_use]
pub fn check(dir: Option<&Path>, password: &str) -> AdminPassword {
    match dir.map(read) {
        Some(Ok(Some(hash))) => {
            if verify_password(password, &hash) {
                AdminPassword::Reset
            } else {
                AdminPassword::Wrong
            }
        }
        Some(Err(e)) => {
            eprintln!("tandem-web: the console-set admin password: {e}");
            AdminPassword::Wrong
        }
        Some(Ok(None)) | None => {
            if same(password, FACTORY_PASSWORD) {
                AdminPassword::Factory
            } else {
                AdminPassword::Wrong
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tdm-admin-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn factory_until_set_then_only_the_new_one() {
        let d = dir("set");
        assert_eq!(check(Some(&d), "relation"), AdminPassword::Factory);
        assert_eq!(check(None, "relation"), AdminPassword::Factory);
        assert_eq!(check(Some(&d), "other"), AdminPassword::Wrong);
        set(&d, "correct horse", None).expect("set");
        assert_eq!(check(Some(&d), "correct horse"), AdminPassword::Reset);
        assert_eq!(check(Some(&d), "relation"), AdminPassword::Wrong);
        assert_eq!(check(Some(&d), "correct hors"), AdminPassword::Wrong);
        let meta = fs::metadata(d.join(FILE)).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        let text = fs::read_to_string(d.join(FILE)).expect("read");
        assert!(text.starts_with("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        assert!(!d.join(format!("{FILE}.tmp")).exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn short_password_is_refused_and_nothing_changes() {
        let d = dir("short");
        let e = set(&d, "short", None).expect_err("short");
        assert!(e.to_string().contains("fewer than 8"), "{e}");
        assert!(!d.join(FILE).exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn damaged_file_refuses_everything() {
        let d = dir("damaged");
        fs::write(d.join(FILE), "relation\n").expect("write");
        assert_eq!(check(Some(&d), "relation"), AdminPassword::Wrong);
        let e = read(&d).expect_err("damaged");
        assert!(e.to_string().contains("set the password again"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn who_gets_in() {
        assert!(AdminPassword::Reset.opens(true) && AdminPassword::Reset.opens(false));
        assert!(AdminPassword::Factory.opens(false) && !AdminPassword::Factory.opens(true));
        assert!(!AdminPassword::Wrong.opens(false));
    }
}
