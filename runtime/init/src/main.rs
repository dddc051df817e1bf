//! The node's init (PID 1). See the library documentation.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use tandem_init::modalias::{Aliases, Deps};
use tandem_init::{Boot, recovery_address};

const CONSOLES: [&str; 2] = ["/dev/tty1", "/dev/ttyS0"];
const CONFIG: &str = "/config";

fn say(text: &str) {
    for c in CONSOLES {
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
    let loaded = coldplug();
    say(&format!(
        "tandem: {} drivers loaded in {:.1} s",
        loaded,
        start.elapsed().as_secs_f64()
    ));
    let result = match &boot.install {
        Some(_) => install(),
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
        .args(CONSOLES)
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
    let start = Instant::now();
    let mut config_dev = None;
    while config_dev.is_none() && start.elapsed() < Duration::from_secs(10) {
        config_dev = tandem_init::sysfs::partition("config");
        if config_dev.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let config_dev = config_dev.context("no partition named \"config\" was found: this disk was not installed by the tandem installer")?;
    fs::create_dir_all(CONFIG)?;
    mount(
        Some(&config_dev),
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
    let node = fs::read_to_string(Path::new(CONFIG).join("node"))
        .context("reading the node identity (/config/node)")?
        .trim()
        .to_owned();
    let address = recovery_address(&node)
        .with_context(|| format!("the node identity {node:?} is neither node1 nor node2"))?;
    let _ = nix::unistd::sethostname(&node);

    ip(&["link", "set", "lo", "up"])?;
    let nic = tandem_init::sysfs::nics()
        .into_iter()
        .next()
        .context("no network interface was found")?;
    ip(&["addr", "add", &format!("{address}/24"), "dev", &nic])?;
    ip(&["link", "set", &nic, "up"])?;

    let tls = Path::new(CONFIG).join("recovery/tls");
    let out = Command::new("/usr/sbin/tandem-web")
        .args(["cert", "--dir"])
        .arg(&tls)
        .args(["--name", &node, "--address", address])
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
    let mut services = vec![Service::new(
        "web console",
        "/usr/sbin/tandem-web",
        &[
            "serve",
            "--node",
            &node,
            "--listen",
            address,
            "--tls-dir",
            &tls,
            "--config-dir",
            CONFIG,
        ],
    )];
    let url = format!("https://{address}/");
    for tty in CONSOLES {
        services.push(Service::new(
            &format!("console on {tty}"),
            "/usr/sbin/tandem-console",
            &[
                "--tty",
                tty,
                "--node",
                &node,
                "--state",
                "recovery",
                "--address",
                &url,
                "--fingerprint",
                &fingerprint,
                "--nic",
                &nic,
            ],
        ));
    }
    supervise(services)
}

/// A supervised program.
struct Service {
    name: String,
    program: String,
    args: Vec<String>,
    child: Option<Child>,
    started: Instant,
}

impl Service {
    fn new(name: &str, program: &str, args: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            started: Instant::now(),
        }
    }
}

/// Starts every service and restarts any that exits, at most every 2 s.
fn supervise(mut services: Vec<Service>) -> Result<()> {
    loop {
        for s in &mut services {
            let running = match &mut s.child {
                Some(c) => matches!(c.try_wait(), Ok(None)),
                None => false,
            };
            if !running && (s.child.is_none() || s.started.elapsed() > Duration::from_secs(2)) {
                if s.child.is_some() {
                    say(&format!("tandem: {} exited; restarting it", s.name));
                }
                s.started = Instant::now();
                match Command::new(&s.program)
                    .args(&s.args)
                    .stdin(Stdio::null())
                    .spawn()
                {
                    Ok(c) => s.child = Some(c),
                    Err(e) => say(&format!("tandem: cannot start {}: {e}", s.name)),
                }
            }
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
