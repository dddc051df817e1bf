//! The corpus of hostile archives: `hostile/NAME.tar` is refused with exactly the text of
//! `hostile/NAME.err`, and the store it is imported into stays byte-identical. NAME starts
//! with the kind of the refusal (`unsafe-`, `malformed-`, `too-large-`, `integrity-`,
//! `version-`, `invalid-`).
//!
//! The archives are kept as files, so that they are the same bytes whatever happens to the
//! code that made them, and so that the fuzz target starts from them: each is copied to
//! `fuzz/seeds/config_archive/hostile-NAME.tar`. [`corpus`] below made them;
//! `TANDEM_REGENERATE=1 cargo test -p tandem-config --test hostile` writes them again (the
//! archives, their seeds and the `.err` files, from the refusals as they are now) — review
//! the diff before committing it. The output is deterministic: fixed times, no encryption.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use tandem_config::archive::{self, ProblemKind};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/config_archive")
}

fn regenerating() -> bool {
    std::env::var_os("TANDEM_REGENERATE").is_some()
}

/// The entries of a good unencrypted export, ready to be edited.
fn entries() -> Vec<Raw> {
    members(&config()).iter().map(|(n, d)| file(n, d)).collect()
}

/// The manifest and the other members of a good export, with `extra` entries before the
/// member at `at`.
fn with_before(at: usize, extra: Vec<Raw>) -> Vec<u8> {
    let mut e = entries();
    for (i, x) in extra.into_iter().enumerate() {
        e.insert(at + i, x);
    }
    tar_of(&e)
}

/// A GNU long-name header: the name, NUL-terminated.
fn long_name(name: &str) -> Raw {
    let mut d = name.as_bytes().to_vec();
    d.push(0);
    extension(b'L', &d)
}

/// Every hostile archive, by name.
#[allow(clippy::too_many_lines)] // a list of cases
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let m = members(&config());

    // Names that leave the archive.
    let mut x = m.clone();
    x.push((
        "../../etc/cron.d/evil".to_owned(),
        b"* * * * * root sh\n".to_vec(),
    ));
    out.push(("unsafe-dotdot", rebuild(&x)));
    let mut x = m.clone();
    x[1].0 = "/etc/tandem/config.toml".to_owned();
    out.push(("unsafe-absolute", rebuild(&x)));
    let mut e = entries();
    e.push(Raw {
        prefix: b"..".to_vec(),
        ..file("etc/passwd", b"root::0:0::/:/bin/sh\n")
    });
    out.push(("unsafe-ustar-prefix-dotdot", tar_of(&e)));
    // PAX and GNU headers that rename the next member.
    out.push((
        "unsafe-pax-path-dotdot",
        with_before(
            1,
            vec![extension(
                b'x',
                &pax(&[("path", "../../etc/tandem/config.toml")]),
            )],
        ),
    ));
    out.push((
        "unsafe-pax-path-absolute",
        with_before(
            1,
            vec![extension(
                b'x',
                &pax(&[("path", "/etc/tandem/config.toml")]),
            )],
        ),
    ));
    out.push((
        "unsafe-gnu-long-name-dotdot",
        with_before(
            1,
            vec![long_name("secrets/../../../root/.ssh/authorized_keys")],
        ),
    ));
    out.push((
        "unsafe-gnu-long-name-absolute",
        with_before(1, vec![long_name("/root/.ssh/authorized_keys")]),
    ));

    // Member types that must never be unpacked.
    for (name, kind, link) in [
        ("unsafe-symlink", b'2', "/etc/shadow"),
        ("unsafe-hard-link", b'1', "manifest.toml"),
        ("unsafe-char-device", b'3', ""),
        ("unsafe-block-device", b'4', ""),
        ("unsafe-fifo", b'6', ""),
        ("unsafe-directory", b'5', ""),
        // GNU extensions (in a ustar header, which the reader refuses for a sparse file).
        ("malformed-sparse-type-in-ustar-header", b'S', ""),
        ("unsafe-gnu-volume-label", b'V', ""),
        ("unsafe-gnu-multivolume", b'M', ""),
    ] {
        let mut e = entries();
        e[2] = special(archive::PASSWORDS, kind, link);
        out.push((name, tar_of(&e)));
    }
    let mut e = entries();
    e[2] = Raw {
        gnu: true,
        ..special(archive::PASSWORDS, b'S', "")
    };
    out.push(("unsafe-gnu-sparse", tar_of(&e)));
    out.push((
        "unsafe-pax-global-header",
        with_before(0, vec![extension(b'g', &pax(&[("path", "../x")]))]),
    ));

    // Names that are almost a member's, and duplicates under another spelling.
    let mut x = m.clone();
    x[0].0 = "./manifest.toml".to_owned();
    out.push(("unsafe-dot-slash-manifest", rebuild(&x)));
    let mut x = m.clone();
    x[0].0 = "manifest.toml/".to_owned();
    out.push(("unsafe-manifest-trailing-slash", rebuild(&x)));
    let mut x = m.clone();
    x.push(m[1].clone());
    out.push(("unsafe-duplicate", rebuild(&x)));
    let mut x = m.clone();
    x.push(("./config.toml".to_owned(), m[1].1.clone()));
    out.push(("unsafe-duplicate-dot-slash", rebuild(&x)));
    let mut x = m.clone();
    x.push(("secrets//keys.toml".to_owned(), m[3].1.clone()));
    out.push(("unsafe-duplicate-double-slash", rebuild(&x)));
    let mut e = entries();
    e.push(long_name(archive::CONFIG));
    e.push(file("c", &m[1].1));
    out.push(("unsafe-duplicate-gnu-long-name", tar_of(&e)));
    let mut e = entries();
    e.push(extension(b'x', &pax(&[("path", archive::KEYS)])));
    e.push(file("k", &m[3].1));
    out.push(("unsafe-duplicate-pax-path", tar_of(&e)));
    let mut x = m.clone();
    x.insert(1, ("README".to_owned(), b"hello\n".to_vec()));
    out.push(("unsafe-unexpected", rebuild(&x)));
    let mut x = m.clone();
    x.push(("/abs".to_owned(), Vec::new()));
    x.push(("a/../b".to_owned(), Vec::new()));
    x.push(("extra".to_owned(), Vec::new()));
    out.push(("unsafe-several", rebuild(&x)));
    let mut e = entries();
    e.push(Raw {
        name: b"conf\xffig".to_vec(),
        ..file("", b"")
    });
    out.push(("unsafe-non-utf8-name", tar_of(&e)));

    // Sizes.
    let mut x = m.clone();
    x[1].1 = vec![b'#'; 300 * 1024];
    out.push(("too-large-member", rebuild(&x)));
    let mut e = entries();
    e[3].size = Some(1 << 40);
    out.push(("too-large-header-size", tar_of(&e)));

    // Truncation and headers that disagree with the data.
    let good = rebuild(&m);
    let config_data = 512 * (1 + m[0].1.len().div_ceil(512)) + 512;
    out.push((
        "malformed-truncated-member",
        good[..config_data + 512].to_vec(),
    ));
    out.push((
        "malformed-cut-mid-block",
        good[..good.len() - 1024 - 700].to_vec(),
    ));
    out.push((
        "malformed-no-end-marker",
        good[..good.len() - 1024].to_vec(),
    ));
    out.push(("malformed-missing-members", rebuild(&m[..2])));
    out.push(("malformed-empty", Vec::new()));
    let mut e = entries();
    e[1].size = Some(m[1].1.len() as u64 + 600);
    out.push(("malformed-size-larger-than-data", tar_of(&e)));
    let mut e = entries();
    e[1].size = Some(m[1].1.len() as u64 - 600);
    out.push(("malformed-size-smaller-than-data", tar_of(&e)));
    out.push((
        "malformed-pax-size-larger-than-data",
        with_before(1, vec![extension(b'x', &pax(&[("size", "2000")]))]),
    ));
    out.push((
        "too-large-pax-size",
        with_before(1, vec![extension(b'x', &pax(&[("size", "999999")]))]),
    ));
    let mut bad = good.clone();
    let second_header = 512 * (1 + m[0].1.len().div_ceil(512));
    bad[second_header + 3] ^= 0x20;
    out.push(("malformed-header-checksum", bad));
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    out.push(("malformed-not-a-tar", junk));

    // The manifest.
    let mut x = m.clone();
    edit_manifest(&mut x, |t| {
        let members = t.get_mut("members").unwrap().as_table_mut().unwrap();
        members.remove(archive::KEYS);
        members.insert(
            "secrets/extra.toml".into(),
            toml::Value::Table("size = 0\nsha256 = \"\"".parse().unwrap()),
        );
        t.insert("created".into(), toml::Value::String("yesterday".into()));
    });
    out.push(("malformed-manifest-fields", rebuild(&x)));
    let mut x = m.clone();
    edit_manifest(&mut x, |t| {
        t.insert("signed-by".into(), toml::Value::String("me".into()));
    });
    out.push(("malformed-manifest-unknown-field", rebuild(&x)));
    let mut x = m.clone();
    x[0].1 = b"format = [".to_vec();
    out.push(("malformed-manifest-syntax", rebuild(&x)));
    let mut x = m.clone();
    x[1].1.extend_from_slice(b"\n[passwords]\nadmin = \"x\"\n");
    rehash(&mut x);
    out.push(("malformed-secrets-in-config", rebuild(&x)));

    // Integrity and versions.
    let mut x = m.clone();
    replace_in(&mut x, archive::CONFIG, "10.20.30.12", "10.20.30.13");
    out.push(("integrity-checksum", rebuild(&x)));
    let mut x = m.clone();
    edit_manifest(&mut x, |t| {
        t.insert("schema-version".into(), toml::Value::Integer(9));
    });
    out.push(("version-manifest-schema", rebuild(&x)));
    let mut x = m.clone();
    edit_manifest(&mut x, |t| {
        t.insert("format".into(), toml::Value::Integer(2));
    });
    out.push(("version-format", rebuild(&x)));
    let mut x = m.clone();
    replace_in(
        &mut x,
        archive::CONFIG,
        "schema-version = 1",
        "schema-version = 3",
    );
    rehash(&mut x);
    out.push(("version-config-schema", rebuild(&x)));

    // An intact archive whose configuration is not valid.
    let mut x = m.clone();
    replace_in(
        &mut x,
        archive::CONFIG,
        "\"10.20.30.12\"",
        "\"10.20.31.12\"",
    );
    replace_in(
        &mut x,
        archive::CONFIG,
        "gateway = \"10.20.30.1\"",
        "gateway = \"10.20.99.1\"",
    );
    rehash(&mut x);
    out.push(("invalid-cross-field", rebuild(&x)));
    let mut x = m.clone();
    let pw = String::from_utf8(x[2].1.clone()).unwrap();
    let admin = pw.lines().find(|l| l.starts_with("admin = ")).unwrap();
    replace_in(&mut x, archive::PASSWORDS, admin, "admin = \"relation\"");
    rehash(&mut x);
    out.push(("invalid-clear-password", rebuild(&x)));
    let mut x = m.clone();
    replace_in(&mut x, archive::KEYS, "tls-key", "tls-private-key");
    rehash(&mut x);
    out.push(("invalid-renamed-key", rebuild(&x)));
    let mut x = m;
    replace_in(
        &mut x,
        archive::CONFIG,
        "udp-port = 694",
        "udp-port = \"694\"",
    );
    replace_in(
        &mut x,
        archive::CONFIG,
        "address = \"10.20.30.11\"",
        "address = \"10.20.30.311\"",
    );
    rehash(&mut x);
    out.push(("invalid-fields-in-two-sections", rebuild(&x)));
    out
}

fn kind_of(name: &str) -> ProblemKind {
    let kinds = [
        ("unsafe-", ProblemKind::Unsafe),
        ("malformed-", ProblemKind::Malformed),
        ("too-large-", ProblemKind::TooLarge),
        ("integrity-", ProblemKind::Integrity),
        ("version-", ProblemKind::Version),
        ("invalid-", ProblemKind::Invalid),
    ];
    kinds
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("{name}: the name does not start with a kind"))
}

/// The corpus files, sorted by name.
fn archives() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no archives in {}", corpus_dir().display());
    v
}

#[test]
fn regenerate_when_asked() {
    if !regenerating() {
        return;
    }
    for (name, bytes) in corpus() {
        fs::write(corpus_dir().join(format!("{name}.tar")), &bytes).unwrap();
        fs::write(seeds_dir().join(format!("hostile-{name}.tar")), &bytes).unwrap();
        let (text, _) = refusal(&bytes, None);
        fs::write(corpus_dir().join(format!("{name}.err")), text + "\n").unwrap();
    }
}

#[test]
fn every_hostile_archive_is_refused_with_its_exact_message() {
    if regenerating() {
        return;
    }
    let mut failures = Vec::new();
    for (name, bytes) in archives() {
        let expected = fs::read_to_string(corpus_dir().join(format!("{name}.err")))
            .unwrap_or_else(|_| panic!("{name}.err is missing"));
        let (text, kinds) = refusal(&bytes, None);
        if format!("{text}\n") != expected {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{text}\n"
            ));
        }
        let kind = kind_of(&name);
        if !kinds.contains(&kind) {
            failures.push(format!("{name}: refused as {kinds:?}, expected {kind:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_fuzz_seeds_hold_the_corpus() {
    if regenerating() {
        return;
    }
    for (name, bytes) in archives() {
        let seed = seeds_dir().join(format!("hostile-{name}.tar"));
        assert!(
            fs::read(&seed).is_ok_and(|s| s == bytes),
            "{} is missing or differs from tests/hostile/{name}.tar",
            seed.display()
        );
    }
}
