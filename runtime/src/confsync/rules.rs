//! What a running cluster may change by exchange, and taking a newer configuration.

use std::path::Path;

use tandem_config::{ApplianceConfig, Store, UpdateError};

use super::frame::Outcome;

/// What changed between two configurations, by console page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sections that changed, in the file's order (`network`, `heartbeat`, …).
    pub sections: Vec<&'static str>,
    /// The management password changed.
    pub admin_password: bool,
    /// The time servers (`network.ntp-servers`) changed: clusterd puts them in effect
    /// at once.
    pub time_servers: bool,
    /// Network settings other than the time servers changed: they take effect when
    /// the node starts again.
    pub network_at_start: bool,
}

/// Whether `old` and `new` differ in network settings other than the time servers
/// (those are set up when the node starts; the time servers are put in effect at once).
#[must_use]
pub fn network_changed_besides_time_servers(
    old: &tandem_config::schema::NetworkConfig,
    new: &tandem_config::schema::NetworkConfig,
) -> bool {
    let mut old = old.clone();
    old.ntp_servers.clone_from(&new.ntp_servers);
    old != *new
}

impl Changes {
    /// Between `old` and `new`.
    #[must_use]
    pub fn between(old: &ApplianceConfig, new: &ApplianceConfig) -> Changes {
        let mut sections = Vec::new();
        let mut note = |name, changed: bool| {
            if changed {
                sections.push(name);
            }
        };
        note("network", old.network != new.network);
        note("heartbeat", old.heartbeat != new.heartbeat);
        note("ves", old.ves != new.ves);
        note("notification", old.notification != new.notification);
        note("passwords", old.passwords != new.passwords);
        note("updates", old.updates != new.updates);
        note("support", old.support != new.support);
        note("fencing", old.fencing != new.fencing);
        note("access", old.access != new.access);
        Changes {
            sections,
            admin_password: old.passwords.admin != new.passwords.admin,
            time_servers: old.network.ntp_servers != new.network.ntp_servers,
            network_at_start: network_changed_besides_time_servers(&old.network, &new.network),
        }
    }

    /// Whether the change takes effect only when each node starts again: network
    /// settings other than the time servers, and heartbeat settings, are set up at boot.
    #[must_use]
    pub fn needs_restart(&self) -> bool {
        self.network_at_start || self.sections.contains(&"heartbeat")
    }

    /// The changed sections as one comma-separated string (`none` when empty).
    #[must_use]
    pub fn list(&self) -> String {
        if self.sections.is_empty() {
            "none".into()
        } else {
            self.sections.join(", ")
        }
    }
}

/// Why a configuration change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another cluster's configuration.
    #[error("the configuration belongs to another cluster ({offered}, this node: {have})")]
    OtherCluster {
        /// The offered cluster id.
        offered: String,
        /// This node's.
        have: String,
    },
    /// Not newer than what the node has.
    #[error(
        "revision {offered} is not newer than this node's revision {have}{}",
        if *same { " (the same configuration)" } else { "" }
    )]
    NotNewer {
        /// The offered revision.
        offered: u64,
        /// This node's.
        have: u64,
        /// Same content.
        same: bool,
    },
    /// A part that only an activation may change.
    #[error(
        "the change touches {0}, which only a new configuration archive and an activation can change"
    )]
    Fixed(String),
    /// Different software on the two nodes.
    #[error("schema version {offered} differs from this node's {have}: update both nodes first")]
    Schema {
        /// The offered version.
        offered: u32,
        /// This node's.
        have: u32,
    },
}

/// Whether `new` may replace `old` on a running cluster.
///
/// # Errors
/// The reason it may not.
pub fn judge(old: &ApplianceConfig, new: &ApplianceConfig) -> Result<Changes, Refusal> {
    if old.cluster.id != new.cluster.id {
        return Err(Refusal::OtherCluster {
            offered: new.cluster.id.to_string(),
            have: old.cluster.id.to_string(),
        });
    }
    if new.schema_version != old.schema_version {
        return Err(Refusal::Schema {
            offered: new.schema_version,
            have: old.schema_version,
        });
    }
    if new.cluster.revision <= old.cluster.revision {
        return Err(Refusal::NotNewer {
            offered: new.cluster.revision,
            have: old.cluster.revision,
            same: old == new,
        });
    }
    let mut fixed = Vec::new();
    if old.cluster.name != new.cluster.name {
        fixed.push("cluster.name");
    }
    if old.heartbeat.auth_key != new.heartbeat.auth_key {
        fixed.push("heartbeat.auth-key");
    }
    if old.heartbeat.udp_port != new.heartbeat.udp_port {
        fixed.push("heartbeat.udp-port");
    }
    if old.replication != new.replication {
        fixed.push("replication");
    }
    if old.keys != new.keys {
        fixed.push("keys");
    }
    if old.network.node1.internal_address != new.network.node1.internal_address
        || old.network.node2.internal_address != new.network.node2.internal_address
        || old.network.internal_netmask != new.network.internal_netmask
    {
        fixed.push("the crossover addresses");
    }
    if !fixed.is_empty() {
        return Err(Refusal::Fixed(fixed.join(", ")));
    }
    Ok(Changes::between(old, new))
}

/// What [`accept`] did.
#[derive(Debug)]
pub struct Accepted {
    /// The configuration now committed.
    pub config: ApplianceConfig,
    /// What changed.
    pub changes: Changes,
    /// A durability doubt about the commit (see [`Store::update`]).
    pub warning: Option<String>,
}

/// Why [`accept`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The text is not a valid configuration.
    #[error("the configuration is not valid: {0}")]
    Invalid(String),
    /// Refused by [`judge`].
    #[error(transparent)]
    Refused(Refusal),
    /// The store failed or holds no configuration.
    #[error("{0}")]
    Store(String),
}

/// Commits the configuration `text` in `store` when [`judge`] allows it. A changed
/// management password also removes a password set on this node's console (R13.1):
/// the one set for the cluster counts from now on.
///
/// # Errors
/// Invalid text, a refusal, or a store failure; the store is then unchanged.
pub fn accept(store: &Store, text: &str) -> Result<Accepted, AcceptError> {
    let new = ApplianceConfig::from_toml(text).map_err(|e| AcceptError::Invalid(e.to_string()))?;
    let mut changes = None;
    let warning = store
        .update(|old| {
            changes = Some(judge(old, &new)?);
            Ok::<_, Refusal>(new.clone())
        })
        .map_err(|e| match e {
            UpdateError::Refused(r) => AcceptError::Refused(r),
            UpdateError::NotConfigured => {
                AcceptError::Store("this node has no committed configuration".into())
            }
            UpdateError::Stage(e) => AcceptError::Store(crate::error_chain(&e)),
        })?;
    let changes = changes.unwrap_or_default();
    if changes.admin_password {
        forget_console_password(store.dir());
    }
    Ok(Accepted {
        config: new,
        changes,
        warning,
    })
}

/// The file in which the node's console keeps a management password set there (R13.1).
pub const CONSOLE_PASSWORD: &str = "admin.hash";

fn forget_console_password(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(CONSOLE_PASSWORD));
}

/// The answer to an offer received from the peer: commit when newer, else say why not.
#[must_use]
pub fn answer(store: &Store, config: &str) -> (Outcome, Option<Accepted>) {
    match accept(store, config) {
        Ok(a) => (
            Outcome::Accepted {
                revision: a.config.cluster.revision,
            },
            Some(a),
        ),
        Err(AcceptError::Refused(Refusal::NotNewer { have, same, .. })) => {
            (Outcome::NotNewer { have, same }, None)
        }
        Err(e) => (
            Outcome::Refused {
                reason: e.to_string(),
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ApplianceConfig {
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
            .unwrap()
            .0
    }

    #[test]
    fn judge_takes_newer_revisions_of_the_changeable_parts_only() {
        let old = cfg();
        let mut new = old.clone();
        new.cluster.revision += 1;
        new.notification.copy_vendor = !old.notification.copy_vendor;
        let c = judge(&old, &new).unwrap();
        assert_eq!(c.sections, vec!["notification"]);
        assert!(!c.needs_restart());

        new.network.dns_servers.clear();
        assert!(judge(&old, &new).unwrap().needs_restart());

        // Same or older revision.
        let mut same = old.clone();
        assert_eq!(
            judge(&old, &same),
            Err(Refusal::NotNewer {
                offered: old.cluster.revision,
                have: old.cluster.revision,
                same: true
            })
        );
        same.notification.copy_vendor = !same.notification.copy_vendor;
        assert!(matches!(
            judge(&old, &same),
            Err(Refusal::NotNewer { same: false, .. })
        ));

        // Parts only an activation changes.
        let mut fixed = old.clone();
        fixed.cluster.revision += 1;
        fixed.replication.port = 7799.try_into().unwrap();
        fixed.keys = cfg().keys;
        assert_eq!(
            judge(&old, &fixed),
            Err(Refusal::Fixed("replication, keys".into()))
        );
        let other = {
            let mut o = cfg();
            o.cluster.revision = 9;
            o
        };
        assert!(matches!(
            judge(&old, &other),
            Err(Refusal::OtherCluster { .. })
        ));
    }

    #[test]
    fn time_servers_alone_take_effect_at_once_other_network_changes_at_start() {
        let old = cfg();
        let mut ntp = old.clone();
        ntp.network.ntp_servers = vec!["ntp.example.net".parse().unwrap()];
        let c = Changes::between(&old, &ntp);
        assert_eq!(c.sections, vec!["network"]);
        assert!(c.time_servers);
        assert!(!c.network_at_start);
        assert!(!c.needs_restart(), "{c:?}");
        // Removed again, or replaced: the same.
        let c = Changes::between(&ntp, &old);
        assert!(c.time_servers && !c.needs_restart(), "{c:?}");
        let mut other = ntp.clone();
        other.network.ntp_servers = vec!["192.0.2.123:1123".parse().unwrap()];
        let c = Changes::between(&ntp, &other);
        assert!(c.time_servers && !c.needs_restart(), "{c:?}");

        // The time servers with another network setting: a restart for that one.
        let mut both = ntp.clone();
        both.network.dns_servers.clear();
        assert_ne!(both.network.dns_servers, old.network.dns_servers);
        let c = Changes::between(&old, &both);
        assert!(
            c.time_servers && c.network_at_start && c.needs_restart(),
            "{c:?}"
        );
        // Another network setting alone.
        let mut dns = old.clone();
        dns.network.dns_servers.clear();
        let c = Changes::between(&old, &dns);
        assert!(!c.time_servers && c.needs_restart(), "{c:?}");
        // The heartbeat still needs one; nothing else does.
        let mut hb = old.clone();
        hb.heartbeat.keepalive = tandem_config::Millis(1234);
        let c = Changes::between(&old, &hb);
        assert!(!c.time_servers && c.needs_restart(), "{c:?}");
        let c = Changes::between(&old, &old);
        assert!(!c.time_servers && !c.needs_restart(), "{c:?}");
        assert!(!network_changed_besides_time_servers(
            &old.network,
            &ntp.network
        ));
        assert!(network_changed_besides_time_servers(
            &old.network,
            &both.network
        ));
    }

    fn store_with(c: &ApplianceConfig) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("config")).unwrap();
        store.stage(c).unwrap();
        store.commit().unwrap();
        (dir, store)
    }

    #[test]
    fn accept_commits_newer_changes_and_forgets_a_console_password() {
        let old = cfg();
        let (_d, store) = store_with(&old);
        std::fs::write(store.dir().join(CONSOLE_PASSWORD), "x").unwrap();
        let mut new = old.clone();
        new.cluster.revision += 1;
        new.passwords.admin = tandem_config::secrets::hash_password("a new one").unwrap();
        let (outcome, accepted) = answer(&store, &new.to_toml());
        assert_eq!(
            outcome,
            Outcome::Accepted {
                revision: new.cluster.revision
            }
        );
        assert!(accepted.unwrap().changes.admin_password);
        assert_eq!(store.current().unwrap().unwrap(), new);
        assert_eq!(store.previous().unwrap().unwrap(), old);
        assert!(!store.dir().join(CONSOLE_PASSWORD).exists());

        // The same offer again: nothing happens.
        let (outcome, accepted) = answer(&store, &new.to_toml());
        assert_eq!(
            outcome,
            Outcome::NotNewer {
                have: new.cluster.revision,
                same: true
            }
        );
        assert!(accepted.is_none());

        // Garbage and refusals leave the store alone.
        let before = std::fs::read(store.dir().join("config.toml")).unwrap();
        let (outcome, _) = answer(&store, "schema-version = 2\n[cluster]\n");
        assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");
        let mut fixed = new.clone();
        fixed.cluster.revision += 1;
        fixed.heartbeat.udp_port = 7000.try_into().unwrap();
        let (outcome, _) = answer(&store, &fixed.to_toml());
        assert_eq!(
            outcome,
            Outcome::Refused {
                reason: "the change touches heartbeat.udp-port, which only a new configuration archive and an activation can change".into()
            }
        );
        assert_eq!(
            std::fs::read(store.dir().join("config.toml")).unwrap(),
            before
        );
    }
}
