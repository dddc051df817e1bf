//! The node's engines as the node itself runs them, under QEMU: the image's own
//! kernel and root filesystem, started with a small test script as the first
//! program (`rdinit=`) instead of the node's init, so that one step at a time can
//! be driven and checked from the console.
//!
//! VEs: `tandem ve` creates a VE from the built-in template with limits from a VE
//! file, starts it under crun with cgroup v2 limits and a routed address, a "LAN"
//! namespace on the host reaches its web server and an fsync'ed write, and the
//! refusals read as they should.
//!
//! These tests need the image and root; `cargo xtask test` runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tandem_tests::{Firmware, Netns, Scratch, Vm, image_dir, raw_disk};

const MIN: Duration = Duration::from_secs(60);

/// The kernel and root filesystem of the image plus `files` as a second cpio
/// archive (the kernel unpacks both, the later on top).
fn initrd_with(dir: &std::path::Path, files: &[(&str, &str, u32)]) -> std::path::PathBuf {
    let mut tree = tandem_image::cpio::Tree::new();
    for (path, text, mode) in files {
        tree.file(path, text.as_bytes().to_vec(), *mode);
    }
    let mut data = std::fs::read(image_dir().join("initrd.img")).unwrap();
    // Each archive starts on a 4-byte boundary.
    while data.len() % 4 != 0 {
        data.push(0);
    }
    tree.write_newc(&mut data, 0).unwrap();
    let out = dir.join("initrd-test.img");
    std::fs::write(&out, data).unwrap();
    out
}

/// Boots the image's kernel with `script` as the first program.
fn boot(dir: &Scratch, ns: &Netns, script: &str, extra: &[(&str, &str, u32)]) -> Vm {
    let script = format!("{LEAVE_INITRAMFS}{script}");
    let mut files = vec![("test-init", script.as_str(), 0o755)];
    files.extend_from_slice(extra);
    let initrd = initrd_with(&dir.0, &files);
    let disk = dir.0.join("vz.img");
    raw_disk(&disk, 256 << 20);
    let img = image_dir();
    let args: Vec<String> = [
        "-kernel",
        &img.join("vmlinuz").to_string_lossy(),
        "-initrd",
        &initrd.to_string_lossy(),
        "-append",
        "console=ttyS0 rdinit=/test-init panic=-1",
        "-no-reboot",
        "-drive",
        &format!("file={},if=virtio,format=raw,cache=unsafe", disk.display()),
        "-netdev",
        "tap,id=lan,ifname=tap0,script=no,downscript=no",
        "-device",
        "virtio-net-pci,netdev=lan",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    Vm::start(&dir.0, Firmware::Bios, Some(ns), &args)
}

/// One HTTP/1.0 GET from the LAN namespace; the body, or None when nothing answers.
fn get(ns: &Netns, addr: &'static str, path: &'static str) -> Option<String> {
    ns.run(move || {
        let mut s =
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: ve\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?;
        (head.starts_with("HTTP/1.") && status == "200").then(|| body.to_owned())
    })
}

/// What the node's init does first: leave the initramfs for a tmpfs root, which
/// container runtimes need (`pivot_root`).
const LEAVE_INITRAMFS: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if [ ! -e /.tandem-root ]; then
  mkdir -p /newroot && mount -t tmpfs -o mode=0755 tandem-root /newroot
  for d in /* /.[!.]*; do [ -e "$d" ] && [ "$d" != /newroot ] && cp -a "$d" /newroot/; done
  touch /newroot/.tandem-root
  exec switch_root /newroot /test-init
fi
"#;

const VE_SCRIPT: &str = r#"
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in virtio_pci virtio_blk virtio_net ext4 veth; do /sbin/modprobe $m; done
n=0; while [ ! -b /dev/vda ] || [ ! -e /sys/class/net/eth0 ]; do sleep 0.2; n=$((n+1)); [ $n -gt 100 ] && break; done
ip link set lo up
ip addr add 10.77.1.2/24 dev eth0
ip link set eth0 up
mkfs.ext4 -q /dev/vda && mkdir -p /vz && mount /dev/vda /vz && mkdir -p /vz/private /vz/template /etc/tandem/ves
echo "STEP refusals"
tandem ve start 999 2>&1
tandem ve create 102 --template centos-9 --hostname x 2>&1
tandem ve create 103 --hostname x --config /bad.conf 2>&1
echo "STEP create"
tandem ve create 101 --hostname web --ip 10.77.1.50 --config /limits.conf 2>&1
t0=$(cut -d' ' -f1 /proc/uptime)
tandem ve start 101 2>&1
t1=$(cut -d' ' -f1 /proc/uptime)
echo "VE START SECONDS $t0 $t1"
tandem ve list 2>&1
tandem ve start 101 2>&1
g=/sys/fs/cgroup/tandem.slice/ve-101
echo "LIMITS pids=$(cat $g/pids.max) mem=$(cat $g/memory.max) weight=$(cat $g/cpu.weight) cpu=$(cat $g/cpu.max)"
echo "ENGINE-READY"
read line
echo "STEP stop"
tandem ve stop 101 2>&1
tandem ve list 2>&1
tandem ve destroy 101 2>&1
tandem ve list 2>&1
echo "ENGINE-DONE"
sync
poweroff -f
"#;

const LIMITS: &str =
    "NUMPROC=\"100\"\nPHYSPAGES=\"0:64M\"\nCPUUNITS=\"2000\"\nCPULIMIT=\"50\"\nONBOOT=\"yes\"\n";

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn a_ve_runs_with_its_limits_and_address_under_crun() {
    let dir = Scratch::new("engines-ve");
    let lan = Netns::new("lan");
    lan.tap("tap0", "10.77.1.1/24");
    let mut vm = boot(
        &dir,
        &lan,
        VE_SCRIPT,
        &[
            ("limits.conf", LIMITS, 0o644),
            ("bad.conf", "NUMPROC=\"lots\"\nFOO=\"1\"\n", 0o644),
        ],
    );
    let at = vm.wait_for(0, "ENGINE-READY", 3 * MIN);
    let text = vm.text();
    let shown = &text[..at];
    // Refusals, each with what to do.
    assert!(
        shown.contains("VE 999 does not exist (tandem ve list shows the VEs)"),
        "{shown}"
    );
    assert!(
        shown.contains("no OS template centos-9 in /vz/template (available: tandem-minimal)"),
        "{shown}"
    );
    assert!(
        shown.contains("line 1: NUMPROC: \"lots\" is not a limit"),
        "{shown}"
    );
    assert!(shown.contains("line 2: FOO: unknown parameter"), "{shown}");
    assert!(
        shown.contains("VE 101 is running; stop it first (tandem ve stop 101)"),
        "{shown}"
    );
    // vzlist's columns.
    assert!(
        shown.contains("  VEID  NPROC STATUS   IP_ADDR         HOSTNAME"),
        "{shown}"
    );
    let row = shown
        .lines()
        .find(|l| l.trim_start().starts_with("101 ") && l.contains("running"))
        .unwrap_or_else(|| panic!("no running row for VE 101:\n{shown}"));
    assert!(
        row.contains("10.77.1.50") && row.trim_end().ends_with("web"),
        "{row}"
    );
    // The VE file's limits in cgroup v2.
    assert!(
        shown.contains("LIMITS pids=100 mem=67108864 weight=200 cpu=50000 100000"),
        "{shown}"
    );
    if let Some(l) = shown.lines().find(|l| l.starts_with("VE START SECONDS")) {
        let v: Vec<f64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [a, b] = v[..] {
            eprintln!("VE start (tandem ve start, TCG guest): {:.2} s", b - a);
        }
    }

    // The VE's address answers on the LAN; a write is acknowledged only once on disk.
    let page = get(&lan, "10.77.1.50:80", "/").expect("the VE's web server answers");
    assert_eq!(page, "tandem VE\n");
    assert_eq!(
        get(&lan, "10.77.1.50:80", "/cgi-bin/append?first").as_deref(),
        Some("ok\n")
    );
    assert_eq!(
        get(&lan, "10.77.1.50:80", "/cgi-bin/append?second").as_deref(),
        Some("ok\n")
    );
    assert_eq!(
        get(&lan, "10.77.1.50:80", "/cgi-bin/read").as_deref(),
        Some("first\nsecond\n")
    );

    vm.type_line("go");
    let end = vm.wait_for(at, "ENGINE-DONE", 2 * MIN);
    let text = vm.text();
    let after = &text[at..end];
    assert!(after.contains("VE 101 stopped"), "{after}");
    assert!(after.contains("VE 101 destroyed"), "{after}");
    assert!(
        after
            .lines()
            .any(|l| l.trim_start().starts_with("101 ") && l.contains("stopped")),
        "{after}"
    );
    assert_eq!(
        get(&lan, "10.77.1.50:80", "/"),
        None,
        "a stopped VE's address is gone"
    );
}
