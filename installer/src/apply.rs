//! The IO half of the installer: reads the medium, writes the disk.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::disks::{self, Disk};
use crate::{gpt, grub};

/// Volume id of the install medium (the image builder sets it).
pub const VOLUME_ID: &str = "TANDEM_INSTALL";

/// What to install.
#[derive(Debug, Clone)]
pub struct Options {
    /// `node1` or `node2`.
    pub node: String,
    /// `tandem.disk=` from the kernel command line.
    pub disk: Option<String>,
    /// Where the medium gets mounted.
    pub medium_mount: PathBuf,
    /// How long to wait for the medium (USB sticks appear late).
    pub medium_wait: Duration,
    /// How long to wait for a disk besides the medium (SAS and RAID
    /// controllers present theirs late).
    pub disk_wait: Duration,
    /// The version being installed, recorded with the identity.
    pub version: String,
}

/// Progress lines for the console(s).
pub trait Progress {
    /// One line of progress.
    fn line(&mut self, text: &str);
}

/// Writes progress to several terminals at once (screen and serial).
#[derive(Debug, Default)]
pub struct Consoles {
    sinks: Vec<File>,
}

impl Consoles {
    /// Opens each path that exists; missing terminals are skipped.
    pub fn open(paths: &[PathBuf]) -> Self {
        let sinks = paths
            .iter()
            .filter_map(|p| File::options().write(true).open(p).ok())
            .collect();
        Self { sinks }
    }
}

impl Progress for Consoles {
    fn line(&mut self, text: &str) {
        for s in &mut self.sinks {
            let _ = s.write_all(format!("{text}\r\n").as_bytes());
        }
        if self.sinks.is_empty() {
            println!("{text}");
        }
    }
}

fn read_sys(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn carries_medium(dev: &Path) -> bool {
    let mut pvd = vec![0u8; 2048];
    File::open(dev)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(32768))?;
            f.read_exact(&mut pvd)
        })
        .is_ok()
        && disks::is_install_medium(&pvd, VOLUME_ID)
}

/// Lists whole disks and optical drives from sysfs.
pub fn scan() -> (Vec<Disk>, Option<PathBuf>) {
    let mut disks = Vec::new();
    let mut medium = None;
    let Ok(rd) = fs::read_dir("/sys/block") else {
        return (disks, medium);
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let sys = Path::new("/sys/block").join(&name);
        let dev = Path::new("/dev").join(&name);
        if name.starts_with("sr") {
            if medium.is_none() && carries_medium(&dev) {
                medium = Some(dev);
            }
            continue;
        }
        if !disks::is_disk_name(&name) {
            continue;
        }
        let sectors: u64 = read_sys(&sys, "size").parse().unwrap_or(0);
        let is_medium = carries_medium(&dev);
        if is_medium && medium.is_none() {
            medium = Some(dev.clone());
        }
        disks.push(Disk {
            name: name.clone(),
            bytes: sectors * 512,
            removable: read_sys(&sys, "removable") == "1",
            read_only: read_sys(&sys, "ro") == "1",
            is_medium,
            model: read_sys(&sys, "device/model"),
        });
    }
    (disks, medium)
}

/// PCI storage controllers (class 01) that no driver took: the disks behind
/// them are invisible to the installer.
pub fn controllers_without_driver() -> Vec<String> {
    let Ok(rd) = fs::read_dir("/sys/bus/pci/devices") else {
        return Vec::new();
    };
    let mut found: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| !e.path().join("driver").exists())
        .filter_map(|e| {
            let dir = e.path();
            let class =
                u32::from_str_radix(read_sys(&dir, "class").trim_start_matches("0x"), 16).ok()?;
            let kind = disks::storage_class(class)?;
            let id = |f: &str| read_sys(&dir, f).trim_start_matches("0x").to_owned();
            Some(format!(
                "{kind} at PCI {} [{}:{}]",
                e.file_name().to_string_lossy(),
                id("vendor"),
                id("device")
            ))
        })
        .collect();
    found.sort();
    found
}

/// Opens the tray of the optical drive `dev` (CDROMEJECT), so that the
/// machine starts from its disk even when the DVD comes first in the boot
/// order.
pub fn eject(dev: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(dev)?;
    // SAFETY: CDROMEJECT takes no argument; the descriptor is the drive,
    // open for the duration of the call.
    unsafe { ioctl::cdrom_eject(f.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(())
}

fn part_dev(disk: &str, n: usize) -> PathBuf {
    let sep = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("/dev/{disk}{sep}{n}"))
}

mod ioctl {
    //! Block device ioctls.
    nix::ioctl_none!(
        /// BLKRRPART: re-read the partition table (linux/fs.h).
        blkrrpart,
        0x12,
        95
    );
    nix::ioctl_none_bad!(
        /// CDROMEJECT: open the tray (linux/cdrom.h).
        cdrom_eject,
        0x5309
    );
}
use ioctl::blkrrpart;

/// Asks the kernel to re-read the partition table of `dev`.
fn reread_partitions(dev: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument; the descriptor is a block device
    // kept open for the duration of the call.
    unsafe { blkrrpart(dev.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(())
}

/// The medium's files, checked against its SHA256SUMS.
struct Medium {
    root: PathBuf,
    sums: Vec<(String, String)>,
}

impl Medium {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join("tandem").join(rel)
    }

    fn verified(&self, rel: &str, out: &mut dyn Progress) -> Result<Vec<u8>> {
        let path = self.path(rel);
        let data = fs::read(&path)
            .with_context(|| format!("reading {} from the install medium", path.display()))?;
        let want = self
            .sums
            .iter()
            .find(|(_, f)| f == rel)
            .map(|(h, _)| h.as_str())
            .with_context(|| format!("the install medium's SHA256SUMS does not list {rel}"))?;
        let got = hex(&Sha256::digest(&data));
        if got != want {
            bail!(
                "{rel} on the install medium is damaged (SHA-256 {got}, expected {want}); write the image to the medium again or use another medium"
            );
        }
        out.line(&format!("  checked {rel} ({} MiB)", data.len() >> 20));
        Ok(data)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn mount_medium(dev: &Path, at: &Path) -> Result<Medium> {
    fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
    nix::mount::mount(
        Some(dev),
        at,
        Some("iso9660"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .with_context(|| {
        format!(
            "mounting the install medium {} at {}",
            dev.display(),
            at.display()
        )
    })?;
    let sums_path = at.join("tandem/SHA256SUMS");
    let text = fs::read_to_string(&sums_path)
        .with_context(|| format!("reading {}", sums_path.display()))?;
    let sums = text
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, f)| (h.to_owned(), f.to_owned()))
        .collect();
    Ok(Medium {
        root: at.to_owned(),
        sums,
    })
}

/// How long the list of disks must stay the same before the installer
/// chooses: SAS and RAID controllers present their disks one after the
/// other, seconds after their driver loaded.
const DISKS_SETTLE: Duration = Duration::from_secs(3);

/// Finds the medium and the target disk. Waits for the medium (a USB stick
/// may take seconds to present), and for the disks: until their list has
/// not changed for a moment, and while there is none besides the medium, up
/// to `opts.disk_wait`; says what it waits for.
pub fn discover(opts: &Options, out: &mut dyn Progress) -> Result<(Disk, PathBuf)> {
    let start = Instant::now();
    let mut last: Vec<String> = Vec::new();
    let mut changed = Instant::now();
    let mut said_medium = false;
    let mut said_disks = false;
    let (disks, medium) = loop {
        let (disks, medium) = scan();
        let names: Vec<String> = disks.iter().map(|d| d.name.clone()).collect();
        if names != last {
            last = names;
            changed = Instant::now();
        }
        let waited = start.elapsed();
        let candidates = disks.iter().filter(|d| !d.is_medium).count();
        if medium.is_none() {
            if waited > opts.medium_wait {
                break (disks, medium);
            }
            if !said_medium && waited > Duration::from_secs(2) {
                out.line(&format!(
                    "  waiting for the install medium (at most {} s)",
                    opts.medium_wait.as_secs()
                ));
                said_medium = true;
            }
        } else if candidates == 0 {
            if waited > opts.disk_wait {
                break (disks, medium);
            }
            if !said_disks && waited > Duration::from_secs(2) {
                out.line(&format!(
                    "  waiting for a disk to appear (at most {} s)",
                    opts.disk_wait.as_secs()
                ));
                said_disks = true;
            }
        } else if changed.elapsed() >= DISKS_SETTLE {
            break (disks, medium);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    for d in &disks {
        let role = if d.is_medium { " [install medium]" } else { "" };
        out.line(&format!("  found {d}{role}"));
    }
    let medium = medium.context(
        "the install medium was not found (no DVD or USB stick carries the volume TANDEM_INSTALL)",
    )?;
    let target = match disks::choose(&disks, opts.disk.as_deref(), &opts.node) {
        Ok(d) => d.clone(),
        Err(e @ (disks::ChooseError::NoDisk | disks::ChooseError::OnlyMedium(_))) => {
            let orphans = controllers_without_driver();
            if orphans.is_empty() {
                return Err(e.into());
            }
            bail!(
                "{e}; storage controllers without a driver in this system: {}",
                orphans.join(", ")
            );
        }
        Err(e) => return Err(e.into()),
    };
    gpt::plan(target.bytes / gpt::SECTOR)
        .with_context(|| format!("/dev/{} is too small", target.name))?;
    Ok((target, medium))
}

/// Installs onto `target`. On a failure after the disk was touched, the
/// partition table is wiped again so that the machine never boots a
/// half-written system.
pub fn install(
    opts: &Options,
    target: &Disk,
    medium_dev: &Path,
    out: &mut dyn Progress,
) -> Result<()> {
    out.line("[1/6] Reading the install medium");
    let medium = mount_medium(medium_dev, &opts.medium_mount)?;
    let system = medium.verified("system.img", out)?;
    let esp_gz = medium.verified("esp.img.gz", out)?;
    let boot_img = medium.verified("bios/boot.img", out)?;
    let core_img = medium.verified("bios/core.img", out)?;

    let dev_path = PathBuf::from(format!("/dev/{}", target.name));
    let sectors = target.bytes / gpt::SECTOR;
    let parts = gpt::plan(sectors)?;
    out.line(&format!("[2/6] Partitioning {target}"));
    let mut disk = File::options()
        .read(true)
        .write(true)
        .open(&dev_path)
        .with_context(|| format!("opening {}", dev_path.display()))?;
    let result = write_all(
        opts, target, &mut disk, &parts, sectors, &system, &esp_gz, &boot_img, &core_img, out,
    );
    if let Err(e) = &result {
        let _ = e;
        out.line("Wiping the partially written partition table so that this disk does not boot.");
        let _ = wipe_table(&mut disk, sectors);
    }
    let _ = nix::mount::umount(&opts.medium_mount);
    result
}

fn wipe_table(disk: &mut File, sectors: u64) -> io::Result<()> {
    let zero = vec![0u8; 34 * 512];
    disk.seek(SeekFrom::Start(0))?;
    disk.write_all(&zero)?;
    disk.seek(SeekFrom::Start((sectors - 33) * 512))?;
    disk.write_all(&zero[..33 * 512])?;
    disk.sync_all()?;
    reread_partitions(disk)
}

#[allow(clippy::too_many_arguments)]
fn write_all(
    opts: &Options,
    target: &Disk,
    disk: &mut File,
    parts: &[gpt::Part],
    sectors: u64,
    system: &[u8],
    esp_gz: &[u8],
    boot_img: &[u8],
    core_img: &[u8],
    out: &mut dyn Progress,
) -> Result<()> {
    let guid = || *uuid::Uuid::new_v4().as_bytes();
    let part_guids: Vec<[u8; 16]> = parts.iter().map(|_| guid()).collect();
    let table = gpt::table(sectors, parts, guid(), &part_guids);
    let core_lba = parts[0].first;
    let mut primary = table.primary.clone();
    let mbr = grub::boot_sector(boot_img, &primary[..512], core_lba)?;
    primary[..512].copy_from_slice(&mbr);
    disk.seek(SeekFrom::Start(0))?;
    disk.write_all(&primary)?;
    disk.seek(SeekFrom::Start(table.backup_lba * gpt::SECTOR))?;
    disk.write_all(&table.backup)?;
    disk.sync_all().context("flushing the partition table")?;
    reread_partitions(disk).context("asking the kernel to re-read the partition table")?;
    for p in parts {
        out.line(&format!("  {:<10} {:>6} MiB", p.name, p.bytes() >> 20));
    }
    let devs: Vec<PathBuf> = (1..=parts.len())
        .map(|n| part_dev(&target.name, n))
        .collect();
    wait_for(&devs)?;

    out.line("[3/6] Installing the boot loader (BIOS and UEFI)");
    let core = grub::core_image(core_img, core_lba, parts[0].bytes())?;
    write_part(&devs[0], &mut &core[..], parts[0].bytes())?;
    let mut esp = flate2::read::GzDecoder::new(esp_gz);
    write_part(&devs[1], &mut esp, parts[1].bytes())?;
    write_boot_selection(&devs[1]).context("writing the boot selection (grub/grubenv)")?;

    out.line(&format!(
        "[4/6] Writing the system image to system-a ({} MiB)",
        system.len() >> 20
    ));
    write_part(&devs[2], &mut &system[..], parts[2].bytes())?;
    verify_part(&devs[2], system).context("reading back system-a")?;
    write_part(&devs[3], &mut io::repeat(0).take(1 << 20), parts[3].bytes())?;

    out.line("[5/6] Creating the configuration partition and recording the node identity");
    run(Command::new("/sbin/mkfs.ext4")
        .args(["-q", "-F", "-L", "tandem-config"])
        .arg(&devs[4]))?;
    record_identity(&devs[4], opts)?;

    out.line("[6/6] Clearing the replicated data partition");
    let data = &parts[5];
    write_part(&devs[5], &mut io::repeat(0).take(1 << 20), data.bytes())?;
    let mut f = File::options().write(true).open(&devs[5])?;
    f.seek(SeekFrom::Start(data.bytes() - (1 << 20)))?;
    io::copy(&mut io::repeat(0).take(1 << 20), &mut f)?;
    f.sync_all()?;
    nix::unistd::sync();
    Ok(())
}

fn wait_for(devs: &[PathBuf]) -> Result<()> {
    let start = Instant::now();
    while !devs.iter().all(|d| d.exists()) {
        if start.elapsed() > Duration::from_secs(15) {
            let missing: Vec<String> = devs
                .iter()
                .filter(|d| !d.exists())
                .map(|d| d.display().to_string())
                .collect();
            bail!(
                "the kernel did not create {} after re-reading the partition table",
                missing.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn write_part(dev: &Path, src: &mut dyn Read, room: u64) -> Result<()> {
    let mut f = File::options()
        .write(true)
        .open(dev)
        .with_context(|| format!("opening {}", dev.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .with_context(|| format!("reading the data for {}", dev.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > room {
            bail!(
                "{} bytes do not fit into {} ({room} bytes)",
                total,
                dev.display()
            );
        }
        f.write_all(&buf[..n])
            .with_context(|| format!("writing {}", dev.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("flushing {}", dev.display()))?;
    Ok(())
}

fn verify_part(dev: &Path, want: &[u8]) -> Result<()> {
    let mut f = File::open(dev)?;
    let mut got = vec![0u8; want.len()];
    f.read_exact(&mut got)?;
    if Sha256::digest(&got) != Sha256::digest(want) {
        bail!(
            "{} does not read back what was written: the disk may be failing",
            dev.display()
        );
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The file on the configuration partition that names the installed node
/// for the install medium's boot loader.
pub const NODE_GRUBENV: &str = "node.grubenv";

/// A GRUB environment block (exactly 1024 bytes, padded with `#`) naming the
/// node and the installed version. Values are restricted to what the block
/// can carry on one line.
#[must_use]
pub fn node_grubenv(node: &str, version: &str) -> Vec<u8> {
    let clean = |v: &str| -> String {
        v.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
            .take(100)
            .collect()
    };
    let mut env = format!(
        "# GRUB Environment Block\ntandem_node={}\ntandem_version={}\n",
        clean(node),
        clean(version)
    )
    .into_bytes();
    env.resize(1024, b'#');
    env
}

/// The installed disk's boot selection, in RAUC's convention for GRUB (see
/// `image/grub/node.cfg`): system-a (`A`) boots and is good; system-b (`B`)
/// holds nothing yet.
#[must_use]
pub fn slot_grubenv() -> Vec<u8> {
    let mut env =
        b"# GRUB Environment Block\nORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=0\nB_TRY=0\n".to_vec();
    env.resize(1024, b'#');
    env
}

/// Writes [`slot_grubenv`] over the EFI system partition's `grub/grubenv`,
/// in place: GRUB's `save_env` writes into the blocks of that file.
fn write_boot_selection(esp: &Path) -> Result<()> {
    let at = Path::new("/run/tandem-install/esp");
    fs::create_dir_all(at)?;
    nix::mount::mount(
        Some(esp),
        at,
        Some("vfat"),
        nix::mount::MsFlags::empty(),
        // The kernel's default (ascii) is a module the system does not carry.
        Some("iocharset=iso8859-1"),
    )
    .with_context(|| format!("mounting the new EFI system partition {}", esp.display()))?;
    let res = (|| -> Result<()> {
        let path = at.join("grub/grubenv");
        let mut f = File::options()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(&slot_grubenv())?;
        f.sync_all()?;
        Ok(())
    })();
    nix::mount::umount(at).context("unmounting the EFI system partition")?;
    res
}

fn write_seed(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 512];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading the kernel's random pool")?;
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&seed)?;
    f.sync_all()?;
    Ok(())
}

fn record_identity(dev: &Path, opts: &Options) -> Result<()> {
    let at = Path::new("/run/tandem-install/config");
    fs::create_dir_all(at)?;
    nix::mount::mount(
        Some(dev),
        at,
        Some("ext4"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting the new configuration partition {}", dev.display()))?;
    let res = (|| -> Result<()> {
        let tmp = at.join("node.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{}\n", opts.node).as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, at.join("node"))?;
        let mut f = File::create(at.join("installed"))?;
        f.write_all(format!("version={}\n", opts.version).as_bytes())?;
        f.sync_all()?;
        // What the install medium's boot loader shows when it finds this
        // disk again (a GRUB environment block).
        let mut f = File::create(at.join(NODE_GRUBENV))?;
        f.write_all(&node_grubenv(&opts.node, &opts.version))?;
        f.sync_all()?;
        // The first boot's random seed, from the pool that made this
        // disk's GUIDs (init credits it once and replaces it).
        write_seed(&at.join("random-seed"))?;
        File::open(at)?.sync_all()?;
        Ok(())
    })();
    nix::mount::umount(at).context("unmounting the configuration partition")?;
    res.context("writing the node identity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_grubenv_is_a_grub_environment_block() {
        let env = node_grubenv("node2", "0.1.0+abc123\nslot=b");
        assert_eq!(env.len(), 1024);
        let text = String::from_utf8(env).unwrap();
        assert!(text.starts_with(
            "# GRUB Environment Block\ntandem_node=node2\ntandem_version=0.1.0+abc123slotb\n#"
        ));
    }

    #[test]
    fn slot_grubenv_boots_a_and_leaves_b_unbootable() {
        let env = slot_grubenv();
        assert_eq!(env.len(), 1024);
        let text = String::from_utf8(env).unwrap();
        assert!(text.starts_with(
            "# GRUB Environment Block\nORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=0\nB_TRY=0\n#"
        ));
        assert!(text.trim_end_matches('#').ends_with('\n'));
    }
}
