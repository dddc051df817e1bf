//! In-band IPMI in a QEMU guest: `ipmi_sim` is the BMC behind QEMU's `ipmi-bmc-extern` +
//! `isa-ipmi-kcs`, the guest's kernel (Debian's, with `ipmi_si`) makes it `/dev/ipmi0`,
//! and `tandem-board-probe ipmi` reads it there through the ioctl interface. Its readings
//! must equal what the same BMC reports over RMCP+ on the host.
//!
//! Needs the Debian packages qemu-system-x86 (installed) and, fetched with
//! `apt-get download` into the test's cache directory on first use,
//! linux-image-6.1.0-56-amd64 and busybox-static. The guest has no network device.

// A test harness: any set-up failure should stop the test right there.
#![allow(clippy::unwrap_used)]

mod rig;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_board::ipmi::bmc::Bmc;
use tandem_board::ipmi::sensor::Value;

const KERNEL_PACKAGE: &str = "linux-image-6.1.0-56-amd64";

/// Extracted kernel and busybox, downloaded once per target directory.
fn guest_packages() -> PathBuf {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tandem-board-guest");
    let root = cache.join("root");
    if root.join("bin/busybox").exists() && find_kernel(&root).is_some() {
        return root;
    }
    rig::require_tool("apt-get", "apt");
    rig::require_tool("dpkg-deb", "dpkg");
    std::fs::create_dir_all(&cache).unwrap();
    let out = Command::new("apt-get")
        .args(["download", KERNEL_PACKAGE, "busybox-static"])
        .current_dir(&cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apt-get download {KERNEL_PACKAGE} busybox-static failed (run apt-get update?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the kernel, the IPMI modules and busybox are needed: extract just those.
    std::fs::create_dir_all(&root).unwrap();
    for deb in std::fs::read_dir(&cache).unwrap().filter_map(Result::ok) {
        let p = deb.path();
        if p.extension().is_some_and(|e| e == "deb") {
            let script = format!(
                "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards --no-wildcards-match-slash \
                 './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/char/ipmi/*' './bin/busybox' \
                 2>/dev/null; true",
                p.display(),
                root.display()
            );
            let st = Command::new("sh").arg("-c").arg(&script).status().unwrap();
            assert!(st.success(), "extracting {} failed", p.display());
            std::fs::remove_file(&p).unwrap();
        }
    }
    assert!(
        root.join("bin/busybox").exists() && find_kernel(&root).is_some(),
        "kernel or busybox missing after extracting {KERNEL_PACKAGE} and busybox-static"
    );
    root
}

fn find_kernel(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let boot = std::fs::read_dir(root.join("boot")).ok()?;
    for e in boot.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            let ipmi = root
                .join("lib/modules")
                .join(release)
                .join("kernel/drivers/char/ipmi");
            if ipmi.is_dir() {
                return Some((e.path(), ipmi));
            }
        }
    }
    None
}

/// A minimal newc ("070701") cpio archive writer for the initramfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }
    fn file(&mut self, name: &str, data: &[u8], exec: bool) {
        self.entry(name, if exec { 0o100_755 } else { 0o100_644 }, data);
    }
    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120_777, target.as_bytes());
    }
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

/// The shared libraries `ldd` lists for `bin`.
fn libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

fn initramfs(root: &Path, ipmi_modules: &Path, probe: &Path) -> Vec<u8> {
    let mut c = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
        "mods",
    ] {
        c.dir(d);
    }
    c.file(
        "bin/busybox",
        &std::fs::read(root.join("bin/busybox")).unwrap(),
        true,
    );
    for applet in [
        "sh", "mount", "insmod", "sleep", "echo", "poweroff", "ls", "cat",
    ] {
        c.symlink(&format!("bin/{applet}"), "busybox");
    }
    for m in ["ipmi_msghandler", "ipmi_devintf", "ipmi_si"] {
        c.file(
            &format!("mods/{m}.ko"),
            &std::fs::read(ipmi_modules.join(format!("{m}.ko"))).unwrap(),
            false,
        );
    }
    for lib in libraries(probe) {
        let name = lib.to_string_lossy().trim_start_matches('/').to_owned();
        c.file(&name, &std::fs::read(&lib).unwrap(), true);
    }
    c.file("probe", &std::fs::read(probe).unwrap(), true);
    let init = "#!/bin/sh\n\
        export PATH=/bin\n\
        mount -t proc proc /proc\n\
        mount -t sysfs sys /sys\n\
        mount -t devtmpfs dev /dev\n\
        insmod /mods/ipmi_msghandler.ko\n\
        insmod /mods/ipmi_devintf.ko\n\
        insmod /mods/ipmi_si.ko\n\
        i=0; while [ ! -e /dev/ipmi0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
        echo TANDEM-PROBE-BEGIN\n\
        /probe ipmi /dev/ipmi0 --identify\n\
        echo TANDEM-PROBE-END rc=$?\n\
        poweroff -f\n";
    c.file("init", init.as_bytes(), true);
    c.finish()
}

/// Kills QEMU by PID when the test ends, however it ends.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn guest_reads_the_same_sensors_through_dev_ipmi0() {
    rig::require_tool("qemu-system-x86_64", "qemu-system-x86");
    let root = guest_packages();
    let (kernel, ipmi_modules) = find_kernel(&root).expect("kernel in the extracted package");
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("qemu-inband-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let probe = PathBuf::from(env!("CARGO_BIN_EXE_tandem-board-probe"));
    std::fs::write(work.join("initrd"), initramfs(&root, &ipmi_modules, &probe)).unwrap();

    let rig = rig::Rig::start_with(true);
    let kcs = rig.kcs.expect("kcs port");
    let console = work.join("console.log");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-smp",
            "1",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(work.join("initrd"))
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-chardev")
        .arg(format!(
            "socket,id=ipmi0,host=127.0.0.1,port={},reconnect=10",
            kcs.port()
        ))
        .args([
            "-device",
            "ipmi-bmc-extern,id=bmc0,chardev=ipmi0",
            "-device",
            "isa-ipmi-kcs,bmc=bmc0,irq=5",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu");
    let mut qemu = Qemu(child);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if qemu.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "guest did not finish within 180 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    let begin = log
        .find("TANDEM-PROBE-BEGIN")
        .unwrap_or_else(|| panic!("probe did not run; console:\n{log}"));
    let body = &log[begin..];
    assert!(
        body.contains("TANDEM-PROBE-END rc=0"),
        "probe failed in the guest:\n{body}"
    );
    eprintln!("guest output:\n{body}");

    let guest: BTreeMap<String, (String, String)> = body
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim_end_matches('\r').split('\t').collect();
            (f.len() == 4 && f[0] == "reading")
                .then(|| (f[1].to_owned(), (f[2].to_owned(), f[3].to_owned())))
        })
        .collect();
    assert!(
        !body.contains("fault\t"),
        "sensor faults in the guest:\n{body}"
    );

    // The same BMC over RMCP+ from the host.
    let mut bmc = Bmc::new(rig.session());
    let sweep = bmc.sweep().unwrap();
    assert_eq!(guest.len(), sweep.readings.len(), "guest saw:\n{body}");
    for r in &sweep.readings {
        let value = match r.value {
            Value::Analog { value, .. } => format!("{value:.3}"),
            Value::Discrete { states } => format!("0x{states:04x}"),
            Value::Unavailable => "na".to_owned(),
        };
        assert_eq!(
            guest.get(&r.name),
            Some(&(value, r.health.to_string())),
            "{}",
            r.name
        );
    }
    // Identify went through the guest's KCS interface to the chassis.
    assert!(body.contains("identify\tok"), "{body}");
    assert!(
        rig.chassis_log().contains("set identify 3 0"),
        "{}",
        rig.chassis_log()
    );
    let _ = std::fs::remove_dir_all(&work);
}
