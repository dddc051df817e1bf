//! The project's two commands.
//!
//! - `cargo xtask image`: builds the install image; the last line printed is
//!   its path.
//! - `cargo xtask bundle`: the same build, and the signed RAUC update bundle
//!   of its system image; the last line printed is the bundle's path.
//! - `cargo xtask test`: installs what the tests need, builds the image, runs
//!   every test of the workspace, then the rig tests (network namespaces and
//!   QEMU) against that image.
//!
//! Missing host tools are installed with apt-get when running as root;
//! otherwise one line names the packages to install.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Debian packages the test rigs drive, beyond those of the image build.
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("ip", "iproute2"),
    ("socat", "socat"),
    ("ipmi_sim", "openipmi"),
    ("ipmitool", "ipmitool"),
    // The sweep bench compares against freeipmi's ipmi-sensors.
    ("ipmi-sensors", "freeipmi-tools"),
    ("openssl", "openssl"),
    // The OCI runtime of the VE tests.
    ("crun", "crun"),
    // The name server of the direct-delivery (MX) tests.
    ("dnsmasq", "dnsmasq-base"),
    // The NTP client and the local NTP server of the chrony tests.
    ("chronyd", "chrony"),
    // The update tests drive RAUC's service on a bus of their own, with its GRUB
    // back-end.
    ("rauc", "rauc"),
    ("dbus-daemon", "dbus"),
    ("grub-editenv", "grub-common"),
    // Browser tests of the web console (WebDriver).
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];
const TEST_FILES: &[(&str, &str)] = &[
    // drbd-utils' back-end for the kernel's DRBD 8.4.
    ("/lib/drbd/drbdadm-84", "drbd-utils"),
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    // The SMTP server the notification tests deliver to.
    (
        "/usr/lib/python3/dist-packages/aiosmtpd",
        "python3-aiosmtpd",
    ),
    // The packet filter and the SSH server and client of the firewall and sshd tests
    // (nft also drops heartbeats on the pair scenarios' switch).
    // The busybox the VE tests' built-in template copies.
    ("/bin/busybox", "busybox-static"),
    ("/usr/sbin/nft", "nftables"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/bin/ssh", "openssh-client"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
];

/// Binaries of the node: (package, binary, path in the root filesystem).
const NODE_BINARIES: &[(&str, &str, &str)] = &[
    ("tandem-init", "tandem-init", "usr/sbin/tandem-init"),
    (
        "tandem-installer",
        "tandem-installer",
        "usr/sbin/tandem-installer",
    ),
    ("tandem-recovery", "tandem-web", "usr/sbin/tandem-web"),
    (
        "tandem-recovery",
        "tandem-console",
        "usr/sbin/tandem-console",
    ),
    ("tandem-runtime", "clusterd", "usr/sbin/clusterd"),
    ("tandem-runtime", "tandem", "usr/bin/tandem"),
];

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("image") => image().map(|iso| println!("{}", iso.display())),
        Some("bundle") => version_suffix()
            .and_then(bundle)
            .map(|b| println!("{}", b.display())),
        Some("test") => test(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("scenarios") => scenarios(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask image          build the install image\n       cargo xtask bundle         build the install image and the signed update bundle\n       cargo xtask test [FILTER]   run the whole test suite\n       cargo xtask scenarios --list | --all | NAME...\n                                   the release catalogue on QEMU machines (report in target/scenarios/)\n       cargo xtask fuzz [SECONDS]  build the fuzz targets and run each (default 60 s)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Installs missing Debian packages, or says in one line what to install.
fn ensure_packages(mut missing: Vec<&str>) -> Result<()> {
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !tandem_image::host::is_root() {
        bail!("missing host packages; install them with: sudo apt-get install {list}");
    }
    eprintln!("xtask: installing {list}");
    let install = |update: bool| -> Result<bool> {
        if update {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        }
        Ok(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?
            .success())
    };
    if !install(false)? && !install(true)? {
        bail!("apt-get could not install: {list}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(workspace())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the install image and returns its path.
fn image() -> Result<PathBuf> {
    Ok(build(version_suffix()?)?.0.iso)
}

/// Builds the install image and, from the same build, the signed update
/// bundle of its system image; returns the bundle's path. With `suffix`,
/// the version carries it and the build goes to `target/image-SUFFIX`.
fn bundle(suffix: Option<String>) -> Result<PathBuf> {
    let missing: Vec<&str> = tandem_image::bundle::TOOLS
        .iter()
        .filter(|(prog, _)| tandem_image::host::find_program(prog).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    ensure_packages(missing).context("the update bundle needs RAUC on this host")?;
    let (out, inputs) = build(suffix)?;
    let stamp = git(&[
        "log",
        "-1",
        "--format=%cd",
        "--date=format-local:%Y%m%d%H%M%S",
    ])
    .unwrap_or_else(|| inputs.source_date_epoch.to_string());
    let bundle = tandem_image::bundle::build(
        &out.system_image,
        &inputs.version,
        &stamp,
        &workspace().join("CHANGELOG.md"),
        &inputs.signing,
        &inputs.out_dir,
    )?;
    let bytes = std::fs::metadata(&bundle).map_or(0, |m| m.len());
    eprintln!(
        "bundle: {} ({} MiB, version {}, signed with the {})",
        bundle.display(),
        bytes >> 20,
        inputs.version,
        inputs.signing.describe()
    );
    let changelog = std::fs::read_to_string(workspace().join("CHANGELOG.md"))
        .context("reading CHANGELOG.md")?;
    let index = tandem_image::bundle::write_index(&bundle, &inputs.version, &changelog)?;
    eprintln!(
        "bundle: the update server's list is {} (publish it beside the bundle)",
        index.display()
    );
    Ok(bundle)
}

/// The key of update bundles: `TANDEM_SIGNING_KEY` and `TANDEM_SIGNING_CERT`
/// (with `TANDEM_SIGNING_CA`, the CA nodes trust, when the certificate is not
/// self-signed), or else the development keys under `target/signing/`.
fn signing(target_dir: &Path) -> Result<tandem_image::signing::Signing> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (var("TANDEM_SIGNING_KEY"), var("TANDEM_SIGNING_CERT")) {
        (Some(key), Some(cert)) => Ok(tandem_image::signing::Signing::release(
            key,
            cert,
            var("TANDEM_SIGNING_CA"),
        )?),
        (None, None) => Ok(tandem_image::signing::Signing::development(
            &target_dir.join("signing/development"),
            &mut |l| eprintln!("image: {l}"),
        )?),
        _ => bail!(
            "set both TANDEM_SIGNING_KEY and TANDEM_SIGNING_CERT (the release key), or neither (development key)"
        ),
    }
}

/// `TANDEM_VERSION_SUFFIX`, appended to the version (e.g. `.v2` for a test's
/// second version of the same tree); its build goes to `target/image-SUFFIX`
/// (without a leading `.`, `+`, `-` or `_`).
fn version_suffix() -> Result<Option<String>> {
    match std::env::var("TANDEM_VERSION_SUFFIX") {
        Ok(s) if !s.is_empty() => {
            if !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
            {
                bail!(
                    "TANDEM_VERSION_SUFFIX may hold only letters, digits and . + - _ (got {s:?})"
                );
            }
            Ok(Some(s))
        }
        _ => Ok(None),
    }
}

/// Builds the install image (its version with `suffix`, into
/// `target/image-SUFFIX`); returns what was built and from what.
fn build(suffix: Option<String>) -> Result<(tandem_image::Output, tandem_image::Inputs)> {
    let started = Instant::now();
    ensure_packages(tandem_image::host::missing_packages())?;
    let root = workspace();
    let target_dir = root.join("target");
    // Static binaries, with build paths mapped away so that the bytes do not
    // depend on where the tree is checked out. `getrandom` calls the kernel's
    // getrandom() directly: in a static binary its default looks the libc
    // function up with dlsym, fails, and falls back to polling /dev/random,
    // which never starts the kernel's jitter entropy generator (minutes of
    // waiting at boot on a machine without a hardware RNG).
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .unwrap_or_default();
    let rustflags = format!(
        "-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\" --remap-path-prefix={}=/tandem --remap-path-prefix={home}=/cargo",
        root.display()
    );
    let mut build = cargo();
    build
        .args(["build", "--release", "--locked", "--target", TARGET])
        .env("RUSTFLAGS", rustflags)
        .current_dir(&root);
    for (pkg, bin, _) in NODE_BINARIES {
        build.args(["-p", pkg, "--bin", bin]);
    }
    run(&mut build)?;
    let bindir = target_dir.join(TARGET).join("release");
    let epoch: u64 = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().context("SOURCE_DATE_EPOCH is not a number")?,
        Err(_) => git(&["log", "-1", "--format=%ct"])
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_735_689_600),
    };
    let mut version = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => format!("{}+{rev}", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    };
    let out_dir = match &suffix {
        Some(s) => {
            version.push_str(s);
            target_dir.join(format!(
                "image-{}",
                s.trim_start_matches(['.', '+', '-', '_'])
            ))
        }
        None => target_dir.join("image"),
    };
    let signing = signing(&target_dir)?;
    let inputs = tandem_image::Inputs {
        workspace: root.clone(),
        out_dir,
        cache_dir: cache_dir(),
        binaries: NODE_BINARIES
            .iter()
            .map(|(_, bin, dest)| tandem_image::Binary {
                dest: (*dest).to_owned(),
                source: bindir.join(bin),
            })
            .collect(),
        source_date_epoch: epoch,
        version,
        toolchain: rustc_version(),
        signing,
    };
    let out = tandem_image::build(&inputs, &mut |l| eprintln!("image: {l}"))?;
    let sbom = tandem_image::sbom::write(&inputs, &node_crates()?)?;
    eprintln!("image: software bill of materials: {}", sbom.display());
    eprintln!("image: built in {:.1} s", started.elapsed().as_secs_f64());
    Ok((out, inputs))
}

/// The crates compiled into the node's programs (`cargo tree`, normal dependencies,
/// one per line), for the software bill of materials.
fn node_crates() -> Result<String> {
    let mut tree = cargo();
    tree.args([
        "tree",
        "--locked",
        "--offline",
        "-e",
        "normal",
        "--target",
        TARGET,
        "--prefix",
        "none",
        "--format",
        "{p}",
    ])
    .current_dir(workspace());
    for (pkg, _, _) in NODE_BINARIES {
        tree.args(["-p", pkg]);
    }
    let out = tree.output().context("running cargo tree")?;
    if !out.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `rustc -V` of the compiler cargo uses here (the pinned toolchain).
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("-V")
        .current_dir(workspace())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

fn cache_dir() -> PathBuf {
    if let Ok(d) = std::env::var("TANDEM_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|_| workspace().join("target"));
    base.join("tandem-image")
}

/// Installs what the rig tests drive. Twice if need be: installing one
/// package can remove another (Debian's qemu-system-x86 replaces a newer
/// qemu-utils from backports, taking qemu-img with it).
fn ensure_test_packages() -> Result<()> {
    let missing = || {
        let mut m: Vec<&str> = TEST_PACKAGES
            .iter()
            .filter(|(prog, _)| tandem_image::host::find_program(prog).is_none())
            .map(|(_, pkg)| *pkg)
            .collect();
        m.extend(
            TEST_FILES
                .iter()
                .filter(|(f, _)| !Path::new(f).exists())
                .map(|(_, p)| *p),
        );
        m.extend(tandem_image::host::missing_packages());
        m
    };
    ensure_packages(missing())?;
    ensure_packages(missing())
}

/// The version suffix of the update test's second version.
const UPDATE_SUFFIX: &str = ".v2";

fn test(args: &[String]) -> Result<()> {
    let started = Instant::now();
    ensure_test_packages()?;
    let iso = image()?;
    let root = workspace();
    let image_dir = iso.parent().map(Path::to_owned).unwrap_or_default();
    // The same inputs must give the same bytes: build again and compare.
    let sum =
        |p: &Path| std::fs::read_to_string(p.with_extension("iso.sha256")).unwrap_or_default();
    let first = sum(&iso);
    eprintln!("xtask: rebuilding the image to check that it is reproducible");
    let again = image()?;
    if first.is_empty() || sum(&again) != first {
        bail!(
            "the image is not reproducible: two builds of the same tree differ ({} vs {})",
            first.trim(),
            sum(&again).trim()
        );
    }
    // A second version of this tree, for the update test on the QEMU rig.
    eprintln!("xtask: building an update bundle with another version ({UPDATE_SUFFIX})");
    let update_bundle = bundle(Some(UPDATE_SUFFIX.to_owned()))?;
    eprintln!("xtask: fuzz targets build (run them with `cargo xtask fuzz`)");
    run(cargo()
        .args(["build", "--locked", "--bins", "--manifest-path"])
        .arg(root.join("fuzz/Cargo.toml")))?;
    eprintln!("xtask: unit and integration tests");
    let mut tally = Tally::default();
    tally.run(
        cargo()
            .args(["test", "--workspace", "--locked"])
            .current_dir(&root),
    )?;
    eprintln!(
        "xtask: rig tests (QEMU, network namespaces) against {}",
        iso.display()
    );
    // The rig tests start the node programs of this tree (clusterd, tandem-web).
    run(cargo()
        .args(["build", "--workspace", "--bins", "--locked"])
        .current_dir(&root))?;
    let mut rig = cargo();
    // Every rig test runs even when one fails, so that a red run names all of them.
    rig.args([
        "test",
        "--locked",
        "--no-fail-fast",
        "-p",
        "tandem-tests",
        "--",
        "--ignored",
    ])
    .args(args)
    .env("TANDEM_IMAGE_DIR", &image_dir)
    .env("TANDEM_UPDATE_BUNDLE", &update_bundle)
    .current_dir(&root);
    tally.run(&mut rig)?;
    eprintln!(
        "xtask: all tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    Ok(())
}

/// The release catalogue: builds the image and the node programs, then runs
/// the scenarios named (or `--all`) on QEMU machines installed from that
/// image; the report goes to `target/scenarios/report.{json,md}`.
fn scenarios(args: &[String]) -> Result<()> {
    let root = workspace();
    let runner = || {
        let mut c = cargo();
        c.args([
            "run",
            "--quiet",
            "--locked",
            "-p",
            "tandem-tests",
            "--bin",
            "tandem-scenarios",
            "--",
        ])
        .current_dir(&root);
        c
    };
    if args.is_empty() || args.iter().any(|a| a == "--list") {
        let mut c = runner();
        if args.is_empty() {
            c.arg("--help");
        } else {
            c.arg("--list");
        }
        return run(&mut c);
    }
    if !tandem_image::host::is_root() {
        bail!("the scenarios need root (network namespaces, QEMU taps): run as root");
    }
    ensure_test_packages()?;
    let iso = image()?;
    let image_dir = iso.parent().map(Path::to_owned).unwrap_or_default();
    run(cargo()
        .args(["build", "--workspace", "--bins", "--locked"])
        .current_dir(&root))?;
    let mut scenarios = runner();
    scenarios
        .args(args)
        .arg("--out")
        .arg(root.join("target/scenarios"))
        .env("TANDEM_IMAGE_DIR", &image_dir);
    // The update scenarios update the pair to a second version of this tree.
    if args
        .iter()
        .any(|a| a == "--all" || a.starts_with("update-"))
    {
        eprintln!("xtask: building an update bundle with another version ({UPDATE_SUFFIX})");
        scenarios.env(
            "TANDEM_UPDATE_BUNDLE",
            bundle(Some(UPDATE_SUFFIX.to_owned()))?,
        );
    }
    run(&mut scenarios).context("a scenario failed: see target/scenarios/report.md")
}

/// Fuzz targets under `fuzz/` (cargo-fuzz; nightly when installed, else the pinned
/// toolchain with `RUSTC_BOOTSTRAP`).
const FUZZ_TARGETS: &[&str] = &[
    "config_toml",
    "config_archive",
    "heartbeat_frame",
    "serial_framing",
    "ipmi_sdr",
    "areca_reply",
    "config_exchange",
    "control_request",
    "template_check",
    "update_status",
    "chrony_tracking",
    "ve_backup",
];

fn fuzz(args: &[String]) -> Result<()> {
    let seconds: u64 = match args.first() {
        Some(s) => s.parse().context("SECONDS must be a whole number")?,
        None => 60,
    };
    let fuzz_dir = workspace().join("fuzz");
    // cargo-fuzz needs unstable compiler flags (sanitizers): a nightly toolchain
    // when one is installed, otherwise the pinned toolchain with its unstable
    // features unlocked.
    let nightly = Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let cargo_fuzz = |args: &[&str]| {
        let mut cmd = Command::new("cargo");
        if nightly {
            cmd.arg("+nightly");
        } else {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        cmd.arg("fuzz").args(args).current_dir(&fuzz_dir);
        cmd
    };
    let have = cargo_fuzz(&["--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))
            .context("installing cargo-fuzz from crates.io")?;
    }
    run(&mut cargo_fuzz(&["build"]))?;
    for t in FUZZ_TARGETS {
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let mut cmd = cargo_fuzz(&["run", t]);
        cmd.arg(&corpus);
        let seeds = fuzz_dir.join("seeds").join(t);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--").arg(format!("-max_total_time={seconds}"));
        eprintln!("xtask: fuzzing {t} for {seconds} s");
        run(&mut cmd)?;
    }
    Ok(())
}

/// Sums cargo test's result lines over several runs, passing the output on.
#[derive(Debug, Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    fn run(&mut self, cmd: &mut Command) -> Result<()> {
        use std::io::{BufRead, BufReader};
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running {shown}"))?;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line.context("reading test output")?;
                println!("{line}");
                self.add(&line);
            }
        }
        let status = child
            .wait()
            .with_context(|| format!("waiting for {shown}"))?;
        if !status.success() {
            bail!("{shown} failed ({status})");
        }
        Ok(())
    }

    /// Adds `test result: ok. 3 passed; 0 failed; 1 ignored; …`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_reads_cargo_result_lines() {
        let mut t = Tally::default();
        t.add("test result: ok. 12 passed; 0 failed; 5 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add("test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (13, 2, 5));
    }
}
