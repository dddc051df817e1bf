//! What a VE's root user cannot do, checked from inside VEs the real crun runs with
//! the OCI configuration of `tandem_runtime::ve::oci`: load a kernel module, mount a
//! disk, see the node's processes, open raw sockets (without `CAPABILITY=net_raw:on`),
//! make device nodes, or make the system calls the seccomp filter denies. The probe is
//! this test binary, copied into the VE with its libraries and run there by `crun
//! exec`; it prints one `CHECK name outcome` line per attempt.
//!
//! Runs as root (crun). Needs Debian packages crun and busybox-static.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crun_rig;

use std::collections::BTreeMap;
use std::time::Duration;

use crun_rig::{CrunRig, PROBE_ENV};

/// The outcome of a system call: `ok` or the errno's name.
fn outcome(ret: libc::c_long) -> String {
    if ret >= 0 {
        return "ok".to_owned();
    }
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::ESRCH => "ESRCH".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOENT => "ENOENT".into(),
        other => format!("errno {other}"),
    }
}

fn check(name: &str, ret: libc::c_long) {
    println!("CHECK {name} {}", outcome(ret));
}

/// Attempts every forbidden thing and prints the outcomes; runs only inside a VE.
#[test]
fn probe_inside_a_ve() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    // After the test harness's own words on the same line.
    println!();
    let empty = c"";
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: raw system calls with valid or null pointers; each only returns an error
    // or (if containment failed) does what the test wants to see refused.
    unsafe {
        check(
            "init_module",
            libc::syscall(libc::SYS_init_module, none, 0usize, empty.as_ptr()),
        );
        check(
            "finit_module",
            libc::syscall(libc::SYS_finit_module, -1, empty.as_ptr(), 0),
        );
        check(
            "delete_module",
            libc::syscall(libc::SYS_delete_module, c"ext4".as_ptr(), 0),
        );
        check(
            "kexec_load",
            libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, none, 0usize),
        );
        check(
            "mount_disk",
            libc::c_long::from(libc::mount(
                c"/dev/sda".as_ptr(),
                c"/mnt".as_ptr(),
                c"ext4".as_ptr(),
                0,
                std::ptr::null(),
            )),
        );
        check(
            "mount_proc",
            libc::c_long::from(libc::mount(
                c"proc".as_ptr(),
                c"/tmp".as_ptr(),
                c"proc".as_ptr(),
                0,
                std::ptr::null(),
            )),
        );
        check(
            "umount2",
            libc::c_long::from(libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH)),
        );
        let raw = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        check("raw_socket", libc::c_long::from(raw));
        if raw >= 0 {
            libc::close(raw);
        }
        let packet = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        check("packet_socket", libc::c_long::from(packet));
        if packet >= 0 {
            libc::close(packet);
        }
        check(
            "mknod_block",
            libc::c_long::from(libc::mknod(
                c"/tmp/sda".as_ptr(),
                libc::S_IFBLK | 0o600,
                libc::makedev(8, 0),
            )),
        );
        check(
            "reboot",
            libc::syscall(
                libc::SYS_reboot,
                libc::LINUX_REBOOT_MAGIC1,
                libc::LINUX_REBOOT_MAGIC2,
                libc::LINUX_REBOOT_CMD_CAD_OFF,
                0usize,
            ),
        );
        check(
            "swapon",
            libc::syscall(libc::SYS_swapon, c"/tmp/swap".as_ptr(), 0),
        );
        check(
            "swapoff",
            libc::syscall(libc::SYS_swapoff, c"/tmp/swap".as_ptr()),
        );
        check(
            "open_by_handle_at",
            libc::syscall(libc::SYS_open_by_handle_at, -1, none, 0),
        );
        check(
            "bpf",
            libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0),
        );
        check(
            "perf_event_open",
            libc::syscall(
                libc::SYS_perf_event_open,
                std::ptr::null::<u8>(),
                0,
                -1,
                -1,
                0,
            ),
        );
        check(
            "keyctl",
            libc::syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0),
        );
        check(
            "add_key",
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"tandem".as_ptr(),
                c"x".as_ptr(),
                1usize,
                -3,
            ),
        );
        check(
            "request_key",
            libc::syscall(
                libc::SYS_request_key,
                c"user".as_ptr(),
                c"tandem".as_ptr(),
                none,
                0,
            ),
        );
        // UFFD_USER_MODE_ONLY: allowed to unprivileged users by the kernel itself.
        check("userfaultfd", libc::syscall(libc::SYS_userfaultfd, 1));
        check(
            "unshare_user",
            libc::c_long::from(libc::unshare(libc::CLONE_NEWUSER)),
        );
        check("setns", libc::syscall(libc::SYS_setns, -1, 0));
        check(
            "io_uring_setup",
            libc::syscall(libc::SYS_io_uring_setup, 1, std::ptr::null_mut::<u8>()),
        );
        // The node's process that started this test.
        let host_pid: i32 = std::env::var("HOST_PID").unwrap().parse().unwrap();
        check("kill_host", libc::c_long::from(libc::kill(host_pid, 0)));
    }
    // This process (entered like `tandem ve exec`) and the VE's init.
    for (who, file) in [("", "/proc/self/status"), ("init_", "/proc/1/status")] {
        let status = std::fs::read_to_string(file).unwrap();
        for key in ["CapEff", "CapBnd", "NoNewPrivs", "Seccomp"] {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .unwrap_or("?")
                .trim();
            println!("STATUS {who}{key} {v}");
        }
    }
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    println!(
        "STATUS uid_map {}",
        map.split_whitespace().collect::<Vec<_>>().join(":")
    );
    std::fs::write("/root/made-inside", "x").unwrap();
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    println!("STATUS pids {pids}");
    let disks: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ["sd", "vd", "nvme", "drbd", "dm-", "loop", "mem", "kmsg"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    println!(
        "STATUS devices {}",
        if disks.is_empty() {
            "-".to_owned()
        } else {
            disks.join(",")
        }
    );
}

fn parse(out: &str, prefix: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn cap_bits(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{hex:?} is not a capability mask"))
}

const CAP_MKNOD: u32 = 27;
const CAP_NET_RAW: u32 = 13;
const CAP_SETFCAP: u32 = 31;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_MODULE: u32 = 16;

fn start(rig: &CrunRig, id: u32, conf: &str) -> String {
    rig.create(id, conf);
    rig.install_probe(id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rig.ves.start(id)).unwrap();
    assert!(rig.ves.is_running(id), "VE {id} does not run after start");
    rig.run_probe(
        id,
        "probe_inside_a_ve",
        &[("HOST_PID", std::process::id().to_string())],
    )
}

#[test]
fn a_ves_root_user_is_contained() {
    let rig = CrunRig::new();
    let out = start(&rig, 41, "");
    let checks = parse(&out, "CHECK ");
    let status = parse(&out, "STATUS ");
    assert!(checks.len() >= 20, "the probe did not run: {out}");
    let mut wrong = Vec::new();
    for (name, want) in [
        ("init_module", "EPERM"),
        ("finit_module", "EPERM"),
        ("delete_module", "EPERM"),
        ("kexec_load", "EPERM"),
        ("mount_disk", "EPERM"),
        ("mount_proc", "EPERM"),
        ("umount2", "EPERM"),
        ("raw_socket", "EPERM"),
        ("packet_socket", "EPERM"),
        ("mknod_block", "EPERM"),
        ("reboot", "EPERM"),
        ("swapon", "EPERM"),
        ("swapoff", "EPERM"),
        ("open_by_handle_at", "EPERM"),
        ("bpf", "EPERM"),
        ("perf_event_open", "EPERM"),
        // Without the filter these need no privilege at all: EPERM here is the filter.
        ("keyctl", "EPERM"),
        ("add_key", "EPERM"),
        ("request_key", "EPERM"),
        ("userfaultfd", "EPERM"),
        ("unshare_user", "EPERM"),
        ("setns", "EPERM"),
        ("io_uring_setup", "EPERM"),
        ("kill_host", "ESRCH"),
    ] {
        let got = checks.get(name).map_or("(not run)", String::as_str);
        if got != want {
            wrong.push(format!("{name}: {got}, expected {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "inside a VE as root:\n{}\n(probe output:\n{out})",
        wrong.join("\n")
    );
    for who in ["", "init_"] {
        assert_eq!(status[&format!("{who}NoNewPrivs")], "1", "{who}: {out}");
        assert_eq!(
            status[&format!("{who}Seccomp")],
            "2",
            "{who}: no seccomp filter: {out}"
        );
    }
    let eff = cap_bits(&status["CapEff"]) | cap_bits(&status["init_CapEff"]);
    let bnd = cap_bits(&status["CapBnd"]) | cap_bits(&status["init_CapBnd"]);
    for (name, bit) in [
        ("CAP_MKNOD", CAP_MKNOD),
        ("CAP_NET_RAW", CAP_NET_RAW),
        ("CAP_SETFCAP", CAP_SETFCAP),
        ("CAP_SYS_ADMIN", CAP_SYS_ADMIN),
        ("CAP_SYS_MODULE", CAP_SYS_MODULE),
    ] {
        assert_eq!(eff & (1 << bit), 0, "{name} effective: {out}");
        assert_eq!(bnd & (1 << bit), 0, "{name} in the bounding set: {out}");
    }
    // The VE's own processes only: its init (a shell), its web server, crun's exec and
    // the probe.
    let pids: usize = status["pids"].parse().unwrap();
    assert!(pids <= 6, "the VE sees {pids} processes: {out}");
    assert_eq!(
        status["devices"], "-",
        "disk or memory devices in the VE's /dev: {out}"
    );
    // Its own user namespace: its root is the node's 100000 + 41 * 65536, and so are
    // the files it makes and the files of its private area.
    let base = tandem_runtime::ve::idmap::id_base(41).unwrap();
    assert_eq!(status["uid_map"], format!("0:{base}:65536"), "{out}");
    // Shifted once at the first start, and recorded.
    let marker = tandem_runtime::ve::idmap::marker(&rig.ves.layout.private_dir, 41);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        base.to_string()
    );
    for f in ["root/made-inside", "etc/passwd", "sbin/init", ""] {
        let m = std::fs::symlink_metadata(rig.private(41).join(f)).unwrap();
        assert_eq!(
            (
                std::os::unix::fs::MetadataExt::uid(&m),
                std::os::unix::fs::MetadataExt::gid(&m)
            ),
            (base, base),
            "owner of {f} in VE 41's private area"
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rig.ves.stop(41, Duration::from_secs(5)))
        .expect("stopped");
    assert!(!rig.ves.is_running(41));
}

#[test]
fn capability_grants_raw_sockets_back() {
    let rig = CrunRig::new();
    let out = start(&rig, 42, "CAPABILITY=\"net_raw:on\"\n");
    let checks = parse(&out, "CHECK ");
    let status = parse(&out, "STATUS ");
    assert_eq!(checks["raw_socket"], "ok", "CAPABILITY=net_raw:on: {out}");
    assert_ne!(cap_bits(&status["CapEff"]) & (1 << CAP_NET_RAW), 0, "{out}");
    // Everything else stays as it was.
    assert_eq!(checks["mknod_block"], "EPERM", "{out}");
    assert_eq!(checks["init_module"], "EPERM", "{out}");
}
