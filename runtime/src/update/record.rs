//! What this node remembers of its updates, on the configuration partition (it
//! survives updates and rollbacks; both slots read it): the update whose first boot
//! is pending, and the history.
//!
//! At start, clusterd compares the slot that booted with the pending update
//! ([`classify`]): the new slot booted (a trial: commit it when healthy), the old
//! slot booted although an update was pending (the boot loader fell back: the update
//! failed and was rolled back), or nothing pending (an ordinary boot).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the state directory.
pub const FILE: &str = "update.json";
/// How many history entries are kept.
pub const HISTORY: usize = 20;

/// An installed update waiting for its first boot to prove itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The boot name of the slot written (`A`/`B`).
    pub to_slot: String,
    /// The version written there.
    pub to_version: String,
    /// The slot the update was installed from.
    pub from_slot: String,
    /// The version it ran.
    pub from_version: String,
    /// When the install finished (seconds since the epoch).
    pub installed_at: u64,
    /// The trial ran out while this node ran the services: it stays on the new
    /// system until it is restarted (init's own deadline must not restart it).
    #[serde(default)]
    pub held: bool,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When (seconds since the epoch).
    pub at: u64,
    /// What happened, in words ("updated from 0.1.0 to 0.2.0", ...).
    pub text: String,
    /// Whether it went well.
    pub ok: bool,
}

/// The whole record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// The update whose first boot is pending.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// The history, oldest first.
    #[serde(default)]
    pub history: Vec<Entry>,
    /// The rolling update of the pair this node leads (see
    /// [`tandem_core::rolling`]), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingRecord>,
}

/// A rolling update of the pair led by this node, as it survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingRecord {
    /// The bundle on this node.
    pub file: String,
    /// The version it brings.
    pub to_version: String,
    /// The version the pair ran.
    pub from_version: String,
    /// The phase ([`tandem_core::Phase::name`]).
    pub phase: String,
    /// Accept a bundle older than the running system.
    #[serde(default)]
    pub force_downgrade: bool,
    /// When it began (seconds since the epoch).
    pub started_at: u64,
    /// Move the services back to this node at the end.
    #[serde(default)]
    pub switch_back: bool,
}

/// Reading or writing the record failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// I/O on the file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file is not a record.
    #[error("{path} is damaged ({why}); move it aside to start a new update history")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl Record {
    /// The record in `dir`, empty when there is none.
    ///
    /// # Errors
    /// The file cannot be read or is damaged.
    pub fn load(dir: &Path) -> Result<Record, RecordError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RecordError::Corrupt {
                path,
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(source) => Err(RecordError::Io {
                op: "reading",
                path,
                source,
            }),
        }
    }

    /// Writes the record into `dir` ([`crate::write_atomic`]: a crash leaves the old
    /// record or the new one).
    ///
    /// # Errors
    /// The write failed, with the file.
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        let path = dir.join(FILE);
        let bytes = serde_json::to_vec_pretty(self).expect("the record serialises");
        crate::write_atomic(&path, &bytes, 0o644).map_err(|source| RecordError::Io {
            op: "writing",
            path,
            source,
        })
    }

    /// Adds `text` to the history (keeping the last [`HISTORY`]).
    pub fn note(&mut self, at: u64, text: String, ok: bool) {
        self.history.push(Entry { at, text, ok });
        let extra = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..extra);
    }
}

/// What kind of boot this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Nothing pending: an ordinary boot.
    Ordinary,
    /// The newly written slot booted: a trial.
    Trial(Pending),
    /// An update was pending but the old slot booted: the new one failed.
    RolledBack(Pending),
}

/// The boot, from the slot that booted (`A`/`B`) and the record.
#[must_use]
pub fn classify(booted: &str, record: &Record) -> Boot {
    match &record.pending {
        None => Boot::Ordinary,
        Some(p) if p.to_slot == booted => Boot::Trial(p.clone()),
        Some(p) => Boot::RolledBack(p.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            to_slot: "B".into(),
            to_version: "0.2.0".into(),
            from_slot: "A".into(),
            from_version: "0.1.0".into(),
            installed_at: 1,
            held: false,
        }
    }

    #[test]
    fn the_boot_is_told_from_the_slot_and_the_pending_update() {
        let mut r = Record::default();
        assert_eq!(classify("A", &r), Boot::Ordinary);
        r.pending = Some(pending());
        assert_eq!(classify("B", &r), Boot::Trial(pending()));
        assert_eq!(classify("A", &r), Boot::RolledBack(pending()));
    }

    #[test]
    fn the_record_survives_a_save_and_keeps_the_last_entries() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), Record::default());
        let mut r = Record {
            pending: Some(pending()),
            history: Vec::new(),
            rolling: None,
        };
        for i in 0..(HISTORY as u64 + 5) {
            r.note(i, format!("entry {i}"), true);
        }
        r.save(dir.path()).unwrap();
        let back = Record::load(dir.path()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.history.len(), HISTORY);
        assert_eq!(back.history[0].text, "entry 5");
        assert!(!dir.path().join("update.json.tmp").exists());
    }

    #[test]
    fn a_damaged_record_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"{\"pending\": 3").unwrap();
        let e = Record::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("update.json is damaged"), "{e}");
        assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), b"{\"pending\": 3");
    }
}
