//! What clusterd does for an administrator: the privileged actions of the control API
//! that the web console, the local console and the CLI ask for (R3.3–R3.5, R9, R13.1).
//!
//! Every function here runs as root inside clusterd, after the control server
//! ([`crate::control`]) has checked who asks; none parses HTTP or renders anything.
//! They are blocking (the store's fsyncs, scrypt and argon2, programs they run); the
//! server calls them off its event loop. Long work runs as a background job whose
//! progress a request reads: the activation ([`activation`]) and the installation of
//! VE 101 ([`ve`]).

pub mod activation;
pub mod archive;
pub mod password;
pub mod settings;
pub mod update;
pub mod ve;
pub mod ve_backup;

use std::path::{Path, PathBuf};

use tandem_api::{NodeId, PowerAction, Refusal};

use crate::error_chain;

/// The committed configuration of the store in `store`.
///
/// # Errors
/// [`Refusal::NotConfigured`] without one; the store's failure.
pub fn current(store: &Path) -> Result<tandem_config::ApplianceConfig, Refusal> {
    tandem_config::Store::open(store)
        .and_then(|s| s.current())
        .map_err(|e| Refusal::Failed(error_chain(&e)))?
        .ok_or(Refusal::NotConfigured)
}

/// Where this node's privileged actions act, and their background jobs.
#[derive(Debug)]
pub struct Admin {
    /// The configuration store (`/config`).
    pub store: PathBuf,
    /// This node.
    pub node: NodeId,
    /// The VEs' places and their program.
    pub ve: ve::VeSite,
    /// The process that takes the restart and power-off signals: init, PID 1 on a
    /// node (tests name a child of their own).
    pub init_pid: i32,
    /// scrypt work factor of exported archives.
    pub work_factor: u8,
    /// The activation.
    pub activation: activation::ActivationJob,
    /// The installation of VE 101.
    pub install: ve::InstallJob,
    /// The VE backup or restore.
    pub ve_backup: ve_backup::VeBackupJob,
    /// The system update.
    pub update: update::UpdateJob,
}

impl Admin {
    /// The node's: store `store`, VEs in `/vz`, init PID 1, activation by `engine`.
    #[must_use]
    pub fn new(store: PathBuf, node: NodeId, engine: activation::Engine) -> Admin {
        Admin {
            activation: activation::ActivationJob::new(store.clone(), node, engine),
            store,
            node,
            ve: ve::VeSite::node(),
            init_pid: 1,
            work_factor: tandem_config::archive::EXPORT_WORK_FACTOR,
            install: ve::InstallJob::default(),
            ve_backup: ve_backup::VeBackupJob::default(),
            update: update::UpdateJob::new(crate::update::Updater::node(PathBuf::from(
                "/config/clusterd",
            ))),
        }
    }

    /// Whether a configuration is committed.
    #[must_use]
    pub fn configured(&self) -> bool {
        tandem_config::store::is_configured(&self.store)
    }

    /// Tells init to restart (SIGTERM) or power off (SIGUSR2) the node: init stops the
    /// services (clusterd releases them to the other node), then the machine. Only on
    /// a configured node.
    ///
    /// # Errors
    /// Not configured, or the signal could not be sent.
    pub fn power(&self, action: PowerAction) -> Result<(), Refusal> {
        current(&self.store)?;
        signal_init(self.init_pid, action)
    }
}

/// Runs a background job's `work` on a thread of its own named `name`.
///
/// # Errors
/// No thread could be started (`what` says which job's).
fn start_thread(
    name: &str,
    what: &str,
    work: impl FnOnce() + Send + 'static,
) -> Result<(), Refusal> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .map(|_| ())
        .map_err(|e| Refusal::Failed(format!("starting {what}: {}", error_chain(&e))))
}

/// Sends init (process `pid`) the signal of `action`.
fn signal_init(pid: i32, action: PowerAction) -> Result<(), Refusal> {
    use rustix::process::{Pid, Signal, kill_process};
    // 0 and negative numbers would signal process groups: never.
    let Some(p) = (pid > 0).then(|| Pid::from_raw(pid)).flatten() else {
        return Err(Refusal::Failed(format!(
            "{pid} is not a process number for init"
        )));
    };
    let sig = match action {
        PowerAction::Reboot => Signal::TERM,
        PowerAction::Poweroff => Signal::USR2,
    };
    kill_process(p, sig).map_err(|e| {
        Refusal::Failed(format!(
            "sending {sig:?} to init (process {pid}) failed: {e}"
        ))
    })
}
