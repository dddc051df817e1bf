//! Property tests: a generated configuration survives export → import unchanged, its TOML
//! form reads back equal, and damaged input is refused without a panic.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use proptest::prelude::*;
use tandem_config::archive::{self, ExportOptions};
use tandem_config::schema::{BmcConfig, FencingConfig, SplitBrainPolicy, SupportConfig, VeConfig};
use tandem_config::{
    ApplianceConfig, ClusterId, ImportOptions, Ipv4, Millis, Netmask, Store, import_archive,
};

fn base() -> ApplianceConfig {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/full.toml"))
            .unwrap();
    ApplianceConfig::from_toml(&text).unwrap()
}

fn host(n: u32) -> String {
    format!("n{n:x}")
}

#[derive(Debug, Clone)]
struct Params {
    id: [u8; 16],
    prefix: u8,
    net: u32,
    hosts: [u32; 5],
    internal_net: u32,
    names: (u32, u32),
    keepalive_ms: u64,
    warn_extra: u64,
    dead_extra: u64,
    init_extra: u64,
    paths: (bool, bool, bool),
    udp_port: u16,
    ve101: bool,
    fencing: bool,
    support: bool,
    split: u8,
    emails: Vec<u8>,
    dns_two: bool,
}

fn params() -> impl Strategy<Value = Params> {
    (
        any::<[u8; 16]>(),
        16u8..=28,
        any::<u32>(),
        any::<[u32; 5]>(),
        0u32..256,
        (any::<u32>(), any::<u32>()),
        (100u64..10_000, 1u64..5_000, 1u64..60_000, 0u64..120_000),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        1024u16..=65535,
        (any::<bool>(), any::<bool>(), any::<bool>(), 0u8..3),
        prop::collection::vec(any::<u8>(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(
                id,
                prefix,
                net,
                hosts,
                internal_net,
                names,
                (k, w, d, i),
                paths,
                udp_port,
                (ve101, fencing, support, split),
                emails,
                dns_two,
            )| Params {
                id,
                prefix,
                net,
                hosts,
                internal_net,
                names,
                keepalive_ms: k,
                warn_extra: w,
                dead_extra: d,
                init_extra: i,
                paths,
                udp_port,
                ve101,
                fencing,
                support,
                split,
                emails,
                dns_two,
            },
        )
}

/// Builds a configuration that the rules accept (or `None` for the rare draws where two
/// generated addresses collide).
fn build(p: &Params) -> Option<ApplianceConfig> {
    let mut c = base();
    c.cluster.id = ClusterId::from_bytes(p.id);
    // External network: inside 10.0.0.0/8 so it never meets the internal 172.16/12 one.
    let host_bits = 32 - u32::from(p.prefix);
    let size = 1u32 << host_bits;
    let network = 0x0a00_0000 | ((p.net & 0x00ff_ffff) & !(size - 1));
    let addr = |i: usize| Ipv4(Ipv4Addr::from(network + 1 + p.hosts[i] % (size - 2)));
    c.network.netmask = Netmask::from_prefix(p.prefix).unwrap();
    c.network.node1.address = addr(0);
    c.network.node2.address = addr(1);
    c.network.gateway = addr(2);
    c.network.ping_nodes = vec![addr(2)];
    c.network.dns_servers = if p.dns_two {
        vec![addr(3), addr(4)]
    } else {
        vec![addr(3)]
    };
    c.network.node1.hostname = host(p.names.0).parse().unwrap();
    c.network.node2.hostname = format!("m{:x}", p.names.1).parse().unwrap();
    let internal = 0xac10_0000 | (p.internal_net << 8);
    c.network.node1.internal_address = Ipv4(Ipv4Addr::from(internal + 1));
    c.network.node2.internal_address = Ipv4(Ipv4Addr::from(internal + 2));
    c.ves.ve1.address = Ipv4(Ipv4Addr::from(internal + 3));
    let h = &mut c.heartbeat;
    h.keepalive = Millis(p.keepalive_ms);
    h.warntime = Millis(p.keepalive_ms + p.warn_extra);
    h.deadtime = Millis((2 * p.keepalive_ms).max(h.warntime.0) + p.dead_extra);
    h.initdead = Millis(h.deadtime.0 + p.init_extra);
    h.serial.enabled = p.paths.0;
    h.internal.enabled = p.paths.1;
    h.external.enabled = p.paths.2 || !p.paths.1;
    h.udp_port = p.udp_port.try_into().ok()?;
    c.replication.split_brain = [
        SplitBrainPolicy::Disconnect,
        SplitBrainPolicy::DiscardZeroChanges,
        SplitBrainPolicy::DiscardSecondary,
    ][usize::from(p.split)];
    if p.ve101 {
        c.ves.ve101 = Some(VeConfig {
            hostname: "app".parse().unwrap(),
            address: Ipv4(Ipv4Addr::from(
                network + 1 + p.hosts[4].rotate_left(7) % (size - 2),
            )),
            dns_servers: Vec::new(),
            dns_search: Vec::new(),
        });
    } else {
        c.ves.ve101 = None;
        c.passwords.root_ve101 = None;
    }
    if p.ve101 && c.passwords.root_ve101.is_none() {
        c.passwords.root_ve101 = Some(c.passwords.admin.clone());
    }
    c.notification.addresses = p
        .emails
        .iter()
        .map(|e| format!("ops{e}@example.org").parse().unwrap())
        .collect();
    c.notification.addresses.dedup();
    c.support = p.support.then(|| SupportConfig {
        host: "support.example.org:2222".parse().unwrap(),
        user: "tandem".parse().unwrap(),
    });
    c.fencing = p.fencing.then(|| FencingConfig {
        node1: BmcConfig {
            address: Ipv4(Ipv4Addr::new(192, 0, 2, 21)),
            port: 623.try_into().unwrap(),
            user: "ADMIN".parse().unwrap(),
            password: "pw 1".parse().unwrap(),
            cipher_suite: 3,
        },
        node2: BmcConfig {
            address: Ipv4(Ipv4Addr::new(192, 0, 2, 22)),
            port: 623.try_into().unwrap(),
            user: "ADMIN".parse().unwrap(),
            password: "pw 2".parse().unwrap(),
            cipher_suite: 17,
        },
    });
    c.validate().is_ok().then_some(c)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn export_import_round_trip(p in params(), encrypt in any::<bool>()) {
        let Some(cfg) = build(&p) else {
            // Address collisions are rare and legitimately refused.
            return Err(TestCaseError::reject("colliding addresses"));
        };
        prop_assert_eq!(ApplianceConfig::from_toml(&cfg.to_toml()).unwrap(), cfg.clone());
        let pass = encrypt.then(|| "pass phrase".to_owned());
        let bytes = archive::export(&cfg, &ExportOptions { passphrase: pass.clone(), created_unix: 1_700_000_000, work_factor: 2 }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = import_archive(&bytes, pass.as_deref(), &store, &ImportOptions::default()).unwrap();
        prop_assert_eq!(&r.config, &cfg);
        prop_assert_eq!(store.current().unwrap(), Some(cfg));
    }

    #[test]
    fn damaged_archives_are_refused_or_intact(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let cfg = base();
        let good = archive::export(&cfg, &ExportOptions { passphrase: None, created_unix: 1_700_000_000, work_factor: 2 }).unwrap();
        let mut bad = good.clone();
        for (i, x) in &flips {
            let i = i.index(bad.len());
            bad[i] ^= x;
        }
        // Flips in header padding or unused fields may leave the archive meaningful; then it
        // must still carry exactly the configuration.
        if let Ok(c) = archive::read_archive(&bad, None) {
            prop_assert_eq!(c.config, cfg);
        }
    }

    #[test]
    fn parser_never_panics(text in "\\PC{0,400}") {
        let _ = ApplianceConfig::from_toml(&text);
        let _ = archive::read_archive(text.as_bytes(), Some("x"));
    }
}
