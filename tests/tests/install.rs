//! The install image end to end under QEMU (R2): boot the medium, answer the
//! prompt, install, reboot from the disk, log in on the recovery network.
//!
//! These tests need the image and root; `cargo xtask test` runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tandem_tests::{
    Firmware, Netns, Scratch, Vm, https, https_body, image_dir, multipart, raw_disk, untouched,
};

const MIN: Duration = Duration::from_secs(60);

fn fingerprint_on_console(text: &str) -> String {
    let i = text
        .rfind("HTTPS certificate SHA-256:")
        .expect("fingerprint line");
    text[i..].lines().nth(1).unwrap_or("").trim().to_owned()
}

/// A scratch directory with an empty 8 GiB disk, and the laptop's namespace
/// on the red cable (192.168.100.100/24 on a tap for the VM's first NIC).
fn rig(name: &str) -> (Scratch, std::path::PathBuf, Netns) {
    let dir = Scratch::new(name);
    let disk = dir.0.join("disk.img");
    raw_disk(&disk, 8 << 30);
    let laptop = Netns::new("laptop");
    laptop.tap("tap0", "192.168.100.100/24");
    (dir, disk, laptop)
}

/// Waits from console offset `from` for the installed system to boot into
/// recovery mode at `address`; returns the offset and the fingerprint shown.
fn wait_recovery(vm: &mut Vm, from: usize, address: &str) -> (usize, String) {
    let at = vm.wait_for(from, "tandem: starting system a", 2 * MIN);
    let at = vm.wait_for(at, "State:     recovery", 2 * MIN);
    let at = vm.wait_for(at, "HTTPS certificate SHA-256:", MIN);
    std::thread::sleep(Duration::from_millis(500));
    let text = vm.text();
    assert!(text[from..].contains(&format!("Recovery:  https://{address}/")));
    let fp = fingerprint_on_console(&text[from..]);
    assert_eq!(fp.len(), 95, "fingerprint {fp:?}");
    (at, fp)
}

/// Logs in from the laptop namespace; returns the session cookie.
fn recovery_login(laptop: &Netns, addr: &str, console_fp: &str) {
    let addr = format!("{addr}:443");
    let fp = console_fp.to_owned();
    laptop.run(move || {
        let start = Instant::now();
        let page = loop {
            match https(&addr, "GET", "/login", None, None) {
                Ok(r) => break r,
                Err(e) if start.elapsed() < Duration::from_secs(60) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("the recovery page at https://{addr}/ did not answer: {e}"),
            }
        };
        eprintln!(
            "recovery page answered {:.1} s after the console showed it",
            start.elapsed().as_secs_f64()
        );
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("recovery mode"), "{}", page.body);
        assert_eq!(
            page.fingerprint, fp,
            "the served certificate is the one the console shows"
        );

        let wrong = https(
            &addr,
            "POST",
            "/login",
            None,
            Some("user=admin&password=relatio"),
        )
        .unwrap();
        assert_eq!(wrong.status, 401);
        assert!(
            wrong.body.contains("Wrong user name or password"),
            "{}",
            wrong.body
        );
        let too_soon = https(
            &addr,
            "POST",
            "/login",
            None,
            Some("user=admin&password=relation"),
        )
        .unwrap();
        assert_eq!(
            too_soon.status, 429,
            "a retry right after a failure is slowed down"
        );
        assert!(too_soon.body.contains("Too many failed logins"));
        std::thread::sleep(Duration::from_millis(1200));
        let ok = https(
            &addr,
            "POST",
            "/login",
            None,
            Some("user=admin&password=relation"),
        )
        .unwrap();
        assert_eq!(ok.status, 303, "{}", ok.body);
        assert_eq!(ok.header("location").as_deref(), Some("/upload"));
        let cookie = ok.header("set-cookie").expect("session cookie");
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"));
        let session = cookie.split(';').next().unwrap().to_owned();
        let upload = https(&addr, "GET", "/upload", Some(&session), None).unwrap();
        assert_eq!(upload.status, 200);
        assert!(
            upload.body.contains("Upload the cluster configuration"),
            "{}",
            upload.body
        );

        // A broken upload is refused with its reason, on the node itself.
        let marker = "name=\"csrf\" value=\"";
        let i = upload.body.find(marker).expect("csrf field") + marker.len();
        let csrf = &upload.body[i..i + 64];
        let b = "tandemrigboundary";
        let form = multipart(
            b,
            &[("csrf", csrf), ("passphrase", "")],
            ("archive", b"not an archive at all"),
        );
        let ctype = format!("multipart/form-data; boundary={b}");
        let refused = https_body(
            &addr,
            "POST",
            "/upload",
            Some(&session),
            Some((&ctype, &form)),
        )
        .unwrap();
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(
            refused
                .body
                .contains("The archive was refused. Nothing was changed."),
            "{}",
            refused.body
        );
    });
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn node1_from_dvd_under_bios_reaches_the_recovery_page() {
    let img = image_dir();
    let (dir, disk, laptop) = rig("node1-");
    let iso = img.join("tandem-install.iso");
    let args: Vec<String> = [
        "-drive",
        &format!(
            "file={},if=none,id=d0,format=raw,cache=unsafe",
            disk.display()
        ),
        "-device",
        "virtio-blk-pci,drive=d0,bootindex=1",
        "-drive",
        &format!(
            "file={},if=none,id=cd,media=cdrom,readonly=on",
            iso.display()
        ),
        "-device",
        "ide-cd,drive=cd,bootindex=2",
        // The SR2500's NIC (Intel 80003ES2LAN, e1000e), on the laptop's tap.
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        "e1000e,netdev=n0",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let mut vm = Vm::start(&dir.0, Firmware::Bios, Some(&laptop), &args);
    let at = vm.wait_for(0, "Type node1 or node2", MIN);
    vm.type_line("nod1");
    let at = vm.wait_for(at, "'nod1' is not a node name.", MIN);
    let at = vm.wait_for(at, "Type node1 or node2", MIN);
    vm.type_line("node1");
    let t_install = Instant::now();
    let at = vm.wait_for(at, "Installation of node1 complete", 3 * MIN);
    let install_s = t_install.elapsed().as_secs_f64();
    let t_boot = Instant::now();
    let (_, fp) = wait_recovery(&mut vm, at, "192.168.100.101");
    recovery_login(&laptop, "192.168.100.101", &fp);
    eprintln!(
        "node1: prompt answered → installed in {install_s:.1} s; reboot → recovery page {:.1} s",
        t_boot.elapsed().as_secs_f64()
    );
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn node2_from_usb_stick_under_uefi_reaches_the_recovery_page() {
    let img = image_dir();
    let (dir, disk, laptop) = rig("node2-");
    // The ISO written raw to a USB stick: a copy, attached as a disk.
    let stick = dir.0.join("stick.img");
    std::fs::copy(img.join("tandem-install.iso"), &stick).unwrap();
    let args: Vec<String> = [
        "-drive",
        &format!(
            "file={},if=none,id=d0,format=raw,cache=unsafe",
            disk.display()
        ),
        "-device",
        "virtio-blk-pci,drive=d0,bootindex=1",
        "-device",
        "qemu-xhci,id=xhci",
        "-drive",
        &format!("file={},if=none,id=stick,format=raw", stick.display()),
        "-device",
        "usb-storage,bus=xhci.0,drive=stick,bootindex=2",
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        "virtio-net-pci,netdev=n0",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let mut vm = Vm::start(&dir.0, Firmware::Uefi, Some(&laptop), &args);
    let at = vm.wait_for(0, "Type node1 or node2", 2 * MIN);
    vm.type_line("node2");
    let at = vm.wait_for(at, "[install medium]", 2 * MIN);
    let at = vm.wait_for(at, "Installation of node2 complete", 3 * MIN);
    let (_, fp) = wait_recovery(&mut vm, at, "192.168.100.102");
    recovery_login(&laptop, "192.168.100.102", &fp);

    // Reset: the node comes back with the same identity and certificate.
    let mark = vm.text().len();
    vm.monitor("system_reset");
    let (_, again) = wait_recovery(&mut vm, mark, "192.168.100.102");
    assert_eq!(again, fp, "the certificate is kept on the config partition");
    recovery_login(&laptop, "192.168.100.102", &fp);
}

/// Boots the installer directly (as an unattended install would, with the
/// node on the kernel command line) with the DVD attached and `disks`.
fn installer_refuses(disks: &[u64], expect: &str) {
    let img = image_dir();
    let dir = Scratch::new("refuse-");
    let mut args: Vec<String> = [
        "-kernel",
        &img.join("vmlinuz").display().to_string(),
        "-initrd",
        &img.join("initrd.img").display().to_string(),
        "-append",
        "tandem.install=node1 console=ttyS0,115200n8 quiet",
        "-drive",
        &format!(
            "file={},if=none,id=cd,media=cdrom,readonly=on",
            img.join("tandem-install.iso").display()
        ),
        "-device",
        "ide-cd,drive=cd",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let mut paths = Vec::new();
    for (i, size) in disks.iter().enumerate() {
        let p = dir.0.join(format!("disk{i}.img"));
        raw_disk(&p, *size);
        args.push("-drive".into());
        args.push(format!("file={},if=none,id=d{i},format=raw", p.display()));
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive=d{i}"));
        paths.push(p);
    }
    let mut vm = Vm::start(&dir.0, Firmware::Bios, None, &args);
    let at = vm.wait_for(0, "INSTALLATION STOPPED: ", 2 * MIN);
    vm.wait_for(at, "Nothing was written to any disk.", MIN);
    let text = vm.text();
    assert!(
        text.contains(expect),
        "expected {expect:?} on the console:\n{text}"
    );
    drop(vm);
    for p in paths {
        assert!(untouched(&p), "{} was written to", p.display());
    }
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_refuses_when_only_the_medium_is_there() {
    installer_refuses(&[], "no disk to install on was found");
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_refuses_two_candidate_disks() {
    installer_refuses(
        &[8 << 30, 8 << 30],
        "2 disks could take the installation: /dev/vda (8.0 GiB), /dev/vdb (8.0 GiB); name one on the kernel command line, e.g. tandem.disk=vda",
    );
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_refuses_a_disk_too_small() {
    installer_refuses(
        &[2 << 30],
        "the disk holds 2048 MiB; the appliance needs at least 2371 MiB",
    );
}
