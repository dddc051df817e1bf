//! Control requests: the bridge from the control server ([`crate::control`]) to the
//! loop, and the loop's answers.
//!
//! A request reaches the loop as [`In::Control`] on the loop's bounded queue for
//! results and requests; the asking connection waits for room (the control server
//! serves at most [`crate::control::MAX_CONNECTIONS`] at once, each with one request
//! in flight), so no request is lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_api::{FactsJson, HwJson, Refusal, Reply, StatusJson};
use tokio::sync::{mpsc, oneshot};

use super::In;
use super::config::committed_config;
use super::core_loop::Shell;
use super::hub::EventHub;
use crate::admin::Admin;
use crate::confsync::SyncSetup;
use crate::control::{ClusterCall, ClusterLink, Service};
use crate::settings::Settings;

/// Binds the control socket and serves it with `admin` and the way to the loop.
///
/// # Errors
/// The control socket cannot be bound.
pub(super) fn serve(
    settings: &Settings,
    sync: Option<SyncSetup>,
    tx: mpsc::Sender<In>,
    hub: &Arc<EventHub>,
    hw_snapshot: &Arc<Mutex<HwJson>>,
    (support, rolling): (crate::support::Handle, crate::update::rolling::Handle),
    admin: Admin,
) -> anyhow::Result<Arc<Service>> {
    let mail_hub = Arc::clone(hub);
    let listener = crate::control::bind(&settings.control, settings.control_group)?;
    let link = ClusterLink {
        ask: Arc::new(move |call| ask(call, &tx, sync.as_ref())),
        events: Arc::clone(&hub.feed),
        hw: Arc::clone(hw_snapshot),
        mail: Arc::new(move |call| mail_hub.mail_call(call)),
        support,
        rolling,
    };
    let service = Arc::new(Service::new(admin, Some(link)));
    tokio::spawn(crate::control::serve(listener, Arc::clone(&service)));
    Ok(service)
}

/// Hands `call` to the loop (facts, which wait for the other node, are answered
/// beside it).
fn ask(
    call: ClusterCall,
    tx: &mpsc::Sender<In>,
    sync: Option<&SyncSetup>,
) -> oneshot::Receiver<Reply> {
    let (otx, orx) = oneshot::channel();
    let (tx, sync) = (tx.clone(), sync.cloned());
    tokio::spawn(async move {
        match call {
            // Facts wait for the other node: not in the loop.
            ClusterCall::Facts => {
                let _ = otx.send(facts(sync, &tx).await);
            }
            other => {
                let _ = tx.send(In::Control(other, otx)).await;
            }
        }
    });
    orx
}

impl Shell {
    /// Answers a control request, at once or (for work off the loop) later.
    pub(super) fn control(&mut self, call: ClusterCall, reply: oneshot::Sender<Reply>) {
        let now = self.clock.now();
        let resp = match call {
            ClusterCall::ReloadConfig => match self.reload_config() {
                Ok(()) => Reply::Done,
                Err(e) => Reply::Refused(Refusal::Failed(e)),
            },
            ClusterCall::Status => Reply::Status(Box::new(self.status())),
            ClusterCall::Switchover => match self.core.switchover(now) {
                Ok(()) => Reply::Done,
                Err(e) => Reply::Refused(Refusal::Switchover(e.to_string())),
            },
            // Answered outside the loop (see the link).
            ClusterCall::Facts => {
                Reply::Refused(Refusal::Failed("facts are not asked of the loop".into()))
            }
            ClusterCall::FenceConfirm(n) => self.fence_confirm(n),
            ClusterCall::ReplicationPeerLost => self.replication_peer_lost(),
            ClusterCall::SplitBrainDetected => self.split_brain_detected(),
            ClusterCall::ResolveSplitBrain(survivor) => {
                return self.start_resolving(survivor, reply);
            }
            ClusterCall::ForcePrimary => return self.force_primary(reply),
        };
        let _ = reply.send(resp);
    }

    /// The operator confirms that the silent peer `n` is down.
    fn fence_confirm(&mut self, n: tandem_core::NodeId) -> Reply {
        if n != self.settings.node.peer() {
            return Reply::Refused(Refusal::Failed(format!(
                "{} is this node: type the name of the silent node, {}; nothing was changed",
                n.name(),
                self.settings.node.peer().name()
            )));
        }
        match self.core.confirm_fence(self.clock.now()) {
            Ok(()) => {
                self.hub.publish(
                    "fence_confirmed",
                    format!(
                        "the operator confirmed that {} is down: taking over",
                        n.name()
                    ),
                );
                Reply::Done
            }
            Err(e) => Reply::Refused(Refusal::Failed(format!("{e}; nothing was changed"))),
        }
    }
}

/// The cluster loop's status; `None` once the loop has ended.
pub(super) async fn status_now(tx: &mpsc::Sender<In>) -> Option<StatusJson> {
    let (otx, orx) = oneshot::channel();
    tx.send(In::Control(ClusterCall::Status, otx)).await.ok()?;
    match orx.await.ok()? {
        Reply::Status(s) => Some(*s),
        _ => None,
    }
}

/// How long `facts` waits for the other node.
const FACTS_TIMEOUT: Duration = Duration::from_secs(3);

/// This node's facts and, over the configuration exchange, the other node's (asked
/// only while its heartbeat is heard, so that a dead node costs no wait).
async fn facts(sync: Option<SyncSetup>, tx: &mpsc::Sender<In>) -> Reply {
    let Some(setup) = sync else {
        return Reply::Refused(Refusal::Failed(
            "this clusterd runs without a configuration store (--store): no facts to exchange"
                .into(),
        ));
    };
    let heard = status_now(tx).await.is_some_and(|s| s.peer.alive);
    let answer = tokio::task::spawn_blocking(move || {
        let cfg = committed_config(&setup).ok();
        let own = crate::confsync::local_facts(setup.node, cfg.as_ref());
        let (peer, peer_error) = if heard {
            match crate::confsync::describe(&setup.key, setup.node, setup.peer, FACTS_TIMEOUT) {
                Ok(f) => (Some(f), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, Some("the other node is not heard".to_owned()))
        };
        FactsJson {
            own,
            peer,
            peer_error,
        }
    })
    .await;
    match answer {
        Ok(f) => Reply::Facts(Box::new(f)),
        Err(e) => Reply::Refused(Refusal::Failed(format!("facts: {e}"))),
    }
}
