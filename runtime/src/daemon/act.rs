//! Carrying out the core's outputs: heartbeats on their paths, pings, the resource
//! chain (acquire, release, announce), fencing the peer, outdating this node's copy,
//! events.
//!
//! Work that takes time runs in its own task; its result comes back to the loop on
//! the loop's queue for results ([`In`]), which the task waits for room in: a
//! result is never dropped.

use std::sync::Arc;
use std::time::Duration;

use tandem_core::{Input, Output, PathId};

use super::In;
use super::core_loop::Shell;
use super::describe::describe;
use crate::alerts::Alert;

impl Shell {
    /// Carries out every output the core has.
    pub(super) fn act_on_outputs(&mut self) {
        while let Some(o) = self.core.poll_output() {
            self.act(o);
        }
    }

    fn act(&mut self, o: Output) {
        match o {
            Output::Transmit { path, frame } => self.transmit(path, &frame),
            Output::Ping { index } => {
                if let Some(p) = self.pinger.as_mut() {
                    p.send(index);
                }
            }
            Output::Acquire => self.acquire(),
            Output::Release => self.release(),
            Output::Announce(why) => self.announce(why),
            Output::Fence => self.fence(),
            Output::Outdate => self.outdate(),
            Output::Event(e) => {
                let (kind, text) = describe(&e);
                self.hub.alert(kind, text, &Alert::Core(e));
            }
        }
    }

    fn transmit(&self, path: PathId, frame: &[u8; tandem_proto::FRAME_LEN]) {
        match path {
            PathId::Serial => {
                if let Some(stx) = &self.serial_tx {
                    // Full queue: the cable is stuck; losing a heartbeat is
                    // what a stuck cable means.
                    let _ = stx.try_send(*frame);
                }
            }
            _ => {
                if let Some(u) = &self.udp[path.index()] {
                    let _ = u.sock.try_send_to(frame, u.peer.into());
                }
            }
        }
    }

    fn acquire(&self) {
        let (c, t) = (Arc::clone(&self.chain), self.tx.clone());
        let h = Arc::clone(&self.hub);
        tokio::spawn(async move {
            let mut chain = c.lock().await;
            let r = chain.acquire().await.map_err(|e| crate::error_chain(&e));
            if r.is_ok() {
                h.publish("acquired", format!("resources up in {}", chain.timings()));
            }
            drop(chain);
            let _ = t.send(In::ChainUp(r)).await;
        });
    }

    fn release(&self) {
        let (c, t) = (Arc::clone(&self.chain), self.tx.clone());
        let h = Arc::clone(&self.hub);
        tokio::spawn(async move {
            let mut chain = c.lock().await;
            let r = chain.release().await.map_err(|e| crate::error_chain(&e));
            h.publish("released", format!("resources down in {}", chain.timings()));
            drop(chain);
            let _ = t.send(In::ChainDown(r)).await;
        });
    }

    fn announce(&self, why: tandem_core::AnnounceReason) {
        // The periodic refresh is routine: it would fill the event log.
        if why != tandem_core::AnnounceReason::Refresh {
            self.hub.publish("announce", why.text().into());
        }
        let (c, t) = (Arc::clone(&self.chain), self.tx.clone());
        tokio::spawn(async move {
            let r = c
                .lock()
                .await
                .announce()
                .await
                .map_err(|e| crate::error_chain(&e));
            let _ = t.send(In::Announced(r)).await;
        });
    }

    fn fence(&mut self) {
        let Some(f) = self.settings.fencing.as_ref() else {
            self.core.handle(
                self.clock.now(),
                Input::FenceResult(tandem_core::FenceResult::Failed(
                    "no fencing device is configured",
                )),
            );
            return;
        };
        let fencer = f.fencer.clone();
        self.hub.publish(
            "fence",
            format!(
                "{} silent: powering it off through its BMC {} before taking over",
                fencer.peer, fencer.addr
            ),
        );
        let t = self.tx.clone();
        tokio::spawn(async move {
            // The fencer keeps its own bound; this one only guards against
            // a thread that never returns.
            let bound = fencer.timeout + Duration::from_secs(5);
            let work = tokio::task::spawn_blocking(move || fencer.fence());
            let r = match tokio::time::timeout(bound, work).await {
                Ok(Ok(Ok(text))) => Ok(text),
                Ok(Ok(Err(e))) => Err((e.timed_out(), crate::error_chain(&e))),
                Ok(Err(e)) => Err((false, format!("the fence task failed: {e}"))),
                Err(_) => Err((true, "the fence did not end within its bound".into())),
            };
            let _ = t.send(In::Fenced(r)).await;
        });
    }

    fn outdate(&self) {
        if let Some(repl) = self.settings.replication.clone() {
            let h = Arc::clone(&self.hub);
            tokio::spawn(async move {
                let text = match tokio::task::spawn_blocking(move || repl.outdate()).await {
                    Ok(Ok(())) => "this node's copy is recorded as outdated in DRBD's metadata: it is refused for primary, also after a restart, until it was resynchronised".to_owned(),
                    Ok(Err(e)) => format!("recording this node's copy as outdated failed: {}", crate::error_chain(&e)),
                    Err(e) => format!("recording this node's copy as outdated failed: {e}"),
                };
                h.publish("replication", text);
            });
        }
    }
}
