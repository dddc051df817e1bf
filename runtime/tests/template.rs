//! OS templates as the operator handles them: `tandem template add|list|delete` against
//! clusterd's control service (in this process, on a socket of the test, its data
//! area a temporary directory). A good tarball is added and listed and a VE is
//! created from it; hostile and broken tarballs are refused with the reason on one
//! line and the template directory unchanged; a template in use and the built-in
//! one are not deleted; on the node without the data area every request is refused.
//!
//! Runs as root (the VE created from a template keeps its files' owners).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tandem_runtime::admin::{Admin, activation::Engine, ve::VeSite};
use tandem_runtime::control::{ClusterLink, Service};

mod served;
use served::serve;
use tar::EntryType::{self, Char, Directory, Link, Regular, Symlink};

/// A tar stream of `members` (path, kind, data or link target) with raw names (the
/// tar crate's setters refuse hostile ones), end blocks included.
fn tar_of(members: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if matches!(kind, Symlink | Link) {
                old.linkname[..data.len()].copy_from_slice(data);
            }
        }
        if matches!(kind, Symlink | Link) {
            h.set_size(0);
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn rootfs() -> Vec<(&'static str, EntryType, &'static [u8])> {
    vec![
        ("./", Directory, b""),
        ("./etc/", Directory, b""),
        ("./etc/os-release", Regular, b"ID=test\n"),
        ("./usr/", Directory, b""),
        ("./usr/bin/", Directory, b""),
        ("./usr/bin/busybox", Regular, b"#!/bin/false\n"),
        ("./usr/bin/sh", Link, b"./usr/bin/busybox"),
        ("./bin", Symlink, b"usr/bin"),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::default()).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The control plane of a member node whose data area is `data` (mounted there, or
/// not: the passive node) and whose VE files are in `data/ves`.
fn service(data: &Path, mounted: bool) -> Arc<Service> {
    let store = data.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let s = tandem_config::Store::open(&store).unwrap();
    let (cfg, _) =
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
    s.stage(&cfg).unwrap();
    s.commit().unwrap();
    let engine = Engine::Sim {
        delay: Duration::from_millis(10),
        fail: false,
    };
    let mut admin = Admin::new(store, tandem_config::NodeId::Node1, engine);
    admin.ve = VeSite::at(data, data.join("ves"), "/bin/false".into());
    // `/` is a mount point on every system, the temporary directory is none.
    admin.ve.data_mount = if mounted {
        PathBuf::from("/")
    } else {
        data.to_owned()
    };
    let link = ClusterLink::ended("node1");
    Arc::new(Service::new(admin, Some(link)))
}

/// Runs `tandem --control sock ARGS`: success, stdout, stderr.
fn tandem(sock: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--control")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    let r = (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("tandem {}:\n{}{}", args.join(" "), r.1, r.2);
    r
}

/// The template directory's entries, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn templates_are_added_listed_refused_and_deleted_through_clusterd() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("vz");
    let up = dir.path().join("upload");
    std::fs::create_dir_all(data.join("ves")).unwrap();
    std::fs::create_dir_all(&up).unwrap();
    let sock = dir.path().join("control.sock");
    serve(service(&data, true), &sock);
    let templates = data.join("template");

    // A good one: added under its file's name, listed.
    let good = up.join("debian-12.tar.gz");
    std::fs::write(&good, gzip(&tar_of(&rootfs()))).unwrap();
    let (ok, out, err) = tandem(&sock, &["template", "add", good.to_str().unwrap()]);
    assert!(
        ok && out.contains("template debian-12 added: debian-12.tar.gz"),
        "{out}{err}"
    );
    assert_eq!(listing(&templates), ["debian-12.tar.gz"]);
    assert_eq!(
        std::fs::read(templates.join("debian-12.tar.gz")).unwrap(),
        std::fs::read(&good).unwrap()
    );
    let (ok, out, err) = tandem(&sock, &["template", "list"]);
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with("tandem-minimal") && lines[1].contains("built in"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("debian-12") && lines[2].ends_with(" -"),
        "{out}"
    );

    // Each refused with its reason on one line; the directory as it was.
    let mut bomb_members = rootfs();
    let zeros = vec![0u8; 8 << 20];
    for n in [
        "./z0", "./z1", "./z2", "./z3", "./z4", "./z5", "./z6", "./z7",
    ] {
        bomb_members.push((n, Regular, &zeros));
    }
    let mut big_member = rootfs();
    let big = vec![0u8; 64 << 20];
    big_member.push(("./big", Regular, &big));
    let mut traversal = rootfs();
    traversal.push(("../x", Regular, b"x"));
    let mut absolute = rootfs();
    absolute.push(("/etc/cron.d/x", Regular, b"x"));
    let mut device = rootfs();
    device.push(("./dev/sda", Char, b""));
    let good_gz = std::fs::read(&good).unwrap();
    // Refused for what is in them (`TANDEM_TEMPLATE_SEEDS=DIR` keeps them as fuzz
    // seeds), then for their names.
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal.tar.gz",
            gzip(&tar_of(&traversal)),
            "climbs out with \"..\"",
        ),
        ("absolute.tar", tar_of(&absolute), "has an absolute path"),
        (
            "device.tar.zst",
            zstd::encode_all(&tar_of(&device)[..], 3).unwrap(),
            "is a device node",
        ),
        (
            "zbomb.tar.zst",
            zstd::encode_all(&tar_of(&bomb_members)[..], 3).unwrap(),
            "a decompression bomb is refused",
        ),
        (
            "gzbomb.tar.gz",
            gzip(&tar_of(&big_member)),
            "a decompression bomb is refused",
        ),
        (
            "norootfs.tar.xz",
            xz(&tar_of(&[
                ("./srv/", Directory, b""),
                ("./srv/a", Regular, b"a"),
            ])),
            "holds no root filesystem",
        ),
        (
            "cut.tar.gz",
            good_gz[..good_gz.len() / 2].to_vec(),
            "damaged (truncated or corrupted)",
        ),
    ];
    let seeds = std::env::var_os("TANDEM_TEMPLATE_SEEDS").map(PathBuf::from);
    if let Some(d) = &seeds {
        std::fs::write(d.join("good-debian-12.tar.gz"), &good_gz).unwrap();
        std::fs::write(d.join("good-plain.tar"), tar_of(&rootfs())).unwrap();
    }
    let named: Vec<(&str, Vec<u8>, &[&str], &str)> = vec![
        (
            "again.tar.gz",
            good_gz.clone(),
            &["--name", "debian-12"],
            "there is a template debian-12 already (debian-12.tar.gz)",
        ),
        (
            "other.zip",
            good_gz.clone(),
            &[],
            "give the template's name with --name",
        ),
        (
            "ok.tar.gz",
            good_gz.clone(),
            &["--name", "tandem-minimal"],
            "built-in template's name",
        ),
    ];
    let cases = hostile
        .into_iter()
        .map(|(f, b, w)| {
            if let Some(d) = &seeds {
                std::fs::write(d.join(format!("hostile-{f}")), &b).unwrap();
            }
            (f, b, &[][..], w)
        })
        .chain(named);
    for (file, bytes, extra, want) in cases {
        let path = up.join(file);
        std::fs::write(&path, bytes).unwrap();
        let mut args = vec!["template", "add", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, out, err) = tandem(&sock, &args);
        assert!(!ok, "{file} was accepted: {out}{err}");
        assert!(err.contains(want), "{file}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{file}: {err}");
        assert_eq!(listing(&templates), ["debian-12.tar.gz"], "{file}");
    }

    // An xz template, and a VE created from it.
    let alpine = up.join("alpine-3.tar.xz");
    std::fs::write(&alpine, xz(&tar_of(&rootfs()))).unwrap();
    let (ok, out, err) = tandem(&sock, &["template", "add", alpine.to_str().unwrap()]);
    assert!(ok && out.contains("alpine-3.tar.xz"), "{out}{err}");
    let ves = tandem_runtime::ve::manager::Ves {
        layout: tandem_runtime::ve::manager::Layout {
            conf_dir: data.join("ves"),
            private_dir: data.join("private"),
            template_dir: templates.clone(),
            ..tandem_runtime::ve::manager::Layout::node(Vec::new())
        },
    };
    ves.create(102, "alpine-3", "", "alpine", &[]).unwrap();
    assert_eq!(
        std::fs::read(data.join("private/102/etc/os-release")).unwrap(),
        b"ID=test\n"
    );

    // In use: not deleted, the VE named; listed with its user.
    let (ok, out, err) = tandem(&sock, &["template", "delete", "alpine-3"]);
    assert!(
        !ok && err.contains("template alpine-3 is used by VE 102"),
        "{out}{err}"
    );
    assert!(templates.join("alpine-3.tar.xz").exists());
    let (_, out, _) = tandem(&sock, &["template", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("alpine-3") && l.ends_with(" 102")),
        "{out}"
    );
    let (ok, out, err) = tandem(&sock, &["template", "delete", "tandem-minimal"]);
    assert!(!ok && err.contains("is built in"), "{out}{err}");
    let (ok, out, err) = tandem(&sock, &["template", "delete", "centos-4"]);
    assert!(
        !ok && err.contains("there is no template centos-4"),
        "{out}{err}"
    );

    // Not in use: deleted.
    let (ok, out, err) = tandem(&sock, &["template", "delete", "debian-12"]);
    assert!(
        ok && out.contains("template debian-12 deleted"),
        "{out}{err}"
    );
    assert_eq!(listing(&templates), ["alpine-3.tar.xz"]);

    // The node without the data area refuses, and says where to go.
    let passive = dir.path().join("passive");
    std::fs::create_dir_all(passive.join("ves")).unwrap();
    let psock = dir.path().join("passive.sock");
    serve(service(&passive, false), &psock);
    for args in [
        vec!["template", "add", good.to_str().unwrap()],
        vec!["template", "list"],
        vec!["template", "delete", "debian-12"],
    ] {
        let (ok, out, err) = tandem(&psock, &args);
        assert!(
            !ok && err.contains("the data area is on the other node: run this there"),
            "{out}{err}"
        );
    }
    assert!(!passive.join("template").exists());
}

/// The fuzz seeds: the good ones pass the check, every hostile one is refused.
#[test]
fn the_fuzz_seeds_are_checked_as_an_add_checks_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/template_check");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&p).unwrap();
        let r = tandem_runtime::ve::template::check(&bytes[..], bytes.len() as u64);
        if name.starts_with("hostile-") {
            assert!(r.is_err(), "{name} was accepted");
        } else {
            assert!(r.is_ok(), "{name}: {:?}", r.err());
        }
        n += 1;
    }
    assert!(n >= 9, "{n} seeds");
}

/// Python's `http.server` serving `dir` on loopback; stopped by its PID when dropped.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        use std::io::BufRead as _;
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 is missing (it comes with python3-aiosmtpd)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 43211 (http://127.0.0.1:43211/) ..."
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the server's port: {line}"));
        HttpServer { child, port }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_template_is_fetched_by_url_and_a_failed_fetch_adds_nothing() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("vz");
    let site = dir.path().join("site");
    std::fs::create_dir_all(data.join("ves")).unwrap();
    std::fs::create_dir_all(&site).unwrap();
    let sock = dir.path().join("control.sock");
    serve(service(&data, true), &sock);
    let templates = data.join("template");
    std::fs::write(site.join("alpine-3.tar.gz"), gzip(&tar_of(&rootfs()))).unwrap();
    let mut hostile = rootfs();
    hostile.push(("../escape", Regular, b"x"));
    std::fs::write(site.join("hostile.tar.xz"), xz(&tar_of(&hostile))).unwrap();
    let server = HttpServer::start(&site);
    let url = |f: &str| format!("http://127.0.0.1:{}/{f}", server.port);

    let (ok, out, err) = tandem(&sock, &["template", "add", &url("alpine-3.tar.gz")]);
    assert!(
        ok && out.contains("template alpine-3 added from http://127.0.0.1:"),
        "{out}{err}"
    );
    assert_eq!(listing(&templates), ["alpine-3.tar.gz"]);
    assert_eq!(
        std::fs::read(templates.join("alpine-3.tar.gz")).unwrap(),
        std::fs::read(site.join("alpine-3.tar.gz")).unwrap()
    );

    for (what, args, said) in [
        (
            "the same name again",
            vec![url("alpine-3.tar.gz")],
            "a template alpine-3 exists already",
        ),
        (
            "nothing there",
            vec![url("missing.tar.gz")],
            "(HTTP 404); nothing was added",
        ),
        (
            "a hostile tarball",
            vec![url("hostile.tar.xz")],
            "hostile.tar.xz was refused as a template, nothing was written: member \"../escape\"",
        ),
        (
            "no name in the URL",
            vec![url("download?id=3")],
            "give the template's name with --name",
        ),
        (
            "not an HTTP URL",
            vec!["http://".to_owned(), "--name".to_owned(), "x".to_owned()],
            "is not an http:// or https:// URL",
        ),
    ] {
        let mut a = vec!["template".to_owned(), "add".to_owned()];
        a.extend(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, out, err) = tandem(&sock, &a);
        assert!(!ok, "{what}: {out}{err}");
        assert!(err.contains(said), "{what}: {err}");
        assert_eq!(
            listing(&templates),
            ["alpine-3.tar.gz"],
            "{what}: nothing added, nothing left behind"
        );
    }
}
