//! The activation job (R3.3–R3.5): the staged configuration activated in the
//! background, one job at a time, its typed progress kept for the console's progress
//! page.
//!
//! The job runs on a thread of its own with its own runtime (activation runs `drbdadm`
//! and `mkfs.ext4`, which block): the control socket keeps answering meanwhile. Its
//! steps are [`crate::activate::activate`]'s on a node ([`Engine::Node`]); for tests of
//! the console without DRBD, [`Engine::Sim`] says what a node says and commits the
//! staged configuration after a delay, or fails where told.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_api::{ActivationEvent, ActivationView, DataChoice, JobState, NodeId, Refusal};

use crate::error_chain;

/// Events kept (the first few and the latest).
const MAX_EVENTS: usize = 400;
/// Events always kept from the start.
const KEEP_FIRST: usize = 10;

/// How the activation's steps run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// The node's: crossover address, DRBD, filesystem, VE 1, commit.
    Node,
    /// Simulated (`sim[:DELAY_MS[:fail]]`): the same events without touching the
    /// machine, the staged configuration committed after `delay` (or a failure after
    /// it, nothing committed).
    Sim {
        /// How long the "work" takes.
        delay: Duration,
        /// Fail instead of committing.
        fail: bool,
    },
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        let mut parts = s.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("node"), None, None, None) => Ok(Engine::Node),
            (Some("sim"), delay, fail, None) => {
                let delay = delay
                    .map(|d| {
                        d.parse::<u64>()
                            .map_err(|_| format!("{s:?}: the delay {d:?} is not milliseconds"))
                    })
                    .transpose()?
                    .unwrap_or(0);
                let fail = match fail {
                    None => false,
                    Some("fail") => true,
                    Some(other) => return Err(format!("{s:?}: {other:?} is not \"fail\"")),
                };
                Ok(Engine::Sim {
                    delay: Duration::from_millis(delay),
                    fail,
                })
            }
            _ => Err(format!("{s:?}: expected node or sim[:DELAY_MS[:fail]]")),
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: JobState,
    choice: Option<DataChoice>,
    events: Vec<ActivationEvent>,
}

impl Shared {
    fn push(&mut self, e: ActivationEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(KEEP_FIRST);
        }
        self.events.push(e);
    }
}

/// The one activation of this node.
#[derive(Debug)]
pub struct ActivationJob {
    store: PathBuf,
    node: NodeId,
    engine: Engine,
    shared: Arc<Mutex<Shared>>,
    shown: Option<PathBuf>,
}

/// The file in which clusterd in recovery mode (beside its control socket:
/// `/run/tandem/activation-shown` on a node) notes that the progress page has shown a
/// finished activation: init moves the node to its configured network only after that
/// (or a minute after the commit when no page looks), so that the operator always sees
/// the node's new address.
pub const SHOWN_MARKER: &str = "activation-shown";

impl ActivationJob {
    /// Activations of the store in `store` for `node`, run by `engine`.
    #[must_use]
    pub fn new(store: PathBuf, node: NodeId, engine: Engine) -> ActivationJob {
        ActivationJob {
            store,
            node,
            engine,
            shared: Arc::new(Mutex::new(Shared {
                state: JobState::Idle,
                choice: None,
                events: Vec::new(),
            })),
            shown: None,
        }
    }

    /// The same job, noting in `marker` when its finished result has been shown.
    #[must_use]
    pub fn with_shown_marker(mut self, marker: PathBuf) -> ActivationJob {
        self.shown = Some(marker);
        self
    }

    /// Whether an activation runs now.
    #[must_use]
    pub fn running(&self) -> bool {
        self.shared
            .lock()
            .map(|s| s.state == JobState::Running)
            .unwrap_or(false)
    }

    /// Starts activating the staged configuration with `choice`. Call only after every
    /// check passed and the configuration is staged: from here on the job reports,
    /// nothing refuses.
    ///
    /// # Errors
    /// [`Refusal::Running`] while one runs; a thread that cannot start.
    pub fn start(&self, choice: DataChoice) -> Result<(), Refusal> {
        let mut shared = self.shared.lock().map_err(|_| Refusal::Running)?;
        if shared.state == JobState::Running {
            return Err(Refusal::Running);
        }
        let before = std::mem::replace(
            &mut *shared,
            Shared {
                state: JobState::Running,
                choice: Some(choice),
                events: Vec::new(),
            },
        );
        let (job, store, node, engine) = (
            Arc::clone(&self.shared),
            self.store.clone(),
            self.node,
            self.engine.clone(),
        );
        let spawned = super::start_thread("activation", "the activation", move || {
            let events = Arc::clone(&job);
            let mut say = move |e: ActivationEvent| {
                eprintln!("clusterd: activation: {e}");
                if let Ok(mut s) = events.lock() {
                    s.push(e);
                }
            };
            let result = run(&engine, store, node, choice, &mut say);
            if let Ok(mut s) = job.lock() {
                s.state = match result {
                    Ok(()) => JobState::Succeeded,
                    Err(error) => {
                        eprintln!("clusterd: activation failed: {error}");
                        JobState::Failed { error }
                    }
                };
            }
        });
        if spawned.is_err() {
            *shared = before;
        }
        spawned
    }

    /// The activation as its progress page shows it; after success with this node's
    /// new address.
    #[must_use]
    pub fn view(&self) -> ActivationView {
        let mut v = match self.shared.lock() {
            Ok(s) => ActivationView {
                state: s.state.clone(),
                choice: s.choice,
                events: s.events.clone(),
                new_url: None,
            },
            Err(_) => ActivationView {
                state: JobState::Failed {
                    error: "the activation's record was lost".into(),
                },
                choice: None,
                events: Vec::new(),
                new_url: None,
            },
        };
        if v.state == JobState::Succeeded {
            v.new_url = super::current(&self.store)
                .ok()
                .map(|c| format!("https://{}/", c.network.node(self.node).address.addr()));
        }
        v
    }

    /// [`Self::view`] for the progress page: a finished activation is noted as shown
    /// (see [`SHOWN_MARKER`]).
    #[must_use]
    pub fn view_shown(&self) -> ActivationView {
        let v = self.view();
        if v.state == JobState::Succeeded
            && let Some(marker) = &self.shown
            && !marker.exists()
            && let Err(e) = std::fs::write(marker, b"")
        {
            // init then moves the node a minute after the commit.
            eprintln!(
                "clusterd: cannot note the shown activation in {}: {e}",
                marker.display()
            );
        }
        v
    }
}

fn run(
    engine: &Engine,
    store: PathBuf,
    node: NodeId,
    choice: DataChoice,
    say: &mut (dyn FnMut(ActivationEvent) + Send),
) -> Result<(), String> {
    match engine {
        Engine::Node => {
            let internal_nic = crate::activate::node_nics()
                .get(1)
                .cloned()
                .ok_or("this node has no second network port for the crossover cable")?;
            let plan = crate::activate::Plan {
                store,
                node,
                internal_nic,
                run_dir: PathBuf::from(crate::replication::NODE_CONF_DIR),
                tuning: crate::drbd::Tuning::default(),
                peer_wait: Duration::from_secs(600),
                sync_wait: Duration::from_secs(7 * 24 * 3600),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting the activation's runtime: {e}"))?;
            rt.block_on(crate::activate::activate(&plan, choice, say))
                .map(|_| ())
                .map_err(|e| error_chain(&e))
        }
        Engine::Sim { delay, fail } => simulate(&store, node, choice, *delay, *fail, say),
    }
}

/// The events a node gives, without touching the machine.
fn simulate(
    store: &std::path::Path,
    node: NodeId,
    choice: DataChoice,
    delay: Duration,
    fail: bool,
    say: &mut (dyn FnMut(ActivationEvent) + Send),
) -> Result<(), String> {
    let s = tandem_config::Store::open(store).map_err(|e| error_chain(&e))?;
    let cfg = s
        .pending()
        .map_err(|e| error_chain(&e))?
        .ok_or("no configuration is staged")?;
    let me = cfg.network.node(node);
    let peer = cfg.network.node(node.peer());
    say(ActivationEvent::Started {
        cluster: cfg.cluster.name.as_str().to_owned(),
        hostname: me.hostname.as_str().to_owned(),
        node,
    });
    say(ActivationEvent::WaitingForPeer {
        resource: cfg.replication.resource.as_str().to_owned(),
        backing: "(simulated)".to_owned(),
        peer: peer.hostname.as_str().to_owned(),
        endpoint: format!(
            "{}:{}",
            peer.internal_address.addr(),
            cfg.replication.port.get()
        ),
    });
    say(ActivationEvent::PeerMissing);
    std::thread::sleep(delay);
    if fail {
        return Err(format!(
            "the other node did not connect on the crossover link within {} s: continue activation on the other node or check the crossover cable, then activate again",
            delay.as_secs()
        ));
    }
    match choice {
        DataChoice::DestroyData => say(ActivationEvent::DataAreaCreated),
        DataChoice::FetchFromPeer => say(ActivationEvent::CopyComplete),
    }
    s.commit().map_err(|e| error_chain(&e))?;
    say(ActivationEvent::Committed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_named_on_the_command_line() {
        assert_eq!("node".parse(), Ok(Engine::Node));
        assert_eq!(
            "sim:250:fail".parse(),
            Ok(Engine::Sim {
                delay: Duration::from_millis(250),
                fail: true
            })
        );
        assert_eq!(
            "sim".parse(),
            Ok(Engine::Sim {
                delay: Duration::ZERO,
                fail: false
            })
        );
        for bad in ["", "sim:x", "sim:1:2", "real"] {
            assert!(bad.parse::<Engine>().is_err(), "{bad}");
        }
    }

    /// A store with a new cluster's configuration staged.
    fn staged() -> (tempfile::TempDir, tandem_config::ApplianceConfig) {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, _) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
        tandem_config::Store::open(dir.path())
            .unwrap()
            .stage(&cfg)
            .unwrap();
        (dir, cfg)
    }

    fn wait(j: &ActivationJob) -> ActivationView {
        let start = std::time::Instant::now();
        while j.running() {
            assert!(start.elapsed() < Duration::from_secs(10), "hangs");
            std::thread::sleep(Duration::from_millis(10));
        }
        j.view()
    }

    #[test]
    fn the_job_runs_in_the_background_reports_typed_events_and_commits() {
        let (dir, cfg) = staged();
        let engine = Engine::Sim {
            delay: Duration::from_millis(200),
            fail: false,
        };
        let marker = dir.path().join(SHOWN_MARKER);
        let j = ActivationJob::new(dir.path().to_owned(), NodeId::Node2, engine)
            .with_shown_marker(marker.clone());
        assert_eq!(j.view_shown().state, JobState::Idle);
        j.start(DataChoice::DestroyData).unwrap();
        assert_eq!(j.start(DataChoice::DestroyData), Err(Refusal::Running));
        assert_eq!(j.view_shown().state, JobState::Running);
        assert!(!marker.exists(), "shown before it finished");
        let v = wait(&j);
        assert!(!marker.exists(), "a view for itself is not the page");
        assert_eq!(j.view_shown(), v);
        assert!(marker.exists(), "the page showed the finished activation");
        assert_eq!(v.state, JobState::Succeeded, "{v:?}");
        assert!(v.peer_missing());
        assert_eq!(v.events.last(), Some(&ActivationEvent::Committed));
        assert_eq!(
            v.new_url,
            Some(format!(
                "https://{}/",
                cfg.network.node(NodeId::Node2).address.addr()
            ))
        );
        assert!(tandem_config::store::is_configured(dir.path()));
    }

    #[test]
    fn a_failed_job_says_why_and_commits_nothing() {
        let (dir, _) = staged();
        let engine = Engine::Sim {
            delay: Duration::ZERO,
            fail: true,
        };
        let j = ActivationJob::new(dir.path().to_owned(), NodeId::Node1, engine);
        j.start(DataChoice::FetchFromPeer).unwrap();
        let v = wait(&j);
        assert!(
            matches!(&v.state, JobState::Failed { error } if error.contains("check the crossover cable")),
            "{v:?}"
        );
        assert!(!tandem_config::store::is_configured(dir.path()));
        assert_eq!(v.new_url, None);
    }
}
