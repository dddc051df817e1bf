//! The last word on a new system that never proves itself.
//!
//! After an update, clusterd keeps the new system when the node is healthy or gives
//! it up (and restarts) when it is not by `updates.trial-deadline`. If clusterd itself
//! never runs long enough to decide (it fails at every start on the new system),
//! nobody would: so init, when the system that booted is the one an update is
//! waiting for, gives it a little longer than clusterd's deadline and then restarts
//! the node, whose boot loader has spent the new system's one try and starts the
//! previous one.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The update record (clusterd's `update.json`), as far as init reads it.
#[derive(Debug, Deserialize)]
struct Record {
    pending: Option<Pending>,
}

#[derive(Debug, Deserialize)]
struct Pending {
    to_slot: String,
    to_version: String,
    #[serde(default)]
    held: bool,
}

/// How much longer than clusterd's deadline init waits (clusterd's own restart
/// comes first and says why).
pub const MARGIN: Duration = Duration::from_secs(120);

/// The version this boot tries, when the slot that booted (`a`/`b`, from
/// `tandem.slot=`) is the one the record in `state_dir` waits for and the trial is
/// not held (the node ran the services when it ran out).
#[must_use]
pub fn waiting_for(state_dir: &Path, booted: &str) -> Option<String> {
    let text = std::fs::read(state_dir.join("update.json")).ok()?;
    let record: Record = serde_json::from_slice(&text).ok()?;
    let p = record.pending?;
    (p.to_slot.eq_ignore_ascii_case(booted) && !p.held).then_some(p.to_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, json: &str) {
        std::fs::write(dir.join("update.json"), json).unwrap();
    }

    #[test]
    fn only_the_slot_an_update_waits_for_is_on_trial() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(waiting_for(d.path(), "b"), None);
        record(
            d.path(),
            r#"{"pending":{"to_slot":"B","to_version":"0.2.0","from_slot":"A","from_version":"0.1.0","installed_at":1},"history":[]}"#,
        );
        assert_eq!(waiting_for(d.path(), "b").as_deref(), Some("0.2.0"));
        assert_eq!(waiting_for(d.path(), "a"), None);
        record(
            d.path(),
            r#"{"pending":{"to_slot":"B","to_version":"0.2.0","from_slot":"A","from_version":"0.1.0","installed_at":1,"held":true},"history":[]}"#,
        );
        assert_eq!(waiting_for(d.path(), "b"), None);
        record(d.path(), r#"{"pending":null,"history":[]}"#);
        assert_eq!(waiting_for(d.path(), "b"), None);
        record(d.path(), "garbage");
        assert_eq!(waiting_for(d.path(), "b"), None);
    }
}
