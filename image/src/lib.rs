//! Builds the install image of the appliance and the system image it installs.
//!
//! Inputs are pinned in `image/packages.lock` (Debian's kernel and the few
//! userland packages a node needs) plus the node's own binaries. The build:
//!
//! 1. fetches each pinned `.deb` with apt-get into a cache and checks its
//!    SHA-256;
//! 2. assembles the node's root filesystem — our binaries, the kernel modules
//!    of the lock file with their dependencies, the listed package files —
//!    and writes it as a deterministic cpio (the initramfs, zstd; the
//!    compressed result is cached by content, so an unchanged tree is not
//!    compressed again);
//! 3. packs kernel + initramfs into the **system image** (squashfs), the unit
//!    the installer writes to a disk's system slot and GRUB boots from;
//! 4. prepares the installed disk's boot loader: GRUB for BIOS (`boot.img` +
//!    `core.img`, set up by the installer) and UEFI (`esp.img`);
//! 5. makes a hybrid ISO (BIOS + UEFI, CD and raw USB) whose GRUB asks for
//!    `node1`/`node2` and boots the same system image in install mode.
//!
//! The same inputs give the same bytes: all times are `SOURCE_DATE_EPOCH`,
//! all ids derive from it, and the tools that read the clock run under a
//! fixed clock. The host tools' own versions are inputs too (GRUB, xorriso,
//! mksquashfs, zstd write the bytes); they are recorded, not pinned, in
//! `build-info.txt` and the system image's `tandem-release`.
//!
//! The image carries RAUC, its system bus and the keyring of update bundles
//! (see [`signing`]); [`bundle`] makes the signed update bundle of a build.
//! Not done here: signing the install image itself.

#![warn(missing_docs)]

pub mod bundle;
pub mod cpio;
pub mod elf;
pub mod host;
pub mod lock;
pub mod modules;
pub mod sbom;
pub mod signing;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::cpio::Tree;
use crate::host::run;
use crate::lock::{Lock, Pin};

/// Volume id of the install medium; the installer recognises the medium by it.
pub const VOLUME_ID: &str = "TANDEM_INSTALL";

/// Size of the EFI system partition image written by the installer.
pub const ESP_BYTES: u64 = 64 << 20;

/// GRUB modules of the installed disk's boot loader (both platforms).
const GRUB_MODULES_COMMON: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "squash4",
    "ext2",
    "normal",
    "linux",
    "search",
    "search_fs_file",
    "regexp",
    "echo",
    "test",
    "configfile",
    "loadenv",
    "cat",
    "sleep",
    "serial",
    "terminal",
    "gzio",
    "xzio",
    "zstd",
    "minicmd",
];
/// GRUB's filesystem modules (its `fs.lst`), all on the install medium.
#[rustfmt::skip]
const GRUB_FILESYSTEMS: &[&str] = &[
    "affs", "afs", "bfs", "btrfs", "cbfs", "cpio", "cpio_be", "exfat", "ext2", "f2fs", "fat",
    "hfs", "hfsplus", "iso9660", "jfs", "minix", "minix2", "minix2_be", "minix3", "minix3_be",
    "minix_be", "newc", "nilfs2", "ntfs", "odc", "procfs", "reiserfs", "romfs", "sfs", "squash4",
    "tar", "udf", "ufs1", "ufs1_be", "ufs2", "xfs", "zfs",
];
const GRUB_MODULES_BIOS: &[&str] = &["biosdisk", "vga", "video", "vbe"];
const GRUB_MODULES_EFI: &[&str] = &["efi_gop", "efi_uga", "video", "all_video"];

/// Errors of the image build; each names the object it is about.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing a file failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A program failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last line it wrote to stderr.
        stderr: String,
    },
    /// The lock file is malformed.
    #[error("{path}: {message}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A pinned package could not be downloaded.
    #[error(
        "apt-get could not download {name}={version} (pinned in image/packages.lock): {reason}; if Debian no longer serves this version, pin the current one"
    )]
    Download {
        /// Package name.
        name: String,
        /// Pinned version.
        version: String,
        /// apt-get's last line.
        reason: String,
    },
    /// A downloaded package does not match its pin.
    #[error("{name}={version}: SHA-256 is {actual}, image/packages.lock pins {expected}")]
    Checksum {
        /// Package name.
        name: String,
        /// Pinned version.
        version: String,
        /// Pinned checksum.
        expected: String,
        /// Checksum of the download.
        actual: String,
    },
    /// Something the build needs is not where it should be.
    #[error("{0}")]
    Missing(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A program of ours to put into the node's root filesystem.
#[derive(Debug, Clone)]
pub struct Binary {
    /// Path inside the root filesystem, e.g. `usr/sbin/tandem-init`.
    pub dest: String,
    /// The built file on the build host.
    pub source: PathBuf,
}

/// What to build and where.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The workspace root (holds `image/`).
    pub workspace: PathBuf,
    /// Where the results go (`target/image`).
    pub out_dir: PathBuf,
    /// Where downloads are kept between builds.
    pub cache_dir: PathBuf,
    /// Our binaries.
    pub binaries: Vec<Binary>,
    /// All timestamps of the image, seconds since the epoch.
    pub source_date_epoch: u64,
    /// Product version recorded in the image.
    pub version: String,
    /// The compiler that built the binaries (`rustc -V`), recorded with the
    /// host tools' versions.
    pub toolchain: String,
    /// The key of update bundles; its keyring is baked into the image.
    pub signing: signing::Signing,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// The hybrid install ISO.
    pub iso: PathBuf,
    /// The system image (slot content).
    pub system_image: PathBuf,
    /// The kernel, for direct-boot tests.
    pub kernel: PathBuf,
    /// The initramfs (node root filesystem), for direct-boot tests.
    pub initrd: PathBuf,
    /// SHA-256 of the ISO, hex.
    pub iso_sha256: String,
    /// What built it: toolchain and host tool versions (`build-info.txt`).
    pub build_info: PathBuf,
}

/// Runs the whole build. `log` receives one line per step.
pub fn build(inputs: &Inputs, log: &mut dyn FnMut(&str)) -> Result<Output, ImageError> {
    let lock = Lock::load(&inputs.workspace.join("image/packages.lock"))?;
    let work = inputs.out_dir.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(io(&work))?;
    }
    fs::create_dir_all(&work).map_err(io(&work))?;

    // 1. Pinned packages.
    let mut extracted = Vec::new();
    for pin in lock.pins() {
        let deb = fetch(&pin, &inputs.cache_dir, log)?;
        extracted.push(extract(&deb, &pin, &inputs.cache_dir)?);
    }
    let kernel_root = &extracted[0];

    // 2. Root filesystem.
    log("assembling the node root filesystem");
    let mut tree = Tree::new();
    base_layout(&mut tree, inputs);
    for bin in &inputs.binaries {
        let data = fs::read(&bin.source).map_err(io(&bin.source))?;
        tree.file(&bin.dest, data, 0o755);
    }
    if !tree.contains("usr/sbin/tandem-init") {
        return Err(ImageError::Missing(
            "no usr/sbin/tandem-init among the binaries: the node would have no init".into(),
        ));
    }
    tree.symlink("init", "usr/sbin/tandem-init");
    tree.symlink("sbin/init", "../usr/sbin/tandem-init");
    // The kernel runs /sbin/modprobe to load modules on demand.
    tree.symlink("sbin/modprobe", "../usr/sbin/tandem-init");
    for (pkg, root) in lock.packages.iter().zip(&extracted[1..]) {
        for inc in &pkg.include {
            add_from_package(&mut tree, root, inc, &pkg.name)?;
        }
    }
    tree.symlink("bin/sh", "busybox");
    // RAUC mounts bundles with mount(8); D-Bus clients find the system bus
    // under /var/run.
    tree.symlink("bin/mount", "busybox");
    tree.symlink("bin/umount", "busybox");
    tree.symlink("var/run", "../run");
    // The VE commands operators know (R6.3): the admin program under their names.
    if tree.contains("usr/bin/tandem") {
        tree.symlink("usr/bin/vzctl", "tandem");
        tree.symlink("usr/bin/vzlist", "tandem");
    }
    updates_layout(&mut tree, inputs)?;
    let unresolved = elf::unresolved(&tree);
    if let Some(u) = unresolved.first() {
        return Err(ImageError::Missing(format!(
            "{} needs {}, which no package of image/packages.lock provides ({} such gap(s) in all)",
            u.file,
            u.needs,
            unresolved.len()
        )));
    }
    modules::add_modules(&mut tree, kernel_root, &lock.kernel, &work, log)?;

    let epoch = u32::try_from(inputs.source_date_epoch)
        .map_err(|_| ImageError::Missing("SOURCE_DATE_EPOCH beyond 2106".into()))?;
    let cpio_path = work.join("initrd.cpio");
    let mut f = fs::File::create(&cpio_path).map_err(io(&cpio_path))?;
    tree.write_newc(std::io::BufWriter::new(&mut f), epoch)
        .map_err(io(&cpio_path))?;
    drop(f);
    log(&format!(
        "root filesystem: {} entries, {} MiB",
        tree.iter().count(),
        tree.content_bytes() >> 20
    ));

    // 3. System image: kernel + initramfs in a squashfs.
    let sys = work.join("system");
    fs::create_dir_all(sys.join("boot")).map_err(io(&sys))?;
    let vmlinuz_src = kernel_root.join(format!("boot/vmlinuz-{}", lock.kernel.release));
    let vmlinuz = sys.join("boot/vmlinuz");
    fs::copy(&vmlinuz_src, &vmlinuz).map_err(io(&vmlinuz_src))?;
    let tools = host::versions();
    let initrd = sys.join("boot/initrd.img");
    compress_initrd(&cpio_path, &initrd, &inputs.cache_dir, &tools, log)?;
    write(
        &sys.join("tandem-release"),
        release_text(inputs, &lock, &tools).as_bytes(),
    )?;
    let out = &inputs.out_dir;
    fs::create_dir_all(out).map_err(io(out))?;
    let system_image = out.join("system.img");
    squashfs(&sys, &system_image, inputs.source_date_epoch)?;
    log(&format!(
        "system image: {} ({} MiB)",
        system_image.display(),
        size(&system_image)? >> 20
    ));

    // 4. Boot loader of the installed disk, 5. the ISO.
    let iso_root = work.join("iso");
    let tdir = iso_root.join("tandem");
    fs::create_dir_all(tdir.join("bios")).map_err(io(&tdir))?;
    installed_bootloader(inputs, &work, &tdir)?;
    fs::copy(&system_image, tdir.join("system.img")).map_err(io(&system_image))?;
    let grub_dir = iso_root.join("boot/grub");
    fs::create_dir_all(&grub_dir).map_err(io(&grub_dir))?;
    let install_cfg = inputs.workspace.join("image/grub/install.cfg");
    fs::copy(&install_cfg, grub_dir.join("grub.cfg")).map_err(io(&install_cfg))?;
    let info = build_info(inputs, &tools);
    write(&iso_root.join("tandem/build-info.txt"), info.as_bytes())?;
    let build_info = out.join("build-info.txt");
    write(&build_info, info.as_bytes())?;
    write(
        &iso_root.join("tandem/SHA256SUMS"),
        sums(&iso_root.join("tandem"))?.as_bytes(),
    )?;
    let iso = out.join("tandem-install.iso");
    make_iso(&iso_root, &iso, inputs.source_date_epoch)?;
    let iso_sha256 = hex(&Sha256::digest(fs::read(&iso).map_err(io(&iso))?));
    write(
        &out.join("tandem-install.iso.sha256"),
        format!("{iso_sha256}  tandem-install.iso\n").as_bytes(),
    )?;
    // Direct-boot copies for tests and developers.
    let kernel = out.join("vmlinuz");
    fs::copy(&vmlinuz, &kernel).map_err(io(&vmlinuz))?;
    let initrd_out = out.join("initrd.img");
    fs::copy(&initrd, &initrd_out).map_err(io(&initrd))?;
    log(&format!(
        "install image: {} ({} MiB, sha256 {iso_sha256})",
        iso.display(),
        size(&iso)? >> 20
    ));
    Ok(Output {
        iso,
        system_image,
        kernel,
        initrd: initrd_out,
        iso_sha256,
        build_info,
    })
}

fn base_layout(tree: &mut Tree, inputs: &Inputs) {
    for d in [
        "dev", "proc", "sys", "run", "tmp", "config", "vz", "mnt", "root", "etc", "var/lib",
        "var/log", "medium",
    ] {
        tree.dir(d);
    }
    tree.file(
        "etc/passwd",
        // sshd's privilege separation user (its directory is made at start), and
        // the user chronyd drops to (it makes its run directory itself).
        b"root:x:0:0:root:/root:/bin/sh\ntandem-web:x:101:101:web console:/nonexistent:/bin/false\nsshd:x:102:65534:ssh privilege separation:/run/sshd:/bin/false\n_chrony:x:103:103:time synchronisation:/run/chrony:/bin/false\n"
            .to_vec(),
        0o644,
    );
    tree.file(
        "etc/group",
        b"root:x:0:\ntandem-web:x:101:\n_chrony:x:103:\nnogroup:x:65534:\n".to_vec(),
        0o644,
    );
    tree.file(
        "etc/tandem-version",
        format!("{}\n", inputs.version).into_bytes(),
        0o644,
    );
}

/// RAUC's files: the keyring the node trusts, the system bus configuration
/// with RAUC's bus policy, and which kind of key signs the node's updates
/// (`/etc/tandem-signing`, shown on the console). init writes RAUC's
/// `system.conf` at boot (it names the disk's partitions).
fn updates_layout(tree: &mut Tree, inputs: &Inputs) -> Result<(), ImageError> {
    let keyring = &inputs.signing.keyring;
    let pem = fs::read(keyring).map_err(io(keyring))?;
    tree.file("etc/rauc/keyring.pem", pem, 0o644);
    tree.file(
        "usr/share/dbus-1/system.conf",
        include_bytes!("../files/dbus-system.conf").to_vec(),
        0o644,
    );
    tree.file(
        "usr/share/dbus-1/system.d/de.pengutronix.rauc.conf",
        include_bytes!("../files/de.pengutronix.rauc.conf").to_vec(),
        0o644,
    );
    tree.file(
        "etc/tandem-signing",
        format!("{}\n", inputs.signing.describe()).into_bytes(),
        0o644,
    );
    Ok(())
}

/// The system image's `tandem-release`: what it is, and the versions of the
/// tools its bytes depend on (a second build that differs can be explained
/// from these lines).
fn release_text(inputs: &Inputs, lock: &Lock, tools: &[host::ToolVersion]) -> String {
    let mut text = format!(
        "product=tandem\nversion={}\nkernel={}\nsource-date-epoch={}\ntoolchain={}\nupdates-signed-with={}\n",
        inputs.version,
        lock.kernel.release,
        inputs.source_date_epoch,
        inputs.toolchain,
        inputs.signing.describe()
    );
    for t in tools.iter().filter(|t| t.shapes_image) {
        text.push_str(&format!("host.{}={}\n", t.name, t.version));
    }
    text
}

/// `build-info.txt`, on the medium and next to the ISO: the toolchain and
/// every host tool the build ran, marked when the image bytes depend on it.
fn build_info(inputs: &Inputs, tools: &[host::ToolVersion]) -> String {
    let mut text = format!(
        "# What built this image. Two builds of one commit give the same bytes only\n\
         # with the same versions of the tools marked \"shapes-image\".\n\
         version={}\nsource-date-epoch={}\ntoolchain={}\nupdates-signed-with={}\n",
        inputs.version,
        inputs.source_date_epoch,
        inputs.toolchain,
        inputs.signing.describe()
    );
    for t in tools {
        let mark = if t.shapes_image {
            "  # shapes-image"
        } else {
            ""
        };
        text.push_str(&format!("host.{}={}{mark}\n", t.name, t.version));
    }
    text
}

/// zstd's settings for the initramfs.
const INITRD_ZSTD: &[&str] = &["-q", "-19", "-T1", "--no-progress"];

/// How many compressed initramfs images the cache keeps (most recently used).
const INITRD_CACHE_KEEP: usize = 6;

/// Compresses the initramfs, or reuses the result of an earlier build of the
/// same bytes. `zstd -19` on the ~40 MiB cpio is most of a warm rebuild, and
/// its output depends only on the input, the settings and zstd's version:
/// the cache entry is named by the SHA-256 of exactly those, so a reused
/// file is byte for byte what compressing again would give.
fn compress_initrd(
    cpio: &Path,
    out: &Path,
    cache: &Path,
    tools: &[host::ToolVersion],
    log: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let zstd_version = tools
        .iter()
        .find(|t| t.name == "zstd")
        .map_or("unknown", |t| t.version.as_str());
    let mut key = Sha256::new();
    key.update(format!("zstd {zstd_version} {}\n", INITRD_ZSTD.join(" ")));
    key.update(fs::read(cpio).map_err(io(cpio))?);
    let key = hex(&key.finalize());
    let dir = cache.join("initrd");
    let cached = dir.join(format!("{key}.cpio.zst"));
    if cached.is_file() {
        fs::copy(&cached, out).map_err(io(&cached))?;
        // Mark it used, for pruning.
        fs::File::options()
            .write(true)
            .open(&cached)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .map_err(io(&cached))?;
        log("initramfs unchanged: compressed image taken from the cache");
        return Ok(());
    }
    run(Command::new("zstd")
        .args(INITRD_ZSTD)
        .args(["-f", "-o"])
        .arg(out)
        .arg(cpio))?;
    // Into the cache under a temporary name first: an interrupted copy must
    // never be found under the final name.
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!("{key}.tmp-{}", std::process::id()));
    fs::copy(out, &tmp).map_err(io(&tmp))?;
    fs::rename(&tmp, &cached).map_err(io(&cached))?;
    prune_initrd_cache(&dir)
}

/// Keeps the [`INITRD_CACHE_KEEP`] most recently used entries.
fn prune_initrd_cache(dir: &Path) -> Result<(), ImageError> {
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".cpio.zst"))
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    entries.sort_by(|a, b| b.cmp(a));
    for (_, p) in entries.into_iter().skip(INITRD_CACHE_KEEP) {
        fs::remove_file(&p).map_err(io(&p))?;
    }
    Ok(())
}

/// Fetches a pinned package into the cache (or finds it there) and checks it.
fn fetch(pin: &Pin, cache: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf, ImageError> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).map_err(io(&debs))?;
    let path = debs.join(format!("{}_{}.deb", pin.name, pin.sha256));
    if !path.exists() {
        log(&format!("downloading {}={}", pin.name, pin.version));
        let tmp = debs.join(format!("tmp-{}", pin.sha256));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let download = || {
            run(Command::new("apt-get")
                .current_dir(&tmp)
                .arg("download")
                .arg("-o")
                .arg("APT::Sandbox::User=root")
                .arg(format!("{}={}", pin.name, pin.version)))
        };
        // A fresh machine's package index can be older than the pin: refresh
        // it once per build and try again.
        let res = download().or_else(|first| {
            if refresh_package_index(log) {
                download()
            } else {
                Err(first)
            }
        });
        if let Err(e) = res {
            let reason = match &e {
                ImageError::Command { stderr, .. } => stderr.clone(),
                other => other.to_string(),
            };
            let _ = fs::remove_dir_all(&tmp);
            return Err(ImageError::Download {
                name: pin.name.clone(),
                version: pin.version.clone(),
                reason,
            });
        }
        let got = fs::read_dir(&tmp)
            .map_err(io(&tmp))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| ImageError::Missing(format!("apt-get left no .deb for {}", pin.name)))?;
        check_sha(&got, pin)?;
        fs::rename(&got, &path).map_err(io(&path))?;
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    } else {
        check_sha(&path, pin)?;
    }
    Ok(path)
}

/// Runs `apt-get update` once per process (only as root, where it can write
/// the index); true when it ran now and succeeded.
fn refresh_package_index(log: &mut dyn FnMut(&str)) -> bool {
    static REFRESHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if REFRESHED.swap(true, std::sync::atomic::Ordering::SeqCst) || !host::is_root() {
        return false;
    }
    log("package not in the local index; running apt-get update");
    run(Command::new("apt-get").args(["update", "-qq"])).is_ok()
}

fn check_sha(path: &Path, pin: &Pin) -> Result<(), ImageError> {
    let actual = hex(&Sha256::digest(fs::read(path).map_err(io(path))?));
    if actual != pin.sha256 {
        return Err(ImageError::Checksum {
            name: pin.name.clone(),
            version: pin.version.clone(),
            expected: pin.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Unpacks a checked package once into the cache.
fn extract(deb: &Path, pin: &Pin, cache: &Path) -> Result<PathBuf, ImageError> {
    let dir = cache.join("extracted").join(&pin.sha256);
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&dir))?;
    write(&dir.join(".complete"), b"")?;
    Ok(dir)
}

/// Copies `include` (a file, a symlink, or "dir/" recursively) from an
/// unpacked package into the tree.
fn add_from_package(
    tree: &mut Tree,
    root: &Path,
    include: &str,
    pkg: &str,
) -> Result<(), ImageError> {
    let rel = include.trim_end_matches('/');
    let src = root.join(rel);
    let meta = fs::symlink_metadata(&src).map_err(|_| {
        ImageError::Missing(format!(
            "{include} is not in package {pkg} (image/packages.lock)"
        ))
    })?;
    add_path(tree, &src, rel, &meta)
}

fn add_path(tree: &mut Tree, src: &Path, rel: &str, meta: &fs::Metadata) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io(src))?;
        tree.symlink(rel, &target.to_string_lossy());
    } else if ft.is_dir() {
        tree.dir(rel);
        let mut entries: Vec<_> = fs::read_dir(src)
            .map_err(io(src))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = fs::symlink_metadata(&p).map_err(io(&p))?;
            let r = format!("{rel}/{}", e.file_name().to_string_lossy());
            add_path(tree, &p, &r, &m)?;
        }
    } else if ft.is_file() {
        let data = fs::read(src).map_err(io(src))?;
        tree.file(rel, data, meta.permissions().mode());
    }
    Ok(())
}

fn squashfs(dir: &Path, out: &Path, epoch: u64) -> Result<(), ImageError> {
    if out.exists() {
        fs::remove_file(out).map_err(io(out))?;
    }
    // Contents are compressed already (bzImage, zstd initramfs): store data
    // uncompressed so that GRUB reads it without decompression.
    run(Command::new("mksquashfs")
        .arg(dir)
        .arg(out)
        .args([
            "-noappend",
            "-no-xattrs",
            "-all-root",
            "-noD",
            "-noF",
            "-quiet",
            "-no-progress",
        ])
        .args([
            "-mkfs-time",
            &epoch.to_string(),
            "-all-time",
            &epoch.to_string(),
        ])
        .args(["-processors", "1"]))?;
    Ok(())
}

/// GRUB for the installed disk: BIOS boot.img/core.img (set up by the
/// installer) and a FAT image of the EFI system partition, gzip-compressed.
fn installed_bootloader(inputs: &Inputs, work: &Path, tdir: &Path) -> Result<(), ImageError> {
    let epoch = inputs.source_date_epoch;
    let node_cfg = inputs.workspace.join("image/grub/node.cfg");
    // BIOS: GRUB's configuration lives on the ESP, partition 2 of the disk
    // GRUB was loaded from.
    let core = tdir.join("bios/core.img");
    let mut bios_mods: Vec<&str> = GRUB_MODULES_COMMON.to_vec();
    bios_mods.extend(GRUB_MODULES_BIOS);
    run(faketime(epoch)
        .args(["grub-mkimage", "-O", "i386-pc", "-p", "(,gpt2)/grub", "-o"])
        .arg(&core)
        .args(&bios_mods))?;
    let boot_img = Path::new("/usr/lib/grub/i386-pc/boot.img");
    fs::copy(boot_img, tdir.join("bios/boot.img")).map_err(io(boot_img))?;

    // UEFI: the removable-media path, so no firmware boot entry is needed.
    let efi = work.join("BOOTX64.EFI");
    let mut efi_mods: Vec<&str> = GRUB_MODULES_COMMON.to_vec();
    efi_mods.extend(GRUB_MODULES_EFI);
    run(faketime(epoch)
        .args(["grub-mkimage", "-O", "x86_64-efi", "-p", "/grub", "-o"])
        .arg(&efi)
        .args(&efi_mods))?;
    let esp = work.join("esp.img");
    let f = fs::File::create(&esp).map_err(io(&esp))?;
    f.set_len(ESP_BYTES).map_err(io(&esp))?;
    drop(f);
    run(faketime(epoch)
        .args([
            "mkfs.fat",
            "-F",
            "32",
            "-n",
            "TANDEM-ESP",
            "-i",
            "7A4E4400",
            "--invariant",
        ])
        .arg(&esp))?;
    let img = esp.to_string_lossy().into_owned();
    for d in ["::/EFI", "::/EFI/BOOT", "::/grub"] {
        run(faketime(epoch)
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["mmd", "-i", &img, d]))?;
    }
    for (src, dst) in [
        (efi.as_path(), "::/EFI/BOOT/BOOTX64.EFI"),
        (node_cfg.as_path(), "::/grub/grub.cfg"),
    ] {
        run(faketime(epoch)
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["mcopy", "-i", &img])
            .arg(src)
            .arg(dst))?;
    }
    // GRUB's environment block: exactly 1024 bytes, padded with '#'. GRUB
    // can only overwrite a file that exists; the installer writes the boot
    // selection into it.
    let mut env = b"# GRUB Environment Block\n".to_vec();
    env.resize(1024, b'#');
    let envf = work.join("grubenv");
    write(&envf, &env)?;
    run(faketime(epoch)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["mcopy", "-i", &img])
        .arg(&envf)
        .arg("::/grub/grubenv"))?;
    let gz = tdir.join("esp.img.gz");
    let data = run(Command::new("gzip").args(["-n", "-9", "-c"]).arg(&esp))?;
    write(&gz, &data)?;
    Ok(())
}

fn faketime(epoch: u64) -> Command {
    let mut c = Command::new("faketime");
    c.arg("-f")
        .arg(fmt_utc(epoch))
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("TZ", "UTC");
    c
}

/// `YYYY-MM-DDThh:mm:ssZ`.
fn fmt_utc_iso(epoch: u64) -> String {
    format!("{}Z", fmt_utc(epoch).replace(' ', "T"))
}

/// `YYYY-MM-DD hh:mm:ss` in UTC (times past year 9999 show as its end).
fn fmt_utc(epoch: u64) -> String {
    let t = i64::try_from(epoch)
        .ok()
        .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
        .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn make_iso(root: &Path, iso: &Path, epoch: u64) -> Result<(), ImageError> {
    set_mtimes(root, epoch)?;
    if iso.exists() {
        fs::remove_file(iso).map_err(io(iso))?;
    }
    let mut cmd = faketime(epoch);
    // Every filesystem GRUB knows: looking for an installed node's disk
    // probes each partition of every disk, and GRUB prints an error for each
    // filesystem module it would try but cannot find.
    let modules = format!(
        "--install-modules=normal linux loopback part_gpt part_msdos part_acorn part_amiga part_apple part_bsd part_dfly part_dvh part_plan part_sun part_sunpc {} loadenv search search_fs_file search_label regexp echo test configfile serial terminal read sleep reboot halt all_video gzio xzio minicmd",
        GRUB_FILESYSTEMS.join(" ")
    );
    cmd.args([
        "grub-mkrescue",
        "--compress=xz",
        "--locales=",
        "--fonts=",
        "--themes=",
    ])
    .arg(modules)
    .arg("-o")
    .arg(iso)
    .arg(root)
    .args(["-V", VOLUME_ID])
    .args(["--", "-volume_date", "all_file_dates", "set_to_mtime"]);
    run(&mut cmd)?;
    Ok(())
}

fn set_mtimes(dir: &Path, epoch: u64) -> Result<(), ImageError> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            if p.is_dir() {
                stack.push(p.clone());
            } else {
                let f = fs::File::options().write(true).open(&p).map_err(io(&p))?;
                f.set_modified(t).map_err(io(&p))?;
            }
        }
        let f = fs::File::open(&d).map_err(io(&d))?;
        f.set_modified(t).map_err(io(&d))?;
    }
    Ok(())
}

fn sums(dir: &Path) -> Result<String, ImageError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = String::new();
    for f in files {
        let rel = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let digest = hex(&Sha256::digest(fs::read(&f).map_err(io(&f))?));
        out.push_str(&format!("{digest}  {rel}\n"));
    }
    Ok(out)
}

fn write(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))
}

fn size(path: &Path) -> Result<u64, ImageError> {
    Ok(fs::metadata(path).map_err(io(path))?.len())
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_initramfs_is_reused_byte_for_byte() {
        if host::find_program("zstd").is_none() {
            eprintln!("zstd is not installed; skipped");
            return;
        }
        let dir = std::env::temp_dir().join(format!("tandem-initrd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cpio = dir.join("initrd.cpio");
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        fs::write(&cpio, &data).unwrap();
        let tools = vec![host::ToolVersion {
            name: "zstd".into(),
            version: "1.5.4+dfsg2-5".into(),
            shapes_image: true,
        }];
        let cache = dir.join("cache");
        let mut lines = Vec::new();
        let (a, b) = (dir.join("a.zst"), dir.join("b.zst"));
        compress_initrd(&cpio, &a, &cache, &tools, &mut |l| lines.push(l.to_owned())).unwrap();
        assert!(lines.is_empty(), "the first build compresses");
        compress_initrd(&cpio, &b, &cache, &tools, &mut |l| lines.push(l.to_owned())).unwrap();
        assert_eq!(lines.len(), 1, "the second build reuses");
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());

        // Other bytes or another zstd: compressed again.
        let other = vec![host::ToolVersion {
            version: "1.5.5".into(),
            ..tools[0].clone()
        }];
        lines.clear();
        compress_initrd(&cpio, &b, &cache, &other, &mut |l| lines.push(l.to_owned())).unwrap();
        fs::write(&cpio, &data[1..]).unwrap();
        compress_initrd(&cpio, &b, &cache, &tools, &mut |l| lines.push(l.to_owned())).unwrap();
        assert!(lines.is_empty());
        let cached = fs::read_dir(cache.join("initrd")).unwrap().count();
        assert_eq!(cached, 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn build_info_marks_the_tools_that_shape_the_image() {
        let inputs = Inputs {
            workspace: PathBuf::new(),
            out_dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
            binaries: Vec::new(),
            source_date_epoch: 1_700_000_000,
            version: "0.1.0+abc".into(),
            toolchain: "rustc 1.95.0".into(),
            signing: signing::Signing {
                key: PathBuf::new(),
                cert: PathBuf::new(),
                keyring: PathBuf::new(),
                development: true,
            },
        };
        let tools = [
            host::ToolVersion {
                name: "apt".into(),
                version: "2.6.1".into(),
                shapes_image: false,
            },
            host::ToolVersion {
                name: "xorriso".into(),
                version: "1.5.4-4".into(),
                shapes_image: true,
            },
        ];
        let info = build_info(&inputs, &tools);
        assert!(info.contains("toolchain=rustc 1.95.0\n"));
        assert!(info.contains("host.apt=2.6.1\n"));
        assert!(info.contains("updates-signed-with=development key"));
        assert!(info.contains("host.xorriso=1.5.4-4  # shapes-image\n"));
        let lock =
            Lock::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("packages.lock")).unwrap();
        let release = release_text(&inputs, &lock, &tools);
        assert!(release.contains("host.xorriso=1.5.4-4\n"));
        assert!(!release.contains("apt"), "{release}");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00:00");
        assert_eq!(fmt_utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(fmt_utc(951_782_400), "2000-02-29 00:00:00");
    }
}
