//! The install image end to end under QEMU (R2): boot the medium, answer the
//! prompt, install, reboot from the disk, log in on the recovery network.
//!
//! These tests need the image and root; `cargo xtask test` runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tandem_tests::install::{
    self, Controller, DiskFormat, MIN, Medium, page_answers, sr2500_nic_on_laptop, wait_recovery,
};
use tandem_tests::{
    Firmware, Netns, Scratch, Vm, figure, https, https_body, image_dir, multipart, raw_disk,
    untouched,
};

/// Checks the page and the login from the laptop namespace (the page
/// answers already: see [`page_answers`]).
fn recovery_login(laptop: &Netns, addr: &str, console_fp: &str) {
    let addr = format!("{addr}:443");
    let fp = console_fp.to_owned();
    laptop.run(move || {
        // German unless the browser asks otherwise; the rest of the checks in English.
        let page = https(&addr, "GET", "/login", None, None).unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains("Wiederherstellungsmodus"),
            "{}",
            page.body
        );
        let page = https(&addr, "GET", "/login", Some("tandem_lang=en"), None).unwrap();
        assert!(page.body.contains("recovery mode"), "{}", page.body);
        // The login form's token comes with a cookie that must be sent back with it.
        let login_cookie = page.cookie();
        let login_csrf = page.csrf();
        let cookies = format!("tandem_lang=en; {login_cookie}");
        let en = Some(cookies.as_str());
        let form = |pw: &str| format!("csrf={login_csrf}&user=admin&password={pw}");
        assert_eq!(
            page.fingerprint, fp,
            "the served certificate is the one the console shows"
        );

        let wrong = https(&addr, "POST", "/login", en, Some(&form("relatio"))).unwrap();
        assert_eq!(wrong.status, 401);
        assert!(
            wrong.body.contains("Wrong user name or password"),
            "{}",
            wrong.body
        );
        let too_soon = https(&addr, "POST", "/login", en, Some(&form("relation"))).unwrap();
        assert_eq!(
            too_soon.status, 429,
            "a retry right after a failure is slowed down"
        );
        assert!(too_soon.body.contains("Too many failed logins"));
        std::thread::sleep(Duration::from_millis(1200));
        let ok = https(&addr, "POST", "/login", en, Some(&form("relation"))).unwrap();
        assert_eq!(ok.status, 303, "{}", ok.body);
        assert_eq!(ok.header("location").as_deref(), Some("/upload"));
        let cookie = ok.header("set-cookie").expect("session cookie");
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"));
        let session = format!("{}; tandem_lang=en", cookie.split(';').next().unwrap());
        let upload = https(&addr, "GET", "/upload", Some(&session), None).unwrap();
        assert_eq!(upload.status, 200);
        assert!(
            upload.body.contains("Upload the cluster configuration"),
            "{}",
            upload.body
        );

        // A broken upload is refused with its reason, on the node itself.
        let csrf = &upload.csrf();
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

/// Drive arguments: `disks` as virtio disks (`bootindex` 1, 2, …), then the
/// install medium as a DVD after them.
fn drives(disks: &[&std::path::Path], dvd: &std::path::Path) -> Vec<String> {
    let mut args = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        args.push("-drive".into());
        args.push(format!(
            "file={},if=none,id=d{i},format=raw,cache=unsafe",
            d.display()
        ));
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive=d{i},bootindex={}", i + 1));
    }
    args.push("-drive".into());
    args.push(format!(
        "file={},if=none,id=cd,media=cdrom,readonly=on",
        dvd.display()
    ));
    args.push("-device".into());
    args.push(format!("ide-cd,drive=cd,bootindex={}", disks.len() + 1));
    args
}

/// Resets the VM (the reset button) and measures, from the reset, when the
/// console shows recovery mode and when the recovery page answers.
fn reset_to_recovery_page(vm: &mut Vm, laptop: &Netns, address: &str, what: &str) -> String {
    let mark = vm.text().len();
    let reset = Instant::now();
    // Returns once QEMU has done it: the page polled from here on cannot be
    // the one served before the reset.
    vm.monitor("system_reset");
    let (page_s, _) = page_answers(laptop, address, reset, 3 * MIN);
    figure(&format!(
        "{what}: reset (power-on of the installed disk) → recovery page answering {page_s:.1} s"
    ));
    let (_, fp) = wait_recovery(vm, mark, address);
    fp
}

/// A server as operators have them: the disk on the onboard SATA (AHCI)
/// controller, the DVD drive on its second port and first in the boot
/// order, no hardware random number generator. The DVD is ejected after the
/// install (QEMU's BIOS closes the tray again at the restart; then the DVD
/// starts the installed node after its countdown).
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn node1_from_dvd_first_on_ahci_without_rng_under_bios_reaches_the_recovery_page() {
    let (dir, disk, laptop) = install::rig("node1-", DiskFormat::Raw, 8 << 30);
    let mut args = install::disk_drive(&disk, DiskFormat::Raw);
    args.extend(Controller::Ahci.args(2));
    args.extend(install::medium_args(Medium::Dvd, &dir.0, 1, true));
    args.extend(sr2500_nic_on_laptop());
    let mut vm = Vm::start(&dir.0, Firmware::Bios, Some(&laptop), &args);
    let at = vm.wait_for(0, "Type node1 or node2", MIN);
    vm.type_line("nod1");
    let at = vm.wait_for(at, "'nod1' is not a node name", MIN);
    let at = vm.wait_for(at, "Type node1 or node2", MIN);
    vm.type_line("node1");
    let answered = Instant::now();
    let at = vm.wait_for(at, "Installation of node1 complete", 4 * MIN);
    let install_s = answered.elapsed().as_secs_f64();
    let random_s = install::random_ready_s(&vm.text(), 0).expect("random pool line");
    let at = vm.wait_for(at, "The DVD was ejected", MIN);
    let restart = Instant::now();
    let (page_s, served) = page_answers(&laptop, "192.168.100.101", restart, 4 * MIN);
    let (_, fp) = wait_recovery(&mut vm, at, "192.168.100.101");
    assert_eq!(
        served, fp,
        "the served certificate is the one the console shows"
    );
    let text = vm.text();
    let boot = at + text[at..].find("tandem: starting system a").unwrap();
    let random_boot_s = install::random_ready_s(&text, boot).expect("random pool line");
    assert!(
        text[boot..].contains("(seed file credited)"),
        "the first boot credits the installer's seed file"
    );
    figure(&format!(
        "node1, AHCI, no RNG, DVD first, BIOS: random pool ready {random_s:.1} s after the kernel started (installer), {random_boot_s:.1} s (first boot); \
         prompt answered → install complete {install_s:.1} s; \
         restart after the install → recovery page answering {page_s:.1} s (first boot: makes the certificate)"
    ));
    recovery_login(&laptop, "192.168.100.101", &fp);

    // Power-on of the installed disk: the reset button.
    let again = reset_to_recovery_page(&mut vm, &laptop, "192.168.100.101", "node1, BIOS");
    assert_eq!(again, fp, "the certificate is kept on the config partition");
}

/// The USB stick stays in and comes first in the boot order: after the
/// install it starts again, finds the installed node on the disk, says so,
/// and starts it after its countdown; so at every power-on.
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn node2_from_usb_stick_first_under_uefi_reaches_the_recovery_page() {
    let (dir, disk, laptop) = install::rig("node2-", DiskFormat::Raw, 8 << 30);
    let mut args = install::disk_drive(&disk, DiskFormat::Raw);
    args.extend(Controller::Virtio.args(2));
    args.extend(install::medium_args(Medium::Usb, &dir.0, 1, false));
    args.extend(
        [
            "-netdev",
            "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=n0",
        ]
        .map(String::from),
    );
    let mut vm = Vm::start(&dir.0, Firmware::Uefi, Some(&laptop), &args);
    let at = vm.wait_for(0, "Type node1 or node2", 2 * MIN);
    vm.type_line("node2");
    let answered = Instant::now();
    let at = vm.wait_for(at, "[install medium]", 2 * MIN);
    let at = vm.wait_for(at, "Installation of node2 complete", 4 * MIN);
    let install_s = answered.elapsed().as_secs_f64();
    figure(&format!(
        "node2, USB stick, UEFI: prompt answered → install complete {install_s:.1} s"
    ));
    let at = vm.wait_for(at, "This machine's disk holds the installed node2", 2 * MIN);
    let counted = Instant::now();
    let at = vm.wait_for(at, "Starting the installed node2 from the disk", MIN);
    let countdown = counted.elapsed().as_secs_f64();
    assert!(
        (8.0..60.0).contains(&countdown),
        "the stick starts the installed node after its 10 s countdown ({countdown:.1} s)"
    );
    let (_, fp) = wait_recovery(&mut vm, at, "192.168.100.102");
    page_answers(&laptop, "192.168.100.102", Instant::now(), 2 * MIN);
    recovery_login(&laptop, "192.168.100.102", &fp);

    // Reset: the node comes back with the same identity and certificate.
    let again = reset_to_recovery_page(&mut vm, &laptop, "192.168.100.102", "node2, UEFI");
    assert_eq!(again, fp, "the certificate is kept on the config partition");
    recovery_login(&laptop, "192.168.100.102", &fp);
}

/// A disk holding node1, the install medium first: typing node2 at the
/// countdown asks for a confirmation; `no` starts node1, `yes` installs
/// node2 (the release catalogue's `install-again-prompt`).
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn the_install_medium_asks_before_erasing_an_installed_node() {
    let s = tandem_tests::catalogue::all()
        .into_iter()
        .find(|s| s.name == "install-again-prompt")
        .unwrap();
    let record = tandem_tests::scenario::run_one(&s);
    for f in &record.figures {
        figure(&format!(
            "install again: {} {:.1} {}",
            f.key, f.value, f.unit
        ));
    }
    assert_eq!(
        record.outcome,
        tandem_tests::scenario::Outcome::Passed,
        "{:#?}",
        record.log_tails
    );
}

/// Logs in from the laptop namespace as admin with `password`; returns the status.
fn login_status(laptop: &Netns, addr: &str, password: &str) -> u16 {
    let addr = format!("{addr}:443");
    let password = password.to_owned();
    laptop.run(move || {
        // The login form's token comes with a cookie that goes back with it.
        let page = https(&addr, "GET", "/login", None, None).unwrap();
        let cookie = page.cookie();
        let form = format!("csrf={}&user=admin&password={password}", page.csrf());
        https(&addr, "POST", "/login", Some(&cookie), Some(&form))
            .unwrap()
            .status
    })
}

/// The console menu on the serial port (R13.1): the recovery network, the admin password
/// reset (typed twice without echo, confirmed) that the web console then takes instead
/// of the factory password, also after a restart of the web console from the menu and
/// after a reset of the node.
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn console_menu_resets_the_admin_password_and_restarts_the_web_console() {
    const ADDR: &str = "192.168.100.101";
    const NEW: &str = "Sesam-oeffne-7";
    let img = image_dir();
    let (dir, disk, laptop) = install::rig("console-", DiskFormat::Raw, 8 << 30);
    let mut args = drives(&[&disk], &img.join("tandem-install.iso"));
    args.extend(sr2500_nic_on_laptop());
    let mut vm = Vm::start(&dir.0, Firmware::Bios, Some(&laptop), &args);
    let at = vm.wait_for(0, "Type node1 or node2", MIN);
    vm.type_line("node1");
    let at = vm.wait_for(at, "Installation of node1 complete", 3 * MIN);
    let (at, _fp) = wait_recovery(&mut vm, at, ADDR);
    let at = vm.wait_for(at, "Choose 1, 2, 3 or 4 and press Enter: ", MIN);
    page_answers(&laptop, ADDR, Instant::now(), MIN);
    let screen = vm.text();
    assert!(
        screen[..at].contains("Network:   ") && screen[..at].contains(&format!("{ADDR}/24")),
        "the screen shows the first port's address"
    );

    vm.type_line("2");
    let at = vm.wait_for(at, "Recovery network", MIN);
    let at = vm.wait_for(at, "192.168.100.100/24, no gateway, no DNS", MIN);
    let at = vm.wait_for(at, "Choose 1, 2, 3 or 4 and press Enter: ", MIN);

    let before_reset = at;
    vm.type_line("1");
    let at = vm.wait_for(at, "not shown while typed", MIN);
    vm.type_line(NEW);
    let at = vm.wait_for(at, "Repeat the new password: ", MIN);
    vm.type_line(NEW);
    let at = vm.wait_for(at, "[y/N]: ", MIN);
    vm.type_line("y");
    let t0 = Instant::now();
    let at = vm.wait_for(at, "Done: node1's web console now takes this password", MIN);
    figure(&format!(
        "console: password stored (argon2id, atomic write) {:.1} s after the confirmation",
        t0.elapsed().as_secs_f64()
    ));
    assert!(
        !vm.text()[before_reset..].contains(NEW),
        "the password was echoed on the console"
    );
    assert_eq!(
        login_status(&laptop, ADDR, NEW),
        303,
        "the new password opens"
    );
    assert_eq!(
        login_status(&laptop, ADDR, "relation"),
        401,
        "the factory password no longer does"
    );

    // Restart of the web console from the menu: a new process, same password.
    let at = vm.wait_for(at, "Choose 1, 2, 3 or 4 and press Enter: ", MIN);
    vm.type_line("3");
    let at = vm.wait_for(at, "Restart the web console?", MIN);
    vm.type_line("y");
    let t0 = Instant::now();
    let at = vm.wait_for(at, "The web console was restarted (process", MIN);
    figure(&format!(
        "console: web console restarted (SIGTERM, init starts it again) in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    page_answers(&laptop, ADDR, Instant::now(), MIN);
    // The failed login above slows the next one down for a second.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(login_status(&laptop, ADDR, NEW), 303, "after the restart");

    // Power-on again: the password is kept on the config partition.
    let _ = at;
    reset_to_recovery_page(&mut vm, &laptop, ADDR, "node1 after a password reset");
    assert_eq!(login_status(&laptop, ADDR, NEW), 303, "after a reset");
    let text = vm.text();
    assert!(text[before_reset..].contains("Login:     admin / the password set on this console"));
}

/// Two candidate disks: the answer at the DVD's prompt names one (after an
/// answer the prompt does not understand); the install goes there, the
/// machine boots from it, and the other disk is never written.
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn node1_on_the_disk_named_at_the_prompt_from_dvd_under_uefi() {
    let img = image_dir();
    let dir = Scratch::new("named-");
    let (vda, vdb) = (dir.0.join("vda.img"), dir.0.join("vdb.img"));
    raw_disk(&vda, 8 << 30);
    raw_disk(&vdb, 8 << 30);
    let mut args = drives(&[&vda, &vdb], &img.join("tandem-install.iso"));
    // A NIC joined to nothing: the node needs one to come up.
    args.extend(["-device", "virtio-net-pci"].map(String::from));
    let mut vm = Vm::start(&dir.0, Firmware::Uefi, None, &args);
    let at = vm.wait_for(0, "Type node1 or node2", 2 * MIN);
    vm.type_line("node1 disk=");
    let at = vm.wait_for(at, "'node1 disk=' is not a node name", MIN);
    let at = vm.wait_for(at, "Type node1 or node2", MIN);
    vm.type_line("node1 disk=vdb");
    let at = vm.wait_for(at, "Installing node1 on /dev/vdb.", MIN);
    let at = vm.wait_for(at, "Target: /dev/vdb (8.0 GiB", 2 * MIN);
    let at = vm.wait_for(at, "Installation of node1 complete", 3 * MIN);
    // Restarted from vdb, the only disk with a system.
    let at = vm.wait_for(at, "tandem: starting system a", 2 * MIN);
    vm.wait_for(at, "State:     recovery", 2 * MIN);
    drop(vm);
    assert!(untouched(&vda), "vda was written to");
    let mut gpt = [0u8; 8];
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&vdb).unwrap();
    f.seek(SeekFrom::Start(512)).unwrap();
    f.read_exact(&mut gpt).unwrap();
    assert_eq!(&gpt, b"EFI PART", "vdb carries the new partition table");
}

/// The install medium written raw to a USB stick, booted under BIOS, and no
/// other disk: the prompt asks again after a typo, then the installer stops
/// with its message and the stick keeps its bytes. The answer is typed on
/// the keyboard, and the screen shows the prompt and then the installer.
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_refuses_when_only_the_usb_stick_is_there_under_bios() {
    let img = image_dir();
    let dir = Scratch::new("stick-");
    let args = install::medium_args(Medium::Usb, &dir.0, 1, false);
    let stick = dir.0.join("stick.img");
    let mut vm = Vm::start(&dir.0, Firmware::Bios, None, &args);
    let at = vm.wait_for(0, "Type node1 or node2", MIN);
    vm.type_line("node3");
    let at = vm.wait_for(at, "'node3' is not a node name", MIN);
    let at = vm.wait_for(at, "Type node1 or node2", MIN);
    let prompt = vm.screen();
    assert!(prompt.colours() > 1, "the screen shows the prompt");
    vm.send_keys("node1\n");
    let at = vm.wait_for(at, "Installing node1. Loading the installer", MIN);
    let at = vm.wait_for(at, "[install medium]", 2 * MIN);
    let at = vm.wait_for(
        at,
        "INSTALLATION STOPPED: no disk to install on: the only disk found is the install medium itself.",
        MIN,
    );
    vm.wait_for(at, "Nothing was written to any disk.", MIN);
    let stopped = vm.screen();
    assert!(stopped.colours() > 1, "the screen shows the installer");
    // More than a blinking cursor: the screen holds other text now.
    assert!(
        stopped.pixels_changed(&prompt) > 2000,
        "the screen did not change from the prompt ({} pixels)",
        stopped.pixels_changed(&prompt)
    );
    drop(vm);
    assert!(
        std::fs::read(&stick).unwrap() == std::fs::read(img.join("tandem-install.iso")).unwrap(),
        "the stick was written to"
    );
}

/// Boots the installer directly (as an unattended install would, with the
/// node on the kernel command line) with the DVD attached and `disks`, and
/// the devices `extra`.
fn installer_refuses(disks: &[u64], extra: &[&str], expect: &str) {
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
    args.extend(extra.iter().map(ToString::to_string));
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

/// A DVD is not a disk: with only the DVD, there is no disk at all.
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_refuses_when_there_is_no_disk() {
    installer_refuses(&[], &[], "no disk to install on was found");
}

/// A disk behind a controller the system has no driver for (VMware's
/// paravirtual SCSI): the installer names the controller.
#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_names_the_controller_without_a_driver() {
    installer_refuses(
        &[],
        &["-device", "pvscsi,id=pv"],
        "no disk to install on was found; check that the disk is connected and its controller is supported; \
         storage controllers without a driver in this system: SCSI controller at PCI 0000:00:",
    );
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_refuses_two_candidate_disks() {
    installer_refuses(
        &[8 << 30, 8 << 30],
        &[],
        "2 disks could take the installation: /dev/vda (8.0 GiB), /dev/vdb (8.0 GiB); \
         to choose one, boot the install medium again and type `node1 disk=vda` at the install prompt",
    );
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn installer_refuses_a_disk_too_small() {
    installer_refuses(
        &[2 << 30],
        &[],
        "the disk holds 2048 MiB; the appliance needs at least 2371 MiB",
    );
}
