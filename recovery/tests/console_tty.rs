//! `tandem-console` on a pseudo-terminal, driven as an operator would: the screen with
//! the role and health from a stand-in clusterd (its control socket answering `status`
//! and the login lockout, and taking the requests the menu sends in the control API's
//! wire format), the password reset without echo (sent to clusterd, never shown), the
//! web console's login lockout shown and lifted, the web console restart by its PID
//! file (a stand-in `tandem-web` restarted by the test as init does, and a decoy
//! process that must not be signalled), and the redraw when clusterd goes away. No
//! network. That clusterd stores the password and lifts the lockout is tested with
//! clusterd (`tandem_runtime::control`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_api::wire::{RequestLine, parse_request, reply_line};
use tandem_api::{Lockout, LockoutScope, Reply, Request, StatusJson};

const STATUS: &str = r#"{"node":"node1","role":"passive","resources":"stopped","resource_chain":[],"waiting":null,"data_good":true,"peer":{"node":"node2","alive":true,"role":"active","resources":"running","data_good":true,"ping_reach":null,"config_matches":true},"paths":[{"path":"serial","enabled":true,"state":"up","last_heard_ms_ago":100},{"path":"internal","enabled":true,"state":"up","last_heard_ms_ago":100},{"path":"external","enabled":false,"state":"disabled","last_heard_ms_ago":null}],"ping_nodes":[],"counters":{"accepted":9,"bad_mac":0,"malformed":0,"replayed":0,"misdirected":0,"line_noise":0,"config_mismatch":0,"bad_requests":0},"warnings":[],"hardware":{"state":"ok","problems":0,"pending":0,"text":"12 sensors ok"}}"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The terminal as the operator sees it.
struct Terminal {
    master: File,
    seen: Arc<Mutex<Vec<u8>>>,
    /// The console's process, for the failure message.
    pid: u32,
}

impl Terminal {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits for `needle` after byte `from`; returns the offset after it.
    fn wait_for(&self, from: usize, needle: &str) -> usize {
        let start = Instant::now();
        loop {
            let t = self.text();
            if let Some(i) = t.get(from..).and_then(|x| x.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {needle:?} on the terminal; the console waits in {:?} ({:?}); it shows:\n{}",
                std::fs::read_to_string(format!("/proc/{}/wchan", self.pid)),
                std::fs::read_to_string(format!("/proc/{}/syscall", self.pid)),
                t.get(from..).unwrap_or("")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
    }
}

/// What the stand-in clusterd was asked, and whether logins are locked.
#[derive(Default)]
struct Asked {
    requests: Vec<RequestLine>,
    locked: bool,
}

/// A stand-in clusterd: answers `status` and the login lockout, and takes the console
/// password and the lifting of the lockout, until `stop` is set.
fn fake_clusterd(
    sock: &Path,
    stop: Arc<AtomicBool>,
    asked: Arc<Mutex<Asked>>,
) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let path = sock.to_owned();
    let status: StatusJson = serde_json::from_str(STATUS).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut line = String::new();
                    let mut r = BufReader::new(&s);
                    if r.read_line(&mut line).is_err() {
                        continue;
                    }
                    let Ok(req) = parse_request(line.trim_end().as_bytes()) else {
                        continue;
                    };
                    let mut a = asked.lock().unwrap();
                    let reply = match &req.request {
                        Request::Status => Reply::Status(Box::new(status.clone())),
                        Request::LoginLockout { .. } => Reply::Lockout(a.locked.then(|| Lockout {
                            scope: LockoutScope::Address("192.168.100.100".parse().unwrap()),
                            failures: 12,
                            seconds_left: 600,
                        })),
                        Request::LiftLockout => {
                            a.locked = false;
                            Reply::Done
                        }
                        _ => Reply::Done,
                    };
                    a.requests.push(req);
                    drop(a);
                    let _ = (&s).write_all(&reply_line(&reply, 0).unwrap());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        drop(listener);
        let _ = std::fs::remove_file(path);
    })
}

/// A program whose process name is `name` (a copy of `sleep`).
fn program_named(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/sleep", &p).unwrap();
    p
}

#[test]
fn console_menu_on_a_terminal() {
    let dir = std::env::temp_dir().join(format!("tdm-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let sock = dir.join("control.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let asked: Arc<Mutex<Asked>> = Arc::default();
    let clusterd = fake_clusterd(&sock, Arc::clone(&stop), Arc::clone(&asked));

    // The stand-in web console, restarted by a supervisor thread as init does.
    let web = program_named(&dir, "tandem-web");
    let pid_file = dir.join("tandem-web.pid");
    let web_pids: Arc<Mutex<Vec<u32>>> = Arc::default();
    let supervisor_stop = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let (web, pid_file, pids, stop) = (
            web.clone(),
            pid_file.clone(),
            Arc::clone(&web_pids),
            Arc::clone(&supervisor_stop),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut c = Command::new(&web).arg("600").spawn().unwrap();
                std::fs::write(&pid_file, format!("{}\n", c.id())).unwrap();
                pids.lock().unwrap().push(c.id());
                loop {
                    if stop.load(Ordering::SeqCst) {
                        let _ = c.kill();
                        let _ = c.wait();
                        return;
                    }
                    if c.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };

    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = nix::unistd::ttyname(&pty.slave).unwrap();
    let master = File::from(pty.master);
    let _console = Killed(
        Command::new(env!("CARGO_BIN_EXE_tandem-console"))
            .arg("--tty")
            .arg(&slave)
            .args(["--node", "node1", "--state", "recovery"])
            .args([
                "--address",
                "https://192.168.100.101/",
                "--fingerprint",
                "AB:CD",
            ])
            .args(["--nic", "lo"])
            .arg("--control")
            .arg(&sock)
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--web-pid")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    {
        let (mut r, seen) = (master.try_clone().unwrap(), Arc::clone(&seen));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    let pid = _console.0.id();
    let mut t = Terminal { master, seen, pid };

    // The screen: role and health from clusterd.
    let at = t.wait_for(0, "    State:     passive");
    let at = t.wait_for(at, "    Peer:      node2 heard");
    let at = t.wait_for(
        at,
        "    Heartbeat: serial up, internal up, external disabled",
    );
    let at = t.wait_for(at, "    Hardware:  ok (12 sensors ok)");
    let at = t.wait_for(at, "Choose 1, 2, 3 or 4 and press Enter: ");

    // Password reset: typed twice, never shown, stored as argon2id.
    let before = at;
    t.type_line("1");
    let at = t.wait_for(at, "empty to cancel): ");
    t.type_line("Geheim-12345");
    let at = t.wait_for(at, "Repeat the new password: ");
    t.type_line("Geheim-12345");
    let at = t.wait_for(at, "[y/N]: ");
    t.type_line("yes");
    let at = t.wait_for(at, "Done: node1's web console now takes this password");
    assert!(!t.text()[before..].contains("Geheim"), "password echoed");
    let sent: Vec<String> = asked
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter_map(|r| match &r.request {
            Request::SetConsolePassword { password } => Some(password.expose().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, ["Geheim-12345"], "one request to clusterd, as root");

    // Logins of the web console get locked: the screen says so; 4 lifts it.
    asked.lock().unwrap().locked = true;
    let at = t.wait_for(
        at,
        "Web login: LOCKED from 192.168.100.100 after 12 failed logins (10 min left; 4 lifts it)",
    );
    let at = t.wait_for(at, "Choose 1, 2, 3 or 4 and press Enter: ");
    t.type_line("4");
    let at = t.wait_for(at, "[y/N]: ");
    t.type_line("y");
    let at = t.wait_for(at, "logins are open again");
    assert!(!asked.lock().unwrap().locked);

    // A PID file naming another program: nothing is signalled.
    let decoy = Killed(
        Command::new(program_named(&dir, "decoy"))
            .arg("600")
            .spawn()
            .unwrap(),
    );
    let real = std::fs::read_to_string(&pid_file).unwrap();
    std::fs::write(&pid_file, format!("{}\n", decoy.0.id())).unwrap();
    let at = t.wait_for(at, "Choose 1, 2, 3 or 4 and press Enter: ");
    t.type_line("3");
    let at = t.wait_for(at, "[y/N]: ");
    t.type_line("y");
    let at = t.wait_for(at, "not tandem-web; nothing was signalled");
    let mut decoy = decoy;
    assert!(decoy.0.try_wait().unwrap().is_none(), "the decoy lives");
    std::fs::write(&pid_file, real).unwrap();

    // The real one: SIGTERM, and the supervisor's new process is reported.
    let first = web_pids.lock().unwrap()[0];
    let at = t.wait_for(at, "Choose 1, 2, 3 or 4 and press Enter: ");
    t.type_line("3");
    let at = t.wait_for(at, "[y/N]: ");
    t.type_line("y");
    let at = t.wait_for(
        at,
        &format!("The web console was restarted (process {first} ended, "),
    );
    assert_eq!(web_pids.lock().unwrap().len(), 2);

    // clusterd stops: the screen falls back to the state init gave, at once.
    stop.store(true, Ordering::SeqCst);
    clusterd.join().unwrap();
    let at = t.wait_for(at, "    State:     recovery");
    let _ = t.wait_for(at, "    Health:    cluster daemon not running");

    supervisor_stop.store(true, Ordering::SeqCst);
    supervisor.join().unwrap();
    drop(decoy);
    let _ = std::fs::remove_dir_all(&dir);
}
