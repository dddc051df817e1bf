//! The outbox on disk: one JSON file per message plus `state.json`, all written atomically.
//!
//! Delivery is at least once: a crash between the server's acceptance and the removal of
//! the file sends that message again after the restart.

use crate::plan::{self, Event, History, MessageId, Plan, Policy, StoredMessage, UnixSecs};
use crate::smtp::Sender;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the outbox could not do something.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A file or the directory could not be read or written.
    #[error("outbox i/o failed on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file in the outbox is not what the outbox writes.
    #[error("outbox file {path} is damaged")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// An event lacks something a message needs.
    #[error("event field {field} is empty")]
    EmptyField {
        /// The field's name.
        field: &'static str,
    },
    /// The message to update is no longer in the outbox.
    #[error("message {id} is not in the outbox")]
    NoSuchMessage {
        /// The message.
        id: MessageId,
    },
}

/// What one [`run_once`] pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Delivered and removed.
    pub delivered: Vec<MessageId>,
    /// Failed; kept with the error and a later retry time.
    pub failed: Vec<(MessageId, String)>,
}

/// What waits in an outbox, for the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutboxSummary {
    /// Messages not yet delivered.
    pub queued: usize,
    /// When the oldest of them was queued.
    pub oldest: Option<UnixSecs>,
    /// The error of the latest failed attempt among them.
    pub last_error: Option<String>,
}

/// A persistent e-mail outbox in one directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    policy: Policy,
}

const STATE: &str = "state.json";
const TMP_SUFFIX: &str = ".tmp";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Outbox {
    /// Opens (creating if needed) the outbox in `dir`, removing temp files a crash left.
    ///
    /// # Errors
    /// The directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>, policy: Policy) -> Result<Self, OutboxError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            if path.to_string_lossy().ends_with(TMP_SUFFIX) {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(Self { dir, policy })
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn msg_path(&self, id: MessageId) -> PathBuf {
        self.dir.join(format!("msg-{:020}.json", id.0))
    }

    /// Temp file, fsync, rename over the target, fsync the directory.
    fn write_atomic(&self, name: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
        let mut tmp = name.as_os_str().to_owned();
        tmp.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, name).map_err(io_err(name))?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), OutboxError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }

    fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, OutboxError> {
        let bytes = fs::read(path).map_err(io_err(path))?;
        serde_json::from_slice(&bytes).map_err(|source| OutboxError::Corrupt {
            path: path.to_owned(),
            source,
        })
    }

    fn history(&self) -> Result<History, OutboxError> {
        let path = self.dir.join(STATE);
        if !path.exists() {
            return Ok(History::default());
        }
        Self::read_json(&path)
    }

    fn save(&self, m: &StoredMessage) -> Result<(), OutboxError> {
        let path = self.msg_path(m.id);
        let bytes = serde_json::to_vec_pretty(m).map_err(|source| OutboxError::Corrupt {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &bytes)
    }

    fn save_history(&self, h: &History) -> Result<(), OutboxError> {
        let path = self.dir.join(STATE);
        let bytes = serde_json::to_vec_pretty(h).map_err(|source| OutboxError::Corrupt {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &bytes)
    }

    /// Every queued message, oldest first.
    ///
    /// # Errors
    /// The directory or a message file cannot be read, or a file is damaged.
    pub fn pending(&self) -> Result<Vec<StoredMessage>, OutboxError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let path = entry.map_err(io_err(&self.dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with("msg-") && n.ends_with(".json")) {
                out.push(Self::read_json::<StoredMessage>(&path)?);
            }
        }
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// What waits ([`read_summary`]).
    ///
    /// # Errors
    /// The directory or a message file cannot be read, or a file is damaged.
    pub fn summary(&self) -> Result<OutboxSummary, OutboxError> {
        read_summary(&self.dir)
    }

    /// Queues an event. The message is on disk before this returns.
    ///
    /// # Errors
    /// The event has no node or kind, or reading or writing the outbox failed;
    /// the event is then not queued.
    pub fn push(&self, ev: &Event, now: UnixSecs) -> Result<Plan, OutboxError> {
        for (field, value) in [("node", &ev.node), ("kind", &ev.kind)] {
            if value.trim().is_empty() {
                return Err(OutboxError::EmptyField { field });
            }
        }
        let history = self.history()?;
        let pending = self.pending()?;
        let decision = plan::plan_event(&history, &pending, ev, now, &self.policy);
        // The message goes to disk before the history: after a crash in between, the event
        // is found in the pending message and counts as a duplicate, never lost.
        match &decision {
            Plan::Duplicate => return Ok(decision),
            Plan::New(m) => {
                self.save(m)?;
                self.save_history(&plan::remember(&history, ev, now, &self.policy, true))?;
            }
            Plan::AddToSummary(id) => {
                let mut m = pending
                    .into_iter()
                    .find(|m| m.id == *id)
                    .ok_or(OutboxError::NoSuchMessage { id: *id })?;
                m.events.push(ev.clone());
                self.save(&m)?;
                self.save_history(&plan::remember(&history, ev, now, &self.policy, false))?;
            }
        }
        Ok(decision)
    }

    /// Messages whose time has come, oldest first.
    ///
    /// # Errors
    /// As [`Outbox::pending`].
    pub fn due(&self, now: UnixSecs) -> Result<Vec<StoredMessage>, OutboxError> {
        let mut all = self.pending()?;
        all.retain(|m| m.next_attempt <= now);
        Ok(all)
    }

    /// Removes a delivered message.
    ///
    /// # Errors
    /// The file cannot be removed.
    pub fn mark_delivered(&self, id: MessageId) -> Result<(), OutboxError> {
        let path = self.msg_path(id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(OutboxError::NoSuchMessage { id })
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Records a failed attempt: keeps the message with its error and backs off.
    ///
    /// # Errors
    /// The message is gone or cannot be rewritten.
    pub fn mark_failed(
        &self,
        id: MessageId,
        now: UnixSecs,
        error: &str,
    ) -> Result<(), OutboxError> {
        self.mark_failed_after(id, now, error, &[])
    }

    /// Records a failed attempt in which `delivered` (recipients) took the message
    /// nevertheless: they are not sent to again.
    ///
    /// # Errors
    /// The message is gone or cannot be rewritten.
    pub fn mark_failed_after(
        &self,
        id: MessageId,
        now: UnixSecs,
        error: &str,
        delivered: &[String],
    ) -> Result<(), OutboxError> {
        let path = self.msg_path(id);
        if !path.exists() {
            return Err(OutboxError::NoSuchMessage { id });
        }
        let mut m: StoredMessage = Self::read_json(&path)?;
        for d in delivered {
            if !m.delivered_to.contains(d) {
                m.delivered_to.push(d.clone());
            }
        }
        m.attempts = m.attempts.saturating_add(1);
        m.next_attempt = now.plus(plan::backoff(&self.policy.retry, m.attempts));
        m.last_error = Some(error.to_owned());
        self.save(&m)
    }
}

/// What waits in the outbox in `dir`, read while another process (the mail thread) may
/// be sending: a message delivered in between is not counted. A missing directory is an
/// empty outbox.
///
/// # Errors
/// The directory or a message file cannot be read, or a file is damaged.
pub fn read_summary(dir: &Path) -> Result<OutboxSummary, OutboxError> {
    let mut out = OutboxSummary::default();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut latest: Option<(UnixSecs, MessageId)> = None;
    for entry in rd {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if !name.is_some_and(|n| n.starts_with("msg-") && n.ends_with(".json")) {
            continue;
        }
        let m: StoredMessage = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| OutboxError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        out.queued += 1;
        out.oldest = Some(out.oldest.map_or(m.created, |o| o.min(m.created)));
        // The latest failure is the one retried last (later retry, then newer id).
        if let Some(err) = &m.last_error
            && latest.is_none_or(|l| (m.next_attempt, m.id) > l)
        {
            latest = Some((m.next_attempt, m.id));
            out.last_error = Some(err.clone());
        }
    }
    Ok(out)
}

/// Sends every due message once; failures stay queued with their error.
///
/// # Errors
/// Only outbox (disk) errors; delivery errors are in the report.
pub fn run_once(
    outbox: &Outbox,
    sender: &dyn Sender,
    now: UnixSecs,
) -> Result<RunReport, OutboxError> {
    let mut report = RunReport::default();
    for m in outbox.due(now)? {
        match sender.send(&m) {
            Ok(()) => {
                outbox.mark_delivered(m.id)?;
                report.delivered.push(m.id);
            }
            Err(e) => {
                let text = tandem_api::error_chain(&e);
                outbox.mark_failed_after(m.id, now, &text, e.delivered())?;
                report.failed.push((m.id, text));
            }
        }
    }
    Ok(report)
}
