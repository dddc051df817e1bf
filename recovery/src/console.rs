//! The local console screen (R2.2, R13.1) without IO: what the screen shows, and the
//! menu as a state machine fed with the lines the operator types. `tandem-console` does
//! the IO: the terminal (echo off for passwords), clusterd's control API (status, the
//! web console's login lockout, setting the console password, lifting the lockout),
//! the addresses, the web console's process.

use std::fmt;

pub use tandem_api::StatusJson as Status;
use tandem_api::{Lockout, LockoutScope, MIN_PASSWORD};

use crate::banner;

/// One network port on the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Interface name.
    pub name: String,
    /// `up`, `down`, ... from the kernel (`operstate`).
    pub link: String,
    /// Addresses with prefix length, e.g. `192.168.100.101/24`.
    pub addresses: Vec<String>,
}

/// The line for a login lockout of the web console.
#[must_use]
pub fn lockout_line(l: &Lockout) -> String {
    let who = match &l.scope {
        LockoutScope::Address(a) => format!("from {a}"),
        LockoutScope::Everyone => "from every address".to_owned(),
    };
    format!(
        "Web login: LOCKED {who} after {} failed logins ({} min left; 4 lifts it)",
        l.failures,
        l.seconds_left.div_ceil(60)
    )
}

/// The health lines for the screen from clusterd's status.
#[must_use]
pub fn health(st: &Status) -> Vec<String> {
    let mut out = Vec::new();
    let peer = if st.peer.alive {
        format!("{} heard", st.peer.node)
    } else {
        format!("{} not heard", st.peer.node)
    };
    out.push(format!("Peer:      {peer}"));
    if !st.paths.is_empty() {
        let paths: Vec<String> = st
            .paths
            .iter()
            .map(|p| format!("{} {}", p.path, p.state))
            .collect();
        out.push(format!("Heartbeat: {}", paths.join(", ")));
    }
    if let Some(h) = &st.hardware {
        out.push(format!("Hardware:  {} ({})", h.state, h.text));
    }
    if let Some(r) = &st.replication {
        out.push(format!("Data:      {r}"));
    }
    if let Some(w) = &st.waiting {
        out.push(format!("Waiting:   {w}"));
    }
    match st.warnings.as_slice() {
        [] => {}
        [one] => out.push(format!("Warning:   {one}")),
        [first, rest @ ..] => out.push(format!(
            "Warnings:  {first} (and {} more: tandem status)",
            rest.len()
        )),
    }
    out
}

/// Everything the screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// The node's name, e.g. `node1`.
    pub node: String,
    /// The role from clusterd, else the state init gave (e.g. `recovery`).
    pub state: String,
    /// From clusterd's status; `None` when it does not answer.
    pub health: Option<Vec<String>>,
    /// The network ports, the first one first.
    pub ports: Vec<Port>,
    /// The first port's name (the red cable's port).
    pub first_port: String,
    /// The recovery page, e.g. `https://192.168.100.101/`.
    pub recovery_url: String,
    /// SHA-256 fingerprint of the web console's certificate.
    pub fingerprint: String,
    /// Whether the node has an active configuration.
    pub configured: bool,
    /// Whether an admin password was set on this console.
    pub password_set: bool,
    /// The web console's login lockout, when logins are locked.
    pub lockout: Option<Lockout>,
    /// The running system's version (`/etc/tandem-version`).
    pub version: String,
    /// Whether the image trusts update bundles of a development key
    /// (`/etc/tandem-signing`) rather than the vendor's release key.
    pub development_key: bool,
}

/// The menu's choices and question, at the bottom of the screen.
pub const MENU: &str = "    1  Reset the admin password of the web console\r\n\
                        \x20   2  Show the recovery network\r\n\
                        \x20   3  Restart the web console\r\n\
                        \x20   4  Lift the web console's login lockout\r\n";
/// The menu's question.
pub const CHOOSE: &str = "    Choose 1, 2, 3 or 4 and press Enter: ";

fn link_text(p: &Port) -> String {
    match p.link.as_str() {
        "up" => "link up".into(),
        "" => "not present".into(),
        other => format!("link {other} - is the cable plugged in?"),
    }
}

/// The whole screen, for a terminal (`\r\n` line ends, cleared first).
#[must_use]
pub fn render(s: &Screen) -> String {
    let mut o = String::from("\x1b[2J\x1b[H\r\n");
    for l in banner::render(&s.node) {
        o.push_str(&format!("    {l}\r\n"));
    }
    o.push_str(&format!(
        "\r\n    Node:      {}\r\n    State:     {}\r\n",
        s.node, s.state
    ));
    if s.development_key {
        o.push_str(&format!(
            "    Software:  {}  DEVELOPMENT KEY: updates signed on a build host, not for customers\r\n",
            s.version
        ));
    } else {
        o.push_str(&format!("    Software:  {}\r\n", s.version));
    }
    match &s.health {
        Some(lines) => {
            for l in lines {
                o.push_str(&format!("    {l}\r\n"));
            }
        }
        None => o.push_str("    Health:    cluster daemon not running\r\n"),
    }
    if let Some(l) = &s.lockout {
        o.push_str(&format!("    {}\r\n", lockout_line(l)));
    }
    if s.configured {
        o.push_str(&format!(
            "    Recovery:  {}  (only in recovery mode)\r\n",
            s.recovery_url
        ));
    } else {
        o.push_str(&format!(
            "    Recovery:  {}  (laptop 192.168.100.100/24, red cable, first network port)\r\n",
            s.recovery_url
        ));
        let how = if s.password_set {
            "the password set on this console"
        } else {
            "factory password"
        };
        o.push_str(&format!("    Login:     admin / {how}\r\n"));
    }
    if s.ports.is_empty() {
        o.push_str("    Network:   no network port found\r\n");
    }
    for (i, p) in s.ports.iter().enumerate() {
        let label = if i == 0 { "Network:  " } else { "          " };
        let first = if p.name == s.first_port {
            " (first port)"
        } else {
            ""
        };
        let mut line = format!("    {label} {}{first}: {}", p.name, link_text(p));
        if !p.addresses.is_empty() {
            line.push_str(&format!(", {}", p.addresses.join(" ")));
        }
        o.push_str(&line);
        o.push_str("\r\n");
    }
    o.push_str(&format!(
        "    HTTPS certificate SHA-256:\r\n      {}\r\n\r\n",
        s.fingerprint
    ));
    o.push_str(MENU);
    o.push_str("\r\n");
    o.push_str(CHOOSE);
    o
}

/// The host of an `https://HOST/` address.
fn host(url: &str) -> &str {
    url.trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or("")
}

/// Menu item 2: how to reach the recovery page.
#[must_use]
pub fn recovery_network(recovery_url: &str, first_port: &str, configured: bool) -> String {
    let mut o = format!(
        "\r\n    Recovery network\r\n\
         \x20   This node:  {}/24 on the first (left) network port ({first_port})\r\n\
         \x20   Laptop:     192.168.100.100/24, no gateway, no DNS\r\n\
         \x20   Cable:      the red cable, from the laptop to the first network port\r\n\
         \x20   Browser:    {recovery_url} - compare the certificate fingerprint shown above\r\n",
        host(recovery_url)
    );
    if configured {
        o.push_str(
            "    This node is configured: the recovery address is not active. It returns\r\n\
             \x20   when the node is reinstalled (recovery mode).\r\n",
        );
    }
    o.push_str("\r\n");
    o
}

/// A password while it is being entered; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where the menu is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Choose,
    NewPassword,
    Repeat(Secret),
    ConfirmPassword(Secret),
    ConfirmRestart,
    ConfirmLift,
    /// An effect runs; its result comes as [`Input::Done`].
    Busy,
}

/// What the menu is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line the operator typed (without its line end).
    Line(String),
    /// The last effect finished: a message for the operator, or why it failed.
    Done(Result<String, String>),
}

/// What the terminal must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Print this text.
    Print(String),
    /// Print this question; `echo` says whether typing is shown.
    Prompt {
        /// The question.
        text: String,
        /// Show what is typed (off for passwords).
        echo: bool,
    },
    /// Draw the whole screen again (with the menu).
    Redraw,
    /// Store this as the admin password, then report with [`Input::Done`].
    SetPassword(Secret),
    /// Restart the web console, then report with [`Input::Done`].
    RestartWeb,
    /// Lift the web console's login lockout, then report with [`Input::Done`].
    LiftLockout,
}

/// The console menu: sans-IO, one [`Input`] in, the [`Output`]s to carry out back.
#[derive(Debug, Clone)]
pub struct Menu {
    step: Step,
    node: String,
    recovery_url: String,
    first_port: String,
}

fn prompt(text: &str, echo: bool) -> Output {
    Output::Prompt {
        text: text.to_owned(),
        echo,
    }
}

fn choose() -> Output {
    prompt(CHOOSE, true)
}

fn yes(line: &str) -> bool {
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

impl Menu {
    /// The menu of `node`, showing the menu question first.
    #[must_use]
    pub fn new(node: &str, recovery_url: &str, first_port: &str) -> Self {
        Self {
            step: Step::Choose,
            node: node.to_owned(),
            recovery_url: recovery_url.to_owned(),
            first_port: first_port.to_owned(),
        }
    }

    /// True while the menu waits for a choice: the screen may be redrawn without
    /// disturbing a question.
    #[must_use]
    pub fn idle(&self) -> bool {
        self.step == Step::Choose
    }

    /// Feeds one input; `configured` is whether the node has an active configuration
    /// now (it decides what the password means). Returns what to do, in order.
    #[must_use]
    pub fn handle(&mut self, input: Input, configured: bool) -> Vec<Output> {
        let step = std::mem::replace(&mut self.step, Step::Choose);
        match (step, input) {
            (Step::Busy, Input::Done(Ok(msg))) => {
                vec![Output::Print(format!("\r\n    {msg}\r\n\r\n")), choose()]
            }
            (Step::Busy, Input::Done(Err(why))) => vec![
                Output::Print(format!("\r\n    FAILED: {why}\r\n\r\n")),
                choose(),
            ],
            (Step::Busy, Input::Line(_)) => {
                // Typed while working: ignored, still working.
                self.step = Step::Busy;
                vec![]
            }
            (step, Input::Done(_)) => {
                // A result nobody waits for changes nothing.
                self.step = step;
                vec![]
            }
            (Step::Choose, Input::Line(l)) => match l.trim() {
                "" => vec![Output::Redraw],
                "1" => {
                    self.step = Step::NewPassword;
                    let mut text = format!(
                        "\r\n    New admin password for the web console of {} (at least {} characters;\r\n\
                         \x20   not shown while typed; empty to cancel): ",
                        self.node, MIN_PASSWORD
                    );
                    if configured {
                        text = format!(
                            "\r\n    This node is configured: the password opens this node's web console.\r\n\
                             \x20   Afterwards set the management password again on the active node.{text}"
                        );
                    }
                    vec![prompt(&text, false)]
                }
                "2" => vec![
                    Output::Print(recovery_network(
                        &self.recovery_url,
                        &self.first_port,
                        configured,
                    )),
                    choose(),
                ],
                "3" => {
                    self.step = Step::ConfirmRestart;
                    vec![prompt(
                        "\r\n    Restart the web console? Logged-in users must log in again. [y/N]: ",
                        true,
                    )]
                }
                "4" => {
                    self.step = Step::ConfirmLift;
                    vec![prompt(
                        "\r\n    Lift the web console's login lockout and forget every failed login? [y/N]: ",
                        true,
                    )]
                }
                other => vec![
                    Output::Print(format!(
                        "\r\n    Unknown choice {other:?}: type 1, 2, 3 or 4 and press Enter.\r\n"
                    )),
                    choose(),
                ],
            },
            (Step::NewPassword, Input::Line(l)) => {
                if l.is_empty() {
                    return vec![
                        Output::Print("\r\n    Cancelled; nothing was changed.\r\n\r\n".into()),
                        choose(),
                    ];
                }
                if l.chars().count() < MIN_PASSWORD {
                    return vec![
                        Output::Print(format!(
                            "\r\n    Too short: at least {} characters. Nothing was changed.\r\n\r\n",
                            MIN_PASSWORD
                        )),
                        choose(),
                    ];
                }
                self.step = Step::Repeat(Secret(l));
                vec![prompt("    Repeat the new password: ", false)]
            }
            (Step::Repeat(first), Input::Line(l)) => {
                if first.0 != l {
                    return vec![
                        Output::Print(
                            "\r\n    The two entries differ. Nothing was changed; choose 1 to try again.\r\n\r\n"
                                .into(),
                        ),
                        choose(),
                    ];
                }
                self.step = Step::ConfirmPassword(first);
                vec![prompt(
                    &format!(
                        "    Set this as the admin password of {}'s web console? [y/N]: ",
                        self.node
                    ),
                    true,
                )]
            }
            (Step::ConfirmPassword(pw), Input::Line(l)) => {
                if yes(&l) {
                    self.step = Step::Busy;
                    vec![
                        Output::Print("    Storing the password ...\r\n".into()),
                        Output::SetPassword(pw),
                    ]
                } else {
                    vec![
                        Output::Print("\r\n    Cancelled; nothing was changed.\r\n\r\n".into()),
                        choose(),
                    ]
                }
            }
            (Step::ConfirmLift, Input::Line(l)) => {
                if yes(&l) {
                    self.step = Step::Busy;
                    vec![
                        Output::Print("    Lifting the login lockout ...\r\n".into()),
                        Output::LiftLockout,
                    ]
                } else {
                    vec![Output::Print("\r\n    Cancelled.\r\n\r\n".into()), choose()]
                }
            }
            (Step::ConfirmRestart, Input::Line(l)) => {
                if yes(&l) {
                    self.step = Step::Busy;
                    vec![
                        Output::Print("    Restarting the web console ...\r\n".into()),
                        Output::RestartWeb,
                    ]
                } else {
                    vec![Output::Print("\r\n    Cancelled.\r\n\r\n".into()), choose()]
                }
            }
        }
    }
}

/// What the operator is told after the password was stored.
#[must_use]
pub fn password_done(node: &str, configured: bool) -> String {
    if configured {
        format!(
            "Done: {node}'s web console now takes this password for admin. Set the management\r\n\
             \x20   password again on the active node; it applies to the whole cluster."
        )
    } else {
        format!(
            "Done: {node}'s web console now takes this password for admin instead of the\r\n\
             \x20   factory password."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Input {
        Input::Line(s.to_owned())
    }

    fn printed(out: &[Output]) -> String {
        out.iter()
            .map(|o| match o {
                Output::Print(t) | Output::Prompt { text: t, .. } => t.clone(),
                other => format!("<{other:?}>"),
            })
            .collect()
    }

    fn menu() -> Menu {
        Menu::new("node1", "https://192.168.100.101/", "eth0")
    }

    #[test]
    fn password_reset_asks_twice_without_echo_then_confirms() {
        let mut m = menu();
        let out = m.handle(line("1"), false);
        assert!(
            matches!(&out[..], [Output::Prompt { echo: false, text }] if text.contains("New admin password"))
        );
        let out = m.handle(line("s3cret-pass"), false);
        assert!(
            matches!(&out[..], [Output::Prompt { echo: false, text }] if text.contains("Repeat"))
        );
        let out = m.handle(line("s3cret-pass"), false);
        assert!(matches!(&out[..], [Output::Prompt { echo: true, .. }]));
        assert!(!m.idle());
        let out = m.handle(line("yes"), false);
        assert_eq!(
            out.last(),
            Some(&Output::SetPassword(Secret("s3cret-pass".into())))
        );
        // Typing while it works changes nothing.
        assert!(m.handle(line("3"), false).is_empty());
        let out = m.handle(Input::Done(Ok(password_done("node1", false))), false);
        assert!(printed(&out).contains("instead of the\r\n    factory password"));
        assert!(m.idle());
    }

    #[test]
    fn mismatch_short_cancel_and_no_change_nothing() {
        let mut m = menu();
        let _ = m.handle(line("1"), false);
        let _ = m.handle(line("s3cret-pass"), false);
        let out = m.handle(line("s3cret-pasS"), false);
        assert!(printed(&out).contains("differ"));
        assert!(m.idle());

        let _ = m.handle(line("1"), false);
        let out = m.handle(line("short"), false);
        assert!(printed(&out).contains("Too short"));
        assert!(m.idle());

        let _ = m.handle(line("1"), false);
        let out = m.handle(line(""), false);
        assert!(printed(&out).contains("Cancelled"));

        let _ = m.handle(line("1"), false);
        let _ = m.handle(line("s3cret-pass"), false);
        let _ = m.handle(line("s3cret-pass"), false);
        let out = m.handle(line("n"), false);
        assert!(printed(&out).contains("nothing was changed"));
        assert!(
            !out.iter().any(|o| matches!(o, Output::SetPassword(_))),
            "{out:?}"
        );
        assert!(m.idle());
    }

    #[test]
    fn configured_node_is_told_what_the_password_means() {
        let mut m = menu();
        let out = m.handle(line("1"), true);
        assert!(printed(&out).contains("set the management password again on the active node"));
        assert!(password_done("node1", true).contains("Set the management"));
    }

    #[test]
    fn recovery_network_and_restart_and_unknown() {
        let mut m = menu();
        let out = m.handle(line("2"), false);
        let t = printed(&out);
        assert!(t.contains("192.168.100.101/24 on the first (left) network port (eth0)"));
        assert!(t.contains("192.168.100.100/24, no gateway, no DNS"));
        assert!(t.contains("red cable"));
        assert!(!t.contains("not active"));
        assert!(printed(&m.handle(line("2"), true)).contains("not active"));

        let out = m.handle(line("3"), false);
        assert!(printed(&out).contains("Restart the web console?"));
        let out = m.handle(line("y"), false);
        assert_eq!(out.last(), Some(&Output::RestartWeb));
        let out = m.handle(Input::Done(Err("no PID file".into())), false);
        assert!(printed(&out).contains("FAILED: no PID file"));

        let out = m.handle(line("x"), false);
        assert!(printed(&out).contains("Unknown choice \"x\""));
        assert_eq!(m.handle(line(""), false), vec![Output::Redraw]);
        // A result nobody waits for is ignored.
        assert!(m.handle(Input::Done(Ok("late".into())), false).is_empty());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let mut m = menu();
        let _ = m.handle(line("1"), false);
        let _ = m.handle(line("s3cret-pass"), false);
        assert!(!format!("{m:?}").contains("s3cret"));
        let out = m.handle(line("s3cret-pass"), false);
        let out2 = m.handle(line("y"), false);
        assert!(!format!("{out:?}{out2:?}").contains("s3cret"));
    }

    fn screen() -> Screen {
        Screen {
            node: "node1".into(),
            state: "recovery".into(),
            health: None,
            ports: vec![
                Port {
                    name: "eth0".into(),
                    link: "up".into(),
                    addresses: vec!["192.168.100.101/24".into()],
                },
                Port {
                    name: "eth1".into(),
                    link: "down".into(),
                    addresses: vec![],
                },
            ],
            first_port: "eth0".into(),
            recovery_url: "https://192.168.100.101/".into(),
            fingerprint: "AB:CD".into(),
            configured: false,
            password_set: false,
            lockout: None,
            version: "0.1.0+abc".into(),
            development_key: true,
        }
    }

    #[test]
    fn screen_shows_state_addresses_fingerprint_and_menu() {
        let t = render(&screen());
        assert!(t.starts_with("\x1b[2J\x1b[H"));
        for want in [
            "    State:     recovery\r\n    Software:  0.1.0+abc  DEVELOPMENT KEY",
            "    Health:    cluster daemon not running\r\n",
            "    Recovery:  https://192.168.100.101/  (laptop 192.168.100.100/24",
            "    Login:     admin / factory password\r\n",
            "    Network:   eth0 (first port): link up, 192.168.100.101/24\r\n",
            "               eth1: link down - is the cable plugged in?\r\n",
            "    HTTPS certificate SHA-256:\r\n      AB:CD\r\n",
            "    1  Reset the admin password",
            "    4  Lift the web console's login lockout\r\n",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        assert!(t.ends_with(CHOOSE));
        let mut s = screen();
        s.password_set = true;
        assert!(render(&s).contains("admin / the password set on this console"));
        s.configured = true;
        assert!(render(&s).contains("(only in recovery mode)"));
        assert!(!render(&s).contains("Login:"));
        s.development_key = false;
        assert!(render(&s).contains("    Software:  0.1.0+abc\r\n"));
    }

    #[test]
    fn status_from_clusterd_becomes_health_lines() {
        let json = r#"{"node":"node1","role":"active","resources":"running","resource_chain":[],"waiting":null,"data_good":true,"peer":{"node":"node2","alive":false,"role":null,"resources":null,"data_good":false,"ping_reach":null,"config_matches":null},"paths":[{"path":"serial","enabled":true,"state":"down","last_heard_ms_ago":null},{"path":"internal","enabled":true,"state":"up","last_heard_ms_ago":10}],"ping_nodes":[],"counters":{"accepted":1,"bad_mac":0,"malformed":0,"replayed":0,"misdirected":0,"line_noise":0,"config_mismatch":0,"bad_requests":0},"warnings":["a","b"],"hardware":{"state":"ok","problems":0,"pending":0,"text":"all sensors ok"},"replication":"Connected Primary/Secondary"}"#;
        let st: Status = serde_json::from_str(json).expect("status");
        assert_eq!(st.role, "active");
        let h = health(&st);
        assert_eq!(
            h,
            [
                "Peer:      node2 not heard",
                "Heartbeat: serial down, internal up",
                "Hardware:  ok (all sensors ok)",
                "Data:      Connected Primary/Secondary",
                "Warnings:  a (and 1 more: tandem status)",
            ]
        );
    }

    #[test]
    fn a_lockout_shows_and_item_four_lifts_it() {
        let mut s = screen();
        s.lockout = Some(Lockout {
            scope: LockoutScope::Address("192.168.100.100".parse().unwrap()),
            failures: 12,
            seconds_left: 600,
        });
        assert!(render(&s).contains(
            "    Web login: LOCKED from 192.168.100.100 after 12 failed logins (10 min left; 4 lifts it)\r\n"
        ));
        let mut m = menu();
        let out = m.handle(line("4"), false);
        assert!(printed(&out).contains("Lift the web console's login lockout"));
        let out = m.handle(line("y"), false);
        assert_eq!(out.last(), Some(&Output::LiftLockout));
        let out = m.handle(Input::Done(Ok("Logins are open again.".into())), false);
        assert!(printed(&out).contains("Logins are open again."));
        let _ = m.handle(line("4"), false);
        let out = m.handle(line("n"), false);
        assert!(printed(&out).contains("Cancelled"));
    }
}
