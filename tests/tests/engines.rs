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

use tandem_tests::{
    Firmware, Netns, Scratch, Vm, image_dir, raw_disk, rig_archive, rig_config, two_node_lan,
};

const MIN: Duration = Duration::from_secs(60);

/// The kernel and root filesystem of the image plus `files` (path, contents, mode)
/// as a second cpio archive (the kernel unpacks both, the later on top).
fn initrd_with(dir: &std::path::Path, files: &[(&str, &[u8], u32)]) -> std::path::PathBuf {
    let mut tree = tandem_image::cpio::Tree::new();
    for (path, data, mode) in files {
        tree.file(path, data.to_vec(), *mode);
    }
    let mut data = std::fs::read(image_dir().join("initrd.img")).unwrap();
    // Each archive starts on a 4-byte boundary.
    while !data.len().is_multiple_of(4) {
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
    let mut files: Vec<(&str, &[u8], u32)> = vec![("test-init", script.as_bytes(), 0o755)];
    files.extend(extra.iter().map(|(p, t, m)| (*p, t.as_bytes(), *m)));
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
echo 'secret-pw-1' | tandem ve passwd 101 2>&1
echo "SHADOW $(grep '^root:' /vz/private/101/etc/shadow | cut -d: -f2 | cut -c1-3)"
echo 'secret-pw-2' | tandem ve passwd 101 --user nobody 2>&1
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
    // R6.3: the root password inside the VE.
    assert!(shown.contains("password of root in VE 101 set"), "{shown}");
    let shadow = shown
        .lines()
        .find_map(|l| l.strip_prefix("SHADOW "))
        .unwrap_or("");
    assert_eq!(
        shadow, "$6$",
        "no SHA-512 crypt hash in the VE's /etc/shadow"
    );
    assert!(
        shown.contains(
            "the VE has no user nobody (no line for it in /etc/shadow); nothing was changed"
        ),
        "{shown}"
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
    let page = wait_http(&lan, "10.77.1.50:80", "/", MIN);
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

/// Commands of the replication test, as files in the overlay (short to type).
const DRBDADM: &str = "/lib/drbd/drbdadm-84 -c /etc/drbd.conf";

fn repl_scripts() -> Vec<(String, String)> {
    vec![
        (
            "t/write".into(),
            format!(
                "{DRBDADM} primary r0 && mount /dev/drbd0 /vz && echo \"$1\" >> /vz/data.txt && sync && umount /vz && {DRBDADM} secondary r0\n"
            ),
        ),
        (
            "t/read".into(),
            format!(
                "{DRBDADM} primary r0 && mount -o ro /dev/drbd0 /vz && cat /vz/data.txt && ls /vz && umount /vz && {DRBDADM} secondary r0\n"
            ),
        ),
    ]
}

/// The node's start for the replication test: a fresh config partition (as
/// the installer leaves it: the node identity only), the configuration archive
/// staged as the web console stages an upload, then commands from the console.
const NODE_SCRIPT: &str = r#"
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in virtio_pci virtio_blk virtio_net ext4 drbd veth; do /sbin/modprobe $m; done
n=0; while [ ! -b /dev/vda ] || [ ! -e /sys/class/net/eth1 ]; do sleep 0.2; n=$((n+1)); [ $n -gt 100 ] && break; done
n=0; while [ ! -b /dev/vda2 ]; do sleep 0.2; n=$((n+1)); [ $n -gt 100 ] && break; done
mkdir -p /vz /config
mkfs.ext4 -q /dev/vda1 && mount /dev/vda1 /config && cp /node-id /config/node
tandem config import /cluster.tar --stage 2>&1
echo "NODE-"READY
while read line; do eval "$line"; echo "@@""rc=$?"; done
"#;

/// Types a command on a node's console and returns its output and exit code.
fn run(vm: &mut Vm, from: &mut usize, cmd: &str, limit: Duration) -> (String, i32) {
    vm.type_line(cmd);
    let end = vm.wait_for(*from, "@@rc=", limit);
    let text = vm.text();
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let rc: i32 = text[end..line_end].trim().parse().unwrap_or(-1);
    let out = text[*from..end].to_owned();
    *from = line_end;
    (out, rc)
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn two_nodes_activate_replicate_switch_over_and_fail_over() {
    let dir = Scratch::new("engines-drbd");
    let lan = two_node_lan(&[]);
    lan.ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"]);
    let (cfg, _) = rig_config("drbd-rig");
    let bytes = rig_archive(&cfg, None);

    let ports = [
        40_000 + (std::process::id() % 10_000) * 2,
        40_001 + (std::process::id() % 10_000) * 2,
    ];
    let boot = |i: usize, run: &str| boot_node(&dir.0, i, run, &bytes, ports, &lan);
    let (mut vm1, mut vm2) = (boot(0, "node1"), boot(1, "node2"));
    let mut a1 = node_ready(&mut vm1);
    let mut a2 = node_ready(&mut vm2);

    // node1 (reinstalled) fetches: it waits for the other node and says what to do.
    vm1.type_line("tandem activate --fetch-from-peer --peer-wait 300");
    let waiting = vm1.wait_for(a1, "waiting for beta on the crossover link", 2 * MIN);
    vm1.wait_for(
        waiting,
        "continue activation on the other node or check the crossover cable",
        MIN,
    );
    // node2 destroys: creates the data area; node1 takes the full copy.
    let t0 = std::time::Instant::now();
    let (out2, rc2) = run(
        &mut vm2,
        &mut a2,
        "tandem activate --destroy-data --peer-wait 120",
        5 * MIN,
    );
    assert_eq!(rc2, 0, "{out2}");
    assert!(
        out2.contains("data area created") && out2.contains("configuration activated"),
        "{out2}"
    );
    let done1 = vm1.wait_for(a1, "configuration activated", 5 * MIN);
    eprintln!(
        "activation: destroy on node2 and full copy to node1 took {:.1} s after node2 started",
        t0.elapsed().as_secs_f64()
    );
    assert!(vm1.text()[a1..done1].contains("the copy of the data area is complete"));
    let rc_at = vm1.wait_for(done1, "@@rc=", MIN);
    let text = vm1.text();
    assert!(
        text[rc_at..].starts_with('0'),
        "fetch failed:\n{}",
        &text[a1..]
    );
    a1 = rc_at + 1;
    let (st, _) = run(&mut vm1, &mut a1, "cat /proc/drbd", MIN);
    assert!(
        st.contains("cs:Connected ro:Secondary/Secondary ds:UpToDate/UpToDate"),
        "{st}"
    );

    // A write acknowledged on node2 is there on node1.
    let (w, rc) = run(
        &mut vm2,
        &mut a2,
        "sh /t/write acknowledged-on-beta",
        2 * MIN,
    );
    assert_eq!(rc, 0, "{w}");
    let (r, rc) = run(&mut vm1, &mut a1, "sh /t/read", 2 * MIN);
    assert_eq!(rc, 0, "{r}");
    assert!(r.contains("acknowledged-on-beta"), "{r}");
    assert!(
        r.contains("tkcluster") && r.contains("private") && r.contains("template"),
        "{r}"
    );
    // Both nodes may not be primary at once: DRBD refuses the second.
    let (p2, rc) = run(&mut vm2, &mut a2, &format!("{DRBDADM} primary r0"), MIN);
    assert_eq!(rc, 0, "{p2}");
    let (p1, rc) = run(&mut vm1, &mut a1, &format!("{DRBDADM} primary r0"), MIN);
    assert_ne!(rc, 0, "two primaries: {p1}");
    let (o, rc) = run(&mut vm2, &mut a2, &format!("{DRBDADM} secondary r0"), MIN);
    assert_eq!(rc, 0, "{o}");

    // The node's own init takes over as it does at boot on a configured node:
    // the configured network, then clusterd with replication, the web console.
    member(&mut vm1, &mut a1);
    member(&mut vm2, &mut a2);
    for (vm, at, addr, host) in [
        (&mut vm1, &mut a1, "192.0.2.11", "alpha"),
        (&mut vm2, &mut a2, "192.0.2.12", "beta"),
    ] {
        let (o, rc) = run(vm, at, "hostname; ip -4 -o addr show; ip route", MIN);
        assert_eq!(rc, 0, "{o}");
        assert!(o.contains(host), "{o}");
        assert!(o.contains(&format!("inet {addr}/24")), "{o}");
        assert!(o.contains("default via 192.0.2.1"), "{o}");
        assert!(!o.contains("192.168.100."), "recovery address left: {o}");
    }
    let active = wait_active(&mut vm1, &mut a1, &mut vm2, &mut a2);
    let web = lan.run(|| tandem_tests::https("192.0.2.11:443", "GET", "/", None, None));
    let web = web.expect("the web console answers on the configured address");
    assert!(web.status < 500, "{}", web.status);

    let mut nodes = [(vm1, a1), (vm2, a2)];
    let (mut act_i, mut pas_i) = if active == 1 { (0, 1) } else { (1, 0) };
    // The service VE 1, made by the activation that created the data area,
    // runs on the active node on the internal network; the passive node
    // reaches it over the crossover cable.
    {
        let (vm, at) = &mut nodes[act_i];
        let (o, _) = run(vm, at, "tandem ve list", MIN);
        assert!(
            o.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.first() == Some(&"1") && l.contains("running") && l.contains("192.168.255.3")
            }),
            "{o}"
        );
    }
    {
        let (vm, at) = &mut nodes[pas_i];
        let start = std::time::Instant::now();
        loop {
            // (busybox's wget crashes in this image; nc speaks the HTTP.)
            let (o, rc) = run(
                vm,
                at,
                r"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 192.168.255.3 80",
                MIN,
            );
            if rc == 0 && o.contains("tandem VE") {
                break;
            }
            if start.elapsed() > MIN {
                let (p, _) = run(
                    vm,
                    at,
                    "ping -c 2 -W 2 192.168.255.3; ip -4 addr; ip neigh; ip route",
                    MIN,
                );
                let (vm, at) = &mut nodes[act_i];
                let (a, _) = run(
                    vm,
                    at,
                    "ip -4 addr; ip route; ip neigh show proxy; cat /proc/sys/net/ipv4/conf/eth1/forwarding /proc/sys/net/ipv4/conf/eth1/proxy_arp; tandem ve exec 1 -- ip addr; tandem ve exec 1 -- ip route; tandem ve exec 1 -- ps",
                    MIN,
                );
                panic!(
                    "VE 1 does not answer over the crossover cable:\n{o}\npassive:\n{p}\nactive:\n{a}"
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let (o, rc) = {
        let (vm, at) = &mut nodes[act_i];
        run(
            vm,
            at,
            "tandem ve create 101 --hostname web --ip 192.0.2.50 --config /limits.conf && tandem ve start 101",
            2 * MIN,
        )
    };
    assert_eq!(rc, 0, "{o}");
    // `ve start` returns once the VE's init runs; its web server and the
    // LAN's neighbour entry follow a moment later.
    assert_eq!(wait_http(&lan, "192.0.2.50:80", "/", MIN), "tandem VE\n");
    assert_eq!(
        get(&lan, "192.0.2.50:80", "/cgi-bin/append?before-switchover").as_deref(),
        Some("ok\n")
    );

    // Switchover: the VE stops here and starts there, with its data.
    {
        let (vm, at) = &mut nodes[act_i];
        let (o, rc) = run(vm, at, "tandem switchover", MIN);
        assert_eq!(rc, 0, "{o}");
    }
    {
        let (vm, at) = &mut nodes[pas_i];
        wait_role(vm, at, "active", 2 * MIN);
    }
    std::mem::swap(&mut act_i, &mut pas_i);
    let served = wait_http(&lan, "192.0.2.50:80", "/cgi-bin/read", 2 * MIN);
    assert_eq!(served, "before-switchover\n");
    assert_eq!(
        get(&lan, "192.0.2.50:80", "/cgi-bin/append?after-switchover").as_deref(),
        Some("ok\n")
    );

    // Power loss of the active node: the other takes over, every
    // acknowledged write is there.
    let killed = std::time::Instant::now();
    nodes[act_i].0.power_loss();
    let mut served = None;
    while killed.elapsed() < 2 * MIN {
        served = get(&lan, "192.0.2.50:80", "/cgi-bin/read");
        if served.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let Some(served) = served else {
        let (vm, at) = &mut nodes[pas_i];
        let (st, _) = run(
            vm,
            at,
            "tandem status; tandem ve list; cat /proc/drbd; tandem events; tail -40 /run/log/clusterd.log",
            MIN,
        );
        panic!("no takeover after the power loss:\n{st}");
    };
    eprintln!(
        "failover: power loss of the active node -> VE answering on the other: {:.1} s (deadtime 4 s, TCG)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(served, "before-switchover\nafter-switchover\n");
    {
        let (vm, at) = &mut nodes[pas_i];
        let (ev, _) = run(vm, at, "tandem events", MIN);
        for l in ev.lines().filter(|l| l.contains("resources up in")) {
            eprintln!("takeover chain: {l}");
        }
        let (st, _) = run(vm, at, "tandem status; tandem ve list; cat /proc/drbd", MIN);
        assert!(st.contains("(active)"), "{st}");
        assert!(
            st.lines()
                .any(|l| l.trim_start().starts_with("101 ") && l.contains("running")),
            "{st}"
        );
        // The fence-peer handler let DRBD mark the silent peer's copy outdated: it
        // cannot become primary with old data when it comes back.
        assert!(
            st.contains("ro:Primary/Unknown ds:UpToDate/Outdated"),
            "{st}"
        );
    }
    std::mem::swap(&mut act_i, &mut pas_i);

    // The dead node is reinstalled (an empty disk) and fetches the data from
    // the survivor while the services run there.
    let name = if pas_i == 0 { "node1" } else { "node2" };
    let mut vm = boot(pas_i, &format!("{name}-reinstalled"));
    let mut at = node_ready(&mut vm);
    let t0 = std::time::Instant::now();
    let (o, rc) = run(
        &mut vm,
        &mut at,
        "tandem activate --fetch-from-peer --peer-wait 120",
        5 * MIN,
    );
    assert_eq!(rc, 0, "{o}");
    assert!(o.contains("the copy of the data area is complete"), "{o}");
    eprintln!(
        "reinstalled node: full copy of the data area from the active node in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    member(&mut vm, &mut at);
    wait_role(&mut vm, &mut at, "passive", 2 * MIN);
    let (st, _) = run(&mut vm, &mut at, "cat /proc/drbd", MIN);
    assert!(
        st.contains("cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate"),
        "{st}"
    );
    nodes[pas_i] = (vm, at);

    // Crossover cable cut while both run: the heartbeat still flows on the
    // LAN, so nothing moves; replication is down and reported, the passive
    // copy is stale, and when the active then dies the passive does not take
    // over with old data: never two primaries, never lost writes.
    assert_eq!(
        get(&lan, "192.0.2.50:80", "/cgi-bin/append?before-cut").as_deref(),
        Some("ok\n")
    );
    nodes[pas_i].0.monitor("set_link xo off");
    let cut = std::time::Instant::now();
    let stale_seen = loop {
        let (vm, at) = &mut nodes[pas_i];
        let (st, _) = run(vm, at, "tandem status; tandem events", MIN);
        if st.contains("copy of the data is stale") {
            break st;
        }
        assert!(
            cut.elapsed() < 2 * MIN,
            "the cut crossover cable was not reported:\n{st}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(stale_seen.contains("(passive)"), "{stale_seen}");
    assert_eq!(
        get(&lan, "192.0.2.50:80", "/cgi-bin/append?during-cut").as_deref(),
        Some("ok\n"),
        "the active node serves on"
    );
    {
        let (vm, at) = &mut nodes[act_i];
        let (st, _) = run(vm, at, "tandem status; cat /proc/drbd", MIN);
        assert!(
            st.contains("(active)") && st.contains("ro:Primary/Unknown"),
            "{st}"
        );
    }
    {
        let (vm, at) = &mut nodes[pas_i];
        let (st, _) = run(vm, at, "cat /proc/drbd", MIN);
        assert!(st.contains("ro:Secondary/Unknown"), "{st}");
    }
    // The cable is back: replication reconnects and catches up; the copy is good again.
    nodes[pas_i].0.monitor("set_link xo on");
    let back = std::time::Instant::now();
    loop {
        let (vm, at) = &mut nodes[pas_i];
        let (st, _) = run(vm, at, "cat /proc/drbd", MIN);
        if st.contains("cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate") {
            break;
        }
        assert!(
            back.elapsed() < 2 * MIN,
            "no resync after the cable came back:\n{st}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Switch back over to the reinstalled node: all the data is there.
    {
        let (vm, at) = &mut nodes[act_i];
        let (o, rc) = run(vm, at, "tandem switchover", MIN);
        assert_eq!(rc, 0, "{o}");
    }
    {
        let (vm, at) = &mut nodes[pas_i];
        wait_role(vm, at, "active", 2 * MIN);
    }
    assert_eq!(
        wait_http(&lan, "192.0.2.50:80", "/cgi-bin/read", 2 * MIN),
        "before-switchover\nafter-switchover\nbefore-cut\nduring-cut\n"
    );
    std::mem::swap(&mut act_i, &mut pas_i);

    // The cable is cut again and then the active node dies: the passive's
    // copy lacks what was written since the cut, so it does not take over,
    // and says why.
    nodes[pas_i].0.monitor("set_link xo off");
    let cut = std::time::Instant::now();
    loop {
        let (vm, at) = &mut nodes[pas_i];
        let (st, _) = run(vm, at, "tandem events", MIN);
        if st.contains("copy of the data is stale") {
            break;
        }
        assert!(
            cut.elapsed() < 2 * MIN,
            "the second cut was not reported:\n{st}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(
        get(&lan, "192.0.2.50:80", "/cgi-bin/append?only-on-the-active").as_deref(),
        Some("ok\n")
    );
    nodes[act_i].0.power_loss();
    // Three deadtimes: a takeover would long have happened.
    std::thread::sleep(Duration::from_secs(12));
    let (vm, at) = &mut nodes[pas_i];
    let (st, _) = run(vm, at, "tandem status; cat /proc/drbd", MIN);
    assert!(
        st.contains("(passive)") || st.contains("(starting)"),
        "{st}"
    );
    assert!(
        st.contains("replicated data is not known good: not taking over"),
        "{st}"
    );
    assert!(st.contains("ro:Secondary/Unknown"), "{st}");
    assert_eq!(
        get(&lan, "192.0.2.50:80", "/"),
        None,
        "nobody serves old data"
    );
}

/// Boots node `i` from the image's kernel and initramfs with an empty disk
/// (GPT: `config`, `data`) as the installer leaves it, on the LAN (`tapI`)
/// and the crossover link (UDP between the two QEMUs); `run` names its
/// scratch directory.
fn boot_node(
    dir: &std::path::Path,
    i: usize,
    run: &str,
    archive: &[u8],
    ports: [u32; 2],
    lan: &Netns,
) -> Vm {
    let sub = dir.join(run);
    std::fs::create_dir_all(&sub).unwrap();
    let script = format!("{LEAVE_INITRAMFS}{NODE_SCRIPT}");
    let node_file = format!("node{}\n", i + 1);
    let scripts = repl_scripts();
    let mut files: Vec<(&str, &[u8], u32)> = vec![
        ("test-init", script.as_bytes(), 0o755),
        ("cluster.tar", archive, 0o600),
        ("node-id", node_file.as_bytes(), 0o600),
        ("limits.conf", LIMITS.as_bytes(), 0o644),
    ];
    files.extend(
        scripts
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_bytes(), 0o755)),
    );
    let initrd = initrd_with(&sub, &files);
    let disk = sub.join("disk.img");
    gpt_disk(&disk, 160 << 20);
    let img = image_dir();
    let args: Vec<String> = [
        "-kernel".to_owned(),
        img.join("vmlinuz").to_string_lossy().into_owned(),
        "-initrd".to_owned(),
        initrd.to_string_lossy().into_owned(),
        "-append".to_owned(),
        // The serial port is the test's shell: the console screen stays on tty1.
        "console=ttyS0 rdinit=/test-init panic=-1 tandem.consoles=tty1".to_owned(),
        "-no-reboot".to_owned(),
        "-drive".to_owned(),
        format!("file={},if=virtio,format=raw,cache=unsafe", disk.display()),
        "-netdev".to_owned(),
        format!("tap,id=lan,ifname=tap{i},script=no,downscript=no"),
        "-device".to_owned(),
        format!("virtio-net-pci,netdev=lan,mac=52:54:00:00:0a:0{}", i + 1),
        "-netdev".to_owned(),
        format!(
            "dgram,id=xo,local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
            ports[i],
            ports[1 - i]
        ),
        "-device".to_owned(),
        format!("virtio-net-pci,netdev=xo,mac=52:54:00:00:0b:0{}", i + 1),
    ]
    .to_vec();
    Vm::start(&sub, Firmware::Bios, Some(lan), &args)
}

/// An empty disk with the installer's two node partitions: `config` (16 MiB)
/// and `data` (the rest), found by name as on an installed node.
fn gpt_disk(path: &std::path::Path, bytes: u64) {
    use std::io::{Seek, SeekFrom, Write};
    use tandem_installer::gpt::{Part, SECTOR, table, types};
    raw_disk(path, bytes);
    let sectors = bytes / SECTOR;
    let mib = (1u64 << 20) / SECTOR;
    let parts = [
        Part {
            name: "config",
            type_guid: types::LINUX,
            first: mib,
            last: 17 * mib - 1,
        },
        Part {
            name: "data",
            type_guid: types::LINUX,
            first: 17 * mib,
            last: sectors - mib - 1,
        },
    ];
    let t = table(sectors, &parts, [7; 16], &[[1; 16], [2; 16]]);
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(&t.primary).unwrap();
    f.seek(SeekFrom::Start(t.backup_lba * SECTOR)).unwrap();
    f.write_all(&t.backup).unwrap();
}

/// Waits for the test script's prompt; returns the console offset after it.
fn node_ready(vm: &mut Vm) -> usize {
    let at = vm.wait_for(0, "NODE-READY", 3 * MIN);
    assert!(
        vm.text()[..at].contains("cluster.tar: staged"),
        "{}",
        vm.text()
    );
    at
}

/// Hands PID 1 to the node's own init (which finds the configuration
/// committed and starts the member), keeping the test's command loop on the
/// serial port.
fn member(vm: &mut Vm, at: &mut usize) {
    vm.type_line(
        r#"(while read line; do eval "$line"; echo "@@""rc=$?"; done) </dev/ttyS0 >/dev/ttyS0 2>&1 & exec /usr/sbin/tandem-init"#,
    );
    let (o, rc) = run(vm, at, "echo shell-after-init", MIN);
    assert_eq!(rc, 0, "{o}");
    // clusterd answers once init has brought up the network and started it.
    let start = std::time::Instant::now();
    loop {
        let (o, rc) = run(vm, at, "tandem status >/dev/null 2>&1", MIN);
        if rc == 0 {
            return;
        }
        if start.elapsed() > 2 * MIN {
            let (log, _) = run(vm, at, "ps; ls /run/log; tail -n 30 /run/log/*.log", MIN);
            panic!("clusterd did not start under init:\n{o}\n{log}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits for a node to report `role` in `tandem status`.
fn wait_role(vm: &mut Vm, at: &mut usize, role: &str, limit: Duration) {
    let start = std::time::Instant::now();
    loop {
        let (st, _) = run(vm, at, "tandem status", MIN);
        if st.contains(&format!("({role})")) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "no {role} role within {limit:?}:\n{st}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits until one of the two nodes is active; returns 1 or 2.
fn wait_active(vm1: &mut Vm, a1: &mut usize, vm2: &mut Vm, a2: &mut usize) -> u8 {
    let start = std::time::Instant::now();
    loop {
        let (s1, _) = run(vm1, a1, "tandem status", MIN);
        let (s2, _) = run(vm2, a2, "tandem status", MIN);
        let (x1, x2) = (s1.contains("(active)"), s2.contains("(active)"));
        assert!(!(x1 && x2), "two active nodes:\n{s1}\n{s2}");
        if x1 {
            return 1;
        }
        if x2 {
            return 2;
        }
        if start.elapsed() > MIN {
            let (l1, _) = run(vm1, a1, "cat /run/log/clusterd.log", MIN);
            let (l2, _) = run(vm2, a2, "cat /run/log/clusterd.log", MIN);
            panic!("no active node:\n{s1}\n{s2}\nnode1 clusterd:\n{l1}\nnode2 clusterd:\n{l2}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Polls the VE's address from the LAN until `path` answers.
fn wait_http(lan: &Netns, addr: &'static str, path: &'static str, limit: Duration) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Some(body) = get(lan, addr, path) {
            return body;
        }
        assert!(
            start.elapsed() < limit,
            "the VE did not answer {addr}{path} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
