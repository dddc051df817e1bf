//! The cluster's state as the `status` reply: the core's view, with what the shell
//! adds (hardware, replication, split brain, inputs dropped).

use std::sync::atomic::Ordering;

use tandem_api::{CountersJson, PathJson, PeerJson, PingJson, StatusJson};
use tandem_core::{Core, Instant};

use super::core_loop::Shell;
use super::replica::SPLIT_BRAIN_TEXT;
use crate::settings::Settings;

impl Shell {
    /// The `status` reply now.
    pub(super) fn status(&self) -> StatusJson {
        let mut st = status_json(
            &self.core,
            self.clock.now(),
            &self.settings,
            &self.chain_names,
            self.bad_requests.load(Ordering::Relaxed),
        );
        st.hardware = self.hw_snapshot.lock().ok().map(|h| h.summary.clone());
        st.replication = self.replication_line.lock().ok().and_then(|l| l.clone());
        st.clock = self.clock_line.lock().ok().and_then(|l| l.clone());
        st.split_brain = self.split_brain.marked;
        if self.split_brain.marked {
            st.warnings.push(SPLIT_BRAIN_TEXT.to_owned());
        }
        st.dropped = self.inputs.dropped();
        st
    }
}

fn status_json(
    core: &Core,
    now: Instant,
    settings: &Settings,
    chain: &[String],
    bad_requests: u64,
) -> StatusJson {
    let s = core.status(now);
    let c = s.counters;
    StatusJson {
        node: s.node.name().into(),
        role: s.role.name().into(),
        resources: s.resources.name().into(),
        resource_chain: chain.to_vec(),
        waiting: s.waiting.map(|w| w.text().into()),
        data_good: s.data_good,
        peer: PeerJson {
            node: s.node.peer().name().into(),
            alive: s.peer.alive,
            role: s.peer.role.map(|r| r.name().into()),
            resources: s.peer.resources.map(|r| r.name().into()),
            data_good: s.peer.data_good,
            ping_reach: s.peer.ping.map(|p| p.0),
            config_matches: s.peer.config_matches,
        },
        paths: s
            .paths
            .iter()
            .map(|p| PathJson {
                path: p.path.name().into(),
                enabled: p.enabled,
                state: if !p.enabled {
                    "disabled"
                } else if !p.up {
                    "down"
                } else if p.late {
                    "late"
                } else {
                    "up"
                }
                .into(),
                last_heard_ms_ago: p
                    .last_heard_ago
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
            .collect(),
        ping_nodes: settings
            .ping_nodes
            .iter()
            .zip(s.ping_nodes.iter())
            .map(|(a, r)| PingJson {
                address: a.to_string(),
                reachable: *r,
            })
            .collect(),
        counters: CountersJson {
            accepted: c.accepted,
            bad_mac: c.bad_mac,
            malformed: c.malformed,
            replayed: c.replayed,
            misdirected: c.misdirected,
            line_noise: c.line_noise,
            config_mismatch: c.config_mismatch,
            bad_requests,
        },
        warnings: s.warnings,
        hardware: None,
        replication: None,
        clock: None,
        fence: s.fence.map(|f| match f {
            tandem_core::FenceStatus::Delay => "waiting the tiebreak delay".to_owned(),
            tandem_core::FenceStatus::InProgress => "in progress".to_owned(),
            tandem_core::FenceStatus::PoweredOff => "powered off".to_owned(),
            tandem_core::FenceStatus::Failed(why) => format!("failed: {why}"),
            tandem_core::FenceStatus::Confirmed => "confirmed down by the operator".to_owned(),
        }),
        fencing_off: s.fencing_off,
        // Filled in by the control service, which holds the VEs' watch.
        ves: Vec::new(),
        split_brain: false,
        dropped: tandem_api::DroppedJson::default(),
    }
}
