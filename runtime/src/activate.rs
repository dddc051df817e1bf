//! Activation of an uploaded configuration (R3.3–R3.5): the node takes its
//! configured name and crossover address, sets up replication, and either creates
//! the data area ("destroy all data on the replicated device") or takes a full copy
//! from the other node ("fetch replicated data from the other node"). Only when
//! that worked is the configuration committed.
//!
//! Both nodes of a new cluster are activated one after the other: the first waits
//! for the second on the crossover link and says so; the node that destroys
//! creates the filesystem, the one that fetches copies it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tandem_api::{ActivationEvent, DataChoice};
use tandem_config::{ApplianceConfig, NodeId, Store};

use crate::drbd::{Connection, DiskState, Tuning};
use crate::net;
use crate::replication::{Replication, ReplicationError, summary};
use crate::storage::{DataFilesystem, StorageError};

/// Node-local paths kept in the data area on the active node (R5.2).
pub const LINKED_PATHS: &[&str] = &["/etc/tandem/ves"];

/// Where the data area is mounted.
pub const DATA_MOUNT: &str = "/vz";

/// Why activation stopped; the configuration stays pending.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// Nothing to activate.
    #[error("no configuration to activate in {0}: upload the cluster configuration archive first")]
    NoConfig(PathBuf),
    /// The configuration store.
    #[error("the configuration store")]
    Store(#[source] tandem_config::store::StoreError),
    /// The node identity is missing or wrong.
    #[error("{0}")]
    Identity(String),
    /// A network step.
    #[error("setting up the crossover interface {nic}")]
    Network {
        /// The interface.
        nic: String,
        /// The cause.
        #[source]
        source: net::NetlinkError,
    },
    /// The peer never connected (fetch only).
    #[error(
        "the other node did not connect on the crossover link within {0} s: continue activation on the other node or check the crossover cable, then activate again"
    )]
    NoPeer(u64),
    /// Replication.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The data area.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another step.
    #[error("{what}")]
    Step {
        /// What was done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ActivateError {
    let what = what.into();
    move |source| ActivateError::Step { what, source }
}

pub use tandem_init::sysfs::nics as node_nics;

/// Everything activation needs to know about the node.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The configuration store (`/config`).
    pub store: PathBuf,
    /// This node.
    pub node: NodeId,
    /// The crossover interface.
    pub internal_nic: String,
    /// Where the replication file goes.
    pub run_dir: PathBuf,
    /// DRBD timings.
    pub tuning: Tuning,
    /// How long to wait for the peer before going on alone (destroy) or giving up
    /// (fetch).
    pub peer_wait: Duration,
    /// How long a full copy may take (fetch).
    pub sync_wait: Duration,
}

/// Activates the pending configuration. `say` receives each step as it happens (the
/// web console shows them, `tandem activate` prints them).
///
/// # Errors
/// The first step that failed; the configuration then stays pending and the node
/// in recovery mode.
pub async fn activate(
    plan: &Plan,
    choice: DataChoice,
    say: &mut (dyn FnMut(ActivationEvent) + Send),
) -> Result<ApplianceConfig, ActivateError> {
    let store = Store::open(&plan.store).map_err(ActivateError::Store)?;
    let cfg = match store.pending().map_err(ActivateError::Store)? {
        Some(c) => c,
        None => store
            .current()
            .map_err(ActivateError::Store)?
            .ok_or_else(|| ActivateError::NoConfig(plan.store.clone()))?,
    };
    let me = cfg.network.node(plan.node).clone();
    let peer = cfg.network.node(plan.node.peer()).clone();
    say(ActivationEvent::Started {
        cluster: cfg.cluster.name.to_string(),
        hostname: me.hostname.to_string(),
        node: plan.node,
    });
    rustix::system::sethostname(me.hostname.as_str().as_bytes())
        .map_err(|e| step("setting the host name")(e.into()))?;

    let nic = &plan.internal_nic;
    let internal = cfg.network.internal_net(plan.node);
    let link = net::link_info(nic)
        .await
        .map_err(|source| ActivateError::Network {
            nic: nic.clone(),
            source,
        })?;
    net::add_address(link.index, internal.addr(), internal.prefix())
        .await
        .map_err(|source| ActivateError::Network {
            nic: nic.clone(),
            source,
        })?;
    net::set_up(link.index)
        .await
        .map_err(|source| ActivateError::Network {
            nic: nic.clone(),
            source,
        })?;
    say(ActivationEvent::Crossover {
        nic: nic.clone(),
        address: format!("{}/{}", internal.addr(), internal.prefix()),
    });

    let repl = Replication::new(&cfg, &plan.run_dir);
    repl.write_config(&cfg, plan.tuning)?;
    if repl
        .status()?
        .is_some_and(|s| s.connection != Connection::Unconfigured)
    {
        repl.down()?;
    }
    repl.create_metadata()?;
    repl.up()?;
    say(ActivationEvent::WaitingForPeer {
        resource: cfg.replication.resource.to_string(),
        backing: repl.backing.display().to_string(),
        peer: peer.hostname.to_string(),
        endpoint: format!(
            "{}:{}",
            peer.internal_address.addr(),
            cfg.replication.port.get()
        ),
    });
    let connected = wait_connected(&repl, plan.peer_wait, say).await?;

    let data = DataFilesystem {
        device: PathBuf::from(cfg.replication.device.as_str()),
        mountpoint: PathBuf::from(DATA_MOUNT),
    };
    match choice {
        DataChoice::DestroyData => {
            if !connected {
                say(ActivationEvent::GoingOnAlone {
                    peer: peer.hostname.to_string(),
                });
            }
            repl.initial_primary()?;
            say(ActivationEvent::CreatingFilesystem);
            let made = (|| -> Result<(), ActivateError> {
                let out = std::process::Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-L", "tandem-vz"])
                    .arg(&data.device)
                    .output()
                    .map_err(step("running mkfs.ext4"))?;
                if !out.status.success() {
                    return Err(ActivateError::Step {
                        what: format!(
                            "mkfs.ext4 {}: {}",
                            data.device.display(),
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                        source: std::io::Error::other("mkfs.ext4 failed"),
                    });
                }
                data.mount()?;
                let layout = make_layout(Path::new(DATA_MOUNT))
                    .and_then(|()| service_ve(&cfg, Path::new(DATA_MOUNT), say));
                let unmounted = data.unmount();
                layout?;
                unmounted?;
                Ok(())
            })();
            if let Err(e) = made {
                // Whatever step failed, give back what was taken, in reverse: the data
                // area unmounted, the device secondary (a half-made area must not stay
                // writable here). The error names the step.
                let _ = data.unmount();
                let _ = repl.secondary();
                return Err(e);
            }
            repl.secondary()?;
            say(ActivationEvent::DataAreaCreated);
        }
        DataChoice::FetchFromPeer => {
            if !connected {
                return Err(ActivateError::NoPeer(plan.peer_wait.as_secs()));
            }
            say(ActivationEvent::CopyStarted);
            let start = Instant::now();
            let mut last_shown = Instant::now() - Duration::from_secs(60);
            loop {
                let st = repl.status()?;
                if let Some(s) = &st {
                    if s.disk == DiskState::UpToDate && s.connection == Connection::Connected {
                        break;
                    }
                    if last_shown.elapsed() >= Duration::from_secs(5) {
                        say(ActivationEvent::CopyProgress {
                            replication: summary(s),
                        });
                        last_shown = Instant::now();
                    }
                }
                if start.elapsed() > plan.sync_wait {
                    return Err(ReplicationError::Timeout {
                        what: "an up-to-date copy".into(),
                        seconds: plan.sync_wait.as_secs(),
                        last: st.map_or_else(|| "not set up".into(), |s| summary(&s)),
                    }
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            say(ActivationEvent::CopyComplete);
        }
    }
    let committed = store.commit().map_err(ActivateError::Store)?;
    say(ActivationEvent::Committed);
    Ok(committed)
}

async fn wait_connected(
    repl: &Replication,
    limit: Duration,
    say: &mut (dyn FnMut(ActivationEvent) + Send),
) -> Result<bool, ActivateError> {
    let start = Instant::now();
    let mut next_note = Duration::from_secs(10);
    loop {
        if let Some(s) = repl.status()?
            && s.connection.is_linked()
        {
            return Ok(true);
        }
        let waited = start.elapsed();
        if waited >= limit {
            return Ok(false);
        }
        if waited >= next_note {
            say(ActivationEvent::PeerMissing);
            next_note += Duration::from_secs(30);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The directories of a new data area, with the node's current copies of the
/// linked paths.
/// The service VE 1 (R6.4) in a new data area: the built-in template, the
/// configured host name and internal address, started with the services.
fn service_ve(
    cfg: &ApplianceConfig,
    root: &Path,
    say: &mut (dyn FnMut(ActivationEvent) + Send),
) -> Result<(), ActivateError> {
    use crate::ve::manager::{Layout, MINIMAL_TEMPLATE, Ves};
    let mut layout = Layout::node(Vec::new());
    layout.conf_dir = root
        .join("tkcluster")
        .join(LINKED_PATHS[0].trim_start_matches('/'));
    layout.private_dir = root.join("private");
    layout.template_dir = root.join("template");
    let ves = Ves { layout };
    let v1 = &cfg.ves.ve1;
    let made = ves
        .create(
            1,
            MINIMAL_TEMPLATE,
            "",
            v1.hostname.as_str(),
            &[v1.address.addr()],
        )
        .and_then(|()| ves.set(1, &[("ONBOOT".to_owned(), "yes".to_owned())]));
    made.map_err(|e| ActivateError::Step {
        what: format!("creating the service VE 1: {e}"),
        source: std::io::Error::other(e.to_string()),
    })?;
    say(ActivationEvent::ServiceVe {
        hostname: v1.hostname.to_string(),
        address: v1.address.addr().to_string(),
    });
    Ok(())
}

fn make_layout(root: &Path) -> Result<(), ActivateError> {
    for d in ["private", "template", "backups", "tkcluster"] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(step(format!("creating {}", p.display())))?;
    }
    for path in LINKED_PATHS {
        let target = root.join("tkcluster").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&target).map_err(step(format!("creating {}", target.display())))?;
        let local = Path::new(path);
        if let Ok(entries) = std::fs::read_dir(local) {
            for e in entries.filter_map(Result::ok) {
                let to = target.join(e.file_name());
                std::fs::copy(e.path(), &to).map_err(step(format!(
                    "copying {} into the data area",
                    e.path().display()
                )))?;
            }
        }
    }
    Ok(())
}
