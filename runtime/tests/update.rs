//! System updates with the real engine: RAUC 1.8's service on a system bus of the
//! test's own (dbus-daemon), its GRUB back-end on a grubenv file, two slot files, a
//! development CA, and bundles made with `rauc bundle`. The slot that booted is the
//! kernel command line's `rauc.slot=`, shown to the service in a mount namespace of
//! its own. What the host cannot do (its kernel may lack device-mapper, which
//! verity bundles need to be installed) the QEMU scenarios do.
//!
//! Runs as root (mount namespaces). Needs Debian packages rauc, dbus, grub-common,
//! squashfs-tools and openssl.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_runtime::update::rauc::Rauc;
use tandem_runtime::update::record::{Boot, Pending, Record};
use tandem_runtime::update::{COMPATIBLE, Updater};

/// A RAUC service on a bus of its own, booted from slot `booted`.
struct Rig {
    dir: tempfile::TempDir,
    bus: Child,
    service: Child,
    updater: Updater,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for c in [&mut self.service, &mut self.bus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A self-signed signing certificate `name` (key and certificate) in `dir`.
fn signer(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pem")),
    );
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null()));
    (key, cert)
}

/// A verity bundle for `compatible`, version `version`, signed by `signer`.
fn bundle(
    dir: &Path,
    name: &str,
    compatible: &str,
    version: &str,
    signer: &(PathBuf, PathBuf),
) -> PathBuf {
    let content = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&content).unwrap();
    // Bytes that do not compress (a squashfs of one block is too small for RAUC).
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let image: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(content.join("system.img"), image).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={compatible}\nversion={version}\ndescription=test\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=system.img\n"
        ),
    )
    .unwrap();
    let out = dir.join(format!("{name}.raucb"));
    run(Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", signer.1.display()))
        .arg(format!("--key={}", signer.0.display()))
        .arg(&content)
        .arg(&out));
    out
}

fn grubenv(path: &Path) -> String {
    run(Command::new("grub-editenv").arg(path).arg("list"))
}

impl Rig {
    /// Slot `booted` (`A`/`B`) runs; grubenv as `env` (`NAME=value` pairs) says.
    fn new(booted: &str, env: &[&str]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (_, ca) = signer(d, "vendor");
        let env_file = d.join("grubenv");
        run(Command::new("grub-editenv").arg(&env_file).arg("create"));
        run(Command::new("grub-editenv")
            .arg(&env_file)
            .arg("set")
            .args(env));
        for s in ["a.img", "b.img"] {
            std::fs::write(d.join(s), vec![0u8; 2 << 20]).unwrap();
        }
        let conf = d.join("system.conf");
        std::fs::write(
            &conf,
            format!(
                "[system]\ncompatible={COMPATIBLE}\nbootloader=grub\ngrubenv={env}\ndata-directory={data}\nbundle-formats=verity\n\n[keyring]\npath={ca}\n\n[slot.rootfs.0]\ndevice={a}\ntype=raw\nbootname=A\n\n[slot.rootfs.1]\ndevice={b}\ntype=raw\nbootname=B\n",
                env = env_file.display(),
                data = d.join("data").display(),
                ca = ca.display(),
                a = d.join("a.img").display(),
                b = d.join("b.img").display(),
            ),
        )
        .unwrap();
        let socket = d.join("bus");
        let bus_conf = d.join("bus.conf");
        std::fs::write(
            &bus_conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"root\"/><allow own=\"*\"/><allow send_destination=\"*\"/><allow receive_sender=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", bus_conf.display()))
            .arg("--nofork")
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is missing: apt-get install dbus");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dbus-daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let address = format!("unix:path={}", socket.display());
        let cmdline = d.join("cmdline");
        std::fs::write(&cmdline, format!("quiet rauc.slot={booted}\n")).unwrap();
        let service = Command::new("unshare")
            .arg("--mount")
            .arg("sh")
            .arg("-c")
            .arg(format!(
                "mount --bind {} /proc/cmdline && exec rauc --conf={} service",
                cmdline.display(),
                conf.display()
            ))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let version_file = d.join("tandem-version");
        std::fs::write(&version_file, "0.5.0+abc\n").unwrap();
        let updater = Updater {
            rauc: Rauc {
                program: PathBuf::from("rauc"),
                conf: Some(conf),
                keyring: None,
                bus: Some(address),
            },
            state_dir: d.join("state"),
            version_file,
        };
        let rig = Rig {
            dir,
            bus,
            service,
            updater,
        };
        let started = Instant::now();
        while let Err(e) = rig.updater.status() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the RAUC service did not answer: {e}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn vendor(&self) -> (PathBuf, PathBuf) {
        (self.path("vendor.key"), self.path("vendor.pem"))
    }
}

const NEW_SYSTEM: [&str; 5] = ["ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=0"];

#[test]
fn bundles_are_refused_before_anything_is_written() {
    let rig = Rig::new("A", &NEW_SYSTEM);
    let d = rig.dir.path();
    let vendor = rig.vendor();
    let before = (
        grubenv(&rig.path("grubenv")),
        std::fs::read(rig.path("b.img")).unwrap(),
    );

    let good = bundle(d, "good", COMPATIBLE, "0.6.0+def", &vendor);
    let info = rig.updater.check(&good, false).unwrap();
    assert_eq!(info.version.as_deref(), Some("0.6.0+def"));
    assert_eq!(info.compatible, COMPATIBLE);

    let other = signer(d, "somebody-else");
    let foreign = bundle(d, "foreign", COMPATIBLE, "0.6.0", &other);
    let e = rig.updater.check(&foreign, false).unwrap_err().0;
    assert!(e.contains("signature verification failed"), "{e}");
    assert!(e.ends_with("nothing was written"), "{e}");

    let bytes = std::fs::read(&good).unwrap();
    let truncated = rig.path("truncated.raucb");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = rig.updater.check(&truncated, false).unwrap_err().0;
    assert!(
        e.contains("Invalid bundle format") || e.contains("signature"),
        "{e}"
    );

    // A byte of the signature changed.
    let mut flipped = bytes.clone();
    let n = flipped.len() - 300;
    flipped[n] ^= 0xff;
    let tampered = rig.path("tampered.raucb");
    std::fs::write(&tampered, &flipped).unwrap();
    let e = rig.updater.check(&tampered, false).unwrap_err().0;
    assert!(e.contains("refused"), "{e}");

    let junk = rig.path("junk.raucb");
    std::fs::write(&junk, vec![7u8; 100_000]).unwrap();
    assert!(
        rig.updater
            .check(&junk, false)
            .unwrap_err()
            .0
            .contains("refused")
    );

    let wrong = bundle(d, "wrong", "someone-elses-box", "0.6.0", &vendor);
    let e = rig.updater.check(&wrong, false).unwrap_err().0;
    assert!(e.contains("is for \"someone-elses-box\""), "{e}");

    let older = bundle(d, "older", COMPATIBLE, "0.4.9+old", &vendor);
    let e = rig.updater.check(&older, false).unwrap_err().0;
    assert!(e.contains("older than the running 0.5.0+abc"), "{e}");
    rig.updater.check(&older, true).unwrap();

    let e = rig
        .updater
        .check(&rig.path("nonexistent.raucb"), false)
        .unwrap_err()
        .0;
    assert!(e.contains("nonexistent.raucb"), "{e}");

    let after = (
        grubenv(&rig.path("grubenv")),
        std::fs::read(rig.path("b.img")).unwrap(),
    );
    assert!(
        before == after,
        "a refused bundle changed the boot loader's state or the slot"
    );
    assert_eq!(Record::load(&rig.path("state")).unwrap(), Record::default());
}

fn pending() -> Pending {
    Pending {
        to_slot: "B".into(),
        to_version: "0.6.0+def".into(),
        from_slot: "A".into(),
        from_version: "0.5.0+abc".into(),
        installed_at: 1,
        held: false,
    }
}

#[test]
fn the_new_system_is_committed_when_it_booted() {
    // What RAUC leaves after writing slot B, and GRUB after starting it once.
    let rig = Rig::new(
        "B",
        &["ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=1"],
    );
    Record {
        pending: Some(pending()),
        history: Vec::new(),
        rolling: None,
    }
    .save(&rig.path("state"))
    .unwrap();
    assert_eq!(rig.updater.boot().unwrap(), Boot::Trial(pending()));
    rig.updater.commit(Some(&pending())).unwrap();
    let env = grubenv(&rig.path("grubenv"));
    assert!(env.contains("B_OK=1") && env.contains("B_TRY=0"), "{env}");
    assert!(env.contains("ORDER=B A"), "{env}");
    let r = Record::load(&rig.path("state")).unwrap();
    assert_eq!(r.pending, None);
    assert_eq!(
        r.history.last().unwrap().text,
        "updated from 0.5.0+abc to 0.6.0+def"
    );
    assert_eq!(rig.updater.boot().unwrap(), Boot::Ordinary);
}

#[test]
fn a_fallback_to_the_old_system_is_recorded_and_not_tried_again() {
    // GRUB skipped B (tried, never committed) and started A.
    let rig = Rig::new(
        "A",
        &["ORDER=B A", "A_OK=1", "A_TRY=1", "B_OK=1", "B_TRY=1"],
    );
    Record {
        pending: Some(pending()),
        history: Vec::new(),
        rolling: None,
    }
    .save(&rig.path("state"))
    .unwrap();
    assert_eq!(rig.updater.boot().unwrap(), Boot::RolledBack(pending()));
    let text = rig.updater.rolled_back(&pending()).unwrap();
    assert_eq!(text, "update to 0.6.0+def failed, rolled back to 0.5.0+abc");
    rig.updater.commit(None).unwrap();
    let env = grubenv(&rig.path("grubenv"));
    assert!(env.contains("B_OK=0"), "{env}");
    assert!(env.contains("A_OK=1") && env.contains("A_TRY=0"), "{env}");
    let r = Record::load(&rig.path("state")).unwrap();
    assert_eq!(r.pending, None);
    let last = r.history.last().unwrap();
    assert!(!last.ok);
    assert_eq!(last.text, text);
    // The slot that failed holds no system to go back to.
    let e = rig.updater.rollback().unwrap_err().0;
    assert!(e.contains("slot B holds no system known good"), "{e}");
}
