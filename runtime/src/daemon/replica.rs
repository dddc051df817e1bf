//! The replicated data area (DRBD): watching its state for the core and the status,
//! a split brain from its detection to its resolution, the operator's force-primary.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_api::{Refusal, Reply};
use tandem_core::{Input, NodeId};
use tokio::sync::{mpsc, oneshot};

use super::In;
use super::core_loop::Shell;
use super::hub::EventHub;
use crate::alerts::Alert;
use crate::replication::Replication;

/// A DRBD split brain stays announced until the replication connects again, also
/// across restarts (a marker file in the state directory).
pub(super) struct SplitBrain {
    pub(super) marked: bool,
    marker: PathBuf,
    /// The operator asked for a resolution on this node (else DRBD's own after-sb
    /// policy resolved it when the nodes connect again).
    resolving: bool,
}

impl SplitBrain {
    /// The mark as the last run left it in `state_dir`.
    pub(super) fn load(state_dir: &std::path::Path) -> SplitBrain {
        let marker = state_dir.join("split-brain");
        SplitBrain {
            marked: marker.exists(),
            marker,
            resolving: false,
        }
    }
}

/// Starts watching `repl` every second: its state is "data known good" for the core
/// (sent as [`In::Replication`]), a line in the status (the returned one) and an
/// event when it changes (R5.3).
pub(super) fn watch(
    repl: Option<Replication>,
    tx: mpsc::Sender<In>,
    hub: &Arc<EventHub>,
) -> Arc<Mutex<Option<String>>> {
    let replication_line = Arc::new(Mutex::new(None::<String>));
    if let Some(repl) = repl {
        let (rhub, line) = (Arc::clone(hub), Arc::clone(&replication_line));
        tokio::spawn(watch_every_second(repl, tx, rhub, line));
    }
    replication_line
}

async fn watch_every_second(
    repl: Replication,
    rtx: mpsc::Sender<In>,
    rhub: Arc<EventHub>,
    line: Arc<Mutex<Option<String>>>,
) {
    let mut last: Option<String> = None;
    loop {
        let r = repl.clone();
        let st = tokio::task::spawn_blocking(move || r.status()).await;
        let (device, text, state) = match st {
            Ok(Ok(Some(s))) => {
                let (text, state) = (
                    crate::replication::summary(&s),
                    crate::replication::state_line(&s),
                );
                (Some(s), text, state)
            }
            Ok(Ok(None)) => (None, "not set up".to_owned(), "not set up".to_owned()),
            Ok(Err(e)) => (None, format!("unreadable: {e:#}"), "unreadable".to_owned()),
            Err(_) => return,
        };
        if let Ok(mut l) = line.lock() {
            *l = Some(text);
        }
        // Resync progress alone is no event; a change of state is.
        if last.as_ref() != Some(&state) {
            rhub.alert(
                "replication",
                state.clone(),
                &Alert::Replication {
                    old: last.clone(),
                    new: state.clone(),
                },
            );
            last = Some(state);
        }
        // Every second: whether the data is good also depends on
        // when the peer was last heard.
        if rtx.send(In::Replication(device)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Shell {
    /// The replicated device's state, every second.
    pub(super) fn replication(&mut self, device: Option<crate::drbd::DeviceStatus>) {
        let now = self.clock.now();
        // The core judges freshness from DRBD's state and from when the
        // peer was last heard; an outdated copy stays refused because DRBD
        // keeps the mark in its metadata.
        let input = match &device {
            Some(d) => Input::Replica(replica_of(d)),
            None => Input::DataGood(false),
        };
        self.core.handle(now, input);
        self.trial_check(device.as_ref().is_some_and(|d| d.connection.is_linked()));
        let sb = &mut self.split_brain;
        if sb.marked && device.as_ref().is_some_and(|d| d.connection.is_linked()) {
            sb.marked = false;
            let _ = std::fs::remove_file(&sb.marker);
            let by = if std::mem::take(&mut sb.resolving) {
                "by the operator's choice"
            } else {
                "by the replication's split-brain policy (replication.split-brain): the changes of the node it discarded since the split are gone"
            };
            self.hub.alert(
                "split_brain",
                format!("split brain of the replicated data resolved {by}; the two nodes are connected again (resynchronising)"),
                &Alert::Replication {
                    old: Some("split brain".into()),
                    new: "connected".into(),
                },
            );
        }
    }

    /// This node's part of a split-brain resolution ran.
    pub(super) fn resolved(&mut self, r: Result<String, String>, reply: oneshot::Sender<Reply>) {
        let resp = match r {
            Ok(text) => {
                self.split_brain.resolving = true;
                self.hub.publish("split_brain", text);
                Reply::Done
            }
            Err(e) => Reply::Refused(Refusal::Failed(e)),
        };
        let _ = reply.send(resp);
    }

    /// DRBD was told to take this node's copy as current; now the core.
    pub(super) fn forced(&mut self, r: Result<(), String>, reply: oneshot::Sender<Reply>) {
        let now = self.clock.now();
        let resp = match r
            .map_err(|e| format!("making this node's copy current failed: {e}"))
            .and_then(|()| self.core.force_copy_good(now).map_err(|e| e.to_string()))
        {
            Ok(()) => {
                self.hub.publish(
                    "replication",
                    "the operator declared this node's copy the one to start from: it takes over (after fencing the other node, where configured); the other node's changes since the two parted are lost".into(),
                );
                Reply::Done
            }
            Err(e) => Reply::Refused(Refusal::Failed(e)),
        };
        let _ = reply.send(resp);
    }

    /// `replication-peer-lost`: DRBD's fence-peer handler asks for the silent peer to
    /// be fenced.
    pub(super) fn replication_peer_lost(&mut self) -> Reply {
        let now = self.clock.now();
        let first = self.core.status(now).fence.is_none();
        if self.core.fence_for_data(now) && first {
            self.hub.publish(
                "replication",
                "the replication lost the other node, which is silent on every path: writes wait until it is powered off".to_owned(),
            );
        }
        Reply::Done
    }

    /// DRBD reported a split brain: marked (durably) and announced once.
    pub(super) fn split_brain_detected(&mut self) -> Reply {
        let sb = &mut self.split_brain;
        if !sb.marked {
            sb.marked = true;
            if let Err(e) = crate::write_atomic(&sb.marker, b"split brain\n", 0o600) {
                self.hub
                    .publish("warning", format!("keeping the split-brain mark: {e}"));
            }
            self.hub.alert(
                "split_brain",
                SPLIT_BRAIN_TEXT.to_owned(),
                &Alert::Replication {
                    old: Some("connected".into()),
                    new: "split brain".into(),
                },
            );
        }
        Reply::Done
    }

    /// `split-brain resolve`: runs this node's part off the loop (answered with
    /// [`In::Resolved`]), or refuses at once.
    pub(super) fn start_resolving(&mut self, survivor: NodeId, reply: oneshot::Sender<Reply>) {
        let victim = survivor != self.settings.node;
        let resp = match &self.settings.replication {
            None => Reply::Refused(Refusal::Failed(
                "this node runs no replicated data area; nothing was changed".into(),
            )),
            Some(_) if victim && self.core.role().holds_resources() => {
                Reply::Refused(Refusal::Failed(format!(
                    "this node holds the services: move them to {} first (switchover), or name this node as the survivor; nothing was changed",
                    survivor.name()
                )))
            }
            Some(repl) => {
                let (repl, t) = (repl.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let r = tokio::task::spawn_blocking(move || resolve_split_brain(&repl, victim))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r);
                    let _ = t.send(In::Resolved(r, reply)).await;
                });
                return;
            }
        };
        let _ = reply.send(resp);
    }

    /// `force-primary`: refuses while the peer is heard or this node holds the
    /// services; else DRBD marks this copy current off the loop (answered with
    /// [`In::Forced`]).
    pub(super) fn force_primary(&mut self, reply: oneshot::Sender<Reply>) {
        let st = self.core.status(self.clock.now());
        let resp = match (
            &self.settings.replication,
            st.peer.alive,
            st.role.holds_resources(),
        ) {
            (None, _, _) => Reply::Refused(Refusal::Failed(
                "this node runs no replicated data area; nothing was changed".into(),
            )),
            (_, true, _) => Reply::Refused(Refusal::Failed(format!(
                "{}; nothing was changed",
                tandem_core::ForceError::PeerAlive
            ))),
            (_, _, true) => Reply::Refused(Refusal::Failed(format!(
                "{}; nothing was changed",
                tandem_core::ForceError::Holding
            ))),
            (Some(repl), false, false) => {
                let (repl, t) = (repl.clone(), self.tx.clone());
                tokio::spawn(async move {
                    // DRBD marks the copy current only as primary;
                    // the takeover then promotes it in its turn.
                    let r = tokio::task::spawn_blocking(move || {
                        repl.initial_primary().and_then(|()| repl.secondary())
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| crate::error_chain(&e)));
                    let _ = t.send(In::Forced(r, reply)).await;
                });
                return;
            }
        };
        let _ = reply.send(resp);
    }
}

/// What a DRBD split brain is called in alerts, the status and the console.
pub(super) const SPLIT_BRAIN_TEXT: &str = "split brain of the replicated data: both nodes changed it while apart; nothing was discarded by this node. Compare both sides with tandem split-brain and choose the survivor (tandem split-brain resolve); an automatic split-brain policy, where configured, is reported when the nodes connect again";

/// This node's part of DRBD's own split-brain resolution: the victim becomes secondary
/// and connects discarding its changes since the split; the survivor connects.
fn resolve_split_brain(
    repl: &crate::replication::Replication,
    victim: bool,
) -> Result<String, String> {
    use crate::drbd::{Connection, Role as DrbdRole};
    let err = |e: crate::replication::ReplicationError| crate::error_chain(&e);
    let st = repl
        .status()
        .map_err(err)?
        .ok_or("the replicated device is not set up on this node")?;
    if victim {
        if st.role == DrbdRole::Primary {
            repl.secondary().map_err(err)?;
        }
        if st.connection != Connection::StandAlone {
            repl.disconnect().map_err(err)?;
        }
        repl.connect(true).map_err(err)?;
        Ok("split brain: this node is the victim: secondary, connecting with --discard-my-data (its changes since the split are discarded; it resynchronises from the survivor)".into())
    } else {
        if st.connection == Connection::StandAlone {
            repl.connect(false).map_err(err)?;
        }
        Ok("split brain: this node is the survivor: connecting (its data stays and is copied to the victim)".into())
    }
}

/// The replicated device's state in the core's terms.
pub(super) fn replica_of(d: &crate::drbd::DeviceStatus) -> tandem_core::Replica {
    use crate::drbd::{DiskState, Role as DrbdRole};
    tandem_core::Replica {
        disk: match d.disk {
            DiskState::UpToDate => tandem_core::ReplicaDisk::UpToDate,
            DiskState::Outdated => tandem_core::ReplicaDisk::Outdated,
            _ => tandem_core::ReplicaDisk::Other,
        },
        connected: d.connection.is_linked(),
        primary: d.role == DrbdRole::Primary,
        peer_secondary: d.connection.is_linked() && d.peer_role == DrbdRole::Secondary,
    }
}
