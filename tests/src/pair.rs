//! Two installed nodes for the release catalogue, as a customer's rack holds
//! them: each an SR2500-like machine (AHCI disk, two e1000e ports — the
//! external LAN, which carries the recovery network before activation, and
//! the crossover cable — a serial null-modem cable on the second serial port,
//! and a BMC), a LAN with a router/ping node, the company's mail relay and a
//! client, installed from the real install image through its prompt and
//! activated from a configuration archive through the web consoles.
//!
//! Installing and activating takes minutes under emulation, so it is done
//! once per image ([`Base`], cached in `target/scenarios/base-<image>`): each
//! scenario boots the pair from qcow2 overlays of the activated disks and
//! finds it as it was left — VE 101 installed, the cluster formed.
//!
//! Everything the test sends goes to addresses inside the LAN namespace it
//! created (192.0.2.0/24) or to loopback.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::install::MIN;
use crate::web::{answers, http_get, http_get_once, login, post_form, progress_until, text_of};
use crate::{Firmware, Netns, Vm, figure, https, image_dir, rig_archive, rig_config};

/// The cluster's name in the rig's configuration.
pub const CLUSTER: &str = "rig-catalogue";
/// The archive's passphrase.
const PASSPHRASE: &str = "red cable passphrase";
/// VE 101's address: the service the client uses.
pub const VE: &str = "192.0.2.50:80";
/// The nodes' external addresses (web console on 443).
pub const NODE_ADDR: [&str; 2] = ["192.0.2.11", "192.0.2.12"];
/// The BMCs' addresses on the LAN.
pub const BMC_ADDR: [&str; 2] = ["192.0.2.21", "192.0.2.22"];
/// The mail relay on the LAN.
pub const SMTP_ADDR: &str = "192.0.2.1";
/// The LAN's time server (NTP), on the router.
pub const NTP_ADDR: &str = "192.0.2.1";
/// The mail relay's port.
pub const SMTP_PORT: u16 = 2525;
/// The LAN's update server (plain HTTP on the router: TLS to an update server is
/// shown by `runtime/tests/update_server.rs`).
pub const UPDATES_ADDR: &str = "192.0.2.1";
/// The update server's port.
pub const UPDATES_PORT: u16 = 8080;
/// The cluster's account on the update server.
const UPDATES_USER: &str = "cluster";
const UPDATES_PASSWORD: &str = "updates-secret-1";
/// BMC user of the rig.
const BMC_USER: &str = "fence";
const BMC_PASSWORD: &str = "fence-secret-1";

/// The version of [`config`]: counted up whenever it changes, so that bases
/// made with an earlier one are not reused.
const BASE_CONFIG_VERSION: u32 = 7;

/// The rig's OpenSSH client options for a login to a node: the nodes' host keys
/// change with every base, so none is remembered.
const RIG_SSH: [&str; 8] = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
];

/// A node of the pair: 0 is node1, 1 is node2.
pub type Node = usize;

/// The other node.
#[must_use]
pub fn other(n: Node) -> Node {
    1 - n
}

/// The configuration of the catalogue's pair: the rig's timings (keepalive
/// 500 ms, deadtime 4 s), all three heartbeat paths (the serial cable on
/// ttyS1), the router as ping node, mail to the rig's relay, VE 101, and
/// the BMCs for fencing, the LAN's time server.
#[must_use]
pub fn config() -> (
    tandem_config::ApplianceConfig,
    tandem_config::init::InitialPasswords,
) {
    let (mut cfg, passwords) = rig_config(CLUSTER);
    cfg.replication.resync_rate = "400M".parse().expect("a rate");
    cfg.heartbeat.serial.enabled = true;
    cfg.heartbeat.serial.device = "/dev/ttyS1".parse().expect("a device");
    // Alerts to the relay on the LAN (the ping node is the router, 192.0.2.1).
    cfg.notification.addresses = vec!["ops@example.com".parse().expect("an address")];
    cfg.notification.relay_host =
        Some(format!("{SMTP_ADDR}:{SMTP_PORT}").parse().expect("a relay"));
    // Fencing through the rig's BMCs; node1's tiebreak wait shortened to the
    // rig's pace (still far longer than a fence of ipmi_sim takes).
    let bmc = |n: Node| tandem_config::BmcConfig {
        address: BMC_ADDR[n].parse().expect("an address"),
        port: tandem_config::Port::try_from(623).expect("a port"),
        user: BMC_USER.parse().expect("a user"),
        password: BMC_PASSWORD.parse().expect("a password"),
        cipher_suite: 3,
    };
    cfg.fencing = Some(tandem_config::FencingConfig {
        policy: tandem_config::FencingPolicy::Required,
        timeout: tandem_config::DEFAULT_FENCE_TIMEOUT,
        node1_delay: tandem_config::Millis::from_secs(5),
        node1: bmc(0),
        node2: bmc(1),
    });
    // The rig's relay speaks plain SMTP (the default policy would send nothing to it).
    cfg.notification.tls = Some(tandem_config::schema::TlsPolicy::Opportunistic);
    // Updates offered by the LAN's update server (it runs only while a scenario
    // needs it; otherwise a node's daily question finds nobody and says so).
    cfg.updates.url = format!("http://{UPDATES_ADDR}:{UPDATES_PORT}/tandem")
        .parse()
        .expect("a URL");
    cfg.updates.user = UPDATES_USER.parse().expect("a user");
    cfg.updates.password = UPDATES_PASSWORD.parse().expect("a password");
    // The clock from the LAN's time server.
    cfg.network.ntp_servers = vec![NTP_ADDR.parse().expect("a time server")];
    // root may log in over SSH with the node's password too (its SHA-512 crypt hash
    // is in the configuration `new_cluster` made).
    cfg.access.password_login = true;
    (cfg, passwords)
}

/// Polls until `f` returns `Some`, or panics with `what` after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A free TCP port on loopback (the namespace's loopback is separate; the
/// port is only a number there).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The mail relay of the LAN: Python's aiosmtpd (Debian package
/// python3-aiosmtpd) storing what it receives in a Maildir; stopped by its
/// PID when dropped.
#[derive(Debug)]
pub struct Smtp {
    child: Child,
    maildir: PathBuf,
}

impl Smtp {
    /// Starts it inside `lan` on the relay's address.
    fn start(lan: &Netns, dir: &Path) -> Self {
        let maildir = dir.join("mail");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("creating the Maildir");
        }
        let md = maildir.clone();
        let child = lan.run(move || {
            Command::new("/usr/bin/python3")
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("{SMTP_ADDR}:{SMTP_PORT}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&md)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("aiosmtpd is missing: apt-get install python3-aiosmtpd")
        });
        let smtp = Self { child, maildir };
        lan.run(|| {
            wait_until(
                "the rig's mail relay listening",
                Duration::from_secs(20),
                || TcpStream::connect((SMTP_ADDR, SMTP_PORT)).ok(),
            );
        });
        smtp
    }

    /// The subjects of every message received so far, in arrival order.
    #[must_use]
    pub fn subjects(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
            .filter_map(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The LAN's update server: Python's `http.server` on the router, serving a
/// directory with `bundle` and its list (`index.json`, as `cargo xtask bundle`
/// writes it) under `/tandem/` to the cluster's account (HTTP basic
/// authentication); stopped by its PID when dropped.
#[derive(Debug)]
pub struct UpdateServer {
    child: Child,
}

const SERVE_UPDATES: &str = r#"
import base64, http.server, os, sys
os.chdir(sys.argv[1])
expected = "Basic " + base64.b64encode(sys.argv[2].encode()).decode()
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="updates"')
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[3], int(sys.argv[4])), H).serve_forever()
"#;

impl UpdateServer {
    /// Starts it inside `lan`, offering `bundle` (version `version`) from `dir`.
    pub fn start(lan: &Netns, dir: &Path, bundle: &Path, version: &str) -> Self {
        let site = dir.join("update-site");
        let tandem = site.join("tandem");
        std::fs::create_dir_all(&tandem).expect("creating the update site");
        let name = bundle.file_name().expect("a bundle file name");
        let copy = tandem.join(name);
        if std::fs::hard_link(bundle, &copy).is_err() {
            std::fs::copy(bundle, &copy).expect("copying the bundle to the update site");
        }
        tandem_image::bundle::write_index(&copy, version, "## next\n\n- the version under test\n")
            .expect("writing the update site's list");
        let child = lan.run(move || {
            Command::new("/usr/bin/python3")
                .arg("-c")
                .arg(SERVE_UPDATES)
                .arg(&site)
                .arg(format!("{UPDATES_USER}:{UPDATES_PASSWORD}"))
                .arg(UPDATES_ADDR)
                .arg(UPDATES_PORT.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 is missing (it comes with python3-aiosmtpd)")
        });
        lan.run(|| {
            wait_until(
                "the rig's update server listening",
                Duration::from_secs(20),
                || TcpStream::connect((UPDATES_ADDR, UPDATES_PORT)).ok(),
            );
        });
        Self { child }
    }
}

impl Drop for UpdateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The LAN's time server: chronyd (Debian package chrony) serving its own
/// clock (`local stratum 8`) on the router's address; it never sets the clock
/// of the machine (`-x`: the namespace shares it). Stopped by its PID when
/// dropped.
#[derive(Debug)]
pub struct TimeServer {
    child: Child,
}

impl TimeServer {
    /// Starts it inside `lan` on `addr` (an address of the LAN's bridge); its
    /// files go to `dir/ntp-ADDR`.
    fn start(lan: &Netns, dir: &Path, addr: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let run = dir.join(format!("ntp-{addr}"));
        std::fs::create_dir_all(&run).expect("the time server's directory");
        // chronyd refuses a command socket in a directory others may enter.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))
            .expect("the time server's directory closed to others");
        let conf = run.join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "local stratum 8\nallow 192.0.2.0/24\nbindaddress {addr}\ncmdport 0\nbindcmdaddress {r}/chronyd.sock\npidfile {r}/chronyd.pid\n",
                r = run.display()
            ),
        )
        .expect("the time server's configuration");
        let child = lan.run(move || {
            Command::new("/usr/sbin/chronyd")
                .args(["-d", "-x", "-u", "root", "-f"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chronyd is missing: apt-get install chrony")
        });
        Self { child }
    }
}

impl Drop for TimeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The serial null-modem cable: `socat` joining the two VMs' second serial
/// ports (unix sockets); cut by ending it, joined again by starting it.
#[derive(Debug)]
pub struct SerialCable {
    ends: [PathBuf; 2],
    child: Option<Child>,
}

impl SerialCable {
    /// Joins the two ends (each a QEMU chardev server socket).
    pub fn connect(&mut self) {
        if self.child.is_some() {
            return;
        }
        wait_until("the serial ports' sockets", Duration::from_secs(30), || {
            self.ends.iter().all(|e| e.exists()).then_some(())
        });
        let child = Command::new("socat")
            .arg(format!("UNIX-CONNECT:{}", self.ends[0].display()))
            .arg(format!("UNIX-CONNECT:{}", self.ends[1].display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("socat is missing: apt-get install socat");
        self.child = Some(child);
    }

    /// Pulls the cable.
    pub fn cut(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

use std::os::unix::process::CommandExt as _;

impl Drop for SerialCable {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A node's BMC: OpenIPMI's `ipmi_sim` on the LAN (RMCP+ on port 623 of its
/// own address), joined to the node's QEMU (`ipmi-bmc-extern`): a chassis
/// power-off through it powers the machine off, as a real BMC does.
#[derive(Debug)]
pub struct Bmc {
    child: Child,
    dir: PathBuf,
    /// The port of the VM protocol on the namespace's loopback.
    pub kcs_port: u16,
    /// One long-lived connection to its console: ipmi_sim dies of SIGPIPE
    /// when a client of it goes away while it writes (so readiness is not
    /// probed on the VM port, which QEMU owns).
    _console: TcpStream,
}

impl Bmc {
    fn start(lan: &Netns, dir: &Path, n: Node) -> Self {
        std::fs::create_dir_all(dir.join("state")).expect("the BMC's directory");
        let kcs_port = free_port();
        let console_port = free_port();
        let conf = format!(
            "name \"bmc{}\"\n\
             set_working_mc 0x20\n\
             startlan 1\n\
             addr {} 623\n\
             priv_limit admin\n\
             allowed_auths_callback none md2 md5 straight\n\
             allowed_auths_user none md2 md5 straight\n\
             allowed_auths_operator none md2 md5 straight\n\
             allowed_auths_admin none md2 md5 straight\n\
             guid a123456789abcdefa123456789abcde{}\n\
             endlan\n\
             serial kcs 127.0.0.1 {kcs_port} codec VM\n\
             console 127.0.0.1 {console_port}\n\
             user 2 true \"{BMC_USER}\" \"{BMC_PASSWORD}\" admin 10 none md2 md5 straight\n",
            n + 1,
            BMC_ADDR[n],
            n + 1,
        );
        std::fs::write(dir.join("lan.conf"), conf).expect("writing lan.conf");
        std::fs::write(
            dir.join("bmc.emu"),
            "mc_setbmc 0x20\n\
             mc_add 0x20 0 no-device-sdrs 0x01 0x00 0x50 0x9f 0x000157 0x0028\n\
             sel_enable 0x20 1000 0x0a\n\
             mc_enable 0x20\n",
        )
        .expect("writing bmc.emu");
        let d = dir.to_owned();
        let child = lan.run(move || {
            Command::new("ipmi_sim")
                .arg("-c")
                .arg(d.join("lan.conf"))
                .arg("-f")
                .arg(d.join("bmc.emu"))
                .arg("-s")
                .arg(d.join("state"))
                .arg("-n")
                .current_dir(&d)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("ipmi_sim.log")).expect("log"))
                .spawn()
                .expect("ipmi_sim is missing: apt-get install openipmi")
        });
        let console = lan.run(move || {
            wait_until("the BMC's console", Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", console_port)).ok()
            })
        });
        Self {
            child,
            dir: dir.to_owned(),
            kcs_port,
            _console: console,
        }
    }

    /// What ipmi_sim logged (sessions, chassis control).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ipmi_sim.log")).unwrap_or_default()
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The LAN namespace of the pair: a bridge with the router/ping node and
/// relay (192.0.2.1), the BMCs, the client, and the nodes' taps; the red
/// cable's laptop address for the installation. Loopback gets a second
/// address (QEMU's resolver needs one besides 127.0.0.1).
fn lan() -> Netns {
    let lan = crate::two_node_lan(&["192.168.100.100/24", BMC_CIDR[0], BMC_CIDR[1]]);
    lan.ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"]);
    lan
}

const BMC_CIDR: [&str; 2] = ["192.0.2.21/24", "192.0.2.22/24"];

/// QEMU arguments of node `n` (0 or 1) on `disk`, in `dir`, with the
/// crossover's UDP ports `xo`.
fn node_args(n: Node, disk: &Path, dir: &Path, xo: [u16; 2], kcs_port: u16) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-machine".into(),
        "pc".into(),
        "-drive".into(),
        format!(
            "file={},if=none,id=d0,format=qcow2,cache=unsafe",
            disk.display()
        ),
        "-device".into(),
        "ahci,id=ahci".into(),
        "-device".into(),
        "ide-hd,drive=d0,bus=ahci.0,bootindex=1".into(),
        // First port: the LAN.
        "-netdev".into(),
        format!("tap,id=lan,ifname=tap{n},script=no,downscript=no"),
        "-device".into(),
        format!("e1000e,netdev=lan,id=nic-lan,mac=52:54:00:00:1a:0{}", n + 1),
        // Second port: the crossover cable.
        "-netdev".into(),
        format!(
            "dgram,id=xo,local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
            xo[n],
            xo[1 - n]
        ),
        "-device".into(),
        format!("e1000e,netdev=xo,id=nic-xo,mac=52:54:00:00:1b:0{}", n + 1),
        // The serial cable on the second serial port.
        "-chardev".into(),
        format!(
            "socket,id=hb,path={},server=on,wait=off",
            dir.join("ttyS1.sock").display()
        ),
        "-device".into(),
        "isa-serial,chardev=hb,index=1".into(),
        // The BMC.
        "-chardev".into(),
        format!("socket,id=ipmi0,host=127.0.0.1,port={kcs_port},reconnect=2"),
        "-device".into(),
        "ipmi-bmc-extern,id=bmc0,chardev=ipmi0".into(),
        "-device".into(),
        "isa-ipmi-kcs,bmc=bmc0,irq=5".into(),
    ];
    a.extend(["-m".into(), "768".into()]);
    a
}

/// The installed, activated disks of the pair (qcow2), made once per image.
#[derive(Debug, Clone)]
pub struct Base {
    /// node1's and node2's disks.
    pub disks: [PathBuf; 2],
    /// The configuration the pair was activated with.
    pub cfg: tandem_config::ApplianceConfig,
    /// The management password.
    pub admin: String,
    /// root's passwords on node1 and node2.
    pub root: [String; 2],
    /// What making it took, seconds (0 when it was found ready).
    pub made_in_s: f64,
    /// The private key whose public half is in root's authorized keys.
    pub ssh_key: PathBuf,
}

/// The base for the current image: found in `dir` when an earlier run made
/// it for the same image, else made there now.
pub fn base(dir: &Path) -> Base {
    static BASE: Mutex<Option<Base>> = Mutex::new(None);
    let mut slot = BASE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = slot.as_ref() {
        return b.clone();
    }
    let sum =
        std::fs::read_to_string(image_dir().join("tandem-install.iso.sha256")).unwrap_or_default();
    // A base belongs to one image and one version of the pair's configuration
    // (its secrets are new each time it is made, so the version is counted).
    let tag: String = sum.chars().take(12).collect();
    let bdir = dir.join(format!("base-{tag}-c{BASE_CONFIG_VERSION}"));
    let ready = bdir.join("ready.json");
    let b = match std::fs::read_to_string(&ready) {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text).expect("ready.json");
            let cfg: tandem_config::ApplianceConfig =
                serde_json::from_value(v["cfg"].clone()).expect("the base's configuration");
            Base {
                disks: [bdir.join("node1.qcow2"), bdir.join("node2.qcow2")],
                cfg,
                admin: v["admin"].as_str().unwrap_or_default().to_owned(),
                root: [0, 1].map(|n| v["root"][n].as_str().unwrap_or_default().to_owned()),
                made_in_s: 0.0,
                ssh_key: bdir.join(SSH_KEY),
            }
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(&bdir);
            std::fs::create_dir_all(&bdir).expect("the base's directory");
            let b = make_base(&bdir);
            let v = serde_json::json!({"cfg": b.cfg, "admin": b.admin, "root": b.root});
            std::fs::write(&ready, v.to_string()).expect("writing ready.json");
            b
        }
    };
    // Later scenarios of this run found it made: only the first pays for it.
    *slot = Some(Base {
        made_in_s: 0.0,
        ..b.clone()
    });
    b
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is missing: apt-get install qemu-utils");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs both nodes from the DVD (typing node1/node2 at the prompt),
/// activates them through their web consoles (node1 fetches, node2
/// destroys), installs VE 101 from the active node's VEs page, and shuts both
/// down from their Maintenance pages.
fn make_base(dir: &Path) -> Base {
    let t0 = Instant::now();
    let (mut cfg, passwords) = config();
    // The operator's SSH key: root logs in with it from the LAN (an admin
    // network of the rig's configuration).
    let key = dir.join(SSH_KEY);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rig-operator", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen is missing: apt-get install openssh-client");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("the public key");
    cfg.access.root_authorized_keys = vec![public.trim().parse().expect("an SSH public key")];
    let archive = rig_archive(&cfg, Some(PASSPHRASE));
    let lan = lan();
    let xo = [free_port(), free_port()];
    let iso = image_dir().join("tandem-install.iso");
    let mut bmcs = Vec::new();
    let mut vms: Vec<Vm> = (0..2)
        .map(|n| {
            let sub = dir.join(format!("node{}", n + 1));
            std::fs::create_dir_all(&sub).expect("node dir");
            let disk = dir.join(format!("node{}.qcow2", n + 1));
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                &disk.to_string_lossy(),
                "2400M",
            ]);
            let bmc = Bmc::start(&lan, &sub.join("bmc"), n);
            let mut args = node_args(n, &disk, &sub, xo, bmc.kcs_port);
            bmcs.push(bmc);
            args.extend([
                "-drive".into(),
                format!(
                    "file={},if=none,id=cd,media=cdrom,readonly=on",
                    iso.display()
                ),
                "-device".into(),
                "ide-cd,drive=cd,bus=ahci.1,bootindex=2".into(),
            ]);
            Vm::start(&sub, Firmware::Bios, Some(&lan), &args)
        })
        .collect();
    for (n, vm) in vms.iter_mut().enumerate() {
        vm.wait_for(0, "Type node1 or node2", 2 * MIN);
        vm.type_line(&format!("node{}", n + 1));
    }
    for (n, vm) in vms.iter_mut().enumerate() {
        let at = vm.wait_for(
            0,
            &format!("Installation of node{} complete", n + 1),
            5 * MIN,
        );
        vm.wait_for(at, "State:     recovery", 5 * MIN);
    }
    let mut cable = SerialCable {
        ends: [dir.join("node1/ttyS1.sock"), dir.join("node2/ttyS1.sock")],
        child: None,
    };
    cable.connect();
    lan.run(move || activate_both_in_recovery(&archive));
    let admin = passwords.admin.clone();
    let a = admin.clone();
    lan.run(move || {
        let (a1, a2) = (
            format!("{}:443", NODE_ADDR[0]),
            format!("{}:443", NODE_ADDR[1]),
        );
        answers(&a1, 3 * MIN);
        answers(&a2, 3 * MIN);
        let s = [login(&a1, &a), login(&a2, &a)];
        let addrs = [a1, a2];
        let act = wait_until("the cluster formed", 5 * MIN, || {
            match (
                crate::web::role(&addrs[0], &s[0]),
                crate::web::role(&addrs[1], &s[1]),
            ) {
                (Some(r1), Some(r2)) if r1 == "active" && r2 == "passive" => Some(0),
                (Some(r1), Some(r2)) if r1 == "passive" && r2 == "active" => Some(1),
                _ => None,
            }
        });
        let r = post_form(
            &addrs[act],
            &s[act],
            "/ves",
            Some("install-ve101"),
            "/ves/install",
            "template=tandem-minimal&confirm=yes",
        );
        assert_eq!(r.status, 303, "{}", text_of(&r.body));
        wait_until("VE 101 answering", 5 * MIN, || {
            http_get_once(VE, "/", Duration::from_secs(2)).filter(|b| b == "tandem VE\n")
        });
        assert_eq!(http_get(VE, "/cgi-bin/append?base", MIN), "ok\n");
        // Both disks in sync before they are put away.
        wait_until("both copies up to date", 5 * MIN, || {
            let st = https(&addrs[1 - act], "GET", "/status", Some(&s[1 - act]), None).ok()?;
            text_of(&st.body)
                .contains("UpToDate/UpToDate")
                .then_some(())
        });
        // The passive node first, then the active one: a clean shutdown.
        for n in [1 - act, act] {
            let r = post_form(
                &addrs[n],
                &s[n],
                "/maintenance",
                None,
                "/maintenance/power",
                "action=poweroff&confirm=yes",
            );
            assert_eq!(r.status, 200, "{}", text_of(&r.body));
            wait_until("the node powered off", 3 * MIN, || {
                TcpStream::connect_timeout(
                    &addrs[n].parse().expect("addr"),
                    Duration::from_millis(500),
                )
                .err()
                .map(drop)
            });
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    for vm in &mut vms {
        wait_until("QEMU ended after the power-off", 3 * MIN, || {
            vm.exited().then_some(())
        });
    }
    drop(cable);
    drop(bmcs);
    let made = t0.elapsed().as_secs_f64();
    figure(&format!(
        "pair base (install, activate, VE 101, shutdown): {made:.0} s"
    ));
    Base {
        disks: [dir.join("node1.qcow2"), dir.join("node2.qcow2")],
        cfg,
        admin,
        root: [passwords.root_node1.clone(), passwords.root_node2.clone()],
        made_in_s: made,
        ssh_key: key,
    }
}

/// Activates both nodes in recovery mode from `archive` through their web
/// consoles (run in the LAN): node1 fetches and waits for node2, which
/// destroys.
fn activate_both_in_recovery(archive: &[u8]) {
    let (n1, n2) = ("192.168.100.101:443", "192.168.100.102:443");
    answers(n1, 3 * MIN);
    answers(n2, 3 * MIN);
    let p1 = crate::web::upload_and_activate(n1, archive, PASSPHRASE, "fetch", "");
    progress_until(
        n1,
        &p1,
        "continue activation on the other node or check the crossover cable",
        5 * MIN,
    );
    let p2 = crate::web::upload_and_activate(n2, archive, PASSPHRASE, "destroy", CLUSTER);
    progress_until(n2, &p2, "Activation finished", 10 * MIN);
    progress_until(n1, &p1, "Activation finished", 15 * MIN);
}

/// The file name of the operator's SSH key in the base's directory.
const SSH_KEY: &str = "rig-ssh-key";

/// The pair, booted from overlays of a [`Base`]. Shared between the scenario
/// and its watchers: every method takes `&self`.
#[derive(Debug)]
pub struct Pair {
    /// The LAN namespace (client, relay, BMCs, router).
    pub lan: Netns,
    /// The machines; `None` while powered off.
    vms: Mutex<[Option<Vm>; 2]>,
    /// The serial cable.
    cable: Mutex<SerialCable>,
    /// The BMCs.
    pub bmcs: [Bmc; 2],
    /// The mail relay.
    pub smtp: Smtp,
    /// The time server.
    _ntp: TimeServer,
    dir: PathBuf,
    xo: [u16; 2],
    disks: [PathBuf; 2],
    /// The management password.
    pub admin: String,
    /// The configuration the pair was activated with.
    pub cfg: tandem_config::ApplianceConfig,
    sessions: Mutex<[Option<String>; 2]>,
    ssh_key: PathBuf,
    root: [String; 2],
}

impl Pair {
    /// Starts another time server on the LAN at `addr` (added to the LAN's
    /// bridge, /24).
    #[must_use]
    pub fn time_server(&self, addr: &str) -> TimeServer {
        self.lan
            .ip(&["addr", "add", &format!("{addr}/24"), "dev", "br0"]);
        TimeServer::start(&self.lan, &self.dir, addr)
    }

    /// Starts the LAN's update server offering `bundle` (version `version`).
    #[must_use]
    pub fn update_server(&self, bundle: &Path, version: &str) -> UpdateServer {
        UpdateServer::start(&self.lan, &self.dir, bundle, version)
    }

    /// Boots both nodes from fresh overlays of `base` in `dir` and joins the
    /// cables (see [`Pair::wait_formed`]).
    pub fn boot(base: &Base, dir: &Path) -> Self {
        let lan = lan();
        let smtp = Smtp::start(&lan, dir);
        let ntp = TimeServer::start(&lan, dir, NTP_ADDR);
        let xo = [free_port(), free_port()];
        let mut disks = Vec::new();
        let mut bmcs = Vec::new();
        for n in 0..2 {
            let sub = dir.join(format!("node{}", n + 1));
            std::fs::create_dir_all(&sub).expect("node dir");
            let disk = sub.join("disk.qcow2");
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                &base.disks[n].to_string_lossy(),
                "-F",
                "qcow2",
                &disk.to_string_lossy(),
            ]);
            bmcs.push(Bmc::start(&lan, &sub.join("bmc"), n));
            disks.push(disk);
        }
        let bmcs: [Bmc; 2] = bmcs.try_into().expect("two BMCs");
        let disks: [PathBuf; 2] = disks.try_into().expect("two disks");
        let pair = Self {
            cable: Mutex::new(SerialCable {
                ends: [dir.join("node1/ttyS1.sock"), dir.join("node2/ttyS1.sock")],
                child: None,
            }),
            lan,
            vms: Mutex::new([None, None]),
            bmcs,
            smtp,
            _ntp: ntp,
            dir: dir.to_owned(),
            xo,
            disks,
            admin: base.admin.clone(),
            cfg: base.cfg.clone(),
            sessions: Mutex::new([None, None]),
            ssh_key: base.ssh_key.clone(),
            root: base.root.clone(),
        };
        pair.power_on(0);
        pair.power_on(1);
        pair.connect_serial();
        pair
    }

    fn vms(&self) -> std::sync::MutexGuard<'_, [Option<Vm>; 2]> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `command` as root on node `n` over SSH from the LAN (the operator's
    /// key, the node's external address); returns its exit status and output.
    pub fn ssh(&self, n: Node, command: &str) -> (bool, String) {
        self.ssh_in(n, command, None)
    }

    /// [`Pair::ssh`] with the file `input` on the command's standard input.
    fn ssh_in(&self, n: Node, command: &str, input: Option<&Path>) -> (bool, String) {
        let key = self.ssh_key.clone();
        let input = input.map(Path::to_path_buf);
        let host = format!("root@{}", NODE_ADDR[n]);
        let command = command.to_owned();
        self.lan.run(move || {
            let out = Command::new("ssh")
                .args(RIG_SSH)
                .args([
                    "-o",
                    "BatchMode=yes",
                    // A node that restarts never closes the connection.
                    "-o",
                    "ServerAliveInterval=5",
                    "-o",
                    "ServerAliveCountMax=3",
                    "-i",
                ])
                .arg(&key)
                .arg(&host)
                .arg(&command)
                .stdin(match &input {
                    Some(f) => std::fs::File::open(f)
                        .map_or_else(|e| panic!("{}: {e}", f.display()), Stdio::from),
                    None => Stdio::null(),
                })
                .output()
                .expect("ssh is missing: apt-get install openssh-client");
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        })
    }

    /// Logs in to node `n` as root over SSH from the LAN with a password, not a key
    /// (`password`, or the node's own when `None`), and runs `command`; returns ssh's
    /// success and output.
    pub fn ssh_password(&self, n: Node, password: Option<&str>, command: &str) -> (bool, String) {
        use std::os::unix::fs::PermissionsExt as _;
        let pw = password.map_or_else(|| self.root[n].clone(), str::to_owned);
        assert!(
            !pw.is_empty(),
            "no root password of node{} in the base",
            n + 1
        );
        // OpenSSH reads a password only from a terminal or an askpass program.
        let askpass = self.dir.join(format!("askpass-{}", std::process::id()));
        std::fs::write(
            &askpass,
            format!(
                "#!/bin/sh\nprintf '%s\\n' '{}'\n",
                pw.replace('\'', "'\\''")
            ),
        )
        .expect("the askpass program");
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))
            .expect("askpass mode");
        let host = format!("root@{}", NODE_ADDR[n]);
        let command = command.to_owned();
        let ask = askpass.clone();
        let out = self.lan.run(move || {
            Command::new("ssh")
                .args([
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "PreferredAuthentications=password",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                ])
                .args(RIG_SSH)
                .arg(&host)
                .arg(&command)
                .env("SSH_ASKPASS", &ask)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0")
                .stdin(Stdio::null())
                .output()
                .expect("ssh is missing: apt-get install openssh-client")
        });
        let _ = std::fs::remove_file(&askpass);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Copies the local file `from` to `to` on node `n` (as root, over SSH
    /// from the LAN, like [`Pair::ssh`]); returns ssh's success and output.
    pub fn copy_to(&self, n: Node, from: &Path, to: &str) -> (bool, String) {
        self.ssh_in(n, &format!("cat > '{to}'"), Some(from))
    }

    /// Powers node `n` on (a new QEMU on its disk).
    pub fn power_on(&self, n: Node) {
        let sub = self.dir.join(format!("node{}", n + 1));
        let args = node_args(n, &self.disks[n], &sub, self.xo, self.bmcs[n].kcs_port);
        let vm = Vm::start(&sub, Firmware::Bios, Some(&self.lan), &args);
        self.vms()[n] = Some(vm);
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())[n] = None;
    }

    /// Powers node `n` on with the install DVD in its drive (after the
    /// disk in the boot order).
    fn power_on_with_dvd(&self, n: Node) {
        let sub = self.dir.join(format!("node{}", n + 1));
        let mut args = node_args(n, &self.disks[n], &sub, self.xo, self.bmcs[n].kcs_port);
        args.extend([
            "-drive".into(),
            format!(
                "file={},if=none,id=cd,media=cdrom,readonly=on",
                image_dir().join("tandem-install.iso").display()
            ),
            "-device".into(),
            "ide-cd,drive=cd,bus=ahci.1,bootindex=2".into(),
        ]);
        let vm = Vm::start(&sub, Firmware::Bios, Some(&self.lan), &args);
        self.vms()[n] = Some(vm);
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())[n] = None;
    }

    /// Reinstalls node `n` as an operator does after replacing its disk:
    /// power off, a new empty disk, boot the DVD, type the node's name; waits
    /// until it is in recovery mode.
    pub fn reinstall(&self, n: Node) {
        self.power_loss(n);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            &self.disks[n].to_string_lossy(),
            "2400M",
        ]);
        self.power_on_with_dvd(n);
        let mut vms = self.vms();
        let vm = vms[n].as_mut().expect("the machine just started");
        let at = vm.wait_for(0, "Type node1 or node2", 2 * MIN);
        vm.type_line(&format!("node{}", n + 1));
        let at = vm.wait_for(
            at,
            &format!("Installation of node{} complete", n + 1),
            5 * MIN,
        );
        vm.wait_for(at, "State:     recovery", 5 * MIN);
    }

    /// Activates node `n` (in recovery mode) from the archive through its
    /// recovery console on the red cable, with `choice` (`fetch` or
    /// `destroy`, the latter confirmed by the cluster name).
    pub fn activate(&self, n: Node, choice: &str, confirm: &str) {
        let addr = format!("192.168.100.10{}:443", n + 1);
        let archive = rig_archive(&self.cfg, Some(PASSPHRASE));
        let (choice, confirm) = (choice.to_owned(), confirm.to_owned());
        self.lan.run(move || {
            answers(&addr, 3 * MIN);
            let session =
                crate::web::upload_and_activate(&addr, &archive, PASSPHRASE, &choice, &confirm);
            progress_until(&addr, &session, "Activation finished", 15 * MIN);
        });
    }

    /// Activates both nodes (in recovery mode): node1 fetches and waits for
    /// node2, which destroys.
    pub fn activate_both(&self) {
        let archive = rig_archive(&self.cfg, Some(PASSPHRASE));
        self.lan.run(move || activate_both_in_recovery(&archive));
    }

    /// A page of node `n`'s console (its HTML), empty when it does not answer.
    #[must_use]
    pub fn get(&self, n: Node, path: &str) -> String {
        let Some(session) = self.session(n) else {
            return String::new();
        };
        let (addr, path) = (Self::addr(n), path.to_owned());
        self.lan.run(move || {
            https(&addr, "GET", &path, Some(&session), None)
                .map(|r| r.body)
                .unwrap_or_default()
        })
    }

    /// Pulls node `n`'s power plug.
    pub fn power_loss(&self, n: Node) {
        let vm = self.vms()[n].take();
        if let Some(mut vm) = vm {
            vm.power_loss();
        }
    }

    /// Whether node `n`'s machine has powered off (its QEMU ended).
    pub fn powered_off(&self, n: Node) -> bool {
        self.vms()[n].as_mut().is_none_or(Vm::exited)
    }

    /// Runs `command` on node `n`'s QEMU monitor (e.g. `system_reset`).
    pub fn monitor(&self, n: Node, command: &str) -> String {
        self.vms()[n]
            .as_ref()
            .map(|vm| vm.monitor(command))
            .unwrap_or_default()
    }

    /// Pulls the serial cable.
    pub fn cut_serial(&self) {
        self.cable.lock().unwrap_or_else(|e| e.into_inner()).cut();
    }

    /// Puts the serial cable back.
    pub fn connect_serial(&self) {
        self.cable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connect();
    }

    /// The console buffers, for a failure report.
    #[must_use]
    pub fn consoles(&self) -> Vec<(String, Arc<Mutex<Vec<u8>>>)> {
        self.vms()
            .iter()
            .enumerate()
            .filter_map(|(n, v)| Some((format!("node{}", n + 1), v.as_ref()?.console())))
            .collect()
    }

    /// Node `n`'s console address (`ip:443`).
    #[must_use]
    pub fn addr(n: Node) -> String {
        format!("{}:443", NODE_ADDR[n])
    }

    /// A logged-in session on node `n`'s console (made when needed).
    fn session(&self, n: Node) -> Option<String> {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if s[n].is_none() {
            let (addr, admin) = (Self::addr(n), self.admin.clone());
            s[n] = self.lan.run(move || {
                let page = https(&addr, "GET", "/login", Some("tandem_lang=en"), None).ok()?;
                let cookies = format!("tandem_lang=en; {}", page.cookie());
                let form = format!(
                    "csrf={}&user=admin&password={}",
                    page.csrf(),
                    admin.replace('+', "%2B").replace('&', "%26")
                );
                let ok = https(&addr, "POST", "/login", Some(&cookies), Some(&form)).ok()?;
                (ok.status == 303).then(|| format!("{}; tandem_lang=en", ok.cookie()))
            });
        }
        s[n].clone()
    }

    /// Node `n`'s Status page as text, or `None` when it does not answer.
    #[must_use]
    pub fn status(&self, n: Node) -> Option<String> {
        let session = self.session(n)?;
        let addr = Self::addr(n);
        let text = self.lan.run(move || {
            let sock: std::net::SocketAddr = addr.parse().ok()?;
            TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
            let r = https(&addr, "GET", "/status", Some(&session), None).ok()?;
            (r.status == 200).then(|| text_of(&r.body))
        });
        if text.is_none() {
            // A restarted node needs a new login.
            self.sessions.lock().unwrap_or_else(|e| e.into_inner())[n] = None;
        }
        text
    }

    /// The steps of node `n`'s last takeover with their seconds, from its
    /// newest "acquired resources up in … s: STEP T s, …" event.
    #[must_use]
    pub fn last_acquire(&self, n: Node) -> Vec<(String, f64)> {
        self.status(n)
            .map(|t| acquire_steps(&t))
            .unwrap_or_default()
    }

    /// Node `n`'s role as its Status page shows it.
    #[must_use]
    pub fn role(&self, n: Node) -> Option<String> {
        let t = self.status(n)?;
        let i = t.find("role of this node ")? + "role of this node ".len();
        t[i..].split_whitespace().next().map(str::to_owned)
    }

    /// Waits until one node is active with VE 101 answering and the other
    /// passive with an up-to-date copy; returns the active node.
    pub fn wait_formed(&self, limit: Duration) -> Node {
        let act = wait_until(
            "the cluster formed (one active, one passive)",
            limit,
            || match (self.role(0).as_deref(), self.role(1).as_deref()) {
                (Some("active"), Some("passive")) => Some(0),
                (Some("passive"), Some("active")) => Some(1),
                _ => None,
            },
        );
        wait_until("the passive copy up to date", limit, || {
            self.status(other(act))?
                .contains("UpToDate/UpToDate")
                .then_some(())
        });
        self.lan.run(move || {
            wait_until("VE 101 answering", limit, || {
                http_get_once(VE, "/", Duration::from_secs(2)).filter(|b| b == "tandem VE\n")
            });
        });
        act
    }

    /// Posts a form of node `n`'s console (see [`post_form`]).
    pub fn post(&self, n: Node, page: &str, action: &str, fields: &str) -> crate::HttpResponse {
        let session = self.session(n).expect("a session");
        let (addr, page, action, fields) = (
            Self::addr(n),
            page.to_owned(),
            action.to_owned(),
            fields.to_owned(),
        );
        self.lan
            .run(move || post_form(&addr, &session, &page, None, &action, &fields))
    }

    /// Sets the link of node `n`'s `nic` (`nic-lan` or `nic-xo`).
    pub fn set_link(&self, n: Node, nic: &str, up: bool) {
        self.monitor(
            n,
            &format!("set_link {nic} {}", if up { "on" } else { "off" }),
        );
    }

    /// Drops (or lets through again) the heartbeats between the two nodes on
    /// the LAN's switch, as a faulty switch or a wrong VLAN would: the service
    /// and the BMCs stay reachable.
    pub fn lan_heartbeat(&self, pass: bool) {
        let port = self.cfg.heartbeat.udp_port.get();
        if pass {
            self.lan.nft("delete table bridge rig_hb_cut\n");
        } else {
            self.lan.nft(&format!(
                "table bridge rig_hb_cut {{\n  chain cut {{\n    type filter hook forward priority 0; policy accept;\n    udp dport {port} drop\n  }}\n}}\n"
            ));
        }
    }

    /// Cuts (or restores) the crossover cable: both ends see the carrier go.
    pub fn crossover(&self, up: bool) {
        self.set_link(0, "nic-xo", up);
        self.set_link(1, "nic-xo", up);
    }

    /// Starts the client workload against VE 101.
    #[must_use]
    pub fn client(&self, tag: &str) -> Client {
        Client::start(&self.lan, tag)
    }
}

/// A client on the LAN writing numbered records to VE 101 (each appended
/// and fsync'ed by the VE before it answers), counting every acknowledged
/// one and the longest time without an answer.
#[derive(Debug)]
pub struct Client {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    longest_gap_ms: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    tag: String,
}

impl Client {
    fn start(lan: &Netns, tag: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let gap = Arc::new(AtomicU64::new(0));
        let path = format!("/var/run/netns/{}", lan.name);
        let (s, a, g, t) = (stop.clone(), acked.clone(), gap.clone(), tag.to_owned());
        let thread = std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("the LAN namespace");
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut n = 0u64;
            let mut last_ok = Instant::now();
            while !s.load(Ordering::SeqCst) {
                n += 1;
                let ok = http_get_once(
                    VE,
                    &format!("/cgi-bin/append?{t}-{n}"),
                    Duration::from_millis(700),
                )
                .is_some_and(|b| b == "ok\n");
                let now = Instant::now();
                if ok {
                    a.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                    let ms = u64::try_from(now.duration_since(last_ok).as_millis()).unwrap_or(0);
                    g.fetch_max(ms, Ordering::SeqCst);
                    last_ok = now;
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            stop,
            acked,
            longest_gap_ms: gap,
            thread: Some(thread),
            tag: tag.to_owned(),
        }
    }

    /// How many writes were acknowledged so far.
    #[must_use]
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The records acknowledged so far, as the VE stores them (`TAG-N`).
    #[must_use]
    pub fn acked_records(&self) -> Vec<String> {
        self.acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|n| format!("{}-{n}", self.tag))
            .collect()
    }

    /// Waits until `more` further writes were acknowledged.
    pub fn wait_acked(&self, more: usize, limit: Duration) {
        let target = self.acked() + more;
        wait_until("the client's writes acknowledged", limit, || {
            (self.acked() >= target).then_some(())
        });
    }

    /// Stops writing; returns (acknowledged, lost, longest gap in seconds):
    /// the records read back from the VE are compared with every
    /// acknowledged one.
    pub fn finish(mut self, lan: &Netns) -> (usize, u64, f64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let log = lan.run(|| http_get(VE, "/cgi-bin/read", 2 * MIN));
        let have: std::collections::HashSet<&str> = log.lines().collect();
        let lost = acked
            .iter()
            .filter(|n| !have.contains(format!("{}-{n}", self.tag).as_str()))
            .count() as u64;
        let gap = self.longest_gap_ms.load(Ordering::SeqCst) as f64 / 1000.0;
        (acked.len(), lost, gap)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Watches both nodes' roles until stopped: whether both were ever active
/// at once.
#[derive(Debug)]
pub struct PrimaryWatch {
    stop: Arc<AtomicBool>,
    both: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PrimaryWatch {
    fn drop(&mut self) {
        // Also when the scenario fails: the thread holds the pair.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl PrimaryWatch {
    /// Starts watching `pair` (its Status pages, every half second).
    pub fn start(pair: &Arc<Pair>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let both = Arc::new(AtomicBool::new(false));
        let (s, b, p) = (stop.clone(), both.clone(), pair.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if p.role(0).as_deref() == Some("active") && p.role(1).as_deref() == Some("active")
                {
                    b.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self {
            stop,
            both,
            thread: Some(thread),
        }
    }

    /// Stops; whether two active nodes were seen.
    pub fn finish(mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.both.load(Ordering::SeqCst)
    }
}

/// Parses the newest "acquired resources up in X s: STEP T s, …" event of a
/// Status page's text (events newest first): the total, then each step.
#[must_use]
pub fn acquire_steps(status: &str) -> Vec<(String, f64)> {
    let marker = "acquired resources up in ";
    let Some(i) = status.find(marker) else {
        return Vec::new();
    };
    let rest = &status[i + marker.len()..];
    // The event ends where the next one's time stamp starts (YYYY-MM-DDT).
    let end = rest
        .char_indices()
        .find(|(j, _)| {
            let b = rest.as_bytes();
            b.len() > j + 11
                && b[*j..j + 4].iter().all(u8::is_ascii_digit)
                && b[j + 4] == b'-'
                && b[j + 7] == b'-'
                && b[j + 10] == b'T'
        })
        .map_or(rest.len(), |(j, _)| j);
    let event = rest[..end].trim();
    let Some((total, steps)) = event.split_once(": ") else {
        return Vec::new();
    };
    let secs = |t: &str| t.trim().trim_end_matches(" s").trim().parse::<f64>().ok();
    let mut out = Vec::new();
    if let Some(t) = secs(total) {
        out.push(("total".to_owned(), t));
    }
    for item in steps.split(", ") {
        let item = item.trim();
        if let Some((name, t)) = item.trim_end_matches(" s").rsplit_once(' ')
            && let Ok(t) = t.parse::<f64>()
        {
            out.push((name.to_owned(), t));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_steps_from_the_status_page() {
        let text = "2026-12-06T05:12:31Z node1 role_changed acquiring -> active \
                    2026-12-06T05:12:31Z node1 acquired resources up in 4.06 s: replication r0 primary 0.22 s, \
                    filesystem /dev/drbd0 on /vz 0.30 s, links into /vz/tkcluster 0.00 s, VEs with ONBOOT=yes 3.53 s \
                    2026-12-06T05:12:31Z node1 path_late external heartbeat path late \
                    2026-12-06T05:10:00Z node1 acquired resources up in 9.99 s: x 9.99 s";
        assert_eq!(
            acquire_steps(text),
            vec![
                ("total".to_owned(), 4.06),
                ("replication r0 primary".to_owned(), 0.22),
                ("filesystem /dev/drbd0 on /vz".to_owned(), 0.30),
                ("links into /vz/tkcluster".to_owned(), 0.0),
                ("VEs with ONBOOT=yes".to_owned(), 3.53),
            ]
        );
        assert!(acquire_steps("nothing here").is_empty());
    }
}
