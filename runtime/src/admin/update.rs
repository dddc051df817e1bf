//! The system update of this node as a background job: the bundle is checked at
//! once (a refused bundle is answered in the request, nothing written), then
//! installed into the inactive slot on a thread of its own, and the node restarts
//! into it. [`tandem_api::Request::UpdateStatus`] reads the progress, the slots, the
//! trial of a new system and the history.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tandem_api::{
    JobState, PowerAction, Refusal, SlotView, UpdateHistoryEntry, UpdateJobView, UpdateOffer,
    UpdateServerView, UpdateView,
};

use crate::update::{Updater, server};

/// The node's one update job, and what clusterd's loop says of the trial.
#[derive(Debug, Clone)]
pub struct UpdateJob {
    /// The updater.
    pub updater: Updater,
    /// Where bundles from the update server are downloaded ([`DOWNLOAD_DIR`]).
    pub download_dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Debug)]
struct Shared {
    job: UpdateJobView,
    trial: Option<String>,
    rolling: Option<String>,
    server: Option<UpdateServerView>,
    download: Option<UpdateJobView>,
}

/// Where a bundle downloaded from the update server is kept: in memory, like the
/// bundle a rolling update copies to the other node (the node restarts into the
/// new system anyway).
pub const DOWNLOAD_DIR: &str = "/tmp/tandem-download";

fn idle() -> UpdateJobView {
    UpdateJobView {
        state: JobState::Idle,
        file: None,
        to_version: None,
        percent: 0,
        step: String::new(),
    }
}

fn lost() -> Refusal {
    Refusal::Failed("the update job's state was lost".into())
}

impl UpdateJob {
    /// A job of `updater`.
    #[must_use]
    pub fn new(updater: Updater) -> UpdateJob {
        UpdateJob {
            updater,
            download_dir: PathBuf::from(DOWNLOAD_DIR),
            shared: Arc::new(Mutex::new(Shared {
                job: idle(),
                trial: None,
                rolling: None,
                server: None,
                download: None,
            })),
        }
    }

    /// What the loop says of the trial of a new system (`None`: not a trial, or
    /// decided).
    pub fn set_trial(&self, text: Option<String>) {
        if let Ok(mut g) = self.shared.lock() {
            g.trial = text;
        }
    }

    /// Where the rolling update this node leads stands (`None`: none runs).
    pub fn set_rolling(&self, text: Option<String>) {
        if let Ok(mut g) = self.shared.lock() {
            g.rolling = text;
        }
    }

    /// Whether an install runs.
    #[must_use]
    pub fn installing(&self) -> bool {
        self.shared
            .lock()
            .is_ok_and(|g| g.job.state == JobState::Running)
    }

    /// The slots, the job, the trial, the history.
    #[must_use]
    pub fn view(&self) -> UpdateView {
        let (job, trial, rolling, server) = match self.shared.lock() {
            Ok(g) => (
                g.job.clone(),
                g.trial.clone(),
                g.rolling.clone(),
                g.server.clone().map(|mut s| {
                    s.download.clone_from(&g.download);
                    s
                }),
            ),
            Err(_) => (idle(), None, None, None),
        };
        let (booted, slots, slots_error) = match self.updater.status() {
            Ok(st) => (
                Some(st.booted.clone()),
                st.slots
                    .iter()
                    .map(|s| SlotView {
                        bootname: s.bootname.clone(),
                        device: s.device.clone(),
                        state: s.state.clone(),
                        boot_status: s.boot_status.clone(),
                        version: s.version.clone(),
                    })
                    .collect(),
                None,
            ),
            Err(e) => (None, Vec::new(), Some(e.0)),
        };
        let record = self.updater.record().unwrap_or_default();
        let pending = record.pending.map(|p| p.to_version);
        let history = record
            .history
            .into_iter()
            .map(|e| UpdateHistoryEntry {
                at: e.at,
                text: e.text,
                ok: e.ok,
            })
            .collect();
        UpdateView {
            version: self.updater.running_version(),
            booted,
            slots,
            slots_error,
            job,
            trial,
            history,
            pending,
            rolling,
            server,
        }
    }

    /// Asks the update server of `updates` now what it offers that is newer than the
    /// running system; the answer (or why there is none) shows in [`Self::view`].
    /// `None`: no server is configured (see [`server::configured`]), nothing asked.
    pub fn check_server(
        &self,
        updates: &tandem_config::schema::UpdatesConfig,
    ) -> Option<Result<Option<UpdateOffer>, String>> {
        if !server::configured(updates) {
            if let Ok(mut g) = self.shared.lock() {
                g.server = None;
            }
            return None;
        }
        let s = server::Server::new(updates);
        let result = s.check(&self.updater.running_version()).map_err(|e| e.0);
        if let Ok(mut g) = self.shared.lock() {
            let last = g.server.take().filter(|v| v.url == s.url);
            g.server = Some(match &result {
                Ok(offer) => UpdateServerView {
                    url: s.url.clone(),
                    checked_at: Some(crate::update::now_secs()),
                    offer: offer.clone(),
                    error: None,
                    download: None,
                },
                // A failed check keeps what the server offered before.
                Err(e) => UpdateServerView {
                    url: s.url.clone(),
                    checked_at: Some(crate::update::now_secs()),
                    offer: last.and_then(|l| l.offer),
                    error: Some(e.clone()),
                    download: None,
                },
            });
        }
        Some(result)
    }

    fn update_download(&self, f: impl FnOnce(&mut UpdateJobView)) {
        if let Ok(mut g) = self.shared.lock()
            && let Some(d) = g.download.as_mut()
        {
            f(d);
        }
    }

    /// Downloads the bundle the update server offered at its last check into
    /// [`Self::download_dir`]
    /// in the background, then has RAUC check it (signature, system, version) as
    /// [`Self::start_install`] would; the result shows in [`Self::view`] (`file`: the
    /// bundle to install). A bundle that fails is not kept.
    ///
    /// # Errors
    /// No server is configured, it offered nothing at its last check, or a download
    /// runs already.
    pub fn start_download(
        &self,
        updates: &tandem_config::schema::UpdatesConfig,
    ) -> Result<String, Refusal> {
        if !server::configured(updates) {
            return Err(Refusal::Failed(format!(
                "no update server is configured ({} is an example address): set updates.url, updates.user and updates.password",
                updates.url
            )));
        }
        let s = server::Server::new(updates);
        let offer = {
            let mut g = self.shared.lock().map_err(|_| lost())?;
            if g.download
                .as_ref()
                .is_some_and(|d| d.state == JobState::Running)
            {
                return Err(Refusal::Failed(
                    "a download runs already: follow it with `tandem update status`".into(),
                ));
            }
            let Some(offer) = g
                .server
                .as_ref()
                .filter(|v| v.url == s.url)
                .and_then(|v| v.offer.clone())
            else {
                return Err(Refusal::Failed(
                    "the update server offered nothing newer at its last check: ask it again (tandem update check)".into(),
                ));
            };
            g.download = Some(UpdateJobView {
                state: JobState::Running,
                file: None,
                to_version: Some(offer.version.clone()),
                percent: 0,
                step: format!("downloading {} from {}", offer.file, s.url),
            });
            offer
        };
        let job = self.clone();
        let dir = self.download_dir.clone();
        let version = offer.version.clone();
        super::start_thread("download", "the download", move || {
            let mut progress = |p: u8| job.update_download(|d| d.percent = p);
            let got = s.download(&offer, &dir, &mut progress).and_then(|path| {
                job.updater
                    .check(&path, false)
                    .map(|_| path.clone())
                    .inspect_err(|_| {
                        let _ = std::fs::remove_file(&path);
                    })
            });
            job.update_download(|d| match got {
                Ok(path) => {
                    d.state = JobState::Succeeded;
                    d.percent = 100;
                    d.step = format!(
                        "{} downloaded and checked: {}",
                        offer.version,
                        path.display()
                    );
                    d.file = Some(path.display().to_string());
                }
                Err(e) => d.state = JobState::Failed { error: e.0 },
            });
        })
        .inspect_err(|_| {
            self.update_download(|d| {
                d.state = JobState::Failed {
                    error: "no thread".into(),
                };
            });
        })?;
        Ok(version)
    }

    /// The bundle the last download fetched and checked, while it is still there.
    #[must_use]
    pub fn downloaded(&self) -> Option<PathBuf> {
        let g = self.shared.lock().ok()?;
        let d = g.download.as_ref()?;
        let file = d.file.as_ref().filter(|_| d.state == JobState::Succeeded)?;
        Some(PathBuf::from(file)).filter(|p| p.is_file())
    }

    fn update(&self, f: impl FnOnce(&mut UpdateJobView)) {
        if let Ok(mut g) = self.shared.lock() {
            f(&mut g.job);
        }
    }

    /// Checks `file` now (signature, system, version: refused here with nothing
    /// written), then installs it in the background and, when that worked, calls
    /// `restart`.
    ///
    /// # Errors
    /// An install runs already, or the bundle is refused.
    pub fn start_install(
        &self,
        file: PathBuf,
        force: bool,
        restart: impl FnOnce() -> Result<(), Refusal> + Send + 'static,
    ) -> Result<(), Refusal> {
        {
            let mut g = self.shared.lock().map_err(|_| lost())?;
            if g.job.state == JobState::Running {
                return Err(Refusal::Failed(format!(
                    "an update is being installed already ({}): wait for it (tandem update status)",
                    g.job.to_version.as_deref().unwrap_or("?")
                )));
            }
            g.job = UpdateJobView {
                state: JobState::Running,
                file: Some(file.display().to_string()),
                to_version: None,
                percent: 0,
                step: "checking the bundle".into(),
            };
        }
        let info = match self.updater.check(&file, force) {
            Ok(i) => i,
            Err(e) => {
                self.update(|j| {
                    j.state = JobState::Failed { error: e.0.clone() };
                });
                return Err(Refusal::Failed(e.0));
            }
        };
        self.update(|j| j.to_version = info.version.clone());
        let job = self.clone();
        super::start_thread("update", "the update", move || {
            let mut progress = |p: crate::update::rauc::Progress| {
                job.update(|j| {
                    j.percent = p.percent;
                    j.step = p.step;
                });
            };
            match job.updater.install(&file, force, &mut progress) {
                Ok(p) => {
                    job.update(|j| {
                        j.state = JobState::Succeeded;
                        j.percent = 100;
                        j.step = format!("{} is in slot {}; restarting into it", p.to_version, p.to_slot);
                    });
                    if let Err(e) = restart() {
                        job.update(|j| {
                            j.step = format!(
                                "{} is in slot {}; the restart failed ({e}): restart the node to start it",
                                p.to_version, p.to_slot
                            );
                        });
                    }
                }
                Err(e) => job.update(|j| j.state = JobState::Failed { error: e.0 }),
            }
        })
        .inspect_err(|_| self.update(|j| j.state = JobState::Failed { error: "no thread".into() }))
    }

    /// Makes the other slot's system the one started next, then calls `restart`.
    ///
    /// # Errors
    /// An install runs, the other slot holds no good system, or RAUC refused.
    pub fn rollback(
        &self,
        restart: impl FnOnce() -> Result<(), Refusal>,
    ) -> Result<String, Refusal> {
        if self.shared.lock().map_err(|_| lost())?.job.state == JobState::Running {
            return Err(Refusal::Failed(
                "an update is being installed: wait for it to end".into(),
            ));
        }
        let version = self.updater.rollback().map_err(|e| Refusal::Failed(e.0))?;
        restart()?;
        Ok(version)
    }
}

/// The restart after an update, through init (as the console's restart).
pub fn restart_via_init(pid: i32) -> impl FnOnce() -> Result<(), Refusal> + Send + 'static {
    move || super::signal_init(pid, PowerAction::Reboot)
}
