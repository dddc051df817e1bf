//! Property tests: a generated configuration survives export → import unchanged, its TOML
//! form reads back equal, and damaged input is refused without a panic.
//!
//! The generator varies, on top of a fixed full.toml: the cluster id, addresses and
//! netmask, host names, heartbeat timers, paths, UDP port, serial device and baud, the
//! cluster key; SSH keys (fresh ed25519 keys from generated seeds), the TLS certificate and
//! key (one of five pairs of four key types), password hashes (argon2id with generated
//! parameters, salts and passwords), the VE manager account; the DNS search list; the
//! replication resource, port, rate, secret and split-brain policy; the update server's
//! URL, user and password; notification addresses, sender, relay and vendor copy; and
//! whether VE 101, support and fencing exist.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use base64ct::{Base64Unpadded, Encoding as _};
use proptest::prelude::*;
use tandem_config::archive::{self, ExportOptions};
use tandem_config::schema::{
    BmcConfig, FencingConfig, SplitBrainPolicy, SupportConfig, VeConfig, VeManagerAccount,
};
use tandem_config::{
    ApplianceConfig, Baud, ClusterId, ClusterKey, DomainName, EmailAddress, ImportOptions, Ipv4,
    Millis, Netmask, PasswordHash, SshPrivateKey, Store, TlsCertificate, TlsPrivateKey,
    import_archive,
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

/// The web console's certificate and key pairs to choose from: full.toml's (rcgen, P-256)
/// and `tests/keys/*` (openssl: P-256, P-384, Ed25519, RSA 2048).
fn tls_pairs() -> Vec<(TlsCertificate, TlsPrivateKey)> {
    let full = base();
    let mut out = vec![(full.keys.tls_certificate, full.keys.tls_key)];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    for name in ["ec-p256", "ec-p384", "ed25519", "rsa-2048"] {
        let read = |ext: &str| fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap();
        out.push((read("crt").parse().unwrap(), read("key").parse().unwrap()));
    }
    out
}

/// An ed25519 OpenSSH key from a seed (deterministic, so that a failing case replays).
fn ssh_key(seed: &[u8; 32], comment: &str) -> SshPrivateKey {
    let mut k = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(seed));
    k.set_comment(comment);
    k.to_openssh(ssh_key::LineEnding::LF)
        .unwrap()
        .as_str()
        .parse()
        .unwrap()
}

/// How one password hash is made: cheap argon2id parameters, a generated salt and password.
#[derive(Debug, Clone)]
struct HashParams {
    m_kib: u32,
    t: u32,
    p: u32,
    salt: [u8; 16],
    password: Vec<u8>,
}

fn hash_params() -> impl Strategy<Value = HashParams> {
    (
        8u32..=64,
        1u32..=3,
        1u32..=2,
        any::<[u8; 16]>(),
        prop::collection::vec(any::<u8>(), 1..24),
    )
        .prop_map(|(m_kib, t, p, salt, password)| HashParams {
            m_kib: m_kib.max(8 * p),
            t,
            p,
            salt,
            password,
        })
}

/// The argon2id PHC string for `h`.
fn password_hash(h: &HashParams) -> PasswordHash {
    let params = argon2::Params::new(h.m_kib, h.t, h.p, Some(32)).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(&h.password, &h.salt, &mut out)
        .unwrap();
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        h.m_kib,
        h.t,
        h.p,
        Base64Unpadded::encode_string(&h.salt),
        Base64Unpadded::encode_string(&out)
    )
    .parse()
    .unwrap()
}

/// A domain of one to three labels, letters and digits with inner hyphens, any case (the
/// schema stores it in lower case).
fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z][a-zA-Z0-9]{0,4}(-[a-z0-9]{1,3})?", 1..=3)
        .prop_map(|labels| labels.join("."))
        .prop_filter("not a valid domain", |d| d.parse::<DomainName>().is_ok())
}

fn email() -> impl Strategy<Value = String> {
    ("[a-z0-9][a-z0-9._+-]{0,12}", domain()).prop_map(|(l, d)| format!("{l}@{d}"))
}

#[derive(Debug, Clone)]
struct Secrets {
    ssh_seeds: [[u8; 32]; 4],
    tls: usize,
    hashes: [HashParams; 3],
    ve_manager: Option<(String, HashParams)>,
    auth_key: [u8; 32],
    shared_secret: String,
}

fn secrets() -> impl Strategy<Value = Secrets> {
    (
        any::<[[u8; 32]; 4]>(),
        0usize..5,
        [hash_params(), hash_params(), hash_params()],
        prop::option::of(("[a-z_][a-z0-9_-]{0,31}", hash_params())),
        any::<[u8; 32]>(),
        "[!#-\\[\\]-~]{1,64}",
    )
        .prop_map(
            |(ssh_seeds, tls, hashes, ve_manager, auth_key, shared_secret)| Secrets {
                ssh_seeds,
                tls,
                hashes,
                ve_manager,
                auth_key,
                shared_secret,
            },
        )
}

#[derive(Debug, Clone)]
struct Services {
    dns_search: Vec<String>,
    serial_device: String,
    baud: u32,
    resource: String,
    drbd_port: u16,
    rate: (u8, u64),
    split: u8,
    update_url: (bool, String, Option<u16>, String),
    update_user: String,
    update_password: String,
    emails: Vec<String>,
    sender: Option<String>,
    relay: Option<(String, Option<u16>)>,
    vendor: (bool, Option<String>),
}

fn services() -> impl Strategy<Value = Services> {
    (
        prop::collection::vec(domain(), 0..=6),
        prop_oneof![
            "/dev/ttyS[0-9]",
            "/dev/ttyUSB[0-9]",
            "/dev/serial/by-id/[A-Za-z0-9_:+-][A-Za-z0-9_.:+-]{0,23}",
        ],
        prop::sample::select(Baud::ALLOWED.to_vec()),
        "[a-z0-9_-]{1,32}",
        1024u16..=65535,
        (0u8..3, 1u64..=4096),
        0u8..3,
        (
            any::<bool>(),
            domain(),
            prop::option::of(1u16..=65535),
            "(/[a-zA-Z0-9._~-]{1,8}){0,3}",
        ),
        "[a-z_][a-z0-9_-]{0,31}",
        "[ -~]{1,64}",
        (
            prop::collection::vec(email(), 0..4),
            prop::option::of(email()),
            prop::option::of((domain(), prop::option::of(1u16..=65535))),
            (any::<bool>(), prop::option::of(email())),
        ),
    )
        .prop_map(
            |(
                dns_search,
                serial_device,
                baud,
                resource,
                drbd_port,
                rate,
                split,
                update_url,
                update_user,
                update_password,
                (emails, sender, relay, vendor),
            )| Services {
                dns_search,
                serial_device,
                baud,
                resource,
                drbd_port,
                rate,
                split,
                update_url,
                update_user,
                update_password,
                emails,
                sender,
                relay,
                vendor,
            },
        )
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
    dns_two: bool,
    secrets: Secrets,
    services: Services,
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
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        secrets(),
        services(),
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
                (ve101, fencing, support, dns_two),
                secrets,
                services,
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
                dns_two,
                secrets,
                services,
            },
        )
}

/// Builds a configuration that the rules accept (or `None` for the rare draws where two
/// generated values collide: addresses, ports, keys).
fn build(p: &Params, tls: &[(TlsCertificate, TlsPrivateKey)]) -> Option<ApplianceConfig> {
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
    let s = &p.services;
    c.network.dns_search = s.dns_search.iter().map(|d| d.parse().unwrap()).collect();

    let h = &mut c.heartbeat;
    h.keepalive = Millis(p.keepalive_ms);
    h.warntime = Millis(p.keepalive_ms + p.warn_extra);
    h.deadtime = Millis((2 * p.keepalive_ms).max(h.warntime.0) + p.dead_extra);
    h.initdead = Millis(h.deadtime.0 + p.init_extra);
    h.serial.enabled = p.paths.0;
    h.internal.enabled = p.paths.1;
    h.external.enabled = p.paths.2 || !p.paths.1;
    h.udp_port = p.udp_port.try_into().ok()?;
    h.serial.device = s.serial_device.parse().unwrap();
    h.serial.baud = s.baud.try_into().unwrap();
    h.auth_key = ClusterKey::from_bytes(p.secrets.auth_key);

    let r = &mut c.replication;
    r.resource = s.resource.parse().unwrap();
    r.port = s.drbd_port.try_into().unwrap();
    let (unit, n) = s.rate;
    r.resync_rate = match unit {
        0 => format!("{}K", n * 1024),
        1 => format!("{n}M"),
        _ => format!("{}G", n % 4 + 1),
    }
    .parse()
    .unwrap();
    r.split_brain = [
        SplitBrainPolicy::Disconnect,
        SplitBrainPolicy::DiscardZeroChanges,
        SplitBrainPolicy::DiscardSecondary,
    ][usize::from(s.split)];
    r.shared_secret = p.secrets.shared_secret.parse().unwrap();

    let (https, ref uhost, uport, ref upath) = s.update_url;
    let port = uport.map(|n| format!(":{n}")).unwrap_or_default();
    let scheme = if https { "https" } else { "http" };
    c.updates.url = format!("{scheme}://{uhost}{port}{upath}").parse().unwrap();
    c.updates.user = s.update_user.parse().unwrap();
    c.updates.password = s.update_password.parse().unwrap();

    let sec = &p.secrets;
    let k = &mut c.keys;
    k.ssh_host_node1 = ssh_key(&sec.ssh_seeds[0], "root@node1");
    k.ssh_host_node2 = ssh_key(&sec.ssh_seeds[1], "root@node2");
    k.cluster_ssh = ssh_key(&sec.ssh_seeds[2], "cluster");
    k.support_ssh = ssh_key(&sec.ssh_seeds[3], "support");
    let (cert, key) = tls[sec.tls].clone();
    k.tls_certificate = cert;
    k.tls_key = key;
    let pw = &mut c.passwords;
    pw.admin = password_hash(&sec.hashes[0]);
    pw.root_node1 = password_hash(&sec.hashes[1]);
    pw.root_node2 = password_hash(&sec.hashes[2]);
    pw.ve_manager = sec.ve_manager.as_ref().map(|(user, h)| VeManagerAccount {
        user: user.parse().unwrap(),
        password: password_hash(h),
    });

    if p.ve101 {
        c.ves.ve101 = Some(VeConfig {
            hostname: "app".parse().unwrap(),
            address: Ipv4(Ipv4Addr::from(
                network + 1 + p.hosts[4].rotate_left(7) % (size - 2),
            )),
            dns_servers: Vec::new(),
            dns_search: Vec::new(),
        });
        c.passwords.root_ve101 = Some(c.passwords.admin.clone());
    } else {
        c.ves.ve101 = None;
        c.passwords.root_ve101 = None;
    }

    let n = &mut c.notification;
    n.addresses = s.emails.iter().map(|e| e.parse().unwrap()).collect();
    n.addresses
        .sort_by(|a: &EmailAddress, b| a.as_str().cmp(b.as_str()));
    n.addresses.dedup();
    n.sender = s.sender.as_ref().map(|e| e.parse().unwrap());
    n.relay_host = s.relay.as_ref().map(|(h, port)| {
        port.map_or_else(|| h.clone(), |port| format!("{h}:{port}"))
            .parse()
            .unwrap()
    });
    n.copy_vendor = s.vendor.0;
    n.vendor_address = s.vendor.1.as_ref().map(|e| e.parse().unwrap());
    if n.copy_vendor && n.vendor_address.is_none() {
        n.vendor_address = Some("support@vendor.example".parse().unwrap());
    }

    c.support = p.support.then(|| SupportConfig {
        host: "support.example.org:2222".parse().unwrap(),
        user: "tandem".parse().unwrap(),
        host_key: Some(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPwP89bL4rstUl52F0q3zNJhLPZUidXi9x0aTtyqGya"
                .parse()
                .unwrap(),
        ),
        max_hours: 12,
    });
    c.fencing = p.fencing.then(|| FencingConfig {
        policy: tandem_config::schema::FencingPolicy::Off,
        timeout: tandem_config::Millis::from_secs(20),
        node1_delay: tandem_config::Millis(2500),
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

#[test]
fn each_tls_key_matches_only_its_own_certificate() {
    let pairs = tls_pairs();
    let mut c = base();
    for (i, (cert, _)) in pairs.iter().enumerate() {
        for (j, (_, key)) in pairs.iter().enumerate() {
            c.keys.tls_certificate = cert.clone();
            c.keys.tls_key = key.clone();
            let problems = c.validate().err().unwrap_or_default();
            let mismatch = problems.iter().any(|p| p.path == "keys.tls-key");
            assert_eq!(mismatch, i != j, "certificate {i}, key {j}: {problems:?}");
        }
    }
}

/// The dotted path of every value of a document that is not a table, in document order.
fn leaves(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in t {
        let p = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(sub) => leaves(sub, &p, out),
            _ => out.push(p),
        }
    }
}

fn full_leaves() -> Vec<String> {
    let t: toml::Table = base().to_toml().parse().unwrap();
    let mut out = Vec::new();
    leaves(&t, "", &mut out);
    out.retain(|p| p != "schema-version");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_bad_field_is_reported_at_its_path(
        bad in prop::sample::subsequence(full_leaves(), 1..12)
    ) {
        // An inline table fits no field that is not a table: each replaced value is a
        // problem of its own.
        let mut t: toml::Table = base().to_toml().parse().unwrap();
        for path in &bad {
            let parts: Vec<&str> = path.split('.').collect();
            let (last, tables) = parts.split_last().unwrap();
            let table = tables.iter().fold(&mut t, |t, k| {
                t.get_mut(*k).and_then(toml::Value::as_table_mut).unwrap()
            });
            let bad: toml::Table = "x = 1".parse().unwrap();
            table.insert((*last).to_owned(), toml::Value::Table(bad));
        }
        let e = ApplianceConfig::parse_unvalidated(&t.to_string()).unwrap_err();
        let mut reported: Vec<String> = e.problems.iter().map(|p| p.path.clone()).collect();
        reported.sort();
        let mut expected = bad.clone();
        expected.sort();
        prop_assert_eq!(reported, expected, "{}", e);
    }

    #[test]
    fn export_import_round_trip(p in params(), encrypt in any::<bool>()) {
        let Some(cfg) = build(&p, &tls_pairs()) else {
            // Collisions (addresses, ports, keys) are rare and legitimately refused.
            return Err(TestCaseError::reject("colliding values"));
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
