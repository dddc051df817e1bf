//! The configured values without secrets, and changes from the console's Network,
//! Notification and Passwords pages (R9.3, R9.5, R9.6).
//!
//! A change starts from the configuration the page showed (its revision travels with
//! the form, so a change made meanwhile elsewhere is not overwritten), sets the form's
//! fields, raises the revision and is checked by the configuration's own rules. Every
//! problem names its form field. The result goes to both nodes through
//! [`crate::confsync::apply`]: the other node first, then this one. Changing the
//! management password needs the password in use now.

use std::path::Path;

use tandem_api::{
    ChangeRefusal, ChangeReport, FieldProblem, MAX_SECRET, MIN_PASSWORD, NodeId, NodeSettings,
    Refusal, Reply, Settings, SettingsChange,
};
use tandem_config::validate::MAX_NTP_SERVERS;
use tandem_config::{
    ApplianceConfig, DomainName, EmailAddress, HostPort, Hostname, Ipv4, Netmask, secrets,
};

fn list<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// The committed configuration `c` without any secret.
#[must_use]
pub fn view(c: &ApplianceConfig) -> Settings {
    let n = &c.network;
    let mut ves = vec![(
        "1".to_owned(),
        c.ves.ve1.hostname.to_string(),
        c.ves.ve1.address.to_string(),
    )];
    if let Some(v) = &c.ves.ve101 {
        ves.push(("101".into(), v.hostname.to_string(), v.address.to_string()));
    }
    Settings {
        cluster_name: c.cluster.name.to_string(),
        revision: c.cluster.revision,
        nodes: NodeId::ALL
            .iter()
            .map(|id| {
                let x = n.node(*id);
                NodeSettings {
                    node: id.to_string(),
                    hostname: x.hostname.to_string(),
                    address: x.address.to_string(),
                    internal_address: x.internal_address.to_string(),
                }
            })
            .collect(),
        netmask: n.netmask.to_string(),
        gateway: n.gateway.to_string(),
        ping_nodes: list(&n.ping_nodes),
        dns_search: list(&n.dns_search),
        dns_servers: list(&n.dns_servers),
        time_servers: list(&n.ntp_servers),
        serial_heartbeat: c.heartbeat.serial.enabled,
        external_heartbeat: c.heartbeat.external.enabled,
        notify_addresses: list(&c.notification.addresses),
        relay_host: c.notification.relay_host.as_ref().map(ToString::to_string),
        copy_vendor: c.notification.copy_vendor,
        vendor_address: c
            .notification
            .vendor_address
            .as_ref()
            .map(ToString::to_string),
        ves,
    }
}

/// A new password typed twice, in the form fields `fields` (new, again): long
/// enough and the same both times.
///
/// # Errors
/// The problem, at its field.
pub fn new_password(new: &str, again: &str, fields: (&str, &str)) -> Result<(), FieldProblem> {
    if new.chars().count() < MIN_PASSWORD || new.len() > MAX_SECRET {
        return Err(FieldProblem::new(
            fields.0,
            format!("must have {MIN_PASSWORD} to {MAX_SECRET} characters"),
        ));
    }
    if new != again {
        return Err(FieldProblem::new(fields.1, "differs from the new password"));
    }
    Ok(())
}

/// The configuration path each form field sets, for mapping the rules' problems back.
const FIELDS: &[(&str, &str)] = &[
    ("network.node1.hostname", "node1_hostname"),
    ("network.node1.address", "node1_address"),
    ("network.node2.hostname", "node2_hostname"),
    ("network.node2.address", "node2_address"),
    ("network.netmask", "netmask"),
    ("network.gateway", "gateway"),
    ("network.ping-nodes", "ping_nodes"),
    ("network.dns-search", "dns_search"),
    ("network.dns-servers", "dns_server1"),
    ("network.ntp-servers", "time_servers"),
    ("heartbeat", "serial_heartbeat"),
    ("notification.addresses", "addresses"),
    ("notification.relay-host", "relay_host"),
    ("notification", "copy_vendor"),
    ("passwords.admin", "new"),
];

fn field_of(path: &str) -> &str {
    FIELDS
        .iter()
        .find(|(p, _)| {
            path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
        })
        .map_or(path, |(_, f)| f)
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
}

fn parse<T: std::str::FromStr<Err = String>>(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: &str,
) -> Option<T> {
    let v = value.trim();
    if v.is_empty() {
        problems.push(FieldProblem::new(field, "is empty"));
        return None;
    }
    v.parse()
        .map_err(|e| problems.push(FieldProblem::new(field, e)))
        .ok()
}

fn parse_list<T: std::str::FromStr<Err = String>>(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: &str,
) -> Vec<T> {
    words(value)
        .filter_map(|w| parse(problems, field, w))
        .collect()
}

/// `cfg` with `change` made and the revision raised, or every problem by field.
/// `cfg` is what the page showed; nothing is written here.
///
/// # Errors
/// Every problem with the typed values or with the resulting configuration.
pub fn make(
    cfg: &ApplianceConfig,
    change: &SettingsChange,
) -> Result<ApplianceConfig, Vec<FieldProblem>> {
    let mut new = cfg.clone();
    let mut p = Vec::new();
    match change {
        SettingsChange::Network(f) => {
            let n = &mut new.network;
            if let Some(h) = parse::<Hostname>(&mut p, "node1_hostname", &f.node1_hostname) {
                n.node1.hostname = h;
            }
            if let Some(a) = parse::<Ipv4>(&mut p, "node1_address", &f.node1_address) {
                n.node1.address = a;
            }
            if let Some(h) = parse::<Hostname>(&mut p, "node2_hostname", &f.node2_hostname) {
                n.node2.hostname = h;
            }
            if let Some(a) = parse::<Ipv4>(&mut p, "node2_address", &f.node2_address) {
                n.node2.address = a;
            }
            if let Some(m) = parse::<Netmask>(&mut p, "netmask", &f.netmask) {
                n.netmask = m;
            }
            if let Some(g) = parse::<Ipv4>(&mut p, "gateway", &f.gateway) {
                n.gateway = g;
            }
            n.ping_nodes = parse_list(&mut p, "ping_nodes", &f.ping_nodes);
            n.dns_search = parse_list::<DomainName>(&mut p, "dns_search", &f.dns_search);
            let mut dns = Vec::new();
            if let Some(d) = parse::<Ipv4>(&mut p, "dns_server1", &f.dns_server1) {
                dns.push(d);
            }
            if !f.dns_server2.trim().is_empty()
                && let Some(d) = parse::<Ipv4>(&mut p, "dns_server2", &f.dns_server2)
            {
                dns.push(d);
            }
            n.dns_servers = dns;
            let times = words(&f.time_servers).count();
            if times > MAX_NTP_SERVERS {
                p.push(FieldProblem::new(
                    "time_servers",
                    format!("{times} servers given (at most {MAX_NTP_SERVERS})"),
                ));
            }
            n.ntp_servers = parse_list::<HostPort>(&mut p, "time_servers", &f.time_servers);
            new.heartbeat.serial.enabled = f.serial_heartbeat;
            new.heartbeat.external.enabled = f.external_heartbeat;
        }
        SettingsChange::Notification(f) => {
            let n = &mut new.notification;
            n.addresses = parse_list::<EmailAddress>(&mut p, "addresses", &f.addresses);
            n.relay_host = if f.relay_host.trim().is_empty() {
                None
            } else {
                parse::<HostPort>(&mut p, "relay_host", &f.relay_host)
            };
            n.copy_vendor = f.copy_vendor;
        }
        SettingsChange::AdminPassword {
            new: pw, confirm, ..
        } => {
            let hashed =
                new_password(pw.expose(), confirm.expose(), ("new", "confirm")).and_then(|()| {
                    secrets::hash_password(pw.expose()).map_err(|e| FieldProblem::new("new", e))
                });
            match hashed {
                Ok(h) => new.passwords.admin = h,
                Err(e) => p.push(e),
            }
        }
    }
    if !p.is_empty() {
        return Err(p);
    }
    new.cluster.revision = cfg.cluster.revision + 1;
    new.validate().map_err(|problems| {
        problems
            .into_iter()
            .map(|v| FieldProblem::new(field_of(&v.path), v.message))
            .collect::<Vec<_>>()
    })?;
    Ok(new)
}

/// Makes `change` (from a page that showed `revision`) on both nodes, or on this one
/// only; `reload` puts the result in effect in clusterd. A management password change
/// needs the password that opens the console now.
#[must_use]
pub fn change(
    store: &Path,
    node: NodeId,
    change: &SettingsChange,
    revision: u64,
    this_node_only: bool,
    reload: &dyn Fn() -> Result<(), String>,
) -> Reply {
    let cfg = match super::current(store) {
        Ok(c) => c,
        Err(r) => return Reply::Refused(r),
    };
    if cfg.cluster.revision != revision {
        return Reply::ChangeRefused(ChangeRefusal::Stale {
            have: cfg.cluster.revision,
        });
    }
    if let SettingsChange::AdminPassword { current, .. } = change
        && !super::password::opens(store, current.expose())
    {
        return Reply::ChangeRefused(ChangeRefusal::Fields(vec![FieldProblem::new(
            "current",
            "is not the password in use now",
        )]));
    }
    let new = match make(&cfg, change) {
        Ok(n) => n,
        Err(problems) => return Reply::ChangeRefused(ChangeRefusal::Fields(problems)),
    };
    apply(store, node, &new.to_toml(), this_node_only, reload)
}

/// Makes the configuration `text` the cluster's (see [`crate::confsync::apply`]).
#[must_use]
pub fn apply(
    store: &Path,
    node: NodeId,
    text: &str,
    this_node_only: bool,
    reload: &dyn Fn() -> Result<(), String>,
) -> Reply {
    use crate::confsync::ApplyError;
    let store = match tandem_config::Store::open(store) {
        Ok(s) => s,
        Err(e) => return Reply::Refused(Refusal::Failed(crate::error_chain(&e))),
    };
    match crate::confsync::apply(&store, node, text, this_node_only, reload) {
        Ok(a) => Reply::Changed(ChangeReport {
            revision: a.revision,
            needs_restart: a.changes.needs_restart(),
            changed: a.changes.sections.iter().map(|s| (*s).to_owned()).collect(),
            both_nodes: a.peer,
            sessions_ended: a.changes.admin_password,
            notes: a.notes,
        }),
        Err(e @ ApplyError::Local { .. }) => {
            Reply::ChangeRefused(ChangeRefusal::OnlyPeer(e.to_string()))
        }
        Err(ApplyError::Invalid(e)) => Reply::ChangeRefused(ChangeRefusal::Fields(
            e.problems
                .iter()
                .map(|p| FieldProblem::new(field_of(&p.path), p.message.clone()))
                .collect(),
        )),
        Err(e) => Reply::ChangeRefused(ChangeRefusal::NotMade(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use tandem_api::{NetworkForm, NotificationForm};

    use super::*;

    fn cfg() -> ApplianceConfig {
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
            .unwrap()
            .0
    }

    fn network_form(c: &ApplianceConfig) -> NetworkForm {
        let n = &c.network;
        NetworkForm {
            node1_hostname: n.node1.hostname.to_string(),
            node1_address: n.node1.address.to_string(),
            node2_hostname: n.node2.hostname.to_string(),
            node2_address: n.node2.address.to_string(),
            netmask: n.netmask.to_string(),
            gateway: n.gateway.to_string(),
            ping_nodes: n
                .ping_nodes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            dns_search: "example.com, lab.example".into(),
            dns_server1: n.dns_servers[0].to_string(),
            dns_server2: String::new(),
            time_servers: list(&n.ntp_servers).join(" "),
            serial_heartbeat: true,
            external_heartbeat: false,
        }
    }

    #[test]
    fn a_network_change_raises_the_revision_and_keeps_the_rest() {
        let c = cfg();
        let new = make(&c, &SettingsChange::Network(network_form(&c))).unwrap();
        assert_eq!(new.cluster.revision, c.cluster.revision + 1);
        assert_eq!(new.network.dns_search.len(), 2);
        assert_eq!(new.network.dns_servers.len(), 1);
        assert!(!new.heartbeat.external.enabled);
        assert_eq!(new.keys, c.keys);
        assert_eq!(new.passwords, c.passwords);
        crate::confsync::judge(&c, &new).unwrap();
    }

    #[test]
    fn time_servers_are_set_from_the_network_form() {
        let c = cfg();
        assert!(c.network.ntp_servers.is_empty());
        // The form as the page shows it, with only the time servers typed.
        let mut f = network_form(&c);
        f.dns_search = list(&c.network.dns_search).join(" ");
        f.serial_heartbeat = c.heartbeat.serial.enabled;
        f.external_heartbeat = c.heartbeat.external.enabled;
        f.time_servers = "ntp1.example.net, 192.0.2.123:1123\r\nntp2.example.net".into();
        let new = make(&c, &SettingsChange::Network(f)).unwrap();
        assert_eq!(
            list(&new.network.ntp_servers),
            ["ntp1.example.net", "192.0.2.123:1123", "ntp2.example.net"]
        );
        assert_eq!(view(&new).time_servers, list(&new.network.ntp_servers));
        let changes = crate::confsync::Changes::between(&c, &new);
        assert!(
            changes.time_servers && !changes.network_at_start,
            "{changes:?}"
        );
        assert_eq!(changes.sections, ["network"]);

        // Empty clears them.
        let mut f = network_form(&new);
        assert_eq!(
            f.time_servers,
            "ntp1.example.net 192.0.2.123:1123 ntp2.example.net"
        );
        f.time_servers = " \n".into();
        let cleared = make(&new, &SettingsChange::Network(f)).unwrap();
        assert!(cleared.network.ntp_servers.is_empty());
        assert!(view(&cleared).time_servers.is_empty());
    }

    #[test]
    fn bad_time_servers_are_refused_at_their_field() {
        let mut c = cfg();
        c.network.ntp_servers = vec!["ntp.example.net".parse().unwrap()];
        let try_servers = |servers: &str| {
            let mut f = network_form(&c);
            f.time_servers = servers.into();
            make(&c, &SettingsChange::Network(f)).unwrap_err()
        };

        let e = try_servers("ntp1.example.net bad_name:123 192.0.2.1:0");
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["time_servers", "time_servers"], "{e:?}");
        assert!(e[0].message.contains("bad_name:123"), "{e:?}");
        assert!(e[1].message.contains("192.0.2.1:0"), "{e:?}");

        let e = try_servers("a.example b.example c.example d.example e.example");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "time_servers");
        assert!(
            e[0].message.contains("5 servers given (at most 4)"),
            "{e:?}"
        );

        // The configuration's own rules name the field too.
        let e = try_servers("ntp.example.net ntp.example.net");
        assert_eq!(e[0].field, "time_servers", "{e:?}");
        assert!(e[0].message.contains("listed twice"), "{e:?}");

        // Through the store: refused at the field, and the committed configuration
        // is the one before.
        let dir = tempfile::tempdir().unwrap();
        let store = tandem_config::Store::open(dir.path()).unwrap();
        store.stage(&c).unwrap();
        store.commit().unwrap();
        let mut f = network_form(&c);
        f.time_servers = "ntp1.example.net ntp 2.example.net:x".into();
        let reply = change(
            dir.path(),
            NodeId::Node1,
            &SettingsChange::Network(f),
            c.cluster.revision,
            true,
            &|| panic!("nothing to put in effect"),
        );
        let Reply::ChangeRefused(ChangeRefusal::Fields(e)) = reply else {
            panic!("{reply:?}");
        };
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "time_servers");
        assert!(e[0].message.contains("2.example.net:x"), "{e:?}");
        assert_eq!(store.current().unwrap().unwrap(), c);
    }

    #[test]
    fn every_bad_field_is_named() {
        let c = cfg();
        let mut f = network_form(&c);
        f.node2_address = "10.0.0.300".into();
        f.gateway = String::new();
        f.ping_nodes = "10.1.1.1 nonsense".into();
        let e = make(&c, &SettingsChange::Network(f)).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["node2_address", "gateway", "ping_nodes"], "{e:?}");
        assert!(e[0].message.contains("10.0.0.300"), "{e:?}");
    }

    #[test]
    fn the_rules_of_the_configuration_apply_and_name_the_field() {
        let c = cfg();
        let mut f = network_form(&c);
        // Same address for both nodes: a cross-field rule of the schema.
        f.node2_address.clone_from(&f.node1_address);
        f.serial_heartbeat = false;
        f.external_heartbeat = false;
        let e = make(&c, &SettingsChange::Network(f)).unwrap_err();
        assert!(e.iter().any(|p| p.field.starts_with("node")), "{e:?}");
    }

    #[test]
    fn notification_and_password_changes() {
        let c = cfg();
        let new = make(
            &c,
            &SettingsChange::Notification(NotificationForm {
                addresses: "ops@example.com\r\nnight@example.com".into(),
                relay_host: "mail.example.com:587".into(),
                copy_vendor: false,
            }),
        )
        .unwrap();
        assert_eq!(new.notification.addresses.len(), 2);
        assert_eq!(
            new.notification.relay_host.as_ref().unwrap().to_string(),
            "mail.example.com:587"
        );
        let e = make(
            &c,
            &SettingsChange::Notification(NotificationForm {
                addresses: "ops@".into(),
                relay_host: "a b".into(),
                copy_vendor: false,
            }),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");

        let short = SettingsChange::AdminPassword {
            current: "".into(),
            new: "short".into(),
            confirm: "short".into(),
        };
        assert_eq!(make(&c, &short).unwrap_err()[0].field, "new");
        let typo = SettingsChange::AdminPassword {
            current: "".into(),
            new: "long enough 1".into(),
            confirm: "long enough 2".into(),
        };
        assert_eq!(make(&c, &typo).unwrap_err()[0].field, "confirm");
        let ok = SettingsChange::AdminPassword {
            current: "".into(),
            new: "long enough 1".into(),
            confirm: "long enough 1".into(),
        };
        let new = make(&c, &ok).unwrap();
        assert!(secrets::verify_password(
            "long enough 1",
            &new.passwords.admin
        ));
    }
}
