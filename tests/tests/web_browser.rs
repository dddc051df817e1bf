//! The web console in a real headless Chromium, driven through WebDriver (chromedriver,
//! plain HTTP with JSON on loopback). Two consoles run on 127.0.0.1, started as root, so
//! the privilege separation is the real one (the web process drops to uid 101 and asks
//! clusterd for everything, with its session's token):
//!
//! - recovery mode, empty configuration store, clusterd in recovery mode: log in with
//!   the factory password, upload a broken archive (the errors show), upload a valid
//!   one, activate it (clusterd's activation simulated with `--activation sim`: the
//!   real one needs DRBD, and the QEMU rig runs it) and follow the progress page until
//!   the new address shows;
//! - cluster mode, a committed configuration and a real clusterd pair on loopback
//!   (127.0.0.1 and 127.0.0.2, one heartbeat path): log in with the management password,
//!   visit every page in both languages, switch over from Maintenance and see Status
//!   follow; restart and shut down "this node" from Maintenance, where the signals go to
//!   a process of this test standing in for init (never to this machine's PID 1); install
//!   VE 101 on the VEs page from a template in a tmpfs standing in for the data area,
//!   with a script standing in for `tandem ve`, following its progress page until it
//!   ends; back up the template cache of that tmpfs from Maintenance.
//!
//! A PNG screenshot of every page goes to `target/screenshots/`. Needs root and the
//! Debian packages chromium and chromium-driver; `tandem-web`, `clusterd` and `tandem`
//! must be built (`cargo build -p tandem-recovery -p tandem-runtime --bins`, done by
//! `cargo test --workspace` before the rig tests in `cargo xtask test`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ADMIN_PASSWORD: &str = "browser test password";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A binary of the workspace, next to this test's own directory (`target/debug`).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p tandem-recovery -p tandem-runtime --bins`",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/this -> target/screenshots
    let target = exe.ancestors().nth(3).unwrap().to_owned();
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A minimal WebDriver client: HTTP/1.1 with `Connection: close` to chromedriver on
/// loopback.
struct Driver {
    port: u16,
    session: String,
    _proc: Proc,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver may keep the connection open: read the head, then the body by its
    // length (or its chunks).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "{method} {path}: connection closed before the answer"
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let mut payload = raw[split + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let complete = |p: &[u8]| match length {
        Some(n) => p.len() >= n,
        None => p.ends_with(b"0\r\n\r\n"),
    };
    while !complete(&payload) {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        payload.extend_from_slice(&buf[..n]);
    }
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    serde_json::from_slice(&payload).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: {e}: {}",
            String::from_utf8_lossy(&payload)
        )
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap();
        if len == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + len]);
        b = &b[nl + 2 + len + 2..];
    }
}

impl Driver {
    /// chromedriver and its browser with their temporary files in `dir`.
    fn start(dir: &Path) -> Driver {
        let port = free_port();
        let tmp = dir.join("browser-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        // Its own process group: the browsers it starts end with it (see Drop).
        let proc = Proc(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .process_group(0)
                .env("TMPDIR", &tmp)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromedriver (Debian package chromium-driver)"),
        );
        wait_until("chromedriver", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,1300",
                         "--lang=en-US"],
            },
        }}});
        let r = http(port, "POST", "/session", Some(&caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Driver {
            port,
            session,
            _proc: proc,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        if let Some(err) = r["value"].get("error") {
            panic!(
                "WebDriver {method} {path}: {err}: {}",
                r["value"]["message"]
            );
        }
        r["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css} on {}: {v}", self.url()))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn choose_file(&self, css: &str, path: &Path) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": path.display().to_string() })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the page source contains `text`.
    fn wait_text(&self, text: &str, limit: Duration) -> String {
        let mut last = String::new();
        let start = Instant::now();
        while start.elapsed() < limit {
            last = self.source();
            if last.contains(text) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {text:?} on {}: {last}", self.url());
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            )
        });
        // chromedriver's process group: the browser processes it started.
        if let Ok(pid) = i32::try_from(self._proc.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn config() -> tandem_config::ApplianceConfig {
    let text = include_str!("../../config/tests/cases/minimal.toml");
    let mut cfg = tandem_config::ApplianceConfig::from_toml(text).unwrap();
    cfg.passwords.admin = tandem_config::secrets::hash_password(ADMIN_PASSWORD).unwrap();
    cfg
}

/// A console on 127.0.0.1 with its own TLS directory, started as root (it drops to
/// uid 101 once its ports are bound), asking clusterd on `control`.
fn console(dir: &Path, control: &Path) -> (Proc, String) {
    let web = binary("tandem-web");
    let tls = dir.join("tls");
    let out = Command::new(&web)
        .args(["cert", "--dir"])
        .arg(&tls)
        .args(["--name", "node1", "--address", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (https, http) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("web.log")).unwrap();
    let p = Proc(
        Command::new(&web)
            .args([
                "serve",
                "--node",
                "node1",
                "--listen",
                "127.0.0.1",
                "--tls-dir",
            ])
            .arg(&tls)
            .arg("--control")
            .arg(control)
            .args(["--https-port", &https.to_string()])
            .args(["--http-port", &http.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("tandem-web", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", https)).is_ok()
    });
    (p, format!("https://127.0.0.1:{https}"))
}

/// The real uid of process `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The test's directory, removed when the test ends (after everything declared later
/// has stopped), kept with its logs when the test failed.
struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files and logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn test_dir(name: &str) -> TestDir {
    let dir = std::env::temp_dir().join(tandem_tests::unique(&format!("tdm-web-{name}")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The web process (uid 101) must reach the control sockets in here.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    TestDir(dir)
}

fn login(d: &Driver, base: &str, password: &str) {
    d.go(&format!("{base}/login"));
    d.type_into("input[name=password]", password);
    d.click("form[action='/login'] button");
}

#[test]
#[ignore = "needs root, chromium and chromium-driver: run `cargo xtask test`"]
fn recovery_upload_and_activation_in_a_browser() {
    let dir = test_dir("recovery");
    let store = dir.join("config");
    // clusterd in recovery mode, as init starts it on a node that is not a member;
    // its activation simulated (the R3.5 line, four seconds of work, the commit):
    // the real one needs DRBD, and the QEMU rig runs it.
    let sock = dir.join("recovery.sock");
    let clusterd = Proc(
        Command::new(binary("clusterd"))
            .args(["--node", "node1", "--recovery", "--store"])
            .arg(&store)
            .arg("--control")
            .arg(&sock)
            .args(["--control-group", "101", "--activation", "sim:4000"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("clusterd.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("clusterd's control socket", Duration::from_secs(10), || {
        sock.exists()
    });
    let good = dir.join("tkcluster_good.tar");
    let archive = tandem_config::archive::export(
        &config(),
        &tandem_config::archive::ExportOptions {
            passphrase: Some("archive passphrase".into()),
            created_unix: 1_700_000_000,
            work_factor: 10,
        },
    )
    .unwrap();
    std::fs::write(&good, &archive).unwrap();
    let broken = dir.join("tkcluster_broken.tar");
    std::fs::write(&broken, &archive[..archive.len() / 2]).unwrap();

    let (web, base) = console(&dir, &sock);
    // The process serving HTTP is uid 101, with no privileged helper beside it.
    // (The port answers from the moment root bound it, a little before the drop.)
    wait_until(
        "the web process to drop to uid 101",
        Duration::from_secs(5),
        || uid_of(web.0.id()) == 101,
    );
    let d = Driver::start(&dir);
    d.go(&format!("{base}/lang?set=en&back=/login"));
    d.screenshot("recovery-login");
    login(&d, &base, "relation");
    d.wait_text("Upload the cluster configuration", Duration::from_secs(30));
    d.screenshot("recovery-upload");

    d.choose_file("input[name=archive]", &broken);
    d.type_into("input[name=passphrase]", "archive passphrase");
    d.click("form[action='/upload'] button");
    let page = d.wait_text("The archive was refused", Duration::from_secs(30));
    assert!(page.contains("Nothing was changed"), "{page}");
    d.screenshot("recovery-upload-broken");

    d.choose_file("input[name=archive]", &good);
    d.type_into("input[name=passphrase]", "wrong passphrase");
    d.click("form[action='/upload'] button");
    let page = d.wait_text("The archive was refused", Duration::from_secs(30));
    assert!(page.to_lowercase().contains("passphrase"), "{page}");
    d.screenshot("recovery-upload-wrong-passphrase");

    d.choose_file("input[name=archive]", &good);
    d.type_into("input[name=passphrase]", "archive passphrase");
    d.click("form[action='/upload'] button");
    d.wait_text("The archive is valid.", Duration::from_secs(30));
    d.screenshot("recovery-upload-valid");

    // Destroy with a wrong cluster name: refused, nothing staged.
    d.click("input[value=destroy]");
    d.type_into("input[name=confirm]", "not-the-name");
    d.click("form[action='/activate'] button");
    d.wait_text("type the cluster name exactly", Duration::from_secs(30));
    assert!(!store.join("pending.toml").exists());
    d.screenshot("recovery-activate-wrong-name");

    d.click("input[value=destroy]");
    d.type_into("input[name=confirm]", "lab-cluster");
    d.click("form[action='/activate'] button");
    let page = d.wait_text("Activation is running", Duration::from_secs(30));
    assert!(page.contains("http-equiv=\"refresh\""), "{page}");
    d.wait_text(
        "continue activation on the other node",
        Duration::from_secs(10),
    );
    d.screenshot("recovery-progress-running");
    // The page reloads itself (meta refresh): no navigation from the test.
    let page = d.wait_text("Activation finished", Duration::from_secs(30));
    assert!(page.contains("https://10.20.30.11/"), "{page}");
    assert!(
        page.contains("activating lab-cluster as alpha (node1)"),
        "{page}"
    );
    d.screenshot("recovery-progress-done");
    assert!(tandem_config::store::is_configured(&store));

    // German, too.
    d.go(&format!("{base}/lang?set=de&back=/progress"));
    d.wait_text("Die Aktivierung ist abgeschlossen", Duration::from_secs(30));
    d.screenshot("recovery-progress-done-de");
    drop(clusterd);
}

/// A tmpfs mounted for the test, unmounted when it ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tandem-test-vz"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", at.display());
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A child of this test standing in for init: it writes the name of every TERM and
/// USR2 it gets to `log` and goes on running (until the test ends).
fn stand_in_init(log: &Path) -> Proc {
    let p = Proc(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap 'echo TERM >> {0}' TERM; trap 'echo USR2 >> {0}' USR2; echo ready >> {0}; while :; do sleep 0.1; done",
                log.display()
            ))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(p.0.id() > 1);
    wait_until("the stand-in for init", Duration::from_secs(5), || {
        std::fs::read_to_string(log).is_ok_and(|s| s.contains("ready"))
    });
    p
}

#[test]
#[ignore = "needs root, chromium and chromium-driver: run `cargo xtask test`"]
fn cluster_pages_and_switchover_in_a_browser() {
    let dir = test_dir("cluster");
    let store = dir.join("config");
    let mut cfg = config();
    cfg.ves.ve101 = Some(tandem_config::VeConfig {
        hostname: "app".parse().unwrap(),
        address: "10.20.30.101".parse().unwrap(),
        dns_servers: Vec::new(),
        dns_search: Vec::new(),
    });
    cfg.passwords.root_ve101 = Some(cfg.passwords.root_node1.clone());
    let s = tandem_config::Store::open(&store).unwrap();
    s.stage(&cfg).unwrap();
    s.commit().unwrap();
    drop(s);
    // The data area: a tmpfs with one OS template besides the built-in one.
    let vz = Tmpfs::mount(&dir.join("vz"));
    std::fs::create_dir_all(vz.0.join("template")).unwrap();
    std::fs::write(vz.0.join("template/debian-12.tar"), b"").unwrap();
    let ve_conf = dir.join("ves");
    let ve_program = tandem_tests::stand_in_tandem(&dir, "");
    let init_log = dir.join("init.log");
    let init = stand_in_init(&init_log);
    let init_pid = init.0.id().to_string();

    // A clusterd pair on loopback, the crossover path only, fast timings; the web
    // console's group may use node1's control socket.
    std::fs::write(dir.join("key"), b"browser test cluster key").unwrap();
    let udp = free_udp_port().to_string();
    let clusterd = binary("clusterd");
    let start = |node: &str, local: &str, peer: &str| {
        let log = std::fs::File::create(dir.join(format!("{node}.log"))).unwrap();
        Proc(
            Command::new(&clusterd)
                .args(["--node", node, "--key-file"])
                .arg(dir.join("key"))
                // The console's privileged actions: this store, the tmpfs data area,
                // the stand-ins for init and `tandem ve`.
                .arg("--store")
                .arg(&store)
                .args(["--init-pid", &init_pid, "--data-area"])
                .arg(&vz.0)
                .arg("--ve-conf-dir")
                .arg(&ve_conf)
                .arg("--ve-program")
                .arg(&ve_program)
                .args(["--export-work-factor", "10"])
                .arg("--state-dir")
                .arg(dir.join(format!("{node}-state")))
                .arg("--control")
                .arg(dir.join(format!("{node}.sock")))
                .args(["--control-group", "101"])
                .args(["--internal", &format!("{local},{peer}"), "--udp-port", &udp])
                .args(["--keepalive-ms", "200", "--deadtime-ms", "1500"])
                .args(["--warntime-ms", "750", "--initdead-ms", "3000"])
                .args(["--board", "none"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let _n1 = start("node1", "127.0.0.1", "127.0.0.2");
    let n2 = start("node2", "127.0.0.2", "127.0.0.1");
    let tandem = binary("tandem");
    let role = |node: &str| -> Option<String> {
        let out = Command::new(&tandem)
            .arg("--control")
            .arg(dir.join(format!("{node}.sock")))
            .args(["status", "--json"])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["role"].as_str().map(str::to_owned)
    };
    wait_until("one active node", Duration::from_secs(20), || {
        let (a, b) = (role("node1"), role("node2"));
        matches!(
            (a.as_deref(), b.as_deref()),
            (Some("active"), Some("passive")) | (Some("passive"), Some("active"))
        )
    });
    let before = role("node1").unwrap();

    let sock = dir.join("node1.sock");
    let (_web, base) = console(&dir, &sock);
    // Restart and shutdown go to the stand-in, never to PID 1: checked before any form
    // is sent.
    wait_until(
        "clusterd to name the process it signals",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(dir.join("node1.log")).is_ok_and(|l| {
                l.contains(&format!("restart and shutdown signal process {init_pid}\n"))
            })
        },
    );
    let d = Driver::start(&dir);
    d.go(&format!("{base}/lang?set=en&back=/login"));
    login(&d, &base, "relation");
    d.wait_text(
        "factory password is no longer valid",
        Duration::from_secs(10),
    );
    d.screenshot("cluster-login-factory-refused");
    // The refused login costs a second before the next attempt.
    std::thread::sleep(Duration::from_millis(1100));
    login(&d, &base, ADMIN_PASSWORD);
    d.wait_text("management version", Duration::from_secs(20));

    for &(path, en, de) in tandem_recovery::page::MENU {
        for (lang, title) in [("en", en), ("de", de)] {
            d.go(&format!("{base}/lang?set={lang}&back={path}"));
            let page = d.wait_text(&format!("<h1>{title}</h1>"), Duration::from_secs(30));
            assert!(!page.contains("$argon2id") && !page.contains("PRIVATE KEY"));
            d.screenshot(&format!("cluster{}-{lang}", path.replace('/', "-")));
        }
    }
    d.go(&format!("{base}/lang?set=en&back=/status"));
    let page = d.wait_text("<h1>Status</h1>", Duration::from_secs(30));
    assert!(
        page.contains(&format!("role of this node</th><td>{before}</td>")),
        "{page}"
    );
    assert!(page.contains("internal"), "{page}");

    // Restart and shutdown of this node: the effect on the services first, from
    // clusterd (both nodes run).
    d.go(&format!("{base}/maintenance"));
    let page = d.wait_text("Restart or shut down this node", Duration::from_secs(30));
    if before == "active" {
        assert!(page.contains("node2 takes them over"), "{page}");
    } else {
        assert!(page.contains("the services run on node2"), "{page}");
    }
    assert!(page.contains("use that node's own console"), "{page}");
    d.screenshot("cluster-maintenance-power");
    d.click("form#reboot button");
    d.wait_text(
        "Tick the box to confirm the restart",
        Duration::from_secs(30),
    );
    d.screenshot("cluster-restart-unconfirmed");
    d.click("form#poweroff button");
    d.wait_text(
        "Tick the box to confirm the shutdown",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&init_log).unwrap(), "ready\n");
    d.click("form#reboot input[name=confirm]");
    d.click("form#reboot button");
    let page = d.wait_text("This node is restarting", Duration::from_secs(30));
    assert!(page.contains("comes back at the same address"), "{page}");
    d.screenshot("cluster-restarting");
    wait_until(
        "TERM at the stand-in for init",
        Duration::from_secs(5),
        || std::fs::read_to_string(&init_log).unwrap() == "ready\nTERM\n",
    );
    d.go(&format!("{base}/lang?set=de&back=/maintenance"));
    d.wait_text("Diesen Knoten herunterfahren", Duration::from_secs(30));
    d.click("form#poweroff input[name=confirm]");
    d.click("form#poweroff button");
    let page = d.wait_text("Dieser Knoten fährt herunter", Duration::from_secs(30));
    assert!(page.contains("BMC"), "{page}");
    d.screenshot("cluster-shutting-down-de");
    wait_until(
        "USR2 at the stand-in for init",
        Duration::from_secs(5),
        || std::fs::read_to_string(&init_log).unwrap() == "ready\nTERM\nUSR2\n",
    );
    d.go(&format!("{base}/lang?set=en&back=/ves"));

    // VE 101 from a template, with the configured host name and address.
    let page = d.wait_text("Install VE 101", Duration::from_secs(30));
    assert!(page.contains("<option value=\"debian-12\">"), "{page}");
    d.screenshot("cluster-ve101-form");
    d.click("form#install-ve101 button");
    d.wait_text(
        "Tick the box to confirm the installation of VE 101",
        Duration::from_secs(30),
    );
    assert!(!dir.join("calls.log").exists());
    d.click("form#install-ve101 option[value='debian-12']");
    d.click("form#install-ve101 input[name=confirm]");
    d.click("form#install-ve101 button");
    // The progress page reloads itself (no JavaScript) until the installation ended.
    let page = d.wait_text(
        "VE 101 was installed from debian-12",
        Duration::from_secs(60),
    );
    assert!(d.url().ends_with("/ves/install/progress"), "{}", d.url());
    assert!(!page.contains("http-equiv=\"refresh\""), "{page}");
    d.screenshot("cluster-ve101-installed");
    d.click("p > a[href='/ves']");
    d.wait_text("VE 101 is installed on this node", Duration::from_secs(30));
    assert_eq!(
        std::fs::read_to_string(dir.join("calls.log")).unwrap(),
        "ve create 101 --template debian-12 --hostname app --ip 10.20.30.101\n\
         ve set 101 ONBOOT=yes\n\
         ve start 101\n"
    );

    // The template cache of the data area: each template listed with what happened.
    d.go(&format!("{base}/maintenance"));
    d.click("form#backup-templates button");
    let page = d.wait_text(
        "The template cache is backed up in",
        Duration::from_secs(30),
    );
    assert!(
        page.contains("<tr><td>debian-12.tar</td><td>0 bytes</td><td>copied</td></tr>")
            && page.contains(": 1 template, 0 bytes; 1 copied, 0 replaced, 0 unchanged."),
        "{page}"
    );
    assert!(vz.0.join("backups/templatecache/debian-12.tar").is_file());
    d.screenshot("cluster-template-backup");

    // Switchover without the confirmation box: refused, nothing changes.
    d.go(&format!("{base}/maintenance"));
    d.click("form[action='/maintenance/switchover'] button");
    d.wait_text("Tick the box", Duration::from_secs(30));
    d.screenshot("cluster-switchover-unconfirmed");
    assert_eq!(role("node1").as_deref(), Some(before.as_str()));

    d.click("form[action='/maintenance/switchover'] input[name=confirm]");
    d.click("form[action='/maintenance/switchover'] button");
    d.wait_text("Switchover started", Duration::from_secs(30));
    d.screenshot("cluster-switchover-started");
    let after = if before == "active" {
        "passive"
    } else {
        "active"
    };
    let start = Instant::now();
    loop {
        d.go(&format!("{base}/status"));
        if d.source()
            .contains(&format!("role of this node</th><td>{after}</td>"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Status did not follow the switchover: {}",
            d.source()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    d.screenshot("cluster-status-after-switchover");
    assert_eq!(role("node1").as_deref(), Some(after));

    // The archive download, with the browser's session (a headless browser keeps
    // downloads to itself): encrypted with the passphrase typed, the committed
    // configuration inside.
    d.go(&format!("{base}/maintenance"));
    let page = d.wait_text("<h1>Maintenance</h1>", Duration::from_secs(30));
    let export = |passphrase: &str| {
        let session = d.cmd("GET", "/cookie/tandem_session", None)["value"]
            .as_str()
            .unwrap()
            .to_owned();
        let marker = "name=\"csrf\" value=\"";
        let i = page.find(marker).unwrap() + marker.len();
        let form = format!(
            "csrf={}&passphrase={passphrase}&passphrase2={passphrase}",
            &page[i..i + 64]
        );
        let addr = base.trim_start_matches("https://").to_owned();
        tandem_tests::https(
            &addr,
            "POST",
            "/maintenance/export",
            Some(&format!("tandem_session={session}; tandem_lang=en")),
            Some(&form),
        )
        .unwrap()
    };
    let res = export("download-passphrase");
    assert_eq!(res.status, 200, "{}", res.body);
    let disposition = res.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"tkcluster_"),
        "{disposition}"
    );
    assert!(tandem_config::archive::read_archive(&res.bytes, Some("wrong")).is_err());
    let back = tandem_config::archive::read_archive(&res.bytes, Some("download-passphrase"))
        .expect("the download is an archive that opens with the passphrase typed");
    let committed = tandem_config::Store::open(&store)
        .unwrap()
        .current()
        .unwrap()
        .unwrap();
    assert_eq!(back.config, committed);

    // Only while both nodes run normally (R3.1): with node2 gone, refused.
    drop(n2);
    wait_until("node1 to miss node2", Duration::from_secs(20), || {
        let out = Command::new(&tandem)
            .arg("--control")
            .arg(&sock)
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .is_ok_and(|v| v["peer"]["alive"] == Value::Bool(false))
    });
    let res = export("download-passphrase");
    assert_eq!(res.status, 409, "{}", res.body);
    assert!(
        res.body.contains("only while both nodes run normally"),
        "{}",
        res.body
    );
    // With node2 gone, Maintenance warns that a restart or shutdown here stops the
    // services (node1 is active now or becomes so).
    let start = Instant::now();
    loop {
        d.go(&format!("{base}/maintenance"));
        let page = d.source();
        if page.contains("is <b>active</b> and the other node (node2) is <b>not reachable</b>") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no warning that the services stop: {page}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    d.screenshot("cluster-maintenance-power-peer-gone");
    drop(init);
}
