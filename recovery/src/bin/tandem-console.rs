//! The console screen on one terminal (the node's display or its serial port): the node
//! name in large letters, its role and health (from clusterd when it runs), its
//! addresses, how to reach the recovery page, and a menu read from the same terminal:
//! reset the admin password (R13.1), show the recovery network, restart the web
//! console, lift the web console's login lockout. It redraws when what it shows changes
//! (a link, an address, the role, a lockout). The password and the lockout are
//! clusterd's: the console asks its control API as root. See
//! `tandem_recovery::console` for the screen and the menu.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, LocalFlags, SetArg};
use tandem_api::{Client, Lockout, Reply, Request};
use tandem_recovery::console::{self, Input, Menu, Output, Port, Screen, Status};

/// How often the screen's contents are looked at again.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How long a restarted web console has to come back.
const WEB_RESTART: Duration = Duration::from_secs(20);

struct Args {
    tty: String,
    node: String,
    state: String,
    address: String,
    fingerprint: String,
    nic: String,
    control: PathBuf,
    config_dir: PathBuf,
    web_pid: PathBuf,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

fn parse_args() -> Option<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    Some(Args {
        tty: arg(&a, "--tty")?,
        node: arg(&a, "--node")?,
        state: arg(&a, "--state").unwrap_or_else(|| "unknown".into()),
        address: arg(&a, "--address").unwrap_or_default(),
        fingerprint: arg(&a, "--fingerprint").unwrap_or_default(),
        nic: arg(&a, "--nic").unwrap_or_default(),
        control: arg(&a, "--control")
            .map_or_else(|| "/run/tandem/control.sock".into(), PathBuf::from),
        config_dir: arg(&a, "--config-dir").map_or_else(|| "/config".into(), PathBuf::from),
        web_pid: arg(&a, "--web-pid")
            .map_or_else(|| "/run/tandem/tandem-web.pid".into(), PathBuf::from),
    })
}

/// clusterd's status (none in recovery mode or when it does not answer).
fn status(control: &Path) -> Option<Status> {
    Client::connect(control).ok()?.status().ok()
}

/// The web console's login lockout, when logins are locked.
fn lockout(control: &Path) -> Option<Lockout> {
    match tandem_api::ask(control, None, &Request::LoginLockout { source: None }) {
        Ok(Reply::Lockout(l)) => l,
        _ => None,
    }
}

/// One request of the menu to clusterd: `done` on success, else why not.
fn ask_done(control: &Path, request: &Request, done: String) -> Result<String, String> {
    match tandem_api::ask(control, None, request) {
        Ok(Reply::Done) => Ok(done),
        Ok(Reply::Refused(r)) => Err(format!("clusterd refused: {r}")),
        Ok(other) => Err(format!("unexpected answer from clusterd: {other:?}")),
        Err(e) => Err(format!(
            "{}; is clusterd running? (see /run/log/clusterd.log)",
            tandem_api::error_chain(&e)
        )),
    }
}

/// The network ports (every interface but loopback), the first port first, with their
/// link state and addresses.
fn ports(first: &str) -> Vec<Port> {
    let mut addrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(list) = nix::ifaddrs::getifaddrs() {
        for ifa in list {
            let (Some(a), Some(m)) = (ifa.address, ifa.netmask) else {
                continue;
            };
            let text = if let (Some(a), Some(m)) = (a.as_sockaddr_in(), m.as_sockaddr_in()) {
                format!("{}/{}", a.ip(), u32::from(m.ip()).count_ones())
            } else if let (Some(a), Some(m)) = (a.as_sockaddr_in6(), m.as_sockaddr_in6()) {
                if a.ip().is_unicast_link_local() {
                    continue;
                }
                format!("{}/{}", a.ip(), u128::from(m.ip()).count_ones())
            } else {
                continue;
            };
            addrs.entry(ifa.interface_name).or_default().push(text);
        }
    }
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    if !first.is_empty() && !names.iter().any(|n| n == first) {
        names.push(first.to_owned());
    }
    names.sort_by_key(|n| (n != first, n.clone()));
    names
        .into_iter()
        .map(|name| {
            let link = std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            let addresses = addrs.remove(&name).unwrap_or_default();
            Port {
                name,
                link,
                addresses,
            }
        })
        .collect()
}

fn configured(a: &Args) -> bool {
    tandem_config::store::is_configured(&a.config_dir)
}

fn screen(a: &Args) -> Screen {
    let st = status(&a.control);
    Screen {
        node: a.node.clone(),
        state: st
            .as_ref()
            .map_or_else(|| a.state.clone(), |s| s.role.clone()),
        health: st.as_ref().map(console::health),
        ports: ports(&a.nic),
        first_port: a.nic.clone(),
        recovery_url: a.address.clone(),
        fingerprint: a.fingerprint.clone(),
        configured: configured(a),
        password_set: a.config_dir.join("admin.hash").exists(),
        lockout: lockout(&a.control),
        version: std::fs::read_to_string("/etc/tandem-version")
            .map_or_else(|_| "unknown".to_owned(), |v| v.trim().to_owned()),
        development_key: std::fs::read_to_string("/etc/tandem-signing")
            .is_ok_and(|t| t.starts_with("development")),
    }
}

/// Whether the screen must be drawn again: nothing drawn yet, or something the operator
/// watches changed (a link, an address, the role or health). The menu's own result (a
/// password just set) does not wipe the message that reports it; Enter redraws.
fn changed(drawn: Option<&Screen>, now: &Screen) -> bool {
    drawn.is_none_or(|d| {
        let mut n = now.clone();
        n.password_set = d.password_set;
        n != *d
    })
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (is the web console running?)", path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", path.display()))?;
    if pid <= 1 {
        bail!(
            "{} holds {pid}, not a process id of the web console",
            path.display()
        );
    }
    Ok(pid)
}

/// Sends SIGTERM to the web console named in its PID file (after checking that process
/// is `tandem-web`) and waits for init to start it again (a new PID in the file).
fn restart_web(pid_file: &Path) -> Result<String> {
    let pid = read_pid(pid_file)?;
    let name = comm(pid);
    if name != "tandem-web" {
        bail!(
            "process {pid} from {} is {:?}, not tandem-web; nothing was signalled",
            pid_file.display(),
            if name.is_empty() {
                "gone"
            } else {
                name.as_str()
            }
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("signalling the web console (process {pid})"))?;
    let start = Instant::now();
    while start.elapsed() < WEB_RESTART {
        std::thread::sleep(Duration::from_millis(250));
        if let Ok(new) = read_pid(pid_file)
            && new != pid
            && comm(new) == "tandem-web"
        {
            return Ok(format!(
                "The web console was restarted (process {pid} ended, {new} runs)."
            ));
        }
    }
    bail!(
        "the web console (process {pid}) was stopped but did not come back within {} s; see the messages on this screen",
        WEB_RESTART.as_secs()
    )
}

struct Tty {
    file: File,
}

impl Tty {
    fn open(path: &str) -> Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        let t = Tty { file };
        // Line input with echo, carriage return read as newline: a serial terminal
        // sends CR for Enter.
        let mut attrs = termios::tcgetattr(t.file.as_fd()).context("reading terminal settings")?;
        attrs.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ECHOE;
        attrs.input_flags |= termios::InputFlags::ICRNL;
        termios::tcsetattr(t.file.as_fd(), SetArg::TCSANOW, &attrs)
            .context("setting terminal line mode")?;
        Ok(t)
    }

    /// Shows typed characters or not (passwords); Enter still moves to the next line.
    fn echo(&self, on: bool) {
        if let Ok(mut attrs) = termios::tcgetattr(self.file.as_fd()) {
            attrs.local_flags.set(LocalFlags::ECHO, on);
            attrs.local_flags.set(LocalFlags::ECHONL, !on);
            let _ = termios::tcsetattr(self.file.as_fd(), SetArg::TCSANOW, &attrs);
        }
    }

    fn write(&mut self, text: &str) -> Result<()> {
        self.file
            .write_all(text.as_bytes())
            .context("writing to the terminal")
    }
}

/// Carries out the menu's outputs, feeding effect results back.
fn carry_out(a: &Args, tty: &mut Tty, menu: &mut Menu, first: Vec<Output>) -> Result<bool> {
    let mut redraw = false;
    let mut queue: VecDeque<Output> = first.into();
    while let Some(o) = queue.pop_front() {
        match o {
            Output::Print(t) => tty.write(&t)?,
            Output::Prompt { text, echo } => {
                tty.echo(echo);
                tty.write(&text)?;
            }
            Output::Redraw => redraw = true,
            Output::SetPassword(pw) => {
                let configured = configured(a);
                let req = Request::SetConsolePassword {
                    password: pw.0.into(),
                };
                let r = ask_done(
                    &a.control,
                    &req,
                    console::password_done(&a.node, configured),
                );
                queue.extend(menu.handle(Input::Done(r), configured));
            }
            Output::LiftLockout => {
                let r = ask_done(
                    &a.control,
                    &Request::LiftLockout,
                    "The web console's logins are open again; every failed login is forgotten."
                        .to_owned(),
                );
                redraw = true;
                queue.extend(menu.handle(Input::Done(r), configured(a)));
            }
            Output::RestartWeb => {
                let r = restart_web(&a.web_pid).map_err(|e| format!("{e:#}"));
                queue.extend(menu.handle(Input::Done(r), configured(a)));
            }
        }
    }
    Ok(redraw)
}

fn run(a: &Args) -> Result<()> {
    let mut tty = Tty::open(&a.tty)?;
    let mut menu = Menu::new(&a.node, &a.address, &a.nic);
    // The screen last drawn; `None` draws at the next look.
    let mut drawn: Option<Screen> = None;
    let mut next_look = Instant::now();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        if menu.idle() && Instant::now() >= next_look {
            let now = screen(a);
            if changed(drawn.as_ref(), &now) {
                tty.echo(true);
                tty.write(&console::render(&now))?;
                drawn = Some(now);
            }
            next_look = Instant::now() + LOOK_EVERY;
        }
        let ready = {
            let mut fds = [PollFd::new(tty.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(2000u16)) {
                Ok(n) => n > 0,
                Err(nix::errno::Errno::EINTR) => false,
                Err(e) => return Err(e).context("waiting for the terminal"),
            }
        };
        if !ready {
            continue;
        }
        let n = match tty.file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the terminal"),
        };
        if n == 0 {
            // Hang-up: nobody at the terminal. Wait instead of spinning.
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let raw: Vec<u8> = pending.drain(..=i).collect();
            let line = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
            let outs = menu.handle(Input::Line(line), configured(a));
            if carry_out(a, &mut tty, &mut menu, outs)? {
                drawn = None;
                next_look = Instant::now();
            }
        }
        if pending.len() > 4096 {
            pending.clear();
        }
    }
}

fn main() -> ExitCode {
    let Some(a) = parse_args() else {
        eprintln!(
            "usage: tandem-console --tty DEV --node NAME [--state S --address URL --fingerprint FP --nic IF --control SOCKET --config-dir DIR --web-pid FILE]"
        );
        return ExitCode::from(2);
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-console: {e:#}");
            ExitCode::from(1)
        }
    }
}
