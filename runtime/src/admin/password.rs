//! Which password opens the web console, and the password set on the node's console
//! (R13.1).
//!
//! The console password is kept as `admin.hash` in the configuration store's directory
//! (`/config/admin.hash` on a node): one argon2id PHC string and a newline, owner root,
//! mode 0600, replaced atomically. Only clusterd reads it (the console sets it through
//! the control API). It opens the web console in both modes:
//!
//! - recovery mode (unconfigured node): it replaces the factory password;
//! - configured node: it opens this node's web console in place of the configuration's
//!   management password, until the management password is set again on the
//!   Passwords page (the manual's procedure): that change removes the file on both
//!   nodes ([`crate::confsync::CONSOLE_PASSWORD`]).
//!
//! A file that cannot be read or holds no valid hash refuses every password (fail
//! closed); setting the password again on the console repairs it.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use tandem_api::{FACTORY_PASSWORD, MAX_SECRET, MIN_PASSWORD};
use tandem_config::PasswordHash;
use tandem_config::secrets::{hash_password, verify_password};

/// File name in the store's directory.
pub const FILE: &str = crate::confsync::CONSOLE_PASSWORD;

/// Why the console password could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConsolePasswordError {
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

/// The console-set hash in `dir`, `None` when no password was set there.
///
/// # Errors
/// The file exists but cannot be read or holds no valid argon2id hash.
pub fn read(dir: &Path) -> Result<Option<PasswordHash>, ConsolePasswordError> {
    let p = dir.join(FILE);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ConsolePasswordError::Io { path: p, source }),
    };
    text.trim()
        .parse::<PasswordHash>()
        .map(Some)
        .map_err(|reason| ConsolePasswordError::Invalid { path: p, reason })
}

/// Hashes `password` (argon2id) and stores it in `dir`.
///
/// # Errors
/// The password is shorter than [`MIN_PASSWORD`] characters or too long, or writing
/// failed; the previous file is then unchanged.
pub fn set(dir: &Path, password: &str) -> Result<(), ConsolePasswordError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ConsolePasswordError::Password(format!(
            "has fewer than {MIN_PASSWORD} characters"
        )));
    }
    if password.len() > MAX_SECRET {
        return Err(ConsolePasswordError::Password(format!(
            "is longer than {MAX_SECRET} bytes"
        )));
    }
    let hash = hash_password(password).map_err(ConsolePasswordError::Password)?;
    let target = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| ConsolePasswordError::Io { path: p, source }
    };
    let mut f = crate::create_private(&tmp).map_err(io(&tmp))?;
    f.write_all(format!("{}\n", hash.as_str()).as_bytes())
        .map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(io(&target))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

pub use tandem_api::same_secret as same;

/// Whether `password` opens the web console of the node whose store is `dir`:
/// the console-set password when there is one (a damaged file opens nothing), else
/// the committed configuration's management password, else (unconfigured) the
/// factory password.
#[must_use]
pub fn opens(dir: &Path, password: &str) -> bool {
    if password.len() > MAX_SECRET {
        return false;
    }
    match read(dir) {
        Ok(Some(hash)) => return verify_password(password, &hash),
        Err(e) => {
            eprintln!(
                "clusterd: the console-set admin password: {}",
                crate::error_chain(&e)
            );
            return false;
        }
        Ok(None) => {}
    }
    match tandem_config::Store::open(dir).and_then(|s| s.current()) {
        Ok(Some(c)) => verify_password(password, &c.passwords.admin),
        Ok(None) => same(password, FACTORY_PASSWORD),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_console_set_password_replaces_the_others_in_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Unconfigured, nothing set: the factory password.
        assert!(opens(d, "relation"));
        assert!(!opens(d, "console-pass-1"));
        set(d, "console-pass-1").unwrap();
        assert!(opens(d, "console-pass-1"));
        assert!(!opens(d, "relation"), "the factory password is replaced");
        let meta = fs::metadata(d.join(FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(d.join(FILE)).unwrap();
        assert!(text.starts_with("$argon2id$") && !text.contains("console-pass-1"));
        // Configured: the console-set password still opens; the management one not.
        let (cfg, pw) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
        let store = tandem_config::Store::open(d).unwrap();
        store.stage(&cfg).unwrap();
        store.commit().unwrap();
        assert!(opens(d, "console-pass-1"));
        assert!(!opens(d, &pw.admin), "the file decides while it exists");
        fs::remove_file(d.join(FILE)).unwrap();
        assert!(opens(d, &pw.admin));
        assert!(!opens(d, "relation"));
    }

    #[test]
    fn short_passwords_and_damaged_files_change_and_open_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = set(d, "short").unwrap_err();
        assert!(e.to_string().contains("fewer than 8"), "{e}");
        assert!(!d.join(FILE).exists());
        fs::write(d.join(FILE), "relation\n").unwrap();
        assert!(!opens(d, "relation"));
        let e = read(d).unwrap_err();
        assert!(e.to_string().contains("set the password again"), "{e}");
    }
}
