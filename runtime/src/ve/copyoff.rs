//! Copying a VE backup off the pair (R12): to the SSH server of the configuration's
//! `[backup]` section, with OpenSSH's `sftp` in batch mode (`sftp -b`).
//!
//! The node logs in with the cluster's client key (`keys.cluster-ssh`; the target lists
//! its public key) and knows the target by `backup.target-host-key` only: the key is
//! written to a known-hosts file of its own and `StrictHostKeyChecking=yes` refuses
//! any other (no trust on first use). The file goes up under a temporary name
//! (`.NAME.partial`) and is renamed when complete, so the target never shows a partial
//! backup under a backup's name. Then the target's directory is listed and the backups
//! of that VE beyond the newest `keep` are deleted there. A finished copy is recorded
//! beside the local file (`.NAME.copied`): a backup without it is "not copied off".

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::snapshot::{copied_marker, parse_file_name};

/// The OpenSSH SFTP client.
pub const SFTP: &str = "/usr/bin/sftp";

/// Where backups are copied off to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Account.
    pub user: String,
    /// Absolute directory.
    pub path: String,
    /// The host's public key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    /// Backups of each VE kept there.
    pub keep: u32,
}

impl Target {
    /// The target of a configuration's `[backup]` section.
    #[must_use]
    pub fn from_config(b: &tandem_config::schema::BackupConfig) -> Target {
        Target {
            host: b.target_host.host().to_owned(),
            port: b.target_host.port().unwrap_or(22),
            user: b.target_user.as_str().to_owned(),
            path: b.target_path.as_str().to_owned(),
            host_key: b.target_host_key.to_string(),
            keep: b.keep,
        }
    }

    /// `user@host:path`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.path)
    }

    fn remote(&self, name: &str) -> String {
        if self.path == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.path)
        }
    }
}

/// Why a copy-off failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A local step (temporary files, running sftp).
    #[error("{op}")]
    Local {
        /// What was done.
        op: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The target's host key is not the configured one.
    #[error(
        "the SSH host key of {host} is not backup.target-host-key: refused (nothing was sent); check the key in the configuration"
    )]
    HostKey {
        /// The target.
        host: String,
    },
    /// sftp failed.
    #[error("sftp to {target} failed: {detail}")]
    Sftp {
        /// The target.
        target: String,
        /// sftp's last words.
        detail: String,
    },
}

/// A finished copy-off.
#[derive(Debug, Clone)]
pub struct Copied {
    /// `user@host:path/NAME`.
    pub to: String,
    /// Backups of the VE deleted on the target (beyond `keep`).
    pub deleted: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Copies the backup `file` (a `ve-ID-TIME.tar.zst`) to `target` logging in with
/// `key` (an OpenSSH private key), in `work` (a private temporary directory is made
/// there for the key and the known-hosts file), then applies `keep` there and records
/// the copy beside `file`.
///
/// # Errors
/// The host key differs, the login or a transfer failed, or a local step failed.
pub fn copy_off(
    target: &Target,
    key: &str,
    file: &Path,
    work: &Path,
    sftp: &Path,
) -> Result<Copied, CopyError> {
    let started = Instant::now();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((ve, _)) = parse_file_name(&name) else {
        return Err(CopyError::Local {
            op: format!("{name:?} is not a VE backup file name"),
            source: io::ErrorKind::InvalidInput.into(),
        });
    };
    let tmp = Private::new(work)?;
    let key_file = tmp.0.join("id");
    write_private(&key_file, key.as_bytes())?;
    let known = tmp.0.join("known_hosts");
    write_private(
        &known,
        crate::sshd::known_hosts_line(&target.host, target.port, &target.host_key).as_bytes(),
    )?;
    let partial = target.remote(&format!(".{name}.partial"));
    let fin = target.remote(&name);
    let local = file.display().to_string();
    if local.contains('"') || local.contains('\n') {
        return Err(CopyError::Local {
            op: format!("the local path {local:?} cannot be named in an sftp batch"),
            source: io::ErrorKind::InvalidInput.into(),
        });
    }
    let batch = format!(
        "-mkdir \"{dir}\"\n-rm \"{partial}\"\nput \"{local}\" \"{partial}\"\nrename \"{partial}\" \"{fin}\"\nls -1 \"{dir}\"\n",
        dir = target.path
    );
    let out = run(target, sftp, &tmp.0, &key_file, &known, &batch)?;
    // Keep the newest `keep` backups of this VE.
    let mut theirs: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with("sftp>"))
        .filter_map(|l| l.trim().rsplit('/').next().map(str::to_owned))
        .filter(|n| parse_file_name(n).is_some_and(|(id, _)| id == ve))
        .collect();
    theirs.sort_by_key(|n| parse_file_name(n).map(|(_, s)| s));
    theirs.dedup();
    let excess = theirs.len().saturating_sub(target.keep as usize);
    let deleted: Vec<String> = theirs.into_iter().take(excess).collect();
    if !deleted.is_empty() {
        let batch: String = deleted
            .iter()
            .map(|n| format!("rm \"{}\"\n", target.remote(n)))
            .collect();
        run(target, sftp, &tmp.0, &key_file, &known, &batch)?;
    }
    let to = format!("{}@{}:{fin}", target.user, target.host);
    if let Some(dir) = file.parent() {
        let marker = copied_marker(dir, &name);
        crate::write_atomic(&marker, format!("{to}\n").as_bytes(), 0o644).map_err(|e| {
            CopyError::Local {
                op: format!("recording the copy in {}", marker.display()),
                source: e,
            }
        })?;
    }
    Ok(Copied {
        to,
        deleted,
        elapsed: started.elapsed(),
    })
}

fn run(
    target: &Target,
    sftp: &Path,
    dir: &Path,
    key: &Path,
    known: &Path,
    batch: &str,
) -> Result<String, CopyError> {
    let batch_file = dir.join("batch");
    write_private(&batch_file, batch.as_bytes())?;
    let out = Command::new(sftp)
        .arg("-F")
        .arg("/dev/null")
        .arg("-b")
        .arg(&batch_file)
        .arg("-P")
        .arg(target.port.to_string())
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(
            crate::sshd::CLIENT_OPTIONS
                .into_iter()
                .chain(["ServerAliveCountMax=4"])
                .flat_map(|o| ["-o", o]),
        )
        .arg(format!("{}@{}", target.user, target.host))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CopyError::Local {
            op: format!("running {}", sftp.display()),
            source: e,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    if stderr.contains("Host key verification failed")
        || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("No ED25519 host key is known")
        || stderr.contains("host key is known")
    {
        return Err(CopyError::HostKey {
            host: target.host.clone(),
        });
    }
    Err(CopyError::Sftp {
        target: target.describe(),
        detail: crate::last_line(&stderr),
    })
}

/// A private temporary directory, removed when dropped.
struct Private(PathBuf);

impl Private {
    fn new(work: &Path) -> Result<Private, CopyError> {
        use std::os::unix::fs::DirBuilderExt;
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| CopyError::Local {
            op: "random name".into(),
            source: io::Error::other(e.to_string()),
        })?;
        let dir = work.join(format!("ve-copyoff-{}", super::archive::hex(&rnd)));
        std::fs::create_dir_all(work)
            .and_then(|()| std::fs::DirBuilder::new().mode(0o700).create(&dir))
            .map_err(|e| CopyError::Local {
                op: format!("creating {}", dir.display()),
                source: e,
            })?;
        Ok(Private(dir))
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), CopyError> {
    crate::create_private(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| CopyError::Local {
            op: format!("writing {}", path.display()),
            source: e,
        })
}
