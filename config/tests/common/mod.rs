//! Helpers shared by the archive tests: building archives byte by byte (including ones the
//! `tar` builder would refuse to write), editing members, and importing into a store that
//! must stay byte-identical.

#![allow(dead_code)] // each test crate uses a part
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use tandem_config::archive::{self, ExportOptions, Manifest, ProblemKind};
use tandem_config::{
    ApplianceConfig, ClusterId, ImportError, ImportOptions, Store, import_archive,
};

/// Low scrypt cost: these tests are about the format, not the key derivation.
pub const TEST_WORK_FACTOR: u8 = 10;
pub const PASS: &str = "correct horse battery staple";
pub const CREATED: u64 = 1_178_818_989; // 2007-05-10T17:43:09Z

pub fn config() -> ApplianceConfig {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/minimal.toml"))
            .unwrap();
    ApplianceConfig::from_toml(&text).unwrap()
}

pub fn other_cluster() -> ApplianceConfig {
    let mut c = config();
    c.cluster.id = ClusterId::from_bytes([0x42; 16]);
    c
}

pub fn export(cfg: &ApplianceConfig, pass: Option<&str>) -> Vec<u8> {
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
pub struct Raw {
    pub name: Vec<u8>,
    pub kind: u8,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    /// The ustar prefix field (joined to the name with a '/').
    pub prefix: Vec<u8>,
    /// The size written in the header, when it is not the data's.
    pub size: Option<u64>,
    /// A GNU header instead of a ustar one.
    pub gnu: bool,
}

pub fn file(name: &str, data: &[u8]) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        kind: b'0',
        data: data.to_vec(),
        link: Vec::new(),
        prefix: Vec::new(),
        size: None,
        gnu: false,
    }
}

pub fn special(name: &str, kind: u8, link: &str) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        kind,
        data: Vec::new(),
        link: link.as_bytes().to_vec(),
        prefix: Vec::new(),
        size: None,
        gnu: false,
    }
}

pub fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = if e.gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..e.name.len()].copy_from_slice(&e.name);
            old.linkname.fill(0);
            old.linkname[..e.link.len()].copy_from_slice(&e.link);
        }
        if let Some(u) = h.as_ustar_mut() {
            u.prefix.fill(0);
            u.prefix[..e.prefix.len()].copy_from_slice(&e.prefix);
        }
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        if let Some(g) = h.as_gnu_mut() {
            g.set_real_size(e.data.len() as u64);
        }
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
pub fn members(cfg: &ApplianceConfig) -> Vec<(String, Vec<u8>)> {
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

pub fn rebuild(m: &[(String, Vec<u8>)]) -> Vec<u8> {
    tar_of(&m.iter().map(|(n, d)| file(n, d)).collect::<Vec<_>>())
}

pub fn sha(d: &[u8]) -> String {
    Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites the manifest's digests after a member was changed on purpose.
pub fn rehash(m: &mut [(String, Vec<u8>)]) {
    let mut manifest: Manifest = toml::from_str(std::str::from_utf8(&m[0].1).unwrap()).unwrap();
    for (name, data) in m[1..].iter() {
        let d = manifest.members.get_mut(name).unwrap();
        d.size = data.len() as u64;
        d.sha256 = sha(data);
    }
    m[0].1 = toml::to_string(&manifest).unwrap().into_bytes();
}

pub fn edit_manifest(m: &mut [(String, Vec<u8>)], f: impl FnOnce(&mut toml::Table)) {
    let mut t: toml::Table = std::str::from_utf8(&m[0].1).unwrap().parse().unwrap();
    f(&mut t);
    m[0].1 = t.to_string().into_bytes();
}

pub fn replace_in(m: &mut [(String, Vec<u8>)], member: &str, from: &str, to: &str) {
    let e = m.iter_mut().find(|(n, _)| n == member).unwrap();
    let text = String::from_utf8(e.1.clone()).unwrap();
    assert!(text.contains(from), "{from} not in {member}");
    e.1 = text.replacen(from, to, 1).into_bytes();
}

/// Every file of a directory tree with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
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
pub fn configured_store(root: &Path) -> Store {
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
pub fn refusal(bytes: &[u8], pass: Option<&str>) -> (String, Vec<ProblemKind>) {
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

pub fn refused_plain(m: &[(String, Vec<u8>)]) -> String {
    refusal(&rebuild(m), None).0
}

/// A PAX extended header's records (`"LEN key=value\n"`, LEN counting the whole record).
pub fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        // The length counts its own digits.
        let mut len = body.len() + 1;
        while len.to_string().len() + body.len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

/// A header-only entry of type `kind` carrying `data` (PAX and GNU extension headers).
pub fn extension(kind: u8, data: &[u8]) -> Raw {
    Raw {
        name: b"././@LongLink".to_vec(),
        kind,
        data: data.to_vec(),
        link: Vec::new(),
        prefix: Vec::new(),
        size: None,
        gnu: false,
    }
}
