//! The node's init (PID 1). See the library documentation.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use tandem_init::entropy::{self, SeedFile};
use tandem_init::modalias::{Aliases, Deps};
use tandem_init::{Boot, recovery_address};

const CONFIG: &str = "/config";
/// Where `tandem node-up` writes the cluster's web certificate for a member.
const MEMBER_TLS: &str = "/run/tandem/tls";
/// Group of the web console's unprivileged process (the image's `tandem-web`).
const WEB_GID: &str = "101";

/// The console terminals (kernel command line `tandem.consoles=`), read once.
fn consoles() -> &'static [String] {
    static CONSOLES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CONSOLES.get_or_init(|| {
        Boot::parse(&fs::read_to_string("/proc/cmdline").unwrap_or_default()).console_paths()
    })
}

fn say(text: &str) {
    // Also kept in a log: the console screens redraw over these lines.
    if fs::create_dir_all(LOG_DIR).is_ok()
        && let Ok(mut f) = File::options()
            .create(true)
            .append(true)
            .open(Path::new(LOG_DIR).join("init.log"))
    {
        let _ = writeln!(f, "{text}");
    }
    for c in consoles() {
        if let Ok(mut f) = File::options().write(true).open(c) {
            let _ = f.write_all(format!("{text}\r\n").as_bytes());
        }
    }
}

fn main() {
    // The kernel asks for modules it needs on demand (crypto algorithms,
    // protocols) by running /sbin/modprobe, which is this program.
    let argv0 = std::env::args().next().unwrap_or_default();
    if argv0.ends_with("modprobe") {
        std::process::exit(modprobe(std::env::args().skip(1)));
    }
    // SAFETY: PID 1 is single-threaded here; nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") };
    // The kernel gathers entropy while the drivers load (and keeps what it
    // gathered across the move out of the initramfs).
    entropy::start_kernel_jitter();
    if std::process::id() == 1 && !Path::new("/").join(tandem_init::root::MARKER).exists() {
        // Only returns when the move failed; the node then runs on as it is.
        let e = leave_initramfs();
        say(&format!(
            "tandem-init: staying on the initramfs root: {e:#}"
        ));
    }
    if let Err(e) = early_mounts() {
        say(&format!("tandem-init: {e:#}"));
    }
    let boot = Boot::parse(&fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let start = Instant::now();
    let started_at = entropy::since_kernel_start();
    let loaded = coldplug();
    say(&format!(
        "tandem: {} drivers loaded in {:.1} s (init started {:.1} s after the kernel)",
        loaded,
        start.elapsed().as_secs_f64(),
        started_at.as_secs_f64()
    ));
    let result = match &boot.install {
        Some(_) => {
            random_pool(None);
            install()
        }
        None => node(),
    };
    if let Err(e) = result {
        say("");
        say(&format!("STARTUP FAILED: {e:#}"));
        say(
            "The node cannot continue. Note this message and restart the node, or reinstall it from the install medium.",
        );
    }
    // PID 1 must never exit: keep reaping orphans.
    loop {
        let _ = nix::sys::wait::wait();
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Copies the root filesystem into a tmpfs and restarts there (see
/// `tandem_init::root`); returns only on failure.
fn leave_initramfs() -> anyhow::Error {
    let step = || -> Result<()> {
        let new = Path::new("/newroot");
        fs::create_dir_all(new).context("creating /newroot")?;
        mount(
            Some("tandem-root"),
            new,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        )
        .context("mounting a tmpfs on /newroot")?;
        tandem_init::root::copy_tree(Path::new("/"), new, new)
            .context("copying the root filesystem")?;
        fs::write(new.join(tandem_init::root::MARKER), b"").context("marking the new root")?;
        Ok(())
    };
    if let Err(e) = step() {
        return e;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let err = std::os::unix::process::CommandExt::exec(
        Command::new("/bin/busybox")
            .args(["switch_root", "/newroot", "/init"])
            .args(args),
    );
    anyhow::Error::new(err).context("running switch_root")
}

fn early_mounts() -> Result<()> {
    let m = |src: &str, dst: &str, fs: &str, flags: MsFlags, data: Option<&str>| -> Result<()> {
        fs::create_dir_all(dst).with_context(|| format!("creating {dst}"))?;
        mount(Some(src), dst, Some(fs), flags, data)
            .with_context(|| format!("mounting {fs} on {dst}"))
    };
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    m("proc", "/proc", "proc", nodev, None)?;
    m("sysfs", "/sys", "sysfs", nodev, None)?;
    m(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    m(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("gid=5,mode=620"),
    )?;
    m(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    m(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    m("cgroup2", "/sys/fs/cgroup", "cgroup2", nodev, None)?;
    Ok(())
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Loads modules for the devices present until no new device asks for one
/// (a loaded bus driver reveals further devices), then keeps watching in the
/// background: USB devices, the install stick among them, enumerate seconds
/// after their host controller's driver loads. Returns how many loaded at
/// first.
fn coldplug() -> usize {
    let dir = PathBuf::from("/lib/modules").join(kernel_release());
    let aliases =
        Aliases::parse(&fs::read_to_string(dir.join("modules.alias")).unwrap_or_default());
    let deps = Deps::parse(&fs::read_to_string(dir.join("modules.dep")).unwrap_or_default());
    let mut loaded: BTreeSet<String> = BTreeSet::new();
    let mut tried: BTreeSet<String> = BTreeSet::new();
    // Filesystems, checksums and interfaces no device announces (ext4 asks
    // for crc32c through the crypto API, which cannot load modules here).
    let always = [
        "crc32c_generic",
        "ext4",
        "squashfs",
        "isofs",
        "vfat",
        "nls_cp437",
        "nls_iso8859_1",
        "nls_utf8",
        "ipmi_devintf",
        // RAUC opens /dev/loop-control and /dev/mapper/control for a
        // bundle: they exist only once their drivers are loaded.
        "loop",
        "dm_mod",
        "dm_verity",
    ];
    for m in always {
        load(&dir, &deps, m, &mut loaded, &mut tried);
    }
    for _round in 0..6 {
        if !coldplug_round(&dir, &aliases, &deps, &mut loaded, &mut tried) {
            break;
        }
        // Give new buses (virtio, PCI bridges) a moment to enumerate.
        std::thread::sleep(Duration::from_millis(300));
    }
    let first = loaded.len();
    std::thread::spawn(move || {
        let start = Instant::now();
        loop {
            let pause = if start.elapsed() < Duration::from_secs(90) {
                1
            } else {
                30
            };
            std::thread::sleep(Duration::from_secs(pause));
            coldplug_round(&dir, &aliases, &deps, &mut loaded, &mut tried);
        }
    });
    first
}

/// One pass over the devices' modaliases; true if a new module was tried.
fn coldplug_round(
    dir: &Path,
    aliases: &Aliases,
    deps: &Deps,
    loaded: &mut BTreeSet<String>,
    tried: &mut BTreeSet<String>,
) -> bool {
    let mut wanted = BTreeSet::new();
    let mut stack = vec![PathBuf::from("/sys/devices")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && !ft.is_symlink() {
                stack.push(p);
            } else if e.file_name() == "modalias"
                && let Ok(a) = fs::read_to_string(&p)
            {
                wanted.extend(aliases.lookup(a.trim()));
            }
        }
    }
    let before = tried.len();
    for m in wanted {
        load(dir, deps, &m, loaded, tried);
    }
    tried.len() != before
}

fn load(
    dir: &Path,
    deps: &Deps,
    name: &str,
    loaded: &mut BTreeSet<String>,
    tried: &mut BTreeSet<String>,
) {
    if !tried.insert(name.to_owned()) {
        return;
    }
    let Some(order) = deps.load_order(name) else {
        return;
    };
    for path in order {
        if loaded.contains(&path) {
            continue;
        }
        let Ok(f) = File::open(dir.join(&path)) else {
            continue;
        };
        match nix::kmod::finit_module(&f, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {
                loaded.insert(path);
            }
            Err(e) => {
                // ENODEV and friends are normal for drivers without hardware.
                if e != nix::errno::Errno::ENODEV {
                    say(&format!("tandem: loading {path}: {e}"));
                }
                loaded.insert(path);
            }
        }
    }
}

/// `modprobe [-q] [--] NAME...`: loads modules by name or alias with their
/// dependencies. Returns the exit code (1 if a name matched nothing).
fn modprobe(args: impl Iterator<Item = String>) -> i32 {
    let dir = PathBuf::from("/lib/modules").join(kernel_release());
    let aliases =
        Aliases::parse(&fs::read_to_string(dir.join("modules.alias")).unwrap_or_default());
    let deps = Deps::parse(&fs::read_to_string(dir.join("modules.dep")).unwrap_or_default());
    let loaded_now: BTreeSet<String> = fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let mut code = 0;
    for name in args.filter(|a| !a.starts_with('-')) {
        let mut names = aliases.lookup(&name);
        if deps.load_order(&name).is_some() {
            names.insert(name.replace('-', "_"));
        }
        if names.is_empty() {
            code = 1;
            continue;
        }
        for n in names {
            if loaded_now.contains(&n) {
                continue;
            }
            let (mut loaded, mut tried) = (BTreeSet::new(), BTreeSet::new());
            load(&dir, &deps, &n, &mut loaded, &mut tried);
        }
    }
    code
}

fn install() -> Result<()> {
    let status = Command::new("/usr/sbin/tandem-installer")
        .args(consoles())
        .stdin(Stdio::null())
        .status()
        .context("starting the installer")?;
    if !status.success() {
        bail!(
            "the installer stopped (see above); nothing more will happen until the machine is restarted"
        );
    }
    nix::unistd::sync();
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT).context("restarting")?;
    Ok(())
}

/// The first NIC: the physical interface with the lowest bus address (the
/// left port on the SR2500's back panel).
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("/bin/busybox")
        .arg("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn node() -> Result<()> {
    // Disk controllers of servers (SAS/RAID) may present their disks seconds
    // after their driver loaded.
    const DISK_WAIT: Duration = Duration::from_secs(30);
    let start = Instant::now();
    let mut config_dev = None;
    let mut said = false;
    while config_dev.is_none() && start.elapsed() < DISK_WAIT {
        config_dev = tandem_init::sysfs::partition("config");
        if config_dev.is_none() {
            if !said && start.elapsed() > Duration::from_secs(1) {
                say(&format!(
                    "tandem: waiting for the disk's configuration partition (at most {} s)",
                    DISK_WAIT.as_secs()
                ));
                said = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let config_dev = config_dev.with_context(|| format!("no partition named \"config\" was found within {} s: the disk is missing, its controller has no driver in this system, or it was not installed by the tandem installer", DISK_WAIT.as_secs()))?;
    fs::create_dir_all(CONFIG)?;
    if is_mountpoint(Path::new(CONFIG)) {
        say("tandem: /config is mounted already");
    } else {
        mount_config(&config_dev)?;
    }
    random_pool(Some(Path::new(CONFIG)));
    if let Err(e) = prepare_updates() {
        say(&format!(
            "tandem: updates are not available on this node: {e:#}; reinstall the node from the install medium if this persists"
        ));
    }
    node_on()
}

/// Set once RAUC's configuration is in place: the node then runs the system
/// bus and RAUC's service.
static UPDATES: std::sync::OnceLock<()> = std::sync::OnceLock::new();

/// Mounts the EFI system partition (GRUB's environment block, where the boot
/// selection lives) and writes RAUC's `system.conf` naming this disk's
/// system slots.
fn prepare_updates() -> Result<()> {
    use tandem_init::update;
    let part = |name: &str| {
        tandem_init::sysfs::partition(name)
            .with_context(|| format!("the disk has no partition named \"{name}\""))
    };
    let (esp, a, b) = (part("esp")?, part("system-a")?, part("system-b")?);
    fs::create_dir_all(update::ESP_MOUNT)
        .with_context(|| format!("creating {}", update::ESP_MOUNT))?;
    if !is_mountpoint(Path::new(update::ESP_MOUNT)) {
        mount(
            Some(&esp),
            update::ESP_MOUNT,
            Some("vfat"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            // The kernel's default (ascii) is a module the system does not carry.
            Some("iocharset=iso8859-1"),
        )
        .with_context(|| {
            format!(
                "mounting the EFI system partition {} at {}",
                esp.display(),
                update::ESP_MOUNT
            )
        })?;
    }
    fs::create_dir_all(update::DATA_DIR)
        .with_context(|| format!("creating {}", update::DATA_DIR))?;
    let conf = Path::new(update::SYSTEM_CONF);
    if let Some(dir) = conf.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(conf, update::system_conf(&a, &b))
        .with_context(|| format!("writing {}", conf.display()))?;
    fs::create_dir_all("/run/dbus").context("creating /run/dbus")?;
    let _ = UPDATES.set(());
    Ok(())
}

/// The system bus and RAUC's service, when updates are prepared.
fn update_services() -> Vec<Service> {
    if UPDATES.get().is_none() {
        return Vec::new();
    }
    let mut rauc = Service::new("update service (RAUC)", "/usr/bin/rauc", &["service"]);
    rauc.needs = Some(SYSTEM_BUS);
    vec![
        Service::new(
            "system bus",
            "/usr/bin/dbus-daemon",
            &["--system", "--nofork", "--nopidfile"],
        ),
        rauc,
    ]
}

/// The system bus's socket: RAUC's service starts once it exists.
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// How long init waits for the random pool before it says that it cannot
/// make it ready.
const RANDOM_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes sure the kernel's random pool is ready before anything that needs
/// random numbers starts (see `tandem_init::entropy`), and says when. With
/// `config`, the seed file there is credited and then replaced.
fn random_pool(config: Option<&Path>) {
    let seed = config.map(SeedFile::in_dir);
    let mut from_seed = false;
    if let Some(seed) = &seed {
        match seed.load() {
            Ok(credited) => from_seed = credited,
            Err(e) => say(&format!(
                "tandem: the random seed file {} could not be read: {e}",
                seed.path().display()
            )),
        }
    }
    let was_ready = entropy::pool_ready();
    let mut waiting = |waited: Duration| {
        let s = waited.as_secs();
        if s == 1 || s.is_multiple_of(10) {
            say(&format!(
                "tandem: waiting for the kernel's random pool ({s} s of at most {} s)",
                RANDOM_TIMEOUT.as_secs()
            ));
        }
    };
    if entropy::wait_ready(RANDOM_TIMEOUT, &mut waiting) {
        let how = if was_ready && from_seed {
            " (seed file credited)"
        } else {
            ""
        };
        // The kernel's own record says when; without it, now.
        let at = entropy::ready_at().unwrap_or_else(entropy::since_kernel_start);
        say(&format!(
            "tandem: random pool ready {:.1} s after the kernel started{how}",
            at.as_secs_f64()
        ));
    } else {
        say(&format!(
            "tandem: THE RANDOM POOL IS NOT READY after {} s: programs that need random numbers (the installer, the web console's certificate) wait until the kernel has gathered enough. Attach a hardware random number generator, or enable the CPU's RDRAND in the firmware setup, and restart.",
            RANDOM_TIMEOUT.as_secs()
        ));
        std::thread::spawn(|| {
            while !entropy::pool_ready() {
                std::thread::sleep(Duration::from_secs(1));
            }
            say(&format!(
                "tandem: random pool ready {:.1} s after the kernel started",
                entropy::since_kernel_start().as_secs_f64()
            ));
        });
    }
    if let Some(seed) = &seed
        && entropy::pool_ready()
        && let Err(e) = seed.refresh()
    {
        say(&format!(
            "tandem: the random seed file {} could not be written: {e}",
            seed.path().display()
        ));
    }
}

/// Whether `path` is a mount point (another device than its parent).
fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), path.parent().map(fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

fn mount_config(config_dev: &Path) -> Result<()> {
    mount(
        Some(config_dev),
        CONFIG,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .with_context(|| {
        format!(
            "mounting the configuration partition {}",
            config_dev.display()
        )
    })?;
    Ok(())
}

fn node_on() -> Result<()> {
    let node = fs::read_to_string(Path::new(CONFIG).join("node"))
        .context("reading the node identity (/config/node)")?
        .trim()
        .to_owned();
    let recovery = recovery_address(&node)
        .with_context(|| format!("the node identity {node:?} is neither node1 nor node2"))?;
    ip(&["link", "set", "lo", "up"])?;
    let nic = tandem_init::sysfs::nics()
        .into_iter()
        .next()
        .context("no network interface was found")?;

    catch_power_signals();
    // A committed configuration makes the node a cluster member; until then,
    // and whenever bringing up the member's network fails, it stays reachable
    // on the recovery network.
    let mut member_failed = None;
    loop {
        if member_failed.is_none() && tandem_config::store::is_configured(Path::new(CONFIG)) {
            match member(&node, &nic) {
                Ok(services) => {
                    let mut trial = trial_watch();
                    let running =
                        supervise(services, || power_requested() || trial_over(&mut trial));
                    power_off_or_restart(running);
                }
                Err(e) => {
                    say(&format!(
                        "tandem: the configured network could not be brought up: {e:#}"
                    ));
                    say(&format!(
                        "tandem: the node stays in recovery mode on {recovery} (red cable) so that it can be repaired"
                    ));
                    member_failed = Some(format!("{e:#}"));
                }
            }
        }
        let state = match &member_failed {
            None => "recovery".to_owned(),
            Some(e) => format!("recovery - configured network failed: {e}"),
        };
        let _ = nix::unistd::sethostname(&node);
        if let Err(e) = ip(&["addr", "add", &format!("{recovery}/24"), "dev", &nic]) {
            // Present already after a failed move to the member network.
            if !format!("{e:#}").contains("exists") {
                return Err(e);
            }
        }
        ip(&["link", "set", &nic, "up"])?;
        let services = node_services(&node, &nic, recovery, &state, &[recovery_clusterd(&node)])?;
        // Once an activation commits a configuration, the node moves to its
        // configured network after the page that ran it has shown the new address.
        let mut watch = tandem_init::activated::MoveWatch::default();
        let _ = fs::remove_file(ACTIVATION_SHOWN);
        let running = supervise(services, || {
            if power_requested() {
                return true;
            }
            let committed =
                member_failed.is_none() && tandem_config::store::is_configured(Path::new(CONFIG));
            watch.due(
                Instant::now(),
                committed,
                Path::new(ACTIVATION_SHOWN).exists(),
            )
        });
        if power_requested() {
            power_off_or_restart(running);
        }
        stop(running, Duration::from_secs(5));
        say("tandem: a configuration was activated; moving to the configured network");
    }
}

/// clusterd's durable state (its `update.json` says which system an update waits for).
const CLUSTERD_STATE: &str = "/config/clusterd";

/// A boot that tries a newly installed system (see [`tandem_init::trial`]).
struct Trial {
    /// When init restarts the node if the system has not been kept by then.
    at: Instant,
    /// The slot that booted (`a`/`b`).
    slot: String,
    /// The version tried.
    version: String,
}

/// The trial of this boot, if it tries a newly installed system.
fn trial_watch() -> Option<Trial> {
    let boot = Boot::parse(&fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let slot = boot.slot?;
    let version = tandem_init::trial::waiting_for(Path::new(CLUSTERD_STATE), &slot)?;
    let deadline = tandem_config::Store::open(CONFIG)
        .ok()
        .and_then(|s| s.current().ok().flatten())
        .map_or(tandem_config::schema::DEFAULT_TRIAL_DEADLINE, |c| {
            c.updates.trial_deadline()
        });
    let wait = Duration::from(deadline) + tandem_init::trial::MARGIN;
    say(&format!(
        "tandem: trying the new system {version}: kept once the node is healthy, otherwise the node starts the previous one within {} min",
        wait.as_secs() / 60
    ));
    Some(Trial {
        at: Instant::now() + wait,
        slot,
        version,
    })
}

/// Whether the trial ran out with the new system still not kept (nor held because
/// the node runs the services): then init restarts the node.
fn trial_over(trial: &mut Option<Trial>) -> bool {
    let Some(t) = trial.as_ref() else {
        return false;
    };
    if Instant::now() < t.at {
        return false;
    }
    if tandem_init::trial::waiting_for(Path::new(CLUSTERD_STATE), &t.slot).is_none() {
        *trial = None;
        return false;
    }
    say(&format!(
        "tandem: the new system {} was not kept in time (the cluster daemon never decided): restarting into the previous system",
        t.version
    ));
    POWER.store(nix::libc::SIGTERM, std::sync::atomic::Ordering::SeqCst);
    true
}

/// Where clusterd (recovery mode) notes that the progress page has shown the
/// finished activation (`tandem_runtime::admin::activation::SHOWN_MARKER` beside
/// its control socket).
const ACTIVATION_SHOWN: &str = "/run/tandem/activation-shown";

/// clusterd in recovery mode: the control API alone, through which the web
/// console checks and activates an archive (and the console screen sets the
/// web console's password).
fn recovery_clusterd(node: &str) -> Service {
    Service::new(
        "cluster daemon (recovery mode)",
        "/usr/sbin/clusterd",
        &[
            "--node",
            node,
            "--recovery",
            "--store",
            CONFIG,
            "--control-group",
            WEB_GID,
        ],
    )
}

/// Brings up the configured network (`tandem node up`) and returns the
/// services of a cluster member: clusterd with replication, the web console
/// on the external address, the console screens.
fn member(node: &str, nic: &str) -> Result<Vec<Service>> {
    let cfg = tandem_config::Store::open(CONFIG)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .current()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("the configuration disappeared")?;
    let id: tandem_config::NodeId = node
        .parse()
        .map_err(|e| anyhow::anyhow!("the node identity {node:?}: {e}"))?;
    let out = Command::new("/usr/bin/tandem")
        .args(["node-up", "--store", CONFIG])
        .stdin(Stdio::null())
        .output()
        .context("running tandem node-up")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        say(&format!("tandem: {line}"));
    }
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let address = cfg.network.node(id).address.addr().to_string();
    let clusterd = Service::new(
        "cluster daemon",
        "/usr/sbin/clusterd",
        &[
            "--node",
            node,
            "--config",
            &format!("{CONFIG}/config.toml"),
            "--store",
            CONFIG,
            "--replication",
            // The packet filter, at start and with every change of `access`.
            "--firewall",
            // sshd's files follow changes of `access`, root's line of /etc/shadow
            // changes of `passwords` too.
            "--sshd-dir",
            SSH_DIR,
            "--sshd-shadow",
            "/etc/shadow",
            // chronyd's configuration follows changes of `network.ntp-servers`.
            "--chrony-conf",
            CHRONY_CONF,
            // The clock's synchronisation in the status, and its alert.
            "--time-sync",
            // The web console's unprivileged process reaches the control socket.
            "--control-group",
            WEB_GID,
        ],
    );
    let mut first = vec![clusterd];
    if Path::new(SSHD).exists() {
        // Debian's sshd needs its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        first.push(Service::new(
            "ssh server",
            SSHD,
            &["-D", "-e", "-f", &format!("{SSH_DIR}/sshd_config")],
        ));
    } else {
        say("no SSH server in this system image: log in on the web console or the local console");
    }
    // chronyd runs while its configuration exists: `tandem node-up` writes it when time
    // servers are configured, clusterd rewrites or removes it when they change (and
    // ends chronyd, which cannot read it again).
    if Path::new(CHRONYD).exists() {
        let mut chronyd = Service::new(
            "time synchronisation (chronyd)",
            CHRONYD,
            &["-d", "-u", "_chrony", "-f", CHRONY_CONF],
        );
        chronyd.needs = Some(CHRONY_CONF);
        first.push(chronyd);
    }
    node_services(node, nic, &address, "member", &first)
}

/// clusterd's control socket (both modes).
const CONTROL_SOCKET: &str = "/run/tandem/control.sock";
/// How long the web console waits for clusterd's control socket at most.
const CONSOLE_WAITS_FOR_CLUSTERD: Duration = Duration::from_secs(60);

/// chrony's daemon, and its configuration (`tandem node-up` writes it from
/// `network.ntp-servers`).
const CHRONYD: &str = "/usr/sbin/chronyd";
const CHRONY_CONF: &str = "/run/tandem/chrony.conf";

/// OpenSSH's server, and the directory of its files (`tandem node-up` writes them,
/// clusterd rewrites them with every change of `access`).
const SSHD: &str = "/usr/sbin/sshd";
const SSH_DIR: &str = "/run/tandem/ssh";

/// The web console on `address` and a console screen per terminal, after
/// `first`.
fn node_services(
    node: &str,
    nic: &str,
    address: &str,
    state: &str,
    first: &[Service],
) -> Result<Vec<Service>> {
    // A member serves the cluster's own certificate (written by `tandem
    // node-up`) and HSTS; recovery mode its self-made one.
    let member = state == "member";
    let tls = if member {
        PathBuf::from(MEMBER_TLS)
    } else {
        Path::new(CONFIG).join("recovery/tls")
    };
    let out = Command::new("/usr/sbin/tandem-web")
        .args(["cert", "--dir"])
        .arg(&tls)
        .args(["--name", node, "--address", address])
        .output()
        .context("preparing the web console's certificate")?;
    if !out.status.success() {
        bail!(
            "preparing the web console's certificate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let fingerprint = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let tls = tls.to_string_lossy().into_owned();
    let mut services = update_services();
    services.extend(first.iter().map(Service::again));
    let mut web = vec![
        "serve",
        "--node",
        node,
        "--listen",
        address,
        "--tls-dir",
        &tls,
    ];
    if member {
        web.push("--hsts");
    }
    // The console answers once clusterd listens (its first page needs it), or after
    // a minute without it, to say that clusterd does not answer.
    let mut console = Service::new("web console", "/usr/sbin/tandem-web", &web);
    console.needs = Some(CONTROL_SOCKET);
    console.needs_until = Some(Instant::now() + CONSOLE_WAITS_FOR_CLUSTERD);
    services.push(console);
    let url = format!("https://{address}/");
    for tty in consoles() {
        services.push(Service::new(
            &format!("console on {tty}"),
            "/usr/sbin/tandem-console",
            &[
                "--tty",
                tty,
                "--node",
                node,
                "--state",
                state,
                "--address",
                &url,
                "--fingerprint",
                &fingerprint,
                "--nic",
                nic,
            ],
        ));
    }
    Ok(services)
}

/// A supervised program.
struct Service {
    name: String,
    program: String,
    args: Vec<String>,
    child: Option<Child>,
    started: Instant,
    /// A file that must exist before the program starts (a socket of
    /// another service).
    needs: Option<&'static str>,
    /// Past this, the program starts without what it needs (so that it can
    /// say what is missing); `None`: it waits for it as long as it takes.
    needs_until: Option<Instant>,
}

/// Where the services' output goes (tmpfs; each file is cut back when it
/// grows past [`LOG_LIMIT`], the older half kept as `NAME.log.old`).
const LOG_DIR: &str = "/run/log";
const LOG_LIMIT: u64 = 4 << 20;

impl Service {
    /// The service's log file, `/run/log/PROGRAM.log`, opened for appending.
    fn log(&self) -> Option<File> {
        let name = Path::new(&self.program)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        fs::create_dir_all(LOG_DIR).ok()?;
        File::options()
            .create(true)
            .append(true)
            .open(Path::new(LOG_DIR).join(format!("{name}.log")))
            .ok()
    }

    /// Keeps the log bounded: past the limit its content moves to `.old`
    /// and the file starts empty (the service's append-mode descriptor
    /// writes on at the new end).
    fn trim_log(&self) {
        let Some(name) = Path::new(&self.program).file_name() else {
            return;
        };
        let path = Path::new(LOG_DIR).join(format!("{}.log", name.to_string_lossy()));
        if fs::metadata(&path).is_ok_and(|m| m.len() > LOG_LIMIT) {
            let _ = fs::copy(&path, path.with_extension("log.old"));
            if let Ok(f) = File::options().write(true).open(&path) {
                let _ = f.set_len(0);
            }
        }
    }

    /// The same program, not started.
    fn again(&self) -> Self {
        Self {
            name: self.name.clone(),
            program: self.program.clone(),
            args: self.args.clone(),
            child: None,
            started: Instant::now(),
            needs: self.needs,
            needs_until: self.needs_until,
        }
    }

    fn new(name: &str, program: &str, args: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            started: Instant::now(),
            needs: None,
            needs_until: None,
        }
    }
}

/// Whether a service waits for what it needs (`needed_there`: the file it needs
/// exists, or it needs none), with `until` the time past which it starts without
/// it. A service that waits is neither started nor started again when it exits:
/// chronyd runs only while its configuration exists.
fn waits(needed_there: bool, until: Option<Instant>, now: Instant) -> bool {
    !needed_there && until.is_none_or(|t| now < t)
}

/// Starts every service and restarts any that exits, at most every 2 s, until
/// `done` says so; returns the services, still running.
fn supervise(mut services: Vec<Service>, mut done: impl FnMut() -> bool) -> Vec<Service> {
    loop {
        if done() {
            return services;
        }
        for s in &mut services {
            if waits(
                s.needs.is_none_or(|p| Path::new(p).exists()),
                s.needs_until,
                Instant::now(),
            ) {
                continue;
            }
            let running = match &mut s.child {
                Some(c) => matches!(c.try_wait(), Ok(None)),
                None => false,
            };
            if !running && (s.child.is_none() || s.started.elapsed() > Duration::from_secs(2)) {
                if s.child.is_some() {
                    say(&format!("tandem: {} exited; restarting it", s.name));
                }
                s.started = Instant::now();
                let mut cmd = Command::new(&s.program);
                cmd.args(&s.args).stdin(Stdio::null());
                // Console screens draw on their terminal; everything else
                // logs to a file, not over the screen.
                if !s.program.ends_with("tandem-console")
                    && let Some(log) = s.log()
                    && let Ok(err) = log.try_clone()
                {
                    cmd.stdout(log).stderr(err);
                }
                match cmd.spawn() {
                    Ok(c) => s.child = Some(c),
                    Err(e) => say(&format!("tandem: cannot start {}: {e}", s.name)),
                }
            }
        }
        for s in &services {
            s.trim_log();
        }
        // Reap orphans re-parented to PID 1.
        while let Ok(s) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        {
            if s == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What was asked of init by signal: 0 nothing, else the signal number.
static POWER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_power_signal(sig: nix::libc::c_int) {
    POWER.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// SIGTERM asks init to restart the node, SIGUSR2 to power it off (the web
/// console's Maintenance page sends them).
fn catch_power_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_power_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGUSR2] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            say(&format!("tandem-init: cannot catch {sig}: {e}"));
        }
    }
}

fn power_requested() -> bool {
    POWER.load(std::sync::atomic::Ordering::SeqCst) != 0
}

/// Stops the services (clusterd releases what it holds, so the other node
/// takes over), writes everything out, unmounts and restarts or powers off.
fn power_off_or_restart(running: Vec<Service>) -> ! {
    let off = POWER.load(std::sync::atomic::Ordering::SeqCst) == nix::libc::SIGUSR2;
    say(if off {
        "tandem: shutting down: stopping the services (the other node takes them over)"
    } else {
        "tandem: restarting: stopping the services (the other node takes them over)"
    });
    // clusterd's release (VEs, /vz, replication) may take a while.
    stop(running, Duration::from_secs(120));
    // A fresh seed for the next boot (as at every boot: never credit one twice).
    if entropy::pool_ready()
        && let Err(e) = SeedFile::in_dir(Path::new(CONFIG)).refresh()
    {
        say(&format!("tandem: writing the random seed file: {e}"));
    }
    nix::unistd::sync();
    for m in ["/vz", tandem_init::update::ESP_MOUNT, CONFIG] {
        if let Err(e) = nix::mount::umount(m)
            && e != nix::errno::Errno::EINVAL
        {
            say(&format!("tandem: unmounting {m}: {e}"));
        }
    }
    nix::unistd::sync();
    say(if off {
        "tandem: powering off"
    } else {
        "tandem: restarting"
    });
    let mode = if off {
        nix::sys::reboot::RebootMode::RB_POWER_OFF
    } else {
        nix::sys::reboot::RebootMode::RB_AUTOBOOT
    };
    let e = nix::sys::reboot::reboot(mode);
    say(&format!(
        "tandem: the kernel refused to {}: {e:?}",
        if off { "power off" } else { "restart" }
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Ends the services (our own children, by PID): SIGTERM, then SIGKILL after
/// `grace`.
fn stop(services: Vec<Service>, grace: Duration) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let mut children: Vec<Child> = services.into_iter().filter_map(|s| s.child).collect();
    for c in &children {
        if let Ok(pid) = i32::try_from(c.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        if children.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_waits_while_what_it_needs_is_missing() {
        let now = Instant::now();
        // chronyd: no configuration, no start (and no restart), for as long as it takes.
        assert!(waits(false, None, now));
        assert!(!waits(true, None, now));
        // The console: waits for clusterd's socket until its deadline.
        let later = now + Duration::from_secs(60);
        assert!(waits(false, Some(later), now));
        assert!(!waits(false, Some(now), later));
        assert!(!waits(true, Some(later), now));
    }
}
