//! The configuration archive: round trips, and a corpus of hostile archives built here,
//! each refused with its exact message while the store stays byte-identical.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use tandem_config::archive::{self, ExportOptions, Manifest, ProblemKind};
use tandem_config::{
    ApplianceConfig, ClusterId, ImportError, ImportMode, ImportOptions, Store, import_archive,
};

/// Low scrypt cost: these tests are about the format, not the key derivation.
const TEST_WORK_FACTOR: u8 = 10;
const PASS: &str = "correct horse battery staple";
const CREATED: u64 = 1_178_818_989; // 2007-05-10T17:43:09Z

fn config() -> ApplianceConfig {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/minimal.toml"))
            .unwrap();
    ApplianceConfig::from_toml(&text).unwrap()
}

fn other_cluster() -> ApplianceConfig {
    let mut c = config();
    c.cluster.id = ClusterId::from_bytes([0x42; 16]);
    c
}

fn export(cfg: &ApplianceConfig, pass: Option<&str>) -> Vec<u8> {
    archive::export(
        cfg,
        &ExportOptions {
            passphrase: pass.map(str::to_owned),
            created_unix: CREATED,
            work_factor: TEST_WORK_FACTOR,
        },
    )
    .unwrap()
}

/// One tar entry, written byte by byte so that names and types the `tar` builder would
/// refuse can be produced.
struct Raw {
    name: Vec<u8>,
    kind: u8,
    data: Vec<u8>,
    link: Vec<u8>,
    size: Option<u64>,
}

fn file(name: &str, data: &[u8]) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        kind: b'0',
        data: data.to_vec(),
        link: Vec::new(),
        size: None,
    }
}

fn special(name: &str, kind: u8, link: &str) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        kind,
        data: Vec::new(),
        link: link.as_bytes().to_vec(),
        size: None,
    }
}

fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..e.name.len()].copy_from_slice(&e.name);
            old.linkname.fill(0);
            old.linkname[..e.link.len()].copy_from_slice(&e.link);
        }
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        h.set_mode(0o600);
        h.set_mtime(CREATED);
        h.set_entry_type(tar::EntryType::new(e.kind));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// The members of a good unencrypted export, in order.
fn members(cfg: &ApplianceConfig) -> Vec<(String, Vec<u8>)> {
    let bytes = export(cfg, None);
    let mut a = tar::Archive::new(&bytes[..]);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn rebuild(m: &[(String, Vec<u8>)]) -> Vec<u8> {
    tar_of(&m.iter().map(|(n, d)| file(n, d)).collect::<Vec<_>>())
}

fn sha(d: &[u8]) -> String {
    Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites the manifest's digests after a member was changed on purpose.
fn rehash(m: &mut [(String, Vec<u8>)]) {
    let mut manifest: Manifest = toml::from_str(std::str::from_utf8(&m[0].1).unwrap()).unwrap();
    for (name, data) in m[1..].iter() {
        let d = manifest.members.get_mut(name).unwrap();
        d.size = data.len() as u64;
        d.sha256 = sha(data);
    }
    m[0].1 = toml::to_string(&manifest).unwrap().into_bytes();
}

fn edit_manifest(m: &mut [(String, Vec<u8>)], f: impl FnOnce(&mut toml::Table)) {
    let mut t: toml::Table = std::str::from_utf8(&m[0].1).unwrap().parse().unwrap();
    f(&mut t);
    m[0].1 = t.to_string().into_bytes();
}

fn replace_in(m: &mut [(String, Vec<u8>)], member: &str, from: &str, to: &str) {
    let e = m.iter_mut().find(|(n, _)| n == member).unwrap();
    let text = String::from_utf8(e.1.clone()).unwrap();
    assert!(text.contains(from), "{from} not in {member}");
    e.1 = text.replacen(from, to, 1).into_bytes();
}

/// Every file of a directory tree with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            for (k, v) in snapshot(&p) {
                out.insert(
                    format!("{}/{k}", p.file_name().unwrap().to_string_lossy()),
                    v,
                );
            }
        } else {
            out.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            );
        }
    }
    out
}

/// A store holding a committed configuration of this cluster and a staged one.
fn configured_store(root: &Path) -> Store {
    let store = Store::open(root.join("store")).unwrap();
    let cfg = config();
    store.stage(&cfg).unwrap();
    store.commit().unwrap();
    let mut next = cfg.clone();
    next.network.gateway = "10.20.30.254".parse().unwrap();
    next.network.ping_nodes = vec!["10.20.30.254".parse().unwrap()];
    store.stage(&next).unwrap();
    store
}

/// Imports `bytes` into a configured store and returns the refusal text; asserts that
/// the store and its surroundings are byte-identical afterwards.
fn refusal(bytes: &[u8], pass: Option<&str>) -> (String, Vec<ProblemKind>) {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let before = snapshot(root.path());
    let err = import_archive(bytes, pass, &store, &ImportOptions::default()).unwrap_err();
    assert_eq!(
        snapshot(root.path()),
        before,
        "the refused import changed the store"
    );
    let ImportError::Refused(e) = err else {
        panic!("not a refusal: {err:?}")
    };
    (e.to_string(), e.problems.iter().map(|p| p.kind).collect())
}

fn refused_plain(m: &[(String, Vec<u8>)]) -> String {
    refusal(&rebuild(m), None).0
}

#[test]
fn round_trip_encrypted_into_an_empty_store() {
    let cfg = config();
    let bytes = export(&cfg, Some(PASS));
    assert!(archive::is_encrypted(&bytes));
    // Nothing of the configuration is readable without the passphrase.
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("argon2id") && !text.contains("OPENSSH") && !text.contains("alpha"));

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    assert!(!store.is_configured());

    let dry = ImportOptions {
        mode: ImportMode::DryRun,
        ..ImportOptions::default()
    };
    let before = snapshot(root.path());
    let r = import_archive(&bytes, Some(PASS), &store, &dry).unwrap();
    assert_eq!(r.config, cfg);
    assert_eq!(snapshot(root.path()), before, "a dry run wrote something");

    let staged = ImportOptions {
        mode: ImportMode::Stage,
        ..ImportOptions::default()
    };
    import_archive(&bytes, Some(PASS), &store, &staged).unwrap();
    assert!(!store.is_configured());
    assert_eq!(store.pending().unwrap().as_ref(), Some(&cfg));

    let r = import_archive(&bytes, Some(PASS), &store, &ImportOptions::default()).unwrap();
    assert!(r.encrypted && r.warnings.is_empty() && r.previous_cluster.is_none());
    assert_eq!(r.manifest.created, "2007-05-10T17:43:09Z");
    assert!(store.is_configured());
    assert_eq!(store.current().unwrap().as_ref(), Some(&cfg));
    assert_eq!(store.pending().unwrap(), None);
}

#[test]
fn unencrypted_archive_is_accepted_with_a_warning() {
    let cfg = config();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    let r = import_archive(&export(&cfg, None), None, &store, &ImportOptions::default()).unwrap();
    assert!(!r.encrypted);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(store.current().unwrap(), Some(cfg));
}

#[test]
fn commit_keeps_the_previous_configuration() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let first = store.current().unwrap().unwrap();
    let second = store.commit().unwrap();
    assert_ne!(first, second);
    assert_eq!(store.current().unwrap().as_ref(), Some(&second));
    assert_eq!(store.previous().unwrap().as_ref(), Some(&first));
}

#[test]
fn staged_configuration_can_be_inspected_and_discarded() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let pending = store.pending().unwrap().unwrap();
    assert_eq!(pending.network.gateway.to_string(), "10.20.30.254");
    store.discard().unwrap();
    assert_eq!(store.pending().unwrap(), None);
    assert_eq!(store.current().unwrap(), Some(config()));
    assert!(matches!(
        store.commit(),
        Err(tandem_config::StoreError::NothingStaged { .. })
    ));
    // An invalid configuration is never staged.
    let mut bad = config();
    bad.heartbeat.deadtime = bad.heartbeat.keepalive;
    assert!(store.stage(&bad).is_err());
    assert_eq!(store.pending().unwrap(), None);
}

#[test]
fn commit_is_refused_while_another_configuration_is_staged() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let staged = store.pending().unwrap().unwrap();
    let mut third = config();
    third.network.dns_servers = vec!["10.20.30.54".parse().unwrap()];
    let bytes = export(&third, None);

    // Commit: refused, naming the way forward; nothing changes.
    let before = snapshot(root.path());
    let err = import_archive(&bytes, None, &store, &ImportOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "another configuration is staged in {} and committing this archive would drop it (drop it with `tandem config discard`, then import again)",
            store.dir().join("pending.toml").display()
        )
    );
    assert_eq!(snapshot(root.path()), before);

    // A dry run says the same as a warning.
    let dry = ImportOptions {
        mode: ImportMode::DryRun,
        ..ImportOptions::default()
    };
    let r = import_archive(&bytes, None, &store, &dry).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.starts_with("another configuration is staged in ")),
        "{:?}",
        r.warnings
    );
    assert_eq!(snapshot(root.path()), before);

    // Staging again replaces the staged configuration, and says so.
    let stage = ImportOptions {
        mode: ImportMode::Stage,
        ..ImportOptions::default()
    };
    let r = import_archive(&bytes, None, &store, &stage).unwrap();
    assert!(r.replaced_staged);
    assert_ne!(store.pending().unwrap().unwrap(), staged);
    assert_eq!(store.pending().unwrap(), Some(third.clone()));
    assert_eq!(store.current().unwrap(), Some(config()));

    // Committing the configuration that is staged goes ahead and clears it.
    let r = import_archive(&bytes, None, &store, &ImportOptions::default()).unwrap();
    assert!(r.replaced_staged);
    assert_eq!(store.current().unwrap(), Some(third));
    assert_eq!(store.previous().unwrap(), Some(config()));
    assert_eq!(store.pending().unwrap(), None);
}

#[test]
fn interrupted_write_leaves_the_previous_configuration() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let dir = store.dir().to_owned();
    let committed = fs::read(dir.join("config.toml")).unwrap();
    drop(store);
    // A crash between writing and renaming leaves half-written temporaries behind.
    fs::write(dir.join("config.toml.tmp"), b"schema-version = 1\n[clus").unwrap();
    fs::write(dir.join("pending.toml.tmp"), b"").unwrap();
    let store = Store::open(&dir).unwrap();
    assert_eq!(fs::read(dir.join("config.toml")).unwrap(), committed);
    assert!(!dir.join("config.toml.tmp").exists() && !dir.join("pending.toml.tmp").exists());
    assert_eq!(store.current().unwrap(), Some(config()));
}

#[test]
fn member_with_dotdot_path() {
    let mut m = members(&config());
    m.push((
        "../../etc/cron.d/evil".to_owned(),
        b"* * * * * root sh\n".to_vec(),
    ));
    assert_eq!(
        refused_plain(&m),
        "../../etc/cron.d/evil: path contains \"..\" (expected a name inside the archive)"
    );
}

#[test]
fn member_with_absolute_path() {
    let mut m = members(&config());
    m[1].0 = "/etc/tandem/config.toml".to_owned();
    assert_eq!(
        refused_plain(&m),
        "/etc/tandem/config.toml: absolute path (expected a name relative to the archive)"
    );
}

#[test]
fn links_devices_and_fifos() {
    let m = members(&config());
    let cases: [(u8, &str, &str); 6] = [
        (b'2', "/etc/shadow", "is a symbolic link"),
        (b'1', "manifest.toml", "is a hard link"),
        (b'3', "", "is a character device"),
        (b'4', "", "is a block device"),
        (b'6', "", "is a FIFO"),
        (b'5', "", "is a directory"),
    ];
    for (kind, link, what) in cases {
        let mut entries: Vec<Raw> = m.iter().map(|(n, d)| file(n, d)).collect();
        entries[2] = special(archive::PASSWORDS, kind, link);
        let (text, kinds) = refusal(&tar_of(&entries), None);
        assert_eq!(
            text,
            format!("secrets/passwords.toml: {what} (expected a regular file)")
        );
        assert_eq!(kinds, [ProblemKind::Unsafe]);
    }
}

#[test]
fn duplicate_member() {
    let mut m = members(&config());
    m.push(m[1].clone());
    assert_eq!(
        refused_plain(&m),
        "config.toml: appears twice (expected each member once)"
    );
}

#[test]
fn unexpected_member() {
    let mut m = members(&config());
    m.insert(1, ("README".to_owned(), b"hello\n".to_vec()));
    assert_eq!(
        refused_plain(&m),
        "README: unexpected member (expected only manifest.toml, config.toml, secrets/passwords.toml, secrets/keys.toml)"
    );
}

#[test]
fn every_unsafe_member_is_listed() {
    let mut m = members(&config());
    m.push(("/abs".to_owned(), Vec::new()));
    m.push(("a/../b".to_owned(), Vec::new()));
    m.push(("extra".to_owned(), Vec::new()));
    assert_eq!(
        refused_plain(&m),
        "/abs: absolute path (expected a name relative to the archive)\n\
         a/../b: path contains \"..\" (expected a name inside the archive)\n\
         extra: unexpected member (expected only manifest.toml, config.toml, secrets/passwords.toml, secrets/keys.toml)"
    );
}

#[test]
fn oversized_member_and_archive() {
    let mut m = members(&config());
    m[1].1 = vec![b'#'; 300 * 1024];
    let (text, kinds) = refusal(&rebuild(&m), None);
    assert_eq!(
        text,
        "config.toml: 307200 bytes is too large (expected at most 262144)"
    );
    assert_eq!(kinds, [ProblemKind::TooLarge]);

    // A header that claims a huge member without the data behind it.
    let mut entries: Vec<Raw> = members(&config()).iter().map(|(n, d)| file(n, d)).collect();
    entries[3].size = Some(1 << 40);
    assert_eq!(
        refusal(&tar_of(&entries), None).0,
        "secrets/keys.toml: 1099511627776 bytes is too large (expected at most 262144)"
    );

    let big = vec![0u8; archive::MAX_ARCHIVE_BYTES + 1];
    assert_eq!(
        refusal(&big, None).0,
        "archive: 3145729 bytes is too large (expected at most 3145728)"
    );
}

#[test]
fn truncated_archives() {
    let good = export(&config(), None);
    // Cut inside the data of the second member, on a block boundary.
    let m = members(&config());
    let config_data = 512 * (1 + m[0].1.len().div_ceil(512)) + 512;
    assert!(m[1].1.len() > 512);
    let (text, kinds) = refusal(&good[..config_data + 512], None);
    assert_eq!(
        text,
        format!(
            "config.toml: truncated (header says {} bytes, 512 present)",
            m[1].1.len()
        )
    );
    assert_eq!(kinds, [ProblemKind::Malformed]);
    // Cut in the middle of a block.
    assert_eq!(
        refusal(&good[..good.len() - 700], None).0,
        format!(
            "archive: is not a tar archive or is truncated ({} bytes, expected whole 512-byte blocks)",
            good.len() - 700
        )
    );
    // Only the end-of-archive marker is missing.
    let full = rebuild(&m);
    assert_eq!(
        refusal(&full[..full.len() - 1024], None).0,
        "archive: truncated (end-of-archive marker missing)"
    );
    // Members missing at the end.
    assert_eq!(
        refused_plain(&m[..2]),
        "secrets/passwords.toml: missing\nsecrets/keys.toml: missing"
    );
    assert_eq!(
        refusal(b"", None).0,
        "archive: is not a tar archive or is truncated (0 bytes, expected whole 512-byte blocks)"
    );
}

#[test]
fn checksum_mismatch() {
    let mut m = members(&config());
    let before = sha(&m[1].1);
    replace_in(&mut m, archive::CONFIG, "10.20.30.12", "10.20.30.13");
    let after = sha(&m[1].1);
    let size = m[1].1.len();
    let (text, kinds) = refusal(&rebuild(&m), None);
    assert_eq!(
        text,
        format!(
            "config.toml: checksum mismatch (manifest says {size} bytes sha256 {before}, content is {size} bytes sha256 {after})"
        )
    );
    assert_eq!(kinds, [ProblemKind::Integrity]);
}

#[test]
fn tar_header_checksum_mismatch() {
    let mut bytes = rebuild(&members(&config()));
    // Flip a byte of the second header's name field.
    let second_header = 512 * (1 + members(&config())[0].1.len().div_ceil(512));
    bytes[second_header + 3] ^= 0x20;
    let (text, kinds) = refusal(&bytes, None);
    assert_eq!(
        text,
        "archive: is not a valid tar archive after member 1 (header checksum mismatch)"
    );
    assert_eq!(kinds, [ProblemKind::Malformed]);
}

#[test]
fn passphrase_problems() {
    let bytes = export(&config(), Some(PASS));
    let (text, kinds) = refusal(&bytes, Some("Tr0ub4dor&3"));
    assert_eq!(text, "archive: wrong passphrase");
    assert_eq!(kinds, [ProblemKind::Passphrase]);
    assert_eq!(
        refusal(&bytes, None).0,
        "archive: is encrypted (expected a passphrase)"
    );
    assert_eq!(
        refusal(&bytes, Some("")).0,
        "archive: is encrypted (expected a passphrase)"
    );
}

#[test]
fn tampered_ciphertext() {
    let mut bytes = export(&config(), Some(PASS));
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    let (text, kinds) = refusal(&bytes, Some(PASS));
    assert_eq!(
        text,
        "archive: encrypted data is damaged or was altered (payload authentication failed or data truncated)"
    );
    assert_eq!(kinds, [ProblemKind::Integrity]);
    let bytes = export(&config(), Some(PASS));
    assert_eq!(
        refusal(&bytes[..bytes.len() - 10], Some(PASS)).0,
        "archive: encrypted data is damaged or was altered (payload authentication failed or data truncated)"
    );
}

#[test]
fn unknown_versions() {
    let mut m = members(&config());
    edit_manifest(&mut m, |t| {
        t.insert("schema-version".into(), toml::Value::Integer(9));
    });
    let (text, kinds) = refusal(&rebuild(&m), None);
    assert_eq!(
        text,
        "manifest.toml: schema-version: 9 is not a supported schema version (expected 1)"
    );
    assert_eq!(kinds, [ProblemKind::Version]);

    let mut m = members(&config());
    edit_manifest(&mut m, |t| {
        t.insert("format".into(), toml::Value::Integer(2));
    });
    assert_eq!(
        refused_plain(&m),
        "manifest.toml: format: 2 is not a supported archive format (expected 1)"
    );

    // Schema version in the configuration differs from the manifest's.
    let mut m = members(&config());
    replace_in(
        &mut m,
        archive::CONFIG,
        "schema-version = 1",
        "schema-version = 3",
    );
    rehash(&mut m);
    assert_eq!(
        refused_plain(&m),
        "config.toml: schema-version: 3 does not match the manifest's schema version 1"
    );
}

#[test]
fn archive_of_another_cluster() {
    let bytes = export(&other_cluster(), Some(PASS));
    let (text, kinds) = refusal(&bytes, Some(PASS));
    assert_eq!(
        text,
        format!(
            "manifest.toml: cluster-id: 42424242-4242-4242-4242-424242424242 is another cluster (this node belongs to {})",
            config().cluster.id
        )
    );
    assert_eq!(kinds, [ProblemKind::OtherCluster]);

    // Deliberately re-purposing the node is possible, never by default (and not over a
    // staged configuration).
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let opts = ImportOptions {
        allow_other_cluster: true,
        ..ImportOptions::default()
    };
    assert!(matches!(
        import_archive(&bytes, Some(PASS), &store, &opts),
        Err(ImportError::Staged { .. })
    ));
    assert!(store.discard().unwrap());
    let r = import_archive(&bytes, Some(PASS), &store, &opts).unwrap();
    assert_eq!(r.previous_cluster, Some(config().cluster.id));
    assert_eq!(store.current().unwrap(), Some(other_cluster()));
}

#[test]
fn invalid_configuration_inside_names_member_and_field() {
    let mut m = members(&config());
    replace_in(
        &mut m,
        archive::CONFIG,
        "\"10.20.30.12\"",
        "\"10.20.31.12\"",
    );
    replace_in(
        &mut m,
        archive::CONFIG,
        "gateway = \"10.20.30.1\"",
        "gateway = \"10.20.99.1\"",
    );
    rehash(&mut m);
    let (text, kinds) = refusal(&rebuild(&m), None);
    assert_eq!(
        text,
        "config.toml: network.node2.address: 10.20.31.12 is not in node1's network 10.20.30.0/24 (both nodes must be in the same subnet)\n\
         config.toml: network.gateway: 10.20.99.1 is not in the external network 10.20.30.0/24"
    );
    assert_eq!(kinds, [ProblemKind::Invalid, ProblemKind::Invalid]);

    let mut m = members(&config());
    let pw = String::from_utf8(m[2].1.clone()).unwrap();
    let admin_line = pw
        .lines()
        .find(|l| l.starts_with("admin = "))
        .unwrap()
        .to_owned();
    replace_in(
        &mut m,
        archive::PASSWORDS,
        &admin_line,
        "admin = \"relation\"",
    );
    rehash(&mut m);
    assert_eq!(
        refused_plain(&m),
        "secrets/passwords.toml: passwords.admin: is not an argon2id password hash (expected a PHC string \"$argon2id$v=19$m=…,t=…,p=…$salt$hash\")"
    );

    let mut m = members(&config());
    replace_in(&mut m, archive::KEYS, "tls-key", "tls-private-key");
    rehash(&mut m);
    assert_eq!(
        refused_plain(&m),
        "secrets/keys.toml: keys.tls-private-key: unknown field (not part of the schema)\n\
         secrets/keys.toml: keys.tls-key: missing"
    );
}

#[test]
fn secrets_outside_their_member() {
    let mut m = members(&config());
    let extra = "\n[passwords]\nadmin = \"x\"\n";
    m[1].1.extend_from_slice(extra.as_bytes());
    rehash(&mut m);
    assert_eq!(
        refused_plain(&m),
        "config.toml: passwords: belongs in secrets/passwords.toml (expected no [passwords] table here)"
    );
}

#[test]
fn manifest_problems() {
    let mut m = members(&config());
    edit_manifest(&mut m, |t| {
        let members = t.get_mut("members").unwrap().as_table_mut().unwrap();
        members.remove(archive::KEYS);
        members.insert(
            "secrets/extra.toml".into(),
            toml::Value::Table("size = 0\nsha256 = \"\"".parse().unwrap()),
        );
        t.insert("created".into(), toml::Value::String("yesterday".into()));
    });
    assert_eq!(
        refused_plain(&m),
        "manifest.toml: created: \"yesterday\" is not a UTC time (expected YYYY-MM-DDTHH:MM:SSZ)\n\
         manifest.toml: members.secrets/extra.toml: lists a member that the format does not have\n\
         manifest.toml: members.secrets/keys.toml: missing"
    );

    let mut m = members(&config());
    edit_manifest(&mut m, |t| {
        t.insert("signed-by".into(), toml::Value::String("me".into()));
    });
    assert_eq!(
        refused_plain(&m),
        "manifest.toml: signed-by: unknown field (not part of the schema)"
    );

    let mut m = members(&config());
    m[0].1 = b"format = [".to_vec();
    assert_eq!(
        refused_plain(&m),
        "manifest.toml: line 1, column 11: unclosed array, expected `]`"
    );
}

#[test]
fn not_a_tar() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    let (text, kinds) = refusal(&junk, None);
    assert!(
        text.starts_with("archive: is not a valid tar archive after member 0"),
        "{text}"
    );
    assert_eq!(kinds, [ProblemKind::Malformed]);
}

#[test]
fn non_utf8_member_name() {
    let mut entries: Vec<Raw> = members(&config()).iter().map(|(n, d)| file(n, d)).collect();
    entries.push(Raw {
        name: b"conf\xffig".to_vec(),
        kind: b'0',
        data: Vec::new(),
        link: Vec::new(),
        size: None,
    });
    assert_eq!(
        refusal(&tar_of(&entries), None).0,
        "conf\u{fffd}ig: name is not printable UTF-8"
    );
}

#[test]
fn nothing_is_written_outside_the_store() {
    // Whatever the archive says, import only ever writes the store's own files.
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    import_archive(
        &export(&config(), Some(PASS)),
        Some(PASS),
        &store,
        &ImportOptions::default(),
    )
    .unwrap();
    let names: Vec<String> = snapshot(root.path()).into_keys().collect();
    assert_eq!(names, ["store/config.toml", "store/lock"]);
}
