//! Installing a node from the install medium in QEMU, on machines that
//! resemble servers: the disk controller, the firmware, DVD or USB stick, the
//! number of CPUs, the disk image format and whether there is a hardware
//! random number generator are chosen per [`Combo`]; the install medium comes
//! first in the boot order (the usual factory setting of a server) unless
//! the combination says otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Firmware, Netns, Scratch, Vm, https, image_dir, raw_disk};

/// A minute.
pub const MIN: Duration = Duration::from_secs(60);

/// The disk controller of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// SATA on AHCI (ICH9), as on most servers' onboard ports.
    Ahci,
    /// LSI MegaRAID SAS 1078 (`megasas`; driver megaraid_sas).
    Megasas,
    /// LSI 53C895A SCSI (`lsi53c895a`; driver sym53c8xx).
    Lsi,
    /// NVMe.
    Nvme,
    /// virtio-blk (virtual machines).
    Virtio,
}

impl Controller {
    /// For messages.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            Self::Ahci => "SATA (AHCI)",
            Self::Megasas => "LSI MegaRAID SAS",
            Self::Lsi => "LSI 53C895A SCSI",
            Self::Nvme => "NVMe",
            Self::Virtio => "virtio-blk",
        }
    }

    /// Short name for scenario names.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ahci => "ahci",
            Self::Megasas => "megasas",
            Self::Lsi => "lsi",
            Self::Nvme => "nvme",
            Self::Virtio => "virtio",
        }
    }

    /// The QEMU arguments of the controller with the disk image `drive`
    /// (`id=d0` is defined by the caller) at `bootindex`.
    #[must_use]
    pub fn args(self, bootindex: u32) -> Vec<String> {
        let v: Vec<&str> = match self {
            Self::Ahci => vec!["-device", "ahci,id=ahci"],
            Self::Megasas => vec!["-device", "megasas,id=hba"],
            Self::Lsi => vec!["-device", "lsi53c895a,id=hba"],
            Self::Nvme | Self::Virtio => vec![],
        };
        let mut args: Vec<String> = v.into_iter().map(str::to_owned).collect();
        args.push("-device".into());
        args.push(match self {
            Self::Ahci => format!("ide-hd,drive=d0,bus=ahci.0,bootindex={bootindex}"),
            Self::Megasas | Self::Lsi => {
                format!("scsi-hd,drive=d0,bus=hba.0,bootindex={bootindex}")
            }
            Self::Nvme => format!("nvme,drive=d0,serial=tandem0,bootindex={bootindex}"),
            Self::Virtio => format!("virtio-blk-pci,drive=d0,bootindex={bootindex}"),
        });
        args
    }
}

/// The install medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A DVD in an optical drive.
    Dvd,
    /// The ISO written raw to a USB stick.
    Usb,
}

/// The disk image format on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// A sparse raw file.
    Raw,
    /// qcow2 (`qemu-img create`).
    Qcow2,
}

/// One machine to install on.
#[derive(Debug, Clone, Copy)]
pub struct Combo {
    /// Disk controller.
    pub controller: Controller,
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// DVD or USB stick.
    pub medium: Medium,
    /// Virtual CPUs.
    pub cpus: u8,
    /// Disk image format.
    pub format: DiskFormat,
    /// A virtio RNG device (servers of the SR2500's age have none).
    pub rng: bool,
    /// The install medium before the disk in the boot order.
    pub medium_first: bool,
}

impl Combo {
    /// The scenario name, e.g. `install-ahci-bios-dvd-1cpu-raw`.
    #[must_use]
    pub fn name(&self) -> String {
        format!(
            "install-{}-{}-{}-{}cpu-{}{}{}",
            self.controller.name(),
            match self.firmware {
                Firmware::Bios => "bios",
                Firmware::Uefi => "uefi",
            },
            match self.medium {
                Medium::Dvd => "dvd",
                Medium::Usb => "usb",
            },
            self.cpus,
            match self.format {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
            },
            if self.rng { "-rng" } else { "" },
            if self.medium_first { "" } else { "-disk-first" },
        )
    }

    /// One line on what the scenario proves.
    #[must_use]
    pub fn proves(&self) -> String {
        format!(
            "node1 installs on a {} disk ({}, {} image, {} CPU{}, {} hardware RNG, the {} {} the disk in the boot order), restarts into recovery mode and answers HTTPS",
            self.controller.text(),
            match self.firmware {
                Firmware::Bios => "BIOS",
                Firmware::Uefi => "UEFI",
            },
            match self.format {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
            },
            self.cpus,
            if self.cpus == 1 { "" } else { "s" },
            if self.rng { "a" } else { "no" },
            match self.medium {
                Medium::Dvd => "DVD",
                Medium::Usb => "USB stick",
            },
            if self.medium_first { "before" } else { "after" },
        )
    }
}

/// A scratch directory with an empty disk of `bytes` in `format`, and the
/// laptop's namespace on the red cable (192.168.100.100/24 on `tap0`, for
/// the VM's first NIC).
pub fn rig(name: &str, format: DiskFormat, bytes: u64) -> (Scratch, PathBuf, Netns) {
    let dir = Scratch::new(name);
    let disk = match format {
        DiskFormat::Raw => {
            let p = dir.0.join("disk.img");
            raw_disk(&p, bytes);
            p
        }
        DiskFormat::Qcow2 => {
            let p = dir.0.join("disk.qcow2");
            let out = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&p)
                .arg(bytes.to_string())
                .output()
                .expect("qemu-img is missing: apt-get install qemu-utils");
            assert!(
                out.status.success(),
                "qemu-img create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            p
        }
    };
    let laptop = Netns::new("laptop");
    laptop.tap("tap0", "192.168.100.100/24");
    // While the node boots nothing answers ARP, and each connection attempt
    // would wait for three 1 s probes: probe every 100 ms instead, so that
    // the time to the first answer is measured to about 0.1 s.
    laptop.sysctl("net.ipv4.neigh.tap0.retrans_time_ms", "100");
    (dir, disk, laptop)
}

/// The `-drive` of the disk image (`id=d0`).
#[must_use]
pub fn disk_drive(disk: &Path, format: DiskFormat) -> Vec<String> {
    let fmt = match format {
        DiskFormat::Raw => "raw",
        DiskFormat::Qcow2 => "qcow2",
    };
    vec![
        "-drive".into(),
        format!(
            "file={},if=none,id=d0,format={fmt},cache=unsafe",
            disk.display()
        ),
    ]
}

/// The install medium's arguments at `bootindex`; a USB stick is a copy of
/// the ISO in `dir`. With `ahci`, the DVD drive sits on the AHCI controller's
/// second port (as on a server's onboard SATA), else on the IDE controller.
#[must_use]
pub fn medium_args(medium: Medium, dir: &Path, bootindex: u32, ahci: bool) -> Vec<String> {
    let iso = image_dir().join("tandem-install.iso");
    match medium {
        Medium::Dvd => vec![
            "-drive".into(),
            format!(
                "file={},if=none,id=cd,media=cdrom,readonly=on",
                iso.display()
            ),
            "-device".into(),
            if ahci {
                format!("ide-cd,drive=cd,bus=ahci.1,bootindex={bootindex}")
            } else {
                format!("ide-cd,drive=cd,bootindex={bootindex}")
            },
        ],
        Medium::Usb => {
            let stick = dir.join("stick.img");
            std::fs::copy(&iso, &stick).expect("copying the ISO to the USB stick image");
            vec![
                "-device".into(),
                "qemu-xhci,id=xhci".into(),
                "-drive".into(),
                format!("file={},if=none,id=stick,format=raw", stick.display()),
                "-device".into(),
                format!("usb-storage,bus=xhci.0,drive=stick,bootindex={bootindex}"),
            ]
        }
    }
}

/// The SR2500's NIC (Intel 80003ES2LAN, e1000e), on the laptop's tap.
#[must_use]
pub fn sr2500_nic_on_laptop() -> Vec<String> {
    [
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        "e1000e,netdev=n0",
    ]
    .map(String::from)
    .to_vec()
}

/// The certificate fingerprint the console shows after `text`'s last
/// "HTTPS certificate SHA-256:" line.
#[must_use]
pub fn fingerprint_on_console(text: &str) -> String {
    let i = text
        .rfind("HTTPS certificate SHA-256:")
        .expect("fingerprint line");
    text[i..].lines().nth(1).unwrap_or("").trim().to_owned()
}

/// Waits from console offset `from` for the installed system to boot into
/// recovery mode at `address`; returns the offset and the fingerprint shown.
pub fn wait_recovery(vm: &mut Vm, from: usize, address: &str) -> (usize, String) {
    let at = vm.wait_for(from, "tandem: starting system a", 2 * MIN);
    let at = vm.wait_for(at, "State:     recovery", 2 * MIN);
    let at = vm.wait_for(at, "HTTPS certificate SHA-256:", MIN);
    // The fingerprint is the next line: wait for its end.
    let at = vm.wait_for(at, "\n", MIN);
    let at = vm.wait_for(at, "\n", MIN);
    let text = vm.text();
    assert!(text[from..].contains(&format!("Recovery:  https://{address}/")));
    let fp = fingerprint_on_console(&text[from..]);
    assert_eq!(fp.len(), 95, "fingerprint {fp:?}");
    (at, fp)
}

/// Waits for the recovery page at `addr` to answer from the laptop
/// namespace; returns the seconds from `since` to the first answer and the
/// fingerprint of the certificate it served. Polls about every 0.1 s: a
/// booting node refuses or ignores the connection, and an ignored one (the
/// address is still in the laptop's ARP cache from before a reset) is given
/// up after 0.5 s instead of TCP's seconds of SYN retries.
pub fn page_answers(laptop: &Netns, addr: &str, since: Instant, limit: Duration) -> (f64, String) {
    let addr = format!("{addr}:443");
    laptop.run(move || {
        let start = Instant::now();
        let sock: std::net::SocketAddr = addr.parse().unwrap();
        loop {
            let listening =
                std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_ok();
            let answer = if listening {
                https(&addr, "GET", "/login", None, None)
            } else {
                Err(std::io::ErrorKind::NotConnected.into())
            };
            match answer {
                Ok(r) if r.status == 200 => break (since.elapsed().as_secs_f64(), r.fingerprint),
                Ok(r) => panic!("the recovery page answered {}: {}", r.status, r.body),
                Err(e) if start.elapsed() > limit => {
                    panic!("the recovery page at https://{addr}/ did not answer: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}

/// The seconds in the console line "random pool ready N s after the kernel
/// started" after offset `from`.
#[must_use]
pub fn random_ready_s(text: &str, from: usize) -> Option<f64> {
    let rest = text.get(from..)?;
    let i = rest.find("random pool ready ")?;
    rest[i + "random pool ready ".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What one install measured.
#[derive(Debug, Clone, Default)]
pub struct InstallFigures {
    /// Kernel start → random pool ready, booting the installer.
    pub random_install_s: Option<f64>,
    /// Prompt answered → "Installation complete".
    pub install_s: f64,
    /// Kernel start → random pool ready, first boot of the installed node.
    pub random_first_boot_s: Option<f64>,
    /// "Installation complete" → the recovery page answering on the red
    /// cable (restart, firmware, the medium's countdown when it comes first,
    /// boot, certificate).
    pub restart_to_page_s: f64,
    /// The install medium started again after the install (and started the
    /// installed node after its countdown) instead of the firmware booting
    /// the disk.
    pub medium_started_again: bool,
}

/// Installs node1 on the machine `combo` describes, as an operator would
/// (answer at the prompt), and checks that it comes up in recovery mode
/// from its disk and answers HTTPS with the certificate its console shows.
/// `watch` gets the VM's console buffer at once (for a failure report).
pub fn install_and_reach_recovery(
    combo: &Combo,
    watch: &mut dyn FnMut(std::sync::Arc<std::sync::Mutex<Vec<u8>>>),
) -> InstallFigures {
    let (dir, disk, laptop) = rig(&format!("{}-", combo.controller.name()), combo.format, 8 << 30);
    let (medium_boot, disk_boot) = if combo.medium_first { (1, 2) } else { (2, 1) };
    let mut args = disk_drive(&disk, combo.format);
    args.extend(combo.controller.args(disk_boot));
    args.extend(medium_args(
        combo.medium,
        &dir.0,
        medium_boot,
        combo.controller == Controller::Ahci,
    ));
    args.extend(sr2500_nic_on_laptop());
    args.extend(["-smp".to_owned(), combo.cpus.to_string()]);
    if combo.rng {
        args.extend(["-device".to_owned(), "virtio-rng-pci".to_owned()]);
    }
    let mut vm = Vm::start(&dir.0, combo.firmware, Some(&laptop), &args);
    watch(vm.console());
    let at = vm.wait_for(0, "Type node1 or node2", 2 * MIN);
    vm.type_line("node1");
    let answered = Instant::now();
    let at = vm.wait_for(at, "Installation of node1 complete", 4 * MIN);
    let install_s = answered.elapsed().as_secs_f64();
    let random_install_s = random_ready_s(&vm.text(), 0);
    let restart = Instant::now();
    if combo.medium_first && combo.medium == Medium::Usb {
        // The stick stays in and starts first: it finds the installed node
        // and starts it after its countdown.
        vm.wait_for(at, "This machine's disk holds the installed node1", 2 * MIN);
    }
    let (page_s, served) = page_answers(&laptop, "192.168.100.101", restart, 4 * MIN);
    let (_, fp) = wait_recovery(&mut vm, at, "192.168.100.101");
    assert_eq!(served, fp, "the served certificate is the one the console shows");
    let text = vm.text();
    let boot = text[at..].find("tandem: starting system a").map_or(at, |i| at + i);
    InstallFigures {
        random_install_s,
        install_s,
        random_first_boot_s: random_ready_s(&text, boot),
        restart_to_page_s: page_s,
        medium_started_again: text[at..boot].contains("This machine's disk holds the installed"),
    }
}
