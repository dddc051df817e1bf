//! The cluster configuration: reading the committed one, the exchange with the other
//! node (listening for its offers, offering this node's while the two differ) and
//! putting a new one in effect.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tandem_core::{Core, Input};
use tokio::sync::mpsc;

use super::In;
use super::control::status_now;
use super::hub::EventHub;
use crate::confsync::SyncSetup;
use crate::control::Service;
use crate::settings::Settings;

/// How often a node whose configuration differs from the other node's offers its own.
const CATCH_UP_EVERY: Duration = Duration::from_secs(10);

/// The configuration committed in the store of `setup`.
pub(super) fn committed_config(
    setup: &SyncSetup,
) -> anyhow::Result<tandem_config::ApplianceConfig> {
    tandem_config::Store::open(&setup.store)
        .and_then(|s| s.current())
        .map_err(|e| anyhow::anyhow!("{}", crate::error_chain(&e)))?
        .with_context(|| format!("no configuration is committed in {}", setup.store.display()))
}

/// The configuration clusterd starts with (with `sync`: the committed one), its
/// packet filter put in effect, and the exchange with the other node started.
///
/// # Errors
/// With `sync`, no committed configuration can be read.
pub(super) async fn start(
    settings: &Settings,
    sync: Option<&SyncSetup>,
    tx: &mpsc::Sender<In>,
    hub: &Arc<EventHub>,
) -> anyhow::Result<Option<tandem_config::ApplianceConfig>> {
    let running_cfg = match sync {
        Some(setup) => Some(committed_config(setup)?),
        None => None,
    };
    if let Some(fw) = &settings.firewall {
        let cfg = running_cfg.as_ref().unwrap_or(&fw.initial);
        put_firewall_in_effect(fw, cfg, hub);
    }
    if let Some(setup) = sync {
        start_config_exchange(setup.clone(), tx.clone(), Arc::clone(hub)).await;
    }
    Ok(running_cfg)
}

/// Listens for the other node's offers and starts the task that offers this node's
/// configuration while the two differ. A listener that cannot start is reported and
/// leaves clusterd running: changes then reach this node when it starts again.
async fn start_config_exchange(setup: SyncSetup, tx: mpsc::Sender<In>, hub: Arc<EventHub>) {
    match tokio::net::TcpListener::bind(setup.listen).await {
        Ok(listener) => {
            let (t, h) = (tx.clone(), Arc::clone(&hub));
            tokio::spawn(crate::confsync::serve(
                listener,
                setup.clone(),
                move |_| {
                    // A commit is never lost: this waits for room in the loop's queue.
                    let t = t.clone();
                    tokio::spawn(async move {
                        let _ = t.send(In::ConfigCommitted).await;
                    });
                },
                move |text| h.publish("config", text),
            ));
        }
        Err(e) => hub.publish(
            "config",
            format!(
                "configuration exchange off: cannot listen on {}: {e}; changes made on the other node reach this one when it starts again",
                setup.listen
            ),
        ),
    }
    tokio::spawn(catch_up(setup, tx, hub));
}

/// While the other node's heartbeat carries another configuration digest, offers this
/// node's configuration to it every [`CATCH_UP_EVERY`]; the node with the higher
/// revision wins. Reports what happens, each different outcome once.
async fn catch_up(setup: SyncSetup, tx: mpsc::Sender<In>, hub: Arc<EventHub>) {
    use crate::confsync::{OFFER_TIMEOUT, Outcome, offer};
    let mut last: Option<String> = None;
    loop {
        tokio::time::sleep(CATCH_UP_EVERY).await;
        let Some(st) = status_now(&tx).await else {
            return;
        };
        if st.peer.config_matches != Some(false) {
            last = None;
            continue;
        }
        let s = setup.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let cfg = committed_config(&s).map_err(|e| format!("{e:#}"))?;
            offer(&s.key, s.node, s.peer, &cfg.to_toml(), OFFER_TIMEOUT)
                .map(|o| (cfg.cluster.revision, o))
                .map_err(|e| e.to_string())
        })
        .await;
        let text = match answer {
            Ok(Ok((_, Outcome::Accepted { revision }))) => {
                hub.publish(
                    "config",
                    format!("the other node took this node's configuration revision {revision}"),
                );
                last = None;
                continue;
            }
            Ok(Ok((mine, Outcome::NotNewer { have, same: false }))) if have == mine => format!(
                "both nodes have configuration revision {mine}, with different contents: make the change again on one node"
            ),
            // The other node is newer (it offers its own) or the same.
            Ok(Ok((_, Outcome::NotNewer { .. }))) => continue,
            Ok(Ok((_, Outcome::Refused { reason }))) => {
                format!("the other node refused this node's configuration: {reason}")
            }
            Ok(Err(e)) => format!("cannot offer this node's configuration: {e}"),
            Err(e) => format!("cannot offer this node's configuration: {e}"),
        };
        if last.as_deref() != Some(text.as_str()) {
            hub.publish("config", text.clone());
            last = Some(text);
        }
    }
}

/// What [`reload_config`] changes on this node besides clusterd itself.
pub(super) struct Local<'a> {
    /// The packet filter (`--firewall`).
    pub(super) firewall: Option<&'a crate::firewall::Setup>,
    /// sshd's files (`--sshd-dir`).
    pub(super) sshd: Option<&'a crate::sshd::Setup>,
    /// chronyd's configuration (`--chrony-conf`).
    pub(super) chrony: Option<&'a crate::chrony::Setup>,
    /// The time servers the clock's watch asks about.
    pub(super) time_servers: &'a tokio::sync::watch::Sender<Vec<String>>,
    /// The revision in effect, for the tasks that read the configuration.
    pub(super) revision: &'a tokio::sync::watch::Sender<u64>,
}

/// Puts the committed configuration in effect: the heartbeat carries its digest,
/// e-mail goes to its recipients, chronyd takes new time servers; other network
/// settings and heartbeat settings wait for the next start. Reports the change as an
/// event.
pub(super) fn reload_config(
    sync: Option<&SyncSetup>,
    running: &mut Option<tandem_config::ApplianceConfig>,
    core: &mut Core,
    now: tandem_core::Instant,
    hub: &EventHub,
    service: &Service,
    local: &Local<'_>,
) -> Result<(), String> {
    let Local {
        firewall,
        sshd,
        chrony,
        time_servers,
        revision,
    } = *local;
    let setup = sync.ok_or("this clusterd runs without a configuration store (--store)")?;
    let cfg = committed_config(setup).map_err(|e| format!("reading the configuration: {e:#}"))?;
    if running.as_ref() == Some(&cfg) {
        return Ok(());
    }
    let changes = running
        .as_ref()
        .map(|old| crate::confsync::Changes::between(old, &cfg))
        .unwrap_or_default();
    core.handle(
        now,
        Input::ConfigDigest(crate::settings::config_digest(&cfg)),
    );
    if changes.sections.contains(&"notification") || changes.sections.contains(&"network") {
        hub.set_notification(&cfg.notification, crate::mail::dns_servers(&cfg));
    }
    // Addresses and ports take effect when the node starts again (as the network
    // does); who may reach the node at once.
    if let Some(fw) = firewall
        && (changes.sections.contains(&"access") || changes.sections.contains(&"support"))
    {
        put_firewall_in_effect(fw, &fw.effective(&cfg), hub);
    }
    if let Some(ssh) = sshd
        && (changes.sections.contains(&"access")
            || changes.sections.contains(&"support")
            || changes.sections.contains(&"passwords"))
    {
        // sshd listens where the node is now: the addresses clusterd started with.
        let effective = firewall.map_or_else(|| cfg.clone(), |fw| fw.effective(&cfg));
        let text = match ssh.refresh(&effective) {
            Ok(t) => t,
            Err(e) => format!("ssh server not changed: {e}"),
        };
        hub.publish("ssh", text);
    }
    if changes.time_servers {
        // chronyd cannot read its configuration again: it is ended, and init starts it
        // with the new file (or not at all when no time server is left).
        if let Some(chrony) = chrony {
            let text = match chrony.refresh(&cfg) {
                Ok(t) => t,
                Err(e) => format!("time servers not changed: {e}"),
            };
            hub.publish("time", text);
        }
        time_servers.send_replace(
            cfg.network
                .ntp_servers
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
    }
    if changes.admin_password {
        // Whoever logged in with the old password is logged out, on both nodes.
        service.end_sessions();
    }
    let mut text = format!(
        "configuration revision {} in effect (changed: {})",
        cfg.cluster.revision,
        changes.list()
    );
    if changes.needs_restart() {
        text.push_str(
            "; network settings other than the time servers, and heartbeat settings, take effect when this node starts again",
        );
    }
    hub.publish("config", text);
    revision.send_replace(cfg.cluster.revision);
    *running = Some(cfg);
    Ok(())
}

/// Applies the packet filter for `cfg` and reports the outcome as a `firewall` event
/// (a refused ruleset leaves the previous one in effect, and says so).
pub(super) fn put_firewall_in_effect(
    fw: &crate::firewall::Setup,
    cfg: &tandem_config::ApplianceConfig,
    hub: &EventHub,
) {
    let text = match fw.put_in_effect(cfg) {
        Ok(t) => t,
        Err(e) => format!("firewall not changed: {}", crate::error_chain(&e)),
    };
    hub.publish("firewall", text);
}

impl super::core_loop::Shell {
    /// [`reload_config`] for the loop.
    pub(super) fn reload_config(&mut self) -> Result<(), String> {
        reload_config(
            self.sync.as_ref(),
            &mut self.running_cfg,
            &mut self.core,
            self.clock.now(),
            &self.hub,
            &self.service,
            &Local {
                firewall: self.settings.firewall.as_ref(),
                sshd: self.settings.sshd.as_ref(),
                chrony: self.settings.chrony.as_ref(),
                time_servers: &self.time_servers,
                revision: &self.revision,
            },
        )
    }
}
