//! The scenarios of the release catalogue, by name (`cargo xtask scenarios
//! --list`).

use std::time::Instant;

use crate::install::{
    self, Combo, Controller, DiskFormat, MIN, Medium, disk_drive, medium_args, page_answers,
    sr2500_nic_on_laptop, wait_recovery,
};
use crate::scenario::{Run, Scenario};
use crate::{Firmware, Vm};

/// The machines the install matrix covers: every disk controller, BIOS and
/// UEFI, DVD and USB stick, 1 and 2 CPUs, raw and qcow2, none with a
/// hardware RNG but one, all with the install medium first in the boot
/// order but one. The SAS/SCSI controllers run under BIOS only: QEMU's
/// emulations carry no UEFI driver (real MegaRAID cards do), so UEFI firmware
/// cannot start a disk behind them. QEMU's LSI SAS1068 (`mptsas1068`) is not
/// in the matrix: Linux's mptsas driver binds it but never sees its disks.
#[must_use]
pub fn install_matrix() -> Vec<Combo> {
    use Controller::{Ahci, Lsi, Megasas, Nvme, Virtio};
    use DiskFormat::{Qcow2, Raw};
    use Firmware::{Bios, Uefi};
    use Medium::{Dvd, Usb};
    let c = |controller, firmware, medium, cpus, format| Combo {
        controller,
        firmware,
        medium,
        cpus,
        format,
        rng: false,
        medium_first: true,
    };
    let mut m = vec![
        c(Ahci, Bios, Dvd, 1, Raw),
        c(Ahci, Uefi, Usb, 2, Qcow2),
        c(Megasas, Bios, Usb, 2, Raw),
        c(Megasas, Bios, Dvd, 1, Qcow2),
        c(Lsi, Bios, Dvd, 2, Qcow2),
        c(Nvme, Bios, Usb, 1, Qcow2),
        c(Nvme, Uefi, Dvd, 2, Raw),
        c(Virtio, Bios, Usb, 2, Raw),
        c(Virtio, Uefi, Dvd, 1, Qcow2),
    ];
    m.push(Combo {
        rng: true,
        ..c(Virtio, Bios, Dvd, 1, Raw)
    });
    m.push(Combo {
        medium_first: false,
        ..c(Ahci, Uefi, Dvd, 1, Raw)
    });
    m
}

/// Every scenario of the catalogue, in the order `--all` runs them.
#[must_use]
pub fn all() -> Vec<Scenario> {
    let mut list: Vec<Scenario> = install_matrix()
        .into_iter()
        .map(|combo| {
            Scenario::new(&combo.name(), &combo.proves(), move |run| {
                install_scenario(&combo, run)
            })
        })
        .collect();
    list.push(Scenario::new(
        "install-again-prompt",
        "a disk holding node1, the install medium first: typing node2 at the countdown asks for a confirmation; `no` starts node1, `yes` installs node2",
        install_again_prompt,
    ));
    list.extend(crate::failover::scenarios());
    list.extend(crate::ve_backup::scenarios());
    list.extend(crate::rolling::scenarios());
    list
}

/// Installs on the machine `combo` describes and records what it measured.
pub fn install_scenario(combo: &Combo, run: &mut Run) {
    let f = install::install_and_reach_recovery(combo, &mut |c| run.watch("node1", c));
    if let Some(s) = f.random_install_s {
        run.figure("installer: random pool ready after kernel start", s, "s");
    }
    run.figure("prompt answered → install complete", f.install_s, "s");
    if let Some(s) = f.random_first_boot_s {
        run.figure("first boot: random pool ready after kernel start", s, "s");
    }
    run.figure(
        "install complete → recovery page answering",
        f.restart_to_page_s,
        "s",
    );
    // QEMU's firmware closes an ejected DVD's tray again at the restart (a
    // real drive's tray stays open): then the medium starts the installed
    // node after its countdown.
    run.figure(
        "install medium started again after the install",
        if f.medium_started_again { 1.0 } else { 0.0 },
        "yes=1",
    );
}

/// A disk holding node1, the DVD first: the medium says so and counts down;
/// typing `node2` asks for a confirmation; `no` starts node1; after a reset,
/// `node2` and `yes` install node2, which comes up at .102.
fn install_again_prompt(run: &mut Run) {
    let (dir, disk, laptop) = install::rig("again-", DiskFormat::Raw, 8 << 30);
    let mut args = disk_drive(&disk, DiskFormat::Raw);
    args.extend(Controller::Ahci.args(2));
    args.extend(medium_args(Medium::Usb, &dir.0, 1, true));
    args.extend(sr2500_nic_on_laptop());
    let mut vm = Vm::start(&dir.0, Firmware::Bios, Some(&laptop), &args);
    run.watch("node", vm.console());
    let at = vm.wait_for(0, "Type node1 or node2", 2 * MIN);
    vm.type_line("node1");
    let at = vm.wait_for(at, "Installation of node1 complete", 4 * MIN);
    let at = vm.wait_for(at, "This machine's disk holds the installed node1", 2 * MIN);
    let at = vm.wait_for(at, "To ERASE it and install again", MIN);
    // The operator changes their mind: `no` starts the installed node.
    vm.type_line("node2");
    let at = vm.wait_for(at, "ERASES the installed node1", MIN);
    let at = vm.wait_for(at, "Type yes and press Enter", MIN);
    vm.type_line("no");
    let (at, _) = wait_recovery(&mut vm, at, "192.168.100.101");
    page_answers(&laptop, "192.168.100.101", Instant::now(), 2 * MIN);

    // Again, and this time install node2.
    vm.monitor("system_reset");
    let at = vm.wait_for(at, "This machine's disk holds the installed node1", 2 * MIN);
    let at = vm.wait_for(at, "To ERASE it and install again", MIN);
    vm.type_line("nod2");
    let at = vm.wait_for(at, "'nod2' is not a node name", MIN);
    let at = vm.wait_for(at, "Type node1 or node2", MIN);
    vm.type_line("node2");
    let at = vm.wait_for(at, "Type yes and press Enter", MIN);
    vm.type_line("yes");
    let t = Instant::now();
    let at = vm.wait_for(at, "Installation of node2 complete", 4 * MIN);
    run.figure(
        "confirmed → node2 installed",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let at = vm.wait_for(at, "This machine's disk holds the installed node2", 2 * MIN);
    wait_recovery(&mut vm, at, "192.168.100.102");
    let (s, _) = page_answers(&laptop, "192.168.100.102", t, 4 * MIN);
    run.figure("confirmed → node2's recovery page answering", s, "s");
}
