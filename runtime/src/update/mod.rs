//! System updates of a node: signed RAUC bundles written into the inactive system
//! slot, tried once, committed by the node itself when healthy, rolled back by the
//! boot loader otherwise (R11).
//!
//! - [`rauc`]: the engine's command line.
//! - [`record`]: what the node remembers across boots (the pending update, history).
//! - [`Updater`]: the node's rules around them: which bundles are accepted (signed by
//!   the key the system trusts — RAUC checks that —, for this system, not older than
//!   the running version unless forced), the install, and what a boot means.
//!
//! The rule with time in it (commit when healthy, give up at a deadline) is
//! [`tandem_core::Trial`]; clusterd's loop feeds it.

pub mod peer;
pub mod rauc;
pub mod record;
pub mod rolling;
pub mod server;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rauc::{BundleInfo, Mark, Progress, Rauc, Status};
use record::{Boot, Pending, Record};

/// The compatible string of this appliance's system (every bundle must carry it).
pub const COMPATIBLE: &str = "tandem-sr2500";

/// Where the running system's version is written by the image build.
pub const VERSION_FILE: &str = "/etc/tandem-version";

/// The node's updater.
#[derive(Debug, Clone)]
pub struct Updater {
    /// The engine.
    pub rauc: Rauc,
    /// Where the record lives (clusterd's state directory on `/config`).
    pub state_dir: PathBuf,
    /// The running system's version file.
    pub version_file: PathBuf,
}

/// Why an update was refused or failed: one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UpdateError(pub String);

/// The words of an [`UpdateError`] whose cause is that the engine is not installed.
const NO_ENGINE: &str = "the update engine (rauc) is not installed";

impl UpdateError {
    /// The engine is not installed (a test machine, not a node): asking again will
    /// not help.
    #[must_use]
    pub fn engine_missing(&self) -> bool {
        self.0.contains(NO_ENGINE)
    }
}

fn fail(text: impl Into<String>) -> UpdateError {
    UpdateError(text.into())
}

/// The operator's words for a failure to talk to RAUC.
fn engine(e: &rauc::RaucError) -> String {
    match e {
        rauc::RaucError::Start { source, program }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            format!("{NO_ENGINE} ({program})")
        }
        other => other.to_string(),
    }
}

/// Seconds since the epoch.
#[must_use]
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `new` may replace `running`: compatible, a version, and not older (by
/// semantic-version precedence: `0.2.0+b` is newer than `0.1.0+a`; the build part
/// after `+` does not order) unless `force`.
///
/// # Errors
/// What is wrong, in words.
pub fn acceptable(info: &BundleInfo, running: &str, force: bool) -> Result<(), UpdateError> {
    if info.compatible != COMPATIBLE {
        return Err(fail(format!(
            "this bundle is for \"{}\", this node is \"{COMPATIBLE}\": nothing was written",
            info.compatible
        )));
    }
    let Some(version) = info.version.as_deref() else {
        return Err(fail("the bundle names no version: nothing was written"));
    };
    let parse = |v: &str| semver::Version::parse(v.trim());
    let (Ok(new), Ok(old)) = (parse(version), parse(running)) else {
        return Err(fail(format!(
            "cannot compare version \"{version}\" with the running \"{running}\": nothing was written"
        )));
    };
    if new.cmp_precedence(&old) == std::cmp::Ordering::Less && !force {
        return Err(fail(format!(
            "{version} is older than the running {running}: a downgrade must be forced \
             (tandem update install --force-downgrade FILE); nothing was written"
        )));
    }
    Ok(())
}

impl Updater {
    /// The node's: RAUC from the system, the record in `state_dir`.
    #[must_use]
    pub fn node(state_dir: PathBuf) -> Updater {
        Updater {
            rauc: Rauc::default(),
            state_dir,
            version_file: PathBuf::from(VERSION_FILE),
        }
    }

    /// The running system's version.
    #[must_use]
    pub fn running_version(&self) -> String {
        std::fs::read_to_string(&self.version_file)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned())
    }

    /// The record.
    ///
    /// # Errors
    /// It cannot be read.
    pub fn record(&self) -> Result<Record, UpdateError> {
        Record::load(&self.state_dir).map_err(|e| fail(e.to_string()))
    }

    /// The slots.
    ///
    /// # Errors
    /// RAUC cannot tell.
    pub fn status(&self) -> Result<Status, UpdateError> {
        self.rauc.status().map_err(|e| {
            fail(format!(
                "the update service cannot tell the slots: {}",
                engine(&e)
            ))
        })
    }

    /// Checks `bundle` without writing anything: signature (RAUC, against the
    /// system's keyring), compatible, version.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn check(&self, bundle: &Path, force: bool) -> Result<BundleInfo, UpdateError> {
        let meta =
            std::fs::metadata(bundle).map_err(|e| fail(format!("{}: {e}", bundle.display())))?;
        if !meta.is_file() {
            return Err(fail(format!("{} is not a file", bundle.display())));
        }
        let info = self.rauc.info(bundle).map_err(|e| {
            fail(format!(
                "{} is refused: {e}; nothing was written",
                bundle.display()
            ))
        })?;
        acceptable(&info, &self.running_version(), force)?;
        Ok(info)
    }

    /// Installs `bundle` into the inactive slot and records it as pending: the next
    /// boot tries it. `progress` follows RAUC's steps.
    ///
    /// # Errors
    /// The check refused it, or RAUC failed (the running slot and the boot order are
    /// untouched then).
    pub fn install(
        &self,
        bundle: &Path,
        force: bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Pending, UpdateError> {
        let info = self.check(bundle, force)?;
        let before = self.status()?;
        let from_slot = before.booted.clone();
        self.rauc.install(bundle, progress).map_err(|e| {
            fail(format!(
                "installing {} failed: {e}; the running system is unchanged",
                bundle.display()
            ))
        })?;
        let after = self.status()?;
        let to = after
            .other_slot()
            .ok_or_else(|| fail("after the install the update service names no other slot"))?;
        let pending = Pending {
            to_slot: to.bootname.clone(),
            to_version: info.version.clone().unwrap_or_default(),
            from_slot,
            from_version: self.running_version(),
            installed_at: now_secs(),
            held: false,
        };
        let mut record = self.record().unwrap_or_default();
        record.pending = Some(pending.clone());
        record.note(
            pending.installed_at,
            format!(
                "{} written to slot {}; the next start tries it",
                pending.to_version, pending.to_slot
            ),
            true,
        );
        record
            .save(&self.state_dir)
            .map_err(|e| fail(e.to_string()))?;
        Ok(pending)
    }

    /// Makes the other slot the one started next (the operator's rollback).
    ///
    /// # Errors
    /// The other slot holds no system that was ever good, or RAUC refused.
    pub fn rollback(&self) -> Result<String, UpdateError> {
        let st = self.status()?;
        let other = st
            .other_slot()
            .ok_or_else(|| fail("the update service names no other slot"))?;
        if other.boot_status != "good" {
            return Err(fail(format!(
                "slot {} holds no system known good to go back to",
                other.bootname
            )));
        }
        self.rauc
            .mark(Mark::Active, "other")
            .map_err(|e| fail(format!("marking slot {} active: {e}", other.bootname)))?;
        let version = other
            .version
            .clone()
            .unwrap_or_else(|| "the previous system".into());
        let mut record = self.record().unwrap_or_default();
        record.pending = None;
        record.note(
            now_secs(),
            format!(
                "the operator went back from {} to {version} (slot {})",
                self.running_version(),
                other.bootname
            ),
            true,
        );
        record
            .save(&self.state_dir)
            .map_err(|e| fail(e.to_string()))?;
        Ok(version)
    }

    /// What this boot is (read once at start).
    ///
    /// # Errors
    /// The slots or the record cannot be read.
    pub fn boot(&self) -> Result<Boot, UpdateError> {
        let st = self.status()?;
        Ok(record::classify(&st.booted, &self.record()?))
    }

    /// Commits the booted slot: it becomes the one started from now on. With a
    /// pending update, the record says it is done.
    ///
    /// # Errors
    /// RAUC refused, or the record cannot be written.
    pub fn commit(&self, pending: Option<&Pending>) -> Result<(), UpdateError> {
        self.rauc
            .mark(Mark::Good, "booted")
            .map_err(|e| fail(format!("committing the running slot: {e}")))?;
        if let Some(p) = pending {
            let mut record = self.record()?;
            record.pending = None;
            record.note(
                now_secs(),
                format!("updated from {} to {}", p.from_version, p.to_version),
                true,
            );
            record
                .save(&self.state_dir)
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    /// The trial ran out on the node that runs the services: the record says the new
    /// system is held, so init's own deadline leaves the node running.
    ///
    /// # Errors
    /// The record cannot be written.
    pub fn hold(&self) -> Result<(), UpdateError> {
        let mut record = self.record()?;
        if let Some(p) = &mut record.pending {
            p.held = true;
        }
        record
            .save(&self.state_dir)
            .map_err(|e| fail(e.to_string()))
    }

    /// Gives the booted (trial) slot up: marked bad, so the next start takes the
    /// previous one. The caller restarts the node.
    ///
    /// # Errors
    /// RAUC refused.
    pub fn give_up(&self) -> Result<(), UpdateError> {
        self.rauc
            .mark(Mark::Bad, "booted")
            .map_err(|e| fail(format!("marking the tried slot bad: {e}")))
    }

    /// The previous slot booted although `pending` was tried: records the rollback and
    /// marks the failed slot bad so it is not tried again.
    ///
    /// # Errors
    /// The record cannot be written (RAUC's refusal to mark is only reported).
    pub fn rolled_back(&self, pending: &Pending) -> Result<String, UpdateError> {
        let text = format!(
            "update to {} failed, rolled back to {}",
            pending.to_version, pending.from_version
        );
        let mark = self.rauc.mark(Mark::Bad, "other");
        let mut record = self.record()?;
        record.pending = None;
        record.note(now_secs(), text.clone(), false);
        record
            .save(&self.state_dir)
            .map_err(|e| fail(e.to_string()))?;
        match mark {
            Ok(()) => Ok(text),
            Err(e) => Ok(format!(
                "{text} (marking slot {} bad: {e})",
                pending.to_slot
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(compatible: &str, version: Option<&str>) -> BundleInfo {
        BundleInfo {
            compatible: compatible.into(),
            version: version.map(Into::into),
            description: None,
            build: None,
        }
    }

    #[test]
    fn only_newer_or_equal_bundles_for_this_system_are_acceptable() {
        let ok = info(COMPATIBLE, Some("0.2.0+def"));
        assert_eq!(acceptable(&ok, "0.1.0+abc", false), Ok(()));
        assert_eq!(acceptable(&ok, "0.2.0+abc", false), Ok(()));
        let old = info(COMPATIBLE, Some("0.1.0+abc"));
        let e = acceptable(&old, "0.2.0+def", false).unwrap_err().0;
        assert!(e.contains("older than the running 0.2.0+def"), "{e}");
        assert!(e.contains("--force-downgrade"), "{e}");
        assert_eq!(acceptable(&old, "0.2.0+def", true), Ok(()));
        let other = info("someone-else", Some("9.0.0"));
        assert!(
            acceptable(&other, "0.1.0", false)
                .unwrap_err()
                .0
                .contains("is for \"someone-else\"")
        );
        assert!(acceptable(&info(COMPATIBLE, None), "0.1.0", false).is_err());
        assert!(
            acceptable(&info(COMPATIBLE, Some("two")), "0.1.0", false)
                .unwrap_err()
                .0
                .contains("cannot compare")
        );
    }
}
