//! VE backups with the real engines: a writer in its own cgroup v2 fsyncing numbered
//! records into a VE's root filesystem while the backup freezes it, the restore to a
//! new VE ID and to the same one, hostile backup files refused with nothing written,
//! and the copy-off to a real OpenSSH server in a network namespace the test creates
//! (its loopback only), with the wrong host key refused.
//!
//! Runs as root (cgroups, namespaces, sshd). Needs Debian packages iproute2,
//! openssh-server and openssh-client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod lab;
mod served;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};
use tandem_runtime::ve::archive::{self, Kind, Manifest, Member};
use tandem_runtime::ve::copyoff::{self, CopyError, Target};
use tandem_runtime::ve::freeze;
use tandem_runtime::ve::restore::{self, RestoreError};
use tandem_runtime::ve::snapshot::{self, Site};

const VE_CONF: &str =
    "HOSTNAME=\"writer\"\nIP_ADDRESS=\"198.18.0.9\"\nONBOOT=\"yes\"\nNUMPROC=\"256:256\"\n";

/// A data area, VE files and a cgroup subtree of the test's own; removed when dropped.
struct Area {
    dir: tempfile::TempDir,
    site: Site,
    cgroup: PathBuf,
}

impl Drop for Area {
    fn drop(&mut self) {
        kill_cgroups(&self.cgroup);
    }
}

fn kill_cgroups(top: &Path) {
    // Deepest first: every cgroup of the test, its processes killed.
    let mut dirs = Vec::new();
    let mut stack = vec![top.to_owned()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.filter_map(Result::ok) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        dirs.push(d);
    }
    for d in dirs.iter().rev() {
        let _ = std::fs::write(d.join("cgroup.freeze"), "0");
        let _ = std::fs::write(d.join("cgroup.kill"), "1");
    }
    for d in dirs.iter().rev() {
        let t = Instant::now();
        while std::fs::remove_dir(d).is_err() && d.exists() && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn area(name: &str) -> Area {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cgroup = freeze::cgroup2_root().join(format!("tandem-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&cgroup).unwrap();
    let mut site = Site::at(dir.path(), dir.path().join("ves"), cgroup.clone());
    // `/` is a mount point on every system: the data area counts as mounted.
    site.data_mount = PathBuf::from("/");
    std::fs::create_dir_all(&site.conf_dir).unwrap();
    std::fs::create_dir_all(&site.private_dir).unwrap();
    Area { dir, site, cgroup }
}

/// A VE with a small tree of every kind a root filesystem has.
fn make_ve(a: &Area, id: u32, big: usize) {
    let root = a.site.private(id);
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/data")).unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("etc/hostname"), "writer\n").unwrap();
    std::fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::chown(root.join("etc/hostname"), Some(1000), Some(1001)).unwrap();
    // Data that compresses a little, not trivially.
    let mut data = Vec::with_capacity(big);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < big {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(format!("{:016x} line of the VE's data\n", x % 65536).as_bytes());
    }
    std::fs::write(root.join("var/data/big"), &data).unwrap();
    // A FIFO: not backed up, listed as skipped.
    let fifo = root.join("dev/initctl");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    std::fs::write(a.site.conf(id), VE_CONF).unwrap();
}

/// Every path below `root` with its kind, mode, owner and content (or link target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                format!(
                    "file {:x} nlink {}",
                    Sha256::digest(std::fs::read(&p).unwrap()),
                    m.nlink()
                )
            } else {
                "special".to_owned()
            };
            let mode = if m.file_type().is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                format!("{what} mode {mode:o} owner {}:{}", m.uid(), m.gid()),
            );
        }
    }
    out
}

/// The writer: a shell in the VE's cgroup appending fixed-length numbered records,
/// each fsynced (`sync FILE`) before it is acknowledged in `ack` (outside the VE).
struct Writer {
    child: Child,
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RECORD_LEN: usize = "record 00000000 0000000000000000000 end\n".len();

fn start_writer(cgroup: &Path, records: &Path, ack: &Path) -> Writer {
    std::fs::create_dir_all(cgroup).unwrap();
    let script = r#"
i=0
while [ $i -lt 1000000 ]; do
  printf 'record %08d %s end\n' "$i" "$(date +%s%N)" >> "$REC"
  sync "$REC"
  echo "$i" > "$ACK.tmp" && mv "$ACK.tmp" "$ACK"
  i=$((i+1))
done
"#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > \"$CG/cgroup.procs\" && exec sh -c '{}'",
            script.replace('\'', "'\\''")
        ))
        .env("CG", cgroup)
        .env("REC", records)
        .env("ACK", ack)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Writer { child }
}

fn acked(ack: &Path) -> Option<u64> {
    std::fs::read_to_string(ack).ok()?.trim().parse().ok()
}

/// (number, wall-clock nanoseconds) of every record; panics on a torn one.
fn records(text: &[u8]) -> Vec<(u64, u128)> {
    assert_eq!(text.len() % RECORD_LEN, 0, "a torn record at the end");
    text.chunks(RECORD_LEN)
        .map(|r| {
            let s = std::str::from_utf8(r).unwrap();
            let f: Vec<&str> = s.split(' ').collect();
            assert!(
                f.len() == 4 && f[0] == "record" && f[3] == "end\n",
                "torn record {s:?}"
            );
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos()
}

fn never_running(_: u32) -> bool {
    false
}

#[test]
fn a_running_writer_is_frozen_and_every_acknowledged_record_is_restored() {
    let a = area("writer");
    make_ve(&a, 901, 48 * 1024 * 1024);
    let ve_cgroup = a.site.cgroup(901);
    let rec = a.site.private(901).join("var/data/records");
    let ack = a.dir.path().join("ack");
    let _w = start_writer(&ve_cgroup, &rec, &ack);
    let t = Instant::now();
    while acked(&ack).unwrap_or(0) < 30 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the writer does not write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(freeze::has_processes(&ve_cgroup));

    let before = acked(&ack).unwrap();
    let mut calls = 0u64;
    let made = snapshot::make(&a.site, 901, &mut |_, _| calls += 1).unwrap();
    let (from, until) = made.frozen.expect("the running VE was frozen");
    let freeze = made.freeze.unwrap();
    eprintln!(
        "backup: {} bytes of data in {} files → {} bytes, frozen {:?}, whole run {:?}, {} progress calls",
        made.manifest.total_bytes,
        made.manifest.total_files,
        made.bytes,
        freeze,
        made.elapsed,
        calls
    );
    assert!(calls > 10);
    assert!(
        made.manifest
            .skipped
            .iter()
            .any(|s| s.starts_with("private/dev/initctl"))
    );
    // The writer runs on after the thaw.
    let after = acked(&ack).unwrap();
    let t = Instant::now();
    while acked(&ack).unwrap() < after + 5 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the writer was not thawed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Restoring over the running VE is refused (its cgroup holds processes).
    let running = |id: u32| freeze::has_processes(&a.site.cgroup(id));
    let e = restore::restore(&a.site, &made.file, None, &running, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, RestoreError::Running(901)), "{e}");
    kill_cgroups(&ve_cgroup);
    drop(_w);

    // The live file: no record was stamped while the VE was frozen (from the kernel's
    // word that it was to just before the thaw).
    let live = records(&std::fs::read(&rec).unwrap());
    let (lo, hi) = (unix_ns(from), unix_ns(until));
    assert!(hi > lo + 100_000_000, "frozen for {freeze:?} only");
    let during: Vec<_> = live.iter().filter(|(_, t)| *t > lo && *t < hi).collect();
    assert!(
        during.is_empty(),
        "records stamped while frozen: {during:?}"
    );
    // The writer wrote right up to the freeze and right after it.
    assert!(live.iter().any(|(_, t)| *t < lo) && live.iter().any(|(_, t)| *t > hi));

    // Restored to a new ID: the records are whole, consecutive, and hold every one
    // acknowledged before the backup began; the rest of the tree is the original's.
    let r = restore::restore(
        &a.site,
        &made.file,
        Some(902),
        &never_running,
        &mut |_, _| {},
    )
    .unwrap();
    eprintln!("restore to 902: {:?}", r.elapsed);
    assert_eq!(r.id, 902);
    assert!(r.addresses_removed && !r.replaced);
    let got = records(&std::fs::read(a.site.private(902).join("var/data/records")).unwrap());
    for (i, (n, _)) in got.iter().enumerate() {
        assert_eq!(*n, i as u64, "records not consecutive");
    }
    let last = got.last().unwrap().0;
    assert!(
        last >= before,
        "acknowledged {before}, backed up up to {last}"
    );
    assert_eq!(&live[..got.len()], &got[..]);
    let mut want = tree(&a.site.private(901));
    let mut have = tree(&a.site.private(902));
    want.remove("var/data/records");
    have.remove("var/data/records");
    want.remove("dev/initctl");
    assert_eq!(want, have);
    let conf = std::fs::read_to_string(a.site.conf(902)).unwrap();
    assert!(
        conf.contains("IP_ADDRESS=\"\"") && conf.contains("ONBOOT=\"no\""),
        "{conf}"
    );
    assert!(conf.contains("NUMPROC=\"256:256\""), "{conf}");
    // A restore to an existing other VE is refused.
    let e = restore::restore(
        &a.site,
        &made.file,
        Some(902),
        &never_running,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, RestoreError::Exists(902)), "{e}");

    // Restored onto itself (stopped now): the root filesystem is the backup's again.
    std::fs::write(a.site.private(901).join("etc/hostname"), "changed after\n").unwrap();
    std::fs::write(a.site.conf(901), "HOSTNAME=\"other\"\n").unwrap();
    let r = restore::restore(&a.site, &made.file, None, &never_running, &mut |_, _| {}).unwrap();
    assert!(r.replaced);
    assert_eq!(
        std::fs::read_to_string(a.site.private(901).join("etc/hostname")).unwrap(),
        "writer\n"
    );
    assert_eq!(std::fs::read_to_string(a.site.conf(901)).unwrap(), VE_CONF);
    let leftovers: Vec<_> = std::fs::read_dir(&a.site.private_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

/// A backup that fails while the VE is frozen (its backup directory fills up) thaws
/// the VE, and leaves no file behind.
#[test]
fn a_failed_backup_thaws_the_ve_and_leaves_nothing() {
    let mut a = area("full");
    make_ve(&a, 907, 1024);
    // Incompressible data, more than the backup directory holds.
    let mut noise = vec![0u8; 4 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    std::fs::write(a.site.private(907).join("var/data/noise"), &noise).unwrap();
    let small = a.dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    lab::sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tandem-test",
        small.to_str().unwrap(),
    ]);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _m = Unmount(small.clone());
    a.site.backup_dir = small.join("ve");

    let ve_cgroup = a.site.cgroup(907);
    let rec = a.site.private(907).join("var/data/records");
    let ack = a.dir.path().join("ack");
    let _w = start_writer(&ve_cgroup, &rec, &ack);
    let t = Instant::now();
    while acked(&ack).unwrap_or(0) < 5 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the writer does not write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = snapshot::make(&a.site, 907, &mut |_, _| {}).unwrap_err();
    eprintln!("full backup directory: {}", tandem_runtime::error_chain(&e));
    assert!(e.is_disk_full(), "{e:?}");
    let events = std::fs::read_to_string(ve_cgroup.join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 0"), "{events}");
    let n = acked(&ack).unwrap();
    let t = Instant::now();
    while acked(&ack).unwrap() < n + 5 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the writer stays frozen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_dir(&a.site.backup_dir).unwrap().count(), 0);
}

/// Measure (run by hand, `--ignored`): the backup of a real tree (documentation and
/// Python modules of this host, copied into a VE) against `tar | zstd -3` of the same
/// tree, and its restore. The page cache is warmed by one `tar` first.
#[test]
#[ignore = "a measurement, run by hand"]
fn measure_backup_against_tar_zstd() {
    let a = area("measure");
    make_ve(&a, 908, 1024);
    let root = a.site.private(908);
    for src in ["/usr/share/doc", "/usr/lib/python3.11"] {
        lab::sh(&["cp", "-a", src, root.join("var/data").to_str().unwrap()]);
    }
    let out = a.dir.path().join("plain.tar.zst");
    // Both written durably (the backup fsyncs its file).
    let tar_zstd = format!(
        "tar -C {} -cf - . | zstd -3 -T1 -q -f -o {o} && sync {o}",
        root.display(),
        o = out.display()
    );
    // The copied tree on disk and in the page cache before either runs.
    lab::sh(&["sync"]);
    lab::sh(&[
        "sh",
        "-c",
        &format!("tar -C {} -cf - . > /dev/null", root.display()),
    ]);
    let t = Instant::now();
    lab::sh(&["sh", "-c", &tar_zstd]);
    let plain = t.elapsed();
    let plain_bytes = std::fs::metadata(&out).unwrap().len();
    let made = snapshot::make(&a.site, 908, &mut |_, _| {}).unwrap();
    let t = Instant::now();
    let r = restore::restore(
        &a.site,
        &made.file,
        Some(909),
        &never_running,
        &mut |_, _| {},
    )
    .unwrap();
    let restore_time = t.elapsed();
    #[allow(clippy::cast_precision_loss, reason = "a figure for people")]
    let mib = made.manifest.total_bytes as f64 / f64::from(1 << 20);
    eprintln!(
        "tree: {mib:.1} MiB in {} files\n\
         tar | zstd -3 -T1: {plain:?} ({:.1} MiB/s), {plain_bytes} bytes\n\
         tandem backup:     {:?} ({:.1} MiB/s), {} bytes, ratio {:.2}\n\
         tandem restore:    {restore_time:?} ({:.1} MiB/s) to VE {}",
        made.manifest.total_files,
        mib / plain.as_secs_f64(),
        made.elapsed,
        mib / made.elapsed.as_secs_f64(),
        made.bytes,
        made.elapsed.as_secs_f64() / plain.as_secs_f64(),
        mib / restore_time.as_secs_f64(),
        r.id
    );
    assert_eq!(tree(&root).len(), tree(&a.site.private(909)).len() + 1);
}

/// The CLI as the operator runs it: `tandem ve backup`, `ve backups`, `ve restore`
/// against clusterd's control service (in this process, on a socket of the test), with
/// progress on the error stream and the freeze time at the end.
/// The control plane of a member node whose data area is `a` and whose committed
/// configuration is `cfg` (its cluster loop does not answer; VEs run nowhere).
fn control_service(
    a: &Area,
    cfg: &tandem_config::ApplianceConfig,
) -> std::sync::Arc<tandem_runtime::control::Service> {
    use std::sync::Arc;
    use tandem_runtime::admin::{Admin, activation::Engine, ve::VeSite};
    use tandem_runtime::control::{ClusterLink, Service};

    let store = a.dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let s = tandem_config::Store::open(&store).unwrap();
    s.stage(cfg).unwrap();
    s.commit().unwrap();
    let engine = Engine::Sim {
        delay: Duration::from_millis(10),
        fail: false,
    };
    let mut admin = Admin::new(store, tandem_config::NodeId::Node1, engine);
    admin.ve = VeSite::at(a.dir.path(), a.site.conf_dir.clone(), "/bin/false".into());
    admin.ve.data_mount = PathBuf::from("/");
    let link = ClusterLink::ended("node1");
    Arc::new(Service::new(admin, Some(link)))
}

#[test]
fn the_cli_backs_up_lists_and_restores_through_clusterd() {
    let a = area("cli");
    make_ve(&a, 910, 8 << 20);
    let (cfg, _) =
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
    let service = control_service(&a, &cfg);
    let sock = a.dir.path().join("control.sock");
    served::serve(service, &sock);
    let tandem = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--control")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = tandem(&["ve", "backup", "910"]);
    eprintln!("tandem ve backup 910:\n{out}{err}");
    assert!(ok, "{out}{err}");
    assert!(out.contains("the VE was not running (not frozen)"), "{out}");
    assert!(
        out.contains("not copied off: no target configured"),
        "{out}"
    );
    assert!(out.contains("not backed up: private/dev/initctl"), "{out}");
    let (ok, out, err) = tandem(&["ve", "backups"]);
    eprintln!("tandem ve backups:\n{out}{err}");
    assert!(
        ok && out.contains("not copied off") && out.contains("ve-910-"),
        "{out}{err}"
    );
    let name = out
        .split_whitespace()
        .find(|w| w.starts_with("ve-910-"))
        .unwrap()
        .to_owned();
    let (ok, out, err) = tandem(&["ve", "restore", &name, "--to", "911"]);
    eprintln!("tandem ve restore:\n{out}{err}");
    assert!(ok && out.contains("VE 911 restored"), "{out}{err}");
    assert!(a.site.private(911).join("var/data/big").exists());
    // A hostile file named by path: refused, the reason printed, nothing written.
    let bad = a.dir.path().join("bad.tar.zst");
    std::fs::write(&bad, b"not a backup").unwrap();
    let (ok, out, err) = tandem(&["ve", "restore", bad.to_str().unwrap(), "--to", "912"]);
    eprintln!("tandem ve restore bad:\n{out}{err}");
    assert!(!ok && err.contains("not a tandem VE backup"), "{out}{err}");
    assert!(!a.site.private(912).exists());
}

#[test]
fn a_scheduled_run_backs_up_each_ve_once_a_day_and_keeps_keep_local_on_the_pair() {
    use tandem_runtime::ve::scheduled::run_once;

    let a = area("sched");
    make_ve(&a, 920, 1 << 20);
    make_ve(&a, 921, 1 << 20);
    // The copy-off target is a closed port on loopback: every backup is made, and its
    // copy-off fails, which the run reports as a failure of that VE.
    let b = tandem_config::schema::BackupConfig {
        target_host: "127.0.0.1:9".parse().unwrap(),
        target_user: "tandem".parse().unwrap(),
        target_path: "/srv".parse().unwrap(),
        target_host_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPwP89bL4rstUl52F0q3zNJhLPZUidXi9x0aTtyqGya"
                .parse()
                .unwrap(),
        keep: 7,
        schedule: Some("02:30".parse().unwrap()),
        ves: vec![920, 921],
        keep_local: 1,
    };
    let (mut cfg, _) =
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
    cfg.backup = Some(b.clone());
    let service = control_service(&a, &cfg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let files = |id: u32| -> Vec<String> {
        snapshot::list(&a.site.backup_dir)
            .unwrap()
            .into_iter()
            .filter(|l| l.ve == id)
            .map(|l| l.name)
            .collect()
    };

    // The day's run: both VEs backed up, one after the other.
    let slot = now() - 10;
    let first = rt.block_on(run_once(&service, &b, slot));
    eprintln!("first run: {}", first.text());
    assert_eq!(
        first.made.iter().map(|m| m.0).collect::<Vec<_>>(),
        [920, 921],
        "{first:?}"
    );
    assert!(
        first.failed.len() == 2
            && first
                .failed
                .iter()
                .all(|(_, why)| why.contains("not copied off")),
        "{first:?}"
    );
    assert_eq!((files(920).len(), files(921).len()), (1, 1));
    // Asked again for the same day (clusterd restarted, a switchover): nothing new.
    let again = rt.block_on(run_once(&service, &b, slot));
    assert_eq!(
        (again.made.len(), again.current.as_slice()),
        (0, &[920, 921][..]),
        "{again:?}"
    );
    // The next day's: new backups, the older ones deleted from the pair (keep-local 1).
    std::thread::sleep(Duration::from_millis(1100));
    let old = (files(920), files(921));
    let next = rt.block_on(run_once(&service, &b, now()));
    eprintln!("next run: {}", next.text());
    assert_eq!(next.made.len(), 2, "{next:?}");
    let mut pruned = next.pruned.clone();
    pruned.sort();
    let mut want = [old.0.clone(), old.1.clone()].concat();
    want.sort();
    assert_eq!(pruned, want);
    assert_eq!((files(920).len(), files(921).len()), (1, 1));
    assert_ne!(files(920), old.0);
    // A VE that is not there fails alone; the others are made.
    let mut b2 = b.clone();
    b2.ves = vec![999, 920];
    std::thread::sleep(Duration::from_millis(1100));
    let r = rt.block_on(run_once(&service, &b2, now()));
    assert!(r.failed.iter().any(|(id, _)| *id == 999), "{r:?}");
    assert!(r.made.iter().any(|m| m.0 == 920), "{r:?}");
}

// ---- hostile files ----------------------------------------------------------------

/// A tar member written by hand (no library check in the way).
fn raw(
    name: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: Option<&str>,
    size: Option<u64>,
) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let o = h.as_old_mut();
        o.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            o.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_size(size.unwrap_or(data.len() as u64));
    h.set_entry_type(kind);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file_member(path: &str, data: &[u8]) -> Member {
    Member {
        path: path.into(),
        kind: Kind::File,
        size: data.len() as u64,
        sha256: Some(archive::hex(&Sha256::digest(data))),
        target: None,
    }
}

fn manifest(members: Vec<Member>) -> Manifest {
    let files = members.iter().filter(|m| m.kind == Kind::File).count() as u64;
    let bytes = members.iter().map(|m| m.size).sum();
    Manifest {
        format: archive::FORMAT.into(),
        format_version: archive::FORMAT_VERSION,
        ve_id: 901,
        host: "test".into(),
        created: "2026-12-06T00:00:00Z".into(),
        tandem_version: "0".into(),
        members,
        total_files: files,
        total_bytes: bytes,
        skipped: Vec::new(),
    }
}

/// A backup file: the manifest member, then `body`, the end blocks, zstd.
fn backup_file(m: &Manifest, body: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(m).unwrap();
    let mut tar = raw(
        archive::MANIFEST_NAME,
        tar::EntryType::Regular,
        &json,
        None,
        None,
    );
    tar.extend_from_slice(body);
    tar.extend_from_slice(&[0u8; 1024]);
    zstd::encode_all(&tar[..], 3).unwrap()
}

/// conf + private dir members and their tar bytes.
fn base() -> (Vec<Member>, Vec<u8>) {
    let conf = b"HOSTNAME=\"x\"\n";
    let members = vec![
        file_member("ve.conf", conf),
        Member {
            path: "private".into(),
            kind: Kind::Dir,
            size: 0,
            sha256: None,
            target: None,
        },
    ];
    let mut body = raw("ve.conf", tar::EntryType::Regular, conf, None, None);
    body.extend(raw("private", tar::EntryType::Directory, b"", None, None));
    (members, body)
}

fn hostile_files(good: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    // Traversal: the manifest and the member both name ../
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/../../evil", b"x"));
        body.extend(raw(
            "private/../../evil",
            tar::EntryType::Regular,
            b"x",
            None,
            None,
        ));
        out.push(("traversal", backup_file(&manifest(m), &body), "climbs out"));
    }
    // Traversal in the member only (the manifest lists a harmless name).
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/ok", b"x"));
        body.extend(raw(
            "private/../evil",
            tar::EntryType::Regular,
            b"x",
            None,
            None,
        ));
        out.push((
            "traversal-member",
            backup_file(&manifest(m), &body),
            "climbs out",
        ));
    }
    // Absolute path.
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/ok", b"x"));
        body.extend(raw("/tmp/evil", tar::EntryType::Regular, b"x", None, None));
        out.push((
            "absolute",
            backup_file(&manifest(m), &body),
            "absolute path",
        ));
    }
    // A symlink out of the VE, then a file written through it.
    {
        let (mut m, mut body) = base();
        m.push(Member {
            path: "private/out".into(),
            kind: Kind::Symlink,
            size: 0,
            sha256: None,
            target: Some("../../../../../../tmp".into()),
        });
        body.extend(raw(
            "private/out",
            tar::EntryType::Symlink,
            b"",
            Some("../../../../../../tmp"),
            None,
        ));
        out.push((
            "symlink-out",
            backup_file(&manifest(m), &body),
            "points outside the VE",
        ));
    }
    // A hard link to a file outside.
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/ok", b"x"));
        body.extend(raw(
            "private/ok",
            tar::EntryType::Link,
            b"",
            Some("/etc/shadow"),
            None,
        ));
        out.push((
            "hardlink-out",
            backup_file(&manifest(m), &body),
            "not the one the manifest lists",
        ));
    }
    // A hard link the manifest lists as one, to a file outside.
    {
        let (mut m, mut body) = base();
        m.push(Member {
            path: "private/shadow".into(),
            kind: Kind::Hardlink,
            size: 0,
            sha256: None,
            target: Some("/etc/shadow".into()),
        });
        body.extend(raw(
            "private/shadow",
            tar::EntryType::Link,
            b"",
            Some("/etc/shadow"),
            None,
        ));
        out.push((
            "hardlink-listed-out",
            backup_file(&manifest(m), &body),
            "not a file earlier in the VE",
        ));
    }
    // A symlink to a directory inside, then a file written through it.
    {
        let (mut m, mut body) = base();
        m.push(Member {
            path: "private/etc".into(),
            kind: Kind::Symlink,
            size: 0,
            sha256: None,
            target: Some("/".into()),
        });
        m.push(file_member("private/etc/evil", b"x"));
        body.extend(raw(
            "private/etc",
            tar::EntryType::Symlink,
            b"",
            Some("/"),
            None,
        ));
        body.extend(raw(
            "private/etc/evil",
            tar::EntryType::Regular,
            b"x",
            None,
            None,
        ));
        out.push((
            "through-symlink",
            backup_file(&manifest(m), &body),
            "its parent is not a directory",
        ));
    }
    // A device node.
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/sda", b""));
        body.extend(raw("private/sda", tar::EntryType::Block, b"", None, None));
        out.push(("device", backup_file(&manifest(m), &body), "device node"));
    }
    // A FIFO.
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/fifo", b""));
        body.extend(raw("private/fifo", tar::EntryType::Fifo, b"", None, None));
        out.push(("fifo", backup_file(&manifest(m), &body), "FIFO"));
    }
    // Checksum mismatch: the data differs from the manifest's checksum.
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/data", b"the original"));
        body.extend(raw(
            "private/data",
            tar::EntryType::Regular,
            b"the modified",
            None,
            None,
        ));
        out.push((
            "checksum",
            backup_file(&manifest(m), &body),
            "does not match its checksum",
        ));
    }
    // Truncated: a real backup cut in the middle.
    out.push(("truncated", good[..good.len() / 2].to_vec(), "damaged"));
    // A flipped byte in a real backup.
    {
        let mut bad = good.to_vec();
        let i = bad.len() * 2 / 3;
        bad[i] ^= 0x55;
        out.push(("corrupted", bad, "refused"));
    }
    // zstd bombs: a member far larger than the manifest says; 64 MiB of zeros after
    // the archive; a manifest that declares more than the disk holds.
    {
        let (mut m, mut body) = base();
        m.push(file_member("private/small", b"0123456789"));
        let zeros = vec![0u8; 64 << 20];
        body.extend(raw(
            "private/small",
            tar::EntryType::Regular,
            &zeros,
            None,
            None,
        ));
        let f = backup_file(&manifest(m), &body);
        assert!(f.len() < 64 << 10, "a bomb is small: {}", f.len());
        out.push((
            "bomb-member",
            f,
            "holds 67108864 bytes, the manifest says 10",
        ));
    }
    {
        let (m, mut body) = base();
        body.extend_from_slice(&[0u8; 1024]);
        body.extend(vec![0u8; 64 << 20]);
        let f = backup_file(&manifest(m), &body);
        assert!(f.len() < 64 << 10, "a bomb is small: {}", f.len());
        out.push(("bomb-trailing", f, "decompression bomb"));
    }
    {
        let (mut m, mut body) = base();
        let mut huge = file_member("private/huge", b"");
        huge.size = 1 << 50;
        m.push(huge);
        body.extend(raw(
            "private/huge",
            tar::EntryType::Regular,
            b"",
            None,
            Some(0),
        ));
        out.push(("bomb-declared", backup_file(&manifest(m), &body), "free in"));
    }
    // Not a backup: random bytes, a zstd file of something else, a tar without manifest.
    out.push((
        "random",
        b"PK\x03\x04 this is a zip, not a backup".to_vec(),
        "not zstd-compressed",
    ));
    out.push((
        "zstd-text",
        zstd::encode_all(&b"hello, world"[..], 3).unwrap(),
        "not a tandem VE backup",
    ));
    {
        let mut t = raw(
            "etc/passwd",
            tar::EntryType::Regular,
            b"root:x:0:0",
            None,
            None,
        );
        t.extend_from_slice(&[0u8; 1024]);
        out.push((
            "foreign-tar",
            zstd::encode_all(&t[..], 3).unwrap(),
            "not the manifest",
        ));
    }
    out
}

#[test]
fn hostile_backup_files_are_refused_and_nothing_is_written() {
    let a = area("hostile");
    make_ve(&a, 901, 256 * 1024);
    let made = snapshot::make(&a.site, 901, &mut |_, _| {}).unwrap();
    let good = std::fs::read(&made.file).unwrap();
    // The good one reads.
    archive::read_backup(&good[..], &mut |_| Ok(None), &mut |_| {}).unwrap();

    let original = tree(&a.site.private(901));
    let listing = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let private_before = listing(&a.site.private_dir);
    let conf_before = listing(&a.site.conf_dir);
    let outside = Path::new(env!("CARGO_TARGET_TMPDIR")).join("evil");
    let _ = std::fs::remove_file(&outside);
    let seeds = std::env::var_os("TANDEM_VE_BACKUP_SEEDS").map(PathBuf::from);
    for (name, bytes, expect) in hostile_files(&good) {
        if let Some(d) = &seeds {
            std::fs::write(d.join(format!("hostile-{name}.tar.zst")), &bytes).unwrap();
        }
        let path = a.dir.path().join(format!("{name}.tar.zst"));
        std::fs::write(&path, &bytes).unwrap();
        for to in [Some(950), None] {
            let t = Instant::now();
            let e = restore::restore(&a.site, &path, to, &never_running, &mut |_, _| {})
                .expect_err(name);
            let msg = tandem_runtime::error_chain(&e);
            eprintln!("{name} (to {to:?}, {:?}): {msg}", t.elapsed());
            assert!(msg.contains(expect), "{name}: {msg}");
            assert_eq!(listing(&a.site.private_dir), private_before, "{name}");
            assert_eq!(listing(&a.site.conf_dir), conf_before, "{name}");
            assert_eq!(tree(&a.site.private(901)), original, "{name}");
            assert!(
                !outside.exists() && !Path::new("/tmp/evil").exists(),
                "{name}"
            );
        }
    }
}

/// The fuzz seeds: the good one reads, every hostile one is refused.
#[test]
fn the_fuzz_seeds_are_read_as_the_restore_reads_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/ve_backup");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&p).unwrap();
        let r = archive::read_backup(&bytes[..], &mut |_| Ok(None), &mut |_| {});
        if name.starts_with("hostile-") {
            assert!(r.is_err(), "{name} was accepted");
        } else {
            assert!(r.is_ok(), "{name}: {:?}", r.err());
        }
        n += 1;
    }
    assert!(n >= 10, "{n} seeds");
}

#[test]
fn the_reader_takes_every_member_kind_it_writes() {
    let a = area("kinds");
    make_ve(&a, 903, 1024);
    let made = snapshot::make(&a.site, 903, &mut |_, _| {}).unwrap();
    let kinds: Vec<Kind> = made.manifest.members.iter().map(|m| m.kind).collect();
    for k in [Kind::File, Kind::Dir, Kind::Symlink, Kind::Hardlink] {
        assert!(kinds.contains(&k), "{k:?} missing");
    }
    assert!(made.freeze.is_none(), "a stopped VE is not frozen");
    // The operator's tools read it too: zstd -dc | tar t lists the manifest first.
    let mut f = std::fs::File::open(&made.file).unwrap();
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    let tar = zstd::decode_all(&bytes[..]).unwrap();
    let mut ar = tar::Archive::new(&tar[..]);
    let first = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(&*first.path_bytes(), archive::MANIFEST_NAME.as_bytes());
    // `TANDEM_VE_BACKUP_SEEDS=DIR` keeps it as a fuzz seed.
    if let Some(d) = std::env::var_os("TANDEM_VE_BACKUP_SEEDS") {
        std::fs::write(Path::new(&d).join("good.tar.zst"), &bytes).unwrap();
    }
    let listed = snapshot::list(&a.site.backup_dir).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].copied_to, None);
}

// ---- copy-off to a real sshd ------------------------------------------------------

const SSHD: &str = "/usr/sbin/sshd";

/// A network namespace of the test's own; deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn copy_off_lands_in_a_real_sshd_keeps_keep_and_refuses_a_wrong_host_key() {
    lab::need_tool(SSHD, "openssh-server");
    lab::need_tool(copyoff::SFTP, "openssh-client");
    let a = area("copyoff");
    make_ve(&a, 904, 512 * 1024);
    let ns = Netns(format!("tbk{}", std::process::id()));
    lab::sh(&["ip", "netns", "add", &ns.0]);
    lab::sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);

    let srv = a.dir.path().join("server");
    std::fs::create_dir_all(&srv).unwrap();
    let host_pub = keygen(&srv.join("host"));
    let other_pub = keygen(&srv.join("other"));
    // The node's client key, as the archive holds it.
    let client = tandem_config::secrets::generate_ssh_key("cluster@test").unwrap();
    std::fs::write(
        srv.join("authorized_keys"),
        format!("{}\n", client.public_key()),
    )
    .unwrap();
    let target_dir = a.dir.path().join("offsite");
    let cfg = srv.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "ListenAddress 127.0.0.1:2222\nHostKey {host}\nAuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n",
            host = srv.join("host").display(),
            auth = srv.join("authorized_keys").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let log = std::fs::File::create(srv.join("sshd.log")).unwrap();
    let _server = Server(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, SSHD, "-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while !lab::tcp_reaches(&ns.0, "127.0.0.1", 2222) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "sshd did not listen: {}",
            std::fs::read_to_string(srv.join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = Target {
        host: "127.0.0.1".into(),
        port: 2222,
        user: "root".into(),
        path: target_dir.display().to_string(),
        host_key: host_pub,
        keep: 2,
    };
    let work = a.dir.path().join("work");
    let copy = |target: Target, file: PathBuf| -> Result<copyoff::Copied, CopyError> {
        let key = client.expose().to_owned();
        let work = work.clone();
        lab::in_netns(&ns.0, move || {
            copyoff::copy_off(&target, &key, &file, &work, Path::new(copyoff::SFTP))
        })
    };

    // Three backups, each copied off; the target keeps the newest two.
    let mut made = Vec::new();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        let m = snapshot::make(&a.site, 904, &mut |_, _| {}).unwrap();
        let t = Instant::now();
        let c = copy(target.clone(), m.file.clone()).unwrap();
        eprintln!(
            "copy-off of {} bytes: {:?}, deleted {:?}",
            m.bytes,
            t.elapsed(),
            c.deleted
        );
        let name = m.file.file_name().unwrap().to_string_lossy().into_owned();
        let there = std::fs::read(target_dir.join(&name)).unwrap();
        assert_eq!(there, std::fs::read(&m.file).unwrap(), "the copy differs");
        // The copy there reads as a whole backup.
        archive::read_backup(&there[..], &mut |_| Ok(None), &mut |_| {}).unwrap();
        if i == 2 {
            assert_eq!(c.deleted.len(), 1);
        }
        made.push(name);
    }
    let mut there: Vec<String> = std::fs::read_dir(&target_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    there.sort();
    assert_eq!(there, made[1..].to_vec(), "keep = 2");
    let listed = snapshot::list(&a.site.backup_dir).unwrap();
    assert!(listed.iter().all(|l| l.copied_to.is_some()), "{listed:?}");

    // A fourth backup to a target whose host key is not the configured one.
    std::thread::sleep(Duration::from_millis(1100));
    let m = snapshot::make(&a.site, 904, &mut |_, _| {}).unwrap();
    let mut wrong = target.clone();
    wrong.host_key = other_pub;
    let e = copy(wrong, m.file.clone()).unwrap_err();
    assert!(matches!(e, CopyError::HostKey { .. }), "{e}");
    eprintln!("wrong host key: {e}");
    let mut after: Vec<String> = std::fs::read_dir(&target_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    after.sort();
    assert_eq!(after, there, "nothing was sent");
    let listed = snapshot::list(&a.site.backup_dir).unwrap();
    let last = listed.last().unwrap();
    assert_eq!(
        last.copied_to, None,
        "the last backup is listed as not copied off"
    );
    // No key or known-hosts file is left behind.
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    let mut f = std::fs::File::create(a.dir.path().join("done")).unwrap();
    f.write_all(b"ok").unwrap();
}
