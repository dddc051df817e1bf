//! `tandem`: the node's admin command line, a client of clusterd's control API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tandem_api::{Client, DEFAULT_SOCKET, HwJson, Reply, Request, StatusJson};
use tandem_runtime::ve;

#[path = "tandem/template.rs"]
mod template;
#[path = "tandem/update.rs"]
mod update;
#[path = "tandem/vz.rs"]
mod vz;

#[derive(Parser, Debug)]
#[command(name = "tandem", about = "Cluster status and control")]
struct Cli {
    /// clusterd's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The node's packet filter (nftables) and the outbound connections it makes.
    Firewall {
        #[command(subcommand)]
        cmd: FirewallCmd,
    },
    /// Node, role, peer, heartbeat paths, ping nodes, resources, warnings.
    Status {
        /// Print the control API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move the services to the other node (release here first, then acquire there).
    Switchover,
    /// The cluster configuration: init, validate, export, import, show.
    Config(tandem_config::cli::ConfigArgs),
    /// Hardware sensors (name, reading, health) and RAID volumes and disks.
    Hw {
        /// Print the control API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print recent events; with --follow keep printing new ones.
    Events {
        /// Keep the connection and print new events as they happen.
        #[arg(long)]
        follow: bool,
    },
    /// Activate the uploaded configuration: take the configured name and crossover
    /// address, set up replication, create or fetch the data area, then commit.
    Activate {
        /// Create a new, empty data area (both nodes reinstalled, or a new cluster).
        #[arg(
            long,
            required_unless_present = "fetch_from_peer",
            conflicts_with = "fetch_from_peer"
        )]
        destroy_data: bool,
        /// Take a full copy of the data area from the other node (this node reinstalled).
        #[arg(long)]
        fetch_from_peer: bool,
        /// Directory of the node's configuration store.
        #[arg(long, default_value = "/config")]
        store: PathBuf,
        /// Seconds to wait for the other node on the crossover link.
        #[arg(long, default_value_t = 600)]
        peer_wait: u64,
    },
    /// Replication state, and the handlers DRBD calls.
    Replication {
        #[command(subcommand)]
        cmd: ReplCmd,
    },
    /// The node's own network from the committed configuration (init runs
    /// this at boot and after activation): host name, external address and
    /// default route, crossover address, DNS; the recovery address goes.
    NodeUp {
        /// Directory of the node's configuration store.
        #[arg(long, default_value = "/config")]
        store: PathBuf,
        /// Where resolv.conf and hosts are written.
        #[arg(long, default_value = "/etc")]
        etc: PathBuf,
        /// Where the web console's certificate and key (the cluster's own) are
        /// written.
        #[arg(long, default_value = tandem_runtime::member::CONSOLE_TLS_DIR)]
        tls_dir: PathBuf,
        /// Where the SSH server's configuration, host key and root's authorized keys
        /// are written.
        #[arg(long, default_value = tandem_runtime::sshd::DEFAULT_DIR)]
        ssh_dir: PathBuf,
        /// The shadow file whose root line gets the node's root password hash for the
        /// SSH server (`access.password-login`), or `*` while password login is off.
        #[arg(long, default_value = tandem_runtime::sshd::SHADOW)]
        shadow: PathBuf,
        /// Where chronyd's configuration is written (removed when the configuration
        /// names no time server).
        #[arg(long, default_value = tandem_runtime::chrony::NODE_CONF)]
        chrony_conf: PathBuf,
    },
    /// Make FILE the cluster's configuration on both nodes: the other node commits it
    /// first, then this one, and clusterd puts it in effect (new time servers at once,
    /// other network settings and heartbeat settings when each node starts again).
    /// FILE must be this node's configuration with `cluster.revision` raised by one;
    /// the cluster's identity, keys and replication settings change only with an
    /// activation.
    Apply {
        /// The new configuration (TOML).
        file: PathBuf,
        /// The other node is down: change this node only; the other node takes the
        /// change when it is back.
        #[arg(long)]
        this_node_only: bool,
    },
    /// Virtual environments (containers) on the active node.
    Ve {
        #[command(subcommand)]
        cmd: VeCmd,
    },
    /// OS templates of the data area (on the active node): add a root filesystem
    /// tarball, list them with the VEs that use them, delete one.
    Template {
        #[command(subcommand)]
        cmd: template::TemplateCmd,
    },
    /// E-mail alerts: this node's outbox, and a test message.
    Mail {
        #[command(subcommand)]
        cmd: MailCmd,
    },
    /// Remote support: a tunnel from this node to the configured support server
    /// (`[support]`), through which the support engineer reaches this node's SSH server.
    Support {
        #[command(subcommand)]
        cmd: SupportCmd,
    },
    /// A split brain of the replicated data: both sides (role, DRBD's state and
    /// generation identifiers, data out of sync, last write); `resolve` runs DRBD's own
    /// resolution for this node.
    SplitBrain {
        #[command(subcommand)]
        cmd: Option<SplitBrainCmd>,
    },
    /// Fencing of the other node.
    Fence {
        #[command(subcommand)]
        cmd: FenceCmd,
    },
    /// This node's copy of the replicated data.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// System updates of this node: signed bundles into the inactive slot, tried
    /// once, kept when the node is healthy.
    Update {
        #[command(subcommand)]
        cmd: update::UpdateCmd,
    },
    /// What the other node's key runs over SSH (a forced command; the request is in
    /// `SSH_ORIGINAL_COMMAND`): the few steps of a rolling update it leads.
    #[command(hide = true)]
    PeerSsh,
}

#[derive(Subcommand, Debug)]
enum SplitBrainCmd {
    /// Keep SURVIVOR's data and discard the other node's changes since the split: on
    /// the victim, `drbdadm secondary` and `connect --discard-my-data`; on the survivor,
    /// `connect`. Run it on both nodes (either order), then it follows the resync.
    Resolve {
        /// The node whose data stays: node1 or node2.
        #[arg(long)]
        survivor: String,
        /// The cluster's name, typed.
        #[arg(long)]
        confirm: String,
        /// Follow the replication for up to this many seconds (0: do not).
        #[arg(long, default_value_t = 600)]
        follow: u64,
    },
}

#[derive(Subcommand, Debug)]
enum FenceCmd {
    /// After a failed fence: confirm that the silent node is down (checked by hand:
    /// powered off, or cut from the data and the service network), so that this node
    /// takes over. Type the silent node's name.
    Confirm {
        /// The silent node's name, typed: node1 or node2.
        node: String,
    },
}

#[derive(Subcommand, Debug)]
enum DataCmd {
    /// Start from this node's own copy although it is not known good (outdated, or
    /// only consistent after a reboot), because the other node's copy is lost. The
    /// other node must be silent; its changes since the two parted are lost. Type the
    /// cluster's name to confirm.
    ForcePrimary {
        /// The cluster's name, typed.
        #[arg(long)]
        confirm: String,
    },
}

/// How long the fence-peer handler waits for the peer to say its copy is outdated.
const OUTDATE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the fence-peer handler says what writes wait for.
const SAY_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn fence_peer_handler(control: &Path) -> u8 {
    let status = || match tandem_api::ask(control, None, &Request::Status) {
        Ok(Reply::Status(s)) => Some(*s),
        _ => None,
    };
    let start = std::time::Instant::now();
    // The first word at once, then one every `SAY_EVERY` while writes wait.
    let mut said = start.checked_sub(SAY_EVERY).unwrap_or(start);
    loop {
        let Some(s) = status() else {
            eprintln!("tandem: fence-peer: clusterd does not answer; refusing");
            return 1;
        };
        match s.fence.as_deref() {
            Some("powered off") => {
                eprintln!("tandem: fence-peer: the peer was powered off through its BMC");
                return 7;
            }
            Some(f) if f.starts_with("confirmed") => {
                eprintln!("tandem: fence-peer: the operator confirmed that the peer is down");
                return 7;
            }
            _ => {}
        }
        if !s.peer.alive {
            if s.fencing_off {
                eprintln!(
                    "tandem: fence-peer: the peer is silent on every heartbeat path: unreachable, not outdated (fencing is off)"
                );
                return 5;
            }
            // Writes stay suspended until the silent peer is powered off: it may be
            // taking over from this node's silence. clusterd fences it (node1 after its
            // tiebreak delay); a failed fence waits for the operator's confirmation.
            if let Err(e) = tandem_api::ask(control, None, &Request::ReplicationPeerLost) {
                eprintln!("tandem: fence-peer: clusterd does not take the report ({e}); refusing");
                return 1;
            }
            if said.elapsed() >= SAY_EVERY {
                said = std::time::Instant::now();
                eprintln!(
                    "tandem: fence-peer: the peer is silent on every heartbeat path; writes are suspended until it is powered off (fence: {})",
                    s.fence.as_deref().unwrap_or("not started")
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
            continue;
        }
        let passive = s.peer.role.as_deref() == Some("passive");
        if passive && !s.peer.data_good {
            eprintln!(
                "tandem: fence-peer: the peer says its copy is not current (it records it as outdated)"
            );
            return 4;
        }
        if start.elapsed() >= OUTDATE_WAIT {
            eprintln!(
                "tandem: fence-peer: the peer is alive ({}) and did not mark its copy outdated within {} s; refusing",
                s.peer.role.as_deref().unwrap_or("role unknown"),
                OUTDATE_WAIT.as_secs()
            );
            return 6;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[derive(Subcommand, Debug)]
enum ReplCmd {
    /// Connection, roles, disk states and resync progress (from the kernel).
    Status,
    /// Called by DRBD (through drbdadm), not by people.
    Handler {
        /// fence-peer or split-brain.
        which: String,
    },
}

#[derive(Subcommand, Debug)]
enum VeCmd {
    /// VEID NPROC STATUS IP_ADDR HOSTNAME of every VE.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only the running VEs.
        #[arg(long)]
        running: bool,
        /// Without the header line.
        #[arg(long)]
        no_header: bool,
        /// Only this VE (repeat for more).
        #[arg(long = "id")]
        ids: Vec<u32>,
    },
    /// Create a VE from an OS template (`tandem-minimal` is built in).
    Create {
        /// VE number.
        id: String,
        /// OS template in /vz/template (without .tar, .tar.gz, .tar.xz or .tar.zst;
        /// tandem template list shows them).
        #[arg(long, default_value = ve::manager::MINIMAL_TEMPLATE)]
        template: String,
        /// A VE file with the limits to start from (e.g. the tkunlimited sample).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Host name inside the VE.
        #[arg(long)]
        hostname: String,
        /// Address of the VE (repeat for more).
        #[arg(long)]
        ip: Vec<std::net::Ipv4Addr>,
    },
    /// Set parameters of a VE's file: KEY=VALUE (e.g. ONBOOT=yes NUMPROC=256).
    Set {
        /// VE number.
        id: String,
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Start a VE.
    Start {
        /// VE number.
        id: String,
    },
    /// Stop a VE (SIGTERM, SIGKILL after the grace time).
    Stop {
        /// VE number.
        id: String,
        /// Seconds to wait before killing.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
    /// Stop and start a VE.
    Restart {
        /// VE number.
        id: String,
    },
    /// A shell inside a running VE.
    Enter {
        /// VE number.
        id: String,
    },
    /// Run a program inside a running VE.
    Exec {
        /// VE number.
        id: String,
        /// The program and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Set a user's password inside a VE (asked twice without echo on a
    /// terminal, else the first line of standard input).
    Passwd {
        /// VE number.
        id: String,
        /// The user.
        #[arg(long, default_value = "root")]
        user: String,
    },
    /// Remove a stopped VE and its files.
    Destroy {
        /// VE number.
        id: String,
    },
    /// Copy every OS template of /vz/template into /vz/backups/templatecache
    /// (identical backups are left alone, changed ones replaced; the built-in
    /// tandem-minimal has no file and needs no backup).
    BackupTemplates,
    /// Back up a VE (frozen while its files are read) into /vz/backups/ve, then copy
    /// it off the pair when the configuration names a target ([backup]); through
    /// clusterd, with progress.
    Backup {
        /// VE number.
        id: String,
    },
    /// The VE backups in /vz/backups/ve: file, size, time, copied off or not.
    Backups {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a VE from a backup file (checked whole before anything is written), to
    /// the VE it was made of (stopped) or to a new VE ID; through clusterd.
    Restore {
        /// A backup file name in /vz/backups/ve, or a path.
        file: String,
        /// Restore to this new VE number instead.
        #[arg(long)]
        to: Option<String>,
    },
}

/// The node's VEs, routed on the external interface and, for addresses of the
/// internal network, on the crossover interface.
fn node_ves() -> anyhow::Result<ve::manager::Ves> {
    let cfg = tandem_config::Store::open("/config")
        .and_then(|s| s.current())
        .ok()
        .flatten();
    let nics = tandem_runtime::activate::node_nics();
    let port = |i: usize, dflt: &str| nics.get(i).cloned().unwrap_or_else(|| dflt.to_owned());
    let layout = ve::manager::Layout::for_cluster(cfg.as_ref(), port(0, "eth0"), port(1, "eth1"));
    if !tandem_runtime::storage::is_mountpoint(Path::new(tandem_runtime::activate::DATA_MOUNT)) {
        bail!(
            "the data area /vz is not mounted on this node: VEs live on the active node (tandem status shows which)"
        );
    }
    Ok(ve::manager::Ves { layout })
}

/// `tandem replication …`; the handlers answer DRBD with its exit codes.
fn run_replication(cmd: &ReplCmd, control: &Path) -> u8 {
    match cmd {
        ReplCmd::Status => {
            let path = Path::new("/proc/drbd");
            match std::fs::read_to_string(path) {
                Ok(text) => match tandem_runtime::drbd::parse_proc_drbd(&text) {
                    Ok(devs) if devs.is_empty() => {
                        println!("replication is not set up on this node");
                        0
                    }
                    Ok(devs) => {
                        for d in devs {
                            println!(
                                "drbd{} {}",
                                d.minor,
                                tandem_runtime::replication::summary(&d)
                            );
                        }
                        0
                    }
                    Err(e) => {
                        eprintln!("tandem: {e}");
                        1
                    }
                },
                Err(_) => {
                    println!("replication is not running (the DRBD module is not loaded)");
                    0
                }
            }
        }
        ReplCmd::Handler { which } => match which.as_str() {
            // DRBD calls this on a primary that lost the replication link, and before
            // promoting without the peer. Its exit code is recorded by DRBD (4: the peer's
            // copy is outdated, 5: the peer is unreachable, 7: the peer was fenced), so
            // only what is known is said:
            // - the peer was powered off by this node's fence: 7;
            // - the peer is alive and passive: its clusterd, hearing this node while the
            //   replication is gone, records its own copy as outdated in DRBD's metadata
            //   (`drbdadm outdate`) and says so in its heartbeats; wait for that word
            //   (bounded), then 4. Without it, refuse;
            // - the peer is silent on every path: with fencing required (DRBD's
            //   `resource-and-stonith`: writes are suspended meanwhile), clusterd powers
            //   it off and then 7 (a failed fence waits for the operator's
            //   confirmation); with fencing off, 5 (it is not outdated).
            "fence-peer" => fence_peer_handler(control),
            // DRBD found a split brain it does not resolve by itself: clusterd announces
            // it (alert, status, console) until the operator resolves it.
            "split-brain" => match tandem_api::ask(control, None, &Request::SplitBrainDetected) {
                Ok(Reply::Done) => {
                    eprintln!(
                        "tandem: split brain of the replicated data reported to clusterd; see tandem split-brain"
                    );
                    0
                }
                other => {
                    eprintln!(
                        "tandem: split brain of the replicated data; clusterd did not take the report: {other:?}"
                    );
                    1
                }
            },
            other => {
                eprintln!("tandem: unknown replication handler {other:?}");
                2
            }
        },
    }
}

/// A new password: typed twice without echo on a terminal, else the first
/// line of standard input.
fn read_new_password(prompt: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, isatty, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let read_line = || -> anyhow::Result<String> {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    if !isatty(&stdin) {
        return read_line();
    }
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let ask = |p: &str| -> anyhow::Result<String> {
        eprint!("{p}: ");
        std::io::stderr().flush()?;
        let l = read_line();
        eprintln!();
        l
    };
    let first = ask(prompt);
    let second = ask("again");
    tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    let (first, second) = (first?, second?);
    if first != second {
        bail!("the two entries differ; nothing was changed");
    }
    Ok(first)
}

#[derive(Subcommand, Debug)]
enum MailCmd {
    /// Queue a test message to the configured recipients (it goes out at once,
    /// through the relay or the recipients' MX); `tandem mail outbox` shows whether it
    /// left.
    Test,
    /// What waits in this node's outbox: how many, since when, the last error.
    Outbox,
}

#[derive(Subcommand, Debug)]
enum SupportCmd {
    /// Switch the tunnel on; it closes by itself after `--hours` (default and limit:
    /// `support.max-hours`). Switched on again, the time starts anew.
    On {
        /// For how many hours.
        #[arg(long)]
        hours: Option<u32>,
    },
    /// Switch the tunnel off.
    Off,
    /// Whether the tunnel is on, since when and by whom, and the support server's port
    /// that leads to this node.
    Status,
}

/// Prints the tunnel as `tandem support status` shows it.
fn print_support(v: &tandem_api::SupportView) {
    let t = |s: Option<u64>| s.map(tandem_config::archive::rfc3339).unwrap_or_default();
    println!(
        "server:     {}",
        v.server.as_deref().unwrap_or("none configured")
    );
    if let Some(why) = &v.unavailable {
        println!("unavailable: {why}");
    }
    if !v.on {
        println!("tunnel:     off");
    } else {
        println!(
            "tunnel:     on since {} by {}, closes by itself at {}",
            t(v.since),
            v.by.as_deref().unwrap_or("?"),
            t(v.until)
        );
        match (v.port, v.retry_at) {
            (Some(p), _) => println!(
                "connection: up; port {p} of the support server leads to this node's SSH server"
            ),
            (None, Some(r)) => println!("connection: down; next attempt at {}", t(Some(r))),
            (None, None) => println!("connection: being made"),
        }
    }
    if let Some(e) = &v.last_error {
        println!("last error: {e}");
    }
    if let Some(k) = &v.client_key {
        println!("node's key: {k}");
    }
}

/// Prints the outbox as `tandem mail outbox` shows it.
fn print_outbox(v: &tandem_api::OutboxView) {
    let route = match &v.relay {
        Some(r) => format!("relay {r}"),
        None => "the recipients' MX (direct delivery)".to_owned(),
    };
    if !v.recipients {
        println!("recipients: none configured (no e-mail is sent)");
    }
    println!("delivery:   {route}");
    println!("queued:     {}", v.queued);
    if let Some(t) = v.oldest_queued {
        println!("oldest:     {}", tandem_config::archive::rfc3339(t));
    }
    if let Some(e) = &v.last_error {
        println!("last error: {e}");
    }
}

#[derive(Subcommand, Debug)]
enum FirewallCmd {
    /// Print the nftables ruleset this node applies for its configuration.
    Show {
        #[command(flatten)]
        src: FirewallSource,
    },
    /// Print the outbound connections the configuration makes a node open (for the
    /// firewall in front of the cluster).
    Outbound {
        #[command(flatten)]
        src: FirewallSource,
    },
    /// Check the ruleset with nft and put it in effect now (clusterd does this at start
    /// and with every configuration change). A ruleset nft refuses changes nothing.
    Apply {
        #[command(flatten)]
        src: FirewallSource,
        /// The nft program.
        #[arg(long, default_value = "/usr/sbin/nft")]
        nft: PathBuf,
        /// Where the ruleset in effect is kept.
        #[arg(long, default_value = tandem_runtime::firewall::DEFAULT_RULESET_PATH)]
        file: PathBuf,
    },
}

/// Which configuration and node: the node's store, or a file and a node name.
#[derive(clap::Args, Debug)]
struct FirewallSource {
    /// The node's configuration store (its committed configuration and node identity).
    #[arg(long, default_value = "/config")]
    store: PathBuf,
    /// A configuration file instead of the store's (with --node).
    #[arg(long, requires = "node")]
    config: Option<PathBuf>,
    /// node1 or node2, with --config.
    #[arg(long, requires = "config")]
    node: Option<String>,
    /// External interface (default: the first network port).
    #[arg(long)]
    external_if: Option<String>,
    /// Crossover interface (default: the second network port).
    #[arg(long)]
    internal_if: Option<String>,
}

impl FirewallSource {
    fn load(&self) -> anyhow::Result<(tandem_config::ApplianceConfig, tandem_config::NodeId)> {
        if let (Some(path), Some(node)) = (&self.config, &self.node) {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading configuration {}", path.display()))?;
            let cfg = tandem_config::ApplianceConfig::from_toml(&text)
                .with_context(|| format!("configuration {}", path.display()))?;
            let node = node
                .parse()
                .map_err(|e| anyhow::anyhow!("--node {node:?}: {e}"))?;
            return Ok((cfg, node));
        }
        Ok((committed_config(&self.store)?, read_node(&self.store)?))
    }

    fn interfaces(&self) -> tandem_runtime::firewall::Interfaces {
        let nics = tandem_runtime::activate::node_nics();
        tandem_runtime::firewall::Interfaces {
            external: self
                .external_if
                .clone()
                .or_else(|| nics.first().cloned())
                .unwrap_or_else(|| "eth0".into()),
            internal: self
                .internal_if
                .clone()
                .or_else(|| nics.get(1).cloned())
                .unwrap_or_else(|| "eth1".into()),
        }
    }
}

fn run_firewall(cmd: &FirewallCmd) -> anyhow::Result<()> {
    use tandem_runtime::firewall;
    match cmd {
        FirewallCmd::Show { src } => {
            let (cfg, node) = src.load()?;
            print!("{}", firewall::ruleset(&cfg, node, &src.interfaces()));
        }
        FirewallCmd::Outbound { src } => {
            let (cfg, _) = src.load()?;
            print!("{}", firewall::outbound_text(&firewall::outbound(&cfg)));
        }
        FirewallCmd::Apply { src, nft, file } => {
            let (cfg, node) = src.load()?;
            let setup = firewall::Setup {
                nft: nft.clone(),
                path: file.clone(),
                node,
                interfaces: src.interfaces(),
                initial: Box::new(cfg.clone()),
            };
            println!("{}", setup.put_in_effect(&cfg)?);
        }
    }
    Ok(())
}

/// The configuration committed in `store`, or why there is none.
fn committed_config(store: &Path) -> anyhow::Result<tandem_config::ApplianceConfig> {
    tandem_config::Store::open(store)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .current()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| {
            format!(
                "no configuration is committed in {}: upload and activate one first",
                store.display()
            )
        })
}

fn read_node(store: &Path) -> anyhow::Result<tandem_config::NodeId> {
    let node_text = std::fs::read_to_string(store.join("node"))
        .with_context(|| format!("reading the node identity {}", store.join("node").display()))?;
    node_text
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("the node identity {:?}: {e}", node_text.trim()))
}

/// `tandem apply`: the change goes to clusterd, which makes it on both nodes. Exit
/// code 2 when only the other node took it.
fn run_apply(file: &Path, this_node_only: bool, control: &Path) -> anyhow::Result<()> {
    use tandem_api::ChangeRefusal;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (reply, _) = Client::connect(control)?
        .call_with(&Request::ApplyConfig { this_node_only }, text.as_bytes())?;
    let a = match reply {
        Reply::Changed(a) => a,
        // The other node has it: this is not "nothing changed".
        Reply::ChangeRefused(ChangeRefusal::OnlyPeer(e)) => {
            eprintln!("tandem: {e}");
            std::process::exit(2);
        }
        Reply::ChangeRefused(ChangeRefusal::Fields(ps)) => bail!(
            "the new configuration is not valid:\n{}",
            ps.iter()
                .map(|p| format!("  {}: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Reply::ChangeRefused(ChangeRefusal::NotMade(e)) => bail!("{e}"),
        Reply::ChangeRefused(ChangeRefusal::Stale { have }) => {
            bail!("this node's configuration changed meanwhile (revision {have})")
        }
        Reply::Refused(r) => bail!("{r}"),
        other => bail!("unexpected answer from clusterd: {other:?}"),
    };
    let changed = if a.changed.is_empty() {
        "none".to_owned()
    } else {
        a.changed.join(", ")
    };
    println!(
        "revision {} in effect on {} (changed: {changed})",
        a.revision,
        if a.both_nodes {
            "both nodes"
        } else {
            "this node only; the other node takes it when it is back"
        },
    );
    if a.needs_restart {
        println!(
            "network settings other than the time servers, and heartbeat settings, \
             take effect when each node starts again: \
             restart the passive node, switch over, then restart the other"
        );
    }
    if a.sessions_ended {
        println!("the management password changed: every web console session was ended");
    }
    for n in a.notes {
        println!("note: {n}");
    }
    Ok(())
}

fn run_node_up(
    store: &Path,
    etc: &Path,
    tls_dir: &Path,
    ssh_dir: &Path,
    shadow: &Path,
    chrony_conf: &Path,
) -> anyhow::Result<()> {
    use tandem_runtime::member::{Ports, bring_up, write_console_tls};
    let node = read_node(store)?;
    let cfg = committed_config(store)?;
    let nics = tandem_runtime::activate::node_nics();
    let (Some(external), Some(internal)) = (nics.first(), nics.get(1)) else {
        bail!(
            "this node has {} network port(s); it needs two (external LAN, crossover cable)",
            nics.len()
        );
    };
    let ports = Ports {
        external: external.clone(),
        internal: internal.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for line in rt.block_on(bring_up(&cfg, node, &ports, etc))? {
        println!("{line}");
    }
    println!("{}", write_console_tls(&cfg, tls_dir)?);
    let ssh = tandem_runtime::sshd::Setup {
        dir: ssh_dir.to_owned(),
        node,
        shadow: Some(shadow.to_owned()),
    };
    println!(
        "{}",
        ssh.refresh(&cfg)
            .with_context(|| format!("writing the SSH server's files to {}", ssh_dir.display()))?
    );
    println!(
        "{}",
        tandem_runtime::chrony::write_node_conf(
            &cfg,
            chrony_conf,
            std::path::Path::new(tandem_runtime::chrony::NODE_RUN_DIR)
        )
        .with_context(|| format!(
            "writing the time service's configuration {}",
            chrony_conf.display()
        ))?
    );
    Ok(())
}

fn run_activate(destroy: bool, store: &Path, peer_wait: u64) -> anyhow::Result<()> {
    use tandem_api::DataChoice;
    use tandem_runtime::activate::{Plan, activate, node_nics};
    let node = read_node(store)?;
    let nics = node_nics();
    let internal_nic = nics
        .get(1)
        .cloned()
        .context("this node has no second network port for the crossover cable")?;
    let plan = Plan {
        store: store.to_owned(),
        node,
        internal_nic,
        run_dir: PathBuf::from(tandem_runtime::replication::NODE_CONF_DIR),
        tuning: tandem_runtime::drbd::Tuning::default(),
        peer_wait: std::time::Duration::from_secs(peer_wait),
        sync_wait: std::time::Duration::from_secs(7 * 24 * 3600),
    };
    let choice = if destroy {
        DataChoice::DestroyData
    } else {
        DataChoice::FetchFromPeer
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(activate(&plan, choice, &mut |e| println!("{e}")))?;
    Ok(())
}

/// `tandem ve backup-templates`: one line per template as it is done, then the total.
fn run_backup_templates() -> anyhow::Result<()> {
    use ve::backup::{CopyOutcome, TemplateBackup};
    let backup = TemplateBackup::node();
    let report = backup.run(&mut |c| {
        println!(
            "{:<40} {:>14} bytes  {}",
            c.file,
            c.bytes,
            c.outcome.as_str()
        );
    })?;
    if report.copies.is_empty() {
        println!(
            "no OS templates in {}: nothing to back up (the built-in {} needs no backup)",
            backup.template_dir.display(),
            ve::manager::MINIMAL_TEMPLATE
        );
        return Ok(());
    }
    println!(
        "total: {} template{}, {} bytes in {}: {} copied, {} replaced, {} unchanged",
        report.copies.len(),
        if report.copies.len() == 1 { "" } else { "s" },
        report.total_bytes(),
        report.backup_dir.display(),
        report.count(CopyOutcome::Copied),
        report.count(CopyOutcome::Replaced),
        report.count(CopyOutcome::Unchanged)
    );
    Ok(())
}

/// A connection to clusterd when it runs on this node.
fn clusterd(control: &Path) -> Option<Client> {
    Client::connect(control).ok()
}

/// `KEY=VALUE` arguments as pairs (quotes around the value dropped).
fn set_pairs(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.trim_matches('"').to_owned())),
            None => bail!("{p:?} is not KEY=VALUE"),
        })
        .collect()
}

/// `tandem ve start|stop|restart|set` as requests to clusterd.
fn run_ve_through_clusterd(cmd: &VeCmd, mut client: Client) -> anyhow::Result<()> {
    use ve::manager::parse_id;
    let (request, done) = match cmd {
        VeCmd::Start { id } => (Request::VeStart { id: parse_id(id)? }, "started"),
        VeCmd::Stop { id, grace } => (
            Request::VeStop {
                id: parse_id(id)?,
                grace_secs: Some(*grace),
            },
            "stopped",
        ),
        VeCmd::Restart { id } => (Request::VeRestart { id: parse_id(id)? }, "restarted"),
        VeCmd::Set { id, pairs } => (
            Request::VeSet {
                id: parse_id(id)?,
                changes: set_pairs(pairs)?,
            },
            "updated",
        ),
        _ => bail!("not a start, stop or set"),
    };
    let id = match &request {
        Request::VeStart { id }
        | Request::VeStop { id, .. }
        | Request::VeRestart { id }
        | Request::VeSet { id, .. } => *id,
        _ => 0,
    };
    match client.call(&request)? {
        Reply::Done => {
            println!("VE {id} {done}");
            Ok(())
        }
        Reply::Refused(r) => bail!("{r}"),
        other => bail!("clusterd sent an unexpected answer: {other:?}"),
    }
}

/// The VEs' states as clusterd's watch knows them; empty without clusterd.
fn ve_health(control: &Path) -> Vec<tandem_api::VeHealthJson> {
    match clusterd(control).and_then(|mut c| c.call(&Request::Status).ok()) {
        Some(Reply::Status(s)) => s.ves,
        _ => Vec::new(),
    }
}

/// `tandem ve …` driven here, with the list showing clusterd's view of each VE.
fn run_ve_with(cmd: VeCmd, control: &Path) -> anyhow::Result<u8> {
    if let VeCmd::List {
        json,
        running,
        no_header,
        ids,
    } = cmd
    {
        let ves = node_ves()?;
        let mut rows = ves.list()?;
        for h in ve_health(control) {
            if let Some(r) = rows.iter_mut().find(|r| r.id == h.id)
                && r.status != "running"
            {
                // A stopped VE that the watch restarts, or gave up on.
                r.status = h.state;
            }
        }
        if let Some(missing) = ids.iter().find(|i| !rows.iter().any(|r| r.id == **i)) {
            bail!("VE {missing} does not exist");
        }
        rows.retain(|r| {
            (!running || r.status == "running") && (ids.is_empty() || ids.contains(&r.id))
        });
        if json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            let text = ve::manager::format_list(&rows);
            let skip = usize::from(no_header);
            for line in text.lines().skip(skip) {
                println!("{line}");
            }
        }
        return Ok(0);
    }
    run_ve(cmd)
}

fn run_ve(cmd: VeCmd) -> anyhow::Result<u8> {
    use ve::manager::{format_list, parse_id};
    if let VeCmd::BackupTemplates = cmd {
        // Its own check of the data area, with its own message for the passive node.
        run_backup_templates()?;
        return Ok(0);
    }
    let ves = node_ves()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cmd {
        VeCmd::List { json, .. } => {
            let rows = ves.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", format_list(&rows));
            }
        }
        VeCmd::Create {
            id,
            template,
            config,
            hostname,
            ip,
        } => {
            let id = parse_id(&id)?;
            let sample = match &config {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => String::new(),
            };
            ves.create(id, &template, &sample, &hostname, &ip)?;
            println!("VE {id} created from {template}");
        }
        VeCmd::Set { id, pairs } => {
            let id = parse_id(&id)?;
            ves.set(id, &set_pairs(&pairs)?)?;
            println!("VE {id} updated");
        }
        VeCmd::Start { id } => {
            let id = parse_id(&id)?;
            rt.block_on(ves.start(id))?;
            println!("VE {id} started");
        }
        VeCmd::Stop { id, grace } => {
            let id = parse_id(&id)?;
            rt.block_on(ves.stop(id, std::time::Duration::from_secs(grace)))?;
            println!("VE {id} stopped");
        }
        VeCmd::Restart { id } => {
            let id = parse_id(&id)?;
            rt.block_on(ves.stop(id, std::time::Duration::from_secs(10)))?;
            rt.block_on(ves.start(id))?;
            println!("VE {id} restarted");
        }
        VeCmd::Enter { id } => {
            let id = parse_id(&id)?;
            let code = ves.exec(id, &["/bin/sh".to_owned()], true)?;
            return Ok(u8::try_from(code).unwrap_or(1));
        }
        VeCmd::Exec { id, command } => {
            let id = parse_id(&id)?;
            let code = ves.exec(id, &command, false)?;
            return Ok(u8::try_from(code).unwrap_or(1));
        }
        VeCmd::Passwd { id, user } => {
            let id = parse_id(&id)?;
            let password = read_new_password(&format!("new password for {user} in VE {id}"))?;
            ves.set_password(id, &user, &password)?;
            println!("password of {user} in VE {id} set");
        }
        VeCmd::Destroy { id } => {
            let id = parse_id(&id)?;
            ves.destroy(id)?;
            println!("VE {id} destroyed");
        }
        VeCmd::BackupTemplates
        | VeCmd::Backup { .. }
        | VeCmd::Backups { .. }
        | VeCmd::Restore { .. } => unreachable!("handled above"),
    }
    Ok(0)
}

/// Bytes for people: `1.2 GiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss, reason = "a figure for people")]
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One progress line of a VE job: bytes done of all, rate, remaining time.
fn job_line(v: &tandem_api::VeJobView) -> String {
    #[allow(clippy::cast_precision_loss, reason = "a figure for people")]
    let secs = (v.elapsed_ms as f64 / 1000.0).max(0.001);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a figure for people"
    )]
    let rate = (v.bytes_done as f64 / secs) as u64;
    let remaining = if rate > 0 && v.bytes_total > v.bytes_done {
        format!(", about {}s left", (v.bytes_total - v.bytes_done) / rate)
    } else {
        String::new()
    };
    format!(
        "{}: {} of {}, {}/s{remaining}",
        v.phase,
        human(v.bytes_done),
        human(v.bytes_total),
        human(rate)
    )
}

/// `tandem ve backup|backups|restore`: a request to clusterd, then (for a job) its
/// progress until it ends.
fn run_ve_backup(cmd: &VeCmd, control: &std::path::Path) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    use tandem_api::JobState;
    let mut client = Client::connect(control)?;
    let request = match cmd {
        VeCmd::Backups { json } => {
            let Reply::VeBackups(v) = expect(client.call(&Request::VeBackups)?)? else {
                bail!("clusterd sent no list of backups");
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if v.files.is_empty() {
                println!("no VE backups in {}", v.dir);
            } else {
                println!(
                    "{:<36} {:>10}  {:<17} COPIED OFF",
                    "FILE", "SIZE", "TIME (UTC)"
                );
            }
            for f in &v.files {
                println!(
                    "{:<36} {:>10}  {:<17} {}",
                    f.name,
                    human(f.bytes),
                    f.time,
                    f.copied_to.as_deref().unwrap_or("not copied off")
                );
            }
            match &v.target {
                Some(t) => println!("copy-off target: {t}"),
                None => {
                    println!("copy-off target: none configured ([backup] in the configuration)")
                }
            }
            println!("the node logs in to the target with: {}", v.client_key);
            return Ok(());
        }
        VeCmd::Backup { id } => Request::VeBackup {
            id: ve::manager::parse_id(id)?,
        },
        VeCmd::Restore { file, to } => {
            // A path that exists here is sent whole; a bare name is one of /vz/backups/ve.
            let p = std::path::Path::new(file);
            let file = if file.contains('/') || p.exists() {
                std::fs::canonicalize(p)
                    .with_context(|| format!("{file}: no such backup file"))?
                    .display()
                    .to_string()
            } else {
                file.clone()
            };
            let to = to.as_deref().map(ve::manager::parse_id).transpose()?;
            Request::VeRestore { file, to }
        }
        _ => bail!("not a backup command"),
    };
    expect(client.call(&request)?)?;
    let tty = std::io::stderr().is_terminal();
    let mut last_print = std::time::Instant::now();
    let view = loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let Reply::VeJob(v) = expect(client.call(&Request::VeBackupJob)?)? else {
            bail!("clusterd sent no job state");
        };
        if v.state != JobState::Running {
            if tty {
                eprintln!();
            }
            break v;
        }
        if tty {
            eprint!("\r{:<100}", job_line(&v));
        } else if last_print.elapsed() >= std::time::Duration::from_secs(2) {
            eprintln!("{}", job_line(&v));
            last_print = std::time::Instant::now();
        }
    };
    match (&view.state, &view.report) {
        (JobState::Failed { error }, _) => bail!("{error}"),
        (JobState::Succeeded, Some(r)) => {
            #[allow(clippy::cast_precision_loss, reason = "a figure for people")]
            let secs = view.elapsed_ms as f64 / 1000.0;
            match r.restored_to {
                Some(id) => {
                    println!(
                        "VE {id} restored from {}: {} files, {} in {secs:.1}s",
                        r.file,
                        r.files,
                        human(r.data_bytes)
                    );
                    if r.addresses_removed {
                        println!(
                            "its addresses were removed and ONBOOT set to no (the original VE may use them): tandem ve set {id} IP_ADDRESS=..."
                        );
                    }
                }
                None => {
                    println!(
                        "backup {}: {} files, {} of data, {} compressed, in {secs:.1}s",
                        r.file,
                        r.files,
                        human(r.data_bytes),
                        human(r.file_bytes)
                    );
                    match r.freeze_us {
                        #[allow(clippy::cast_precision_loss, reason = "a figure for people")]
                        Some(us) => println!("the VE was frozen for {:.1} ms", us as f64 / 1000.0),
                        None => println!("the VE was not running (not frozen)"),
                    }
                    for s in &r.skipped {
                        println!("not backed up: {s}");
                    }
                    match (&r.copied_to, &r.copy_error) {
                        (Some(to), _) => {
                            println!("copied off to {to}");
                            for d in &r.deleted_on_target {
                                println!("deleted on the target (beyond keep): {d}");
                            }
                        }
                        (None, Some(e)) => {
                            println!("NOT copied off: {e}");
                            bail!("the backup was made but not copied off the pair");
                        }
                        (None, None) => println!(
                            "not copied off: no target configured ([backup] in the configuration)"
                        ),
                    }
                }
            }
        }
        _ => bail!("the job ended without a report"),
    }
    Ok(())
}

fn print_status(s: &StatusJson) {
    println!("node       {} ({})", s.node, s.role);
    if let Some(w) = &s.waiting {
        println!("waiting    {w}");
    }
    println!(
        "peer       {} {}{}",
        s.peer.node,
        if s.peer.alive { "alive" } else { "silent" },
        s.peer
            .role
            .as_ref()
            .map_or(String::new(), |r| format!(", last role {r}"))
    );
    for p in &s.paths {
        let heard = p.last_heard_ms_ago.map_or("never heard".to_string(), |ms| {
            format!("last heard {ms} ms ago")
        });
        println!("path       {:<9} {:<8} {heard}", p.path, p.state);
    }
    for p in &s.ping_nodes {
        println!(
            "ping node  {:<15} {}",
            p.address,
            if p.reachable {
                "reachable"
            } else {
                "unreachable"
            }
        );
    }
    println!(
        "resources  {} [{}]",
        s.resources,
        s.resource_chain.join(", ")
    );
    let c = &s.counters;
    println!(
        "refused    bad mac {}, malformed {}, replayed {}, misdirected {}, line noise {}, bad requests {}",
        c.bad_mac, c.malformed, c.replayed, c.misdirected, c.line_noise, c.bad_requests
    );
    if let Some(h) = &s.hardware {
        println!("hardware   {}", h.text);
    }
    if let Some(c) = &s.clock {
        println!("clock      {c}");
    }
    for v in &s.ves {
        println!("VE {:<7} {}", v.id, v.state);
    }
    for w in &s.warnings {
        println!("WARNING    {w}");
    }
}

fn print_hw(h: &HwJson) {
    println!("summary    {}", h.summary.text);
    println!(
        "bmc        {}{}",
        h.bmc,
        h.bmc_detail
            .as_ref()
            .map_or(String::new(), |d| format!(" ({d})"))
    );
    for s in &h.sensors {
        let reading = match (s.value, &s.unit, s.states) {
            (Some(v), Some(u), _) => format!("{v:.2} {u}"),
            (_, _, Some(st)) => format!("0x{st:04x}"),
            _ => "na".into(),
        };
        println!(
            "sensor     {:<20} {:<18} {:<11} {}{}",
            s.name,
            reading,
            s.health,
            s.state,
            s.detail
                .as_ref()
                .map_or(String::new(), |d| format!(" ({d})"))
        );
    }
    let r = &h.raid;
    println!(
        "raid       {}{}{}",
        r.state,
        r.controller
            .as_ref()
            .map_or(String::new(), |c| format!(" {c}")),
        r.detail
            .as_ref()
            .map_or(String::new(), |d| format!(" ({d})"))
    );
    for v in &r.volumes {
        println!(
            "volume     {:<3} {:<20} {:<18} {}",
            v.number, v.name, v.state, v.health
        );
    }
    for d in &r.disks {
        println!(
            "disk       {:<3} {:<20} {:<18} {}",
            d.number, d.name, d.state, d.health
        );
    }
}

/// The reply, or clusterd's refusal as an error.
fn expect(reply: Reply) -> anyhow::Result<Reply> {
    match reply {
        Reply::Refused(r) => bail!("clusterd refused: {r}"),
        other => Ok(other),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut client = Client::connect(&cli.control)?;
    match cli.cmd {
        Cmd::Config(_)
        | Cmd::Ve { .. }
        | Cmd::Activate { .. }
        | Cmd::NodeUp { .. }
        | Cmd::Firewall { .. }
        | Cmd::Apply { .. }
        | Cmd::Update { .. }
        | Cmd::PeerSsh
        | Cmd::Template { .. }
        | Cmd::Replication { .. } => {
            unreachable!("handled in main")
        }
        Cmd::Status { json } => {
            let Reply::Status(s) = expect(client.call(&Request::Status)?)? else {
                bail!("clusterd sent no status");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
        }
        Cmd::Hw { json } => {
            let Reply::Hw(h) = expect(client.call(&Request::Hw)?)? else {
                bail!("clusterd sent no hardware report");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                print_hw(&h);
            }
        }
        Cmd::Mail { cmd: MailCmd::Test } => {
            expect(client.call(&Request::MailTest)?)?;
            println!("test message queued; `tandem mail outbox` shows whether it left");
        }
        Cmd::Mail {
            cmd: MailCmd::Outbox,
        } => {
            let Reply::Outbox(v) = expect(client.call(&Request::MailOutbox)?)? else {
                bail!("clusterd sent no outbox");
            };
            print_outbox(&v);
        }
        Cmd::Support { cmd } => {
            let request = match cmd {
                SupportCmd::On { hours } => Request::SupportOn { hours },
                SupportCmd::Off => Request::SupportOff,
                SupportCmd::Status => Request::SupportStatus,
            };
            let Reply::Support(v) = expect(client.call(&request)?)? else {
                bail!("clusterd sent no support view");
            };
            print_support(&v);
        }
        Cmd::Switchover => match client.call(&Request::Switchover)? {
            Reply::Refused(r) => bail!("{r}"),
            _ => println!("switchover started"),
        },
        Cmd::SplitBrain { cmd: None } => {
            let st = match client.call(&Request::Status)? {
                Reply::Status(s) => *s,
                Reply::Refused(r) => bail!("{r}"),
                other => bail!("unexpected answer {other:?}"),
            };
            println!(
                "split brain: {}",
                if st.split_brain {
                    "yes (reported by DRBD, not resolved)"
                } else {
                    "none reported"
                }
            );
            let facts = match client.call(&Request::Facts)? {
                Reply::Facts(f) => Some(*f),
                _ => None,
            };
            let side = |name: &str, role: Option<&str>, f: Option<&tandem_api::NodeFacts>| {
                println!("{name}: role {}", role.unwrap_or("unknown"));
                match f.and_then(|f| f.replication.as_ref()) {
                    Some(r) => {
                        println!("  replication        {}", r.state);
                        println!("  generation ids     {}", r.generation_ids);
                        println!("  out of sync        {} KiB", r.out_of_sync_kib);
                        println!(
                            "  last write         {}",
                            r.last_write.as_deref().unwrap_or("unknown")
                        );
                    }
                    None => println!("  replication        not known"),
                }
            };
            side(
                &format!("{} (this node)", st.node),
                Some(&st.role),
                facts.as_ref().map(|f| &f.own),
            );
            side(
                &st.peer.node,
                st.peer.role.as_deref(),
                facts.as_ref().and_then(|f| f.peer.as_ref()),
            );
            if let Some(e) = facts.as_ref().and_then(|f| f.peer_error.as_deref()) {
                println!("  ({e})");
            }
        }
        Cmd::SplitBrain {
            cmd:
                Some(SplitBrainCmd::Resolve {
                    survivor,
                    confirm,
                    follow,
                }),
        } => {
            match client.call(&Request::ResolveSplitBrain {
                survivor: survivor.clone(),
                confirm_name: confirm.clone(),
            })? {
                Reply::Refused(r) => bail!("{r}"),
                _ => println!(
                    "this node's part is done; run the same on the other node if not done yet"
                ),
            }
            let start = std::time::Instant::now();
            let mut last = String::new();
            while start.elapsed().as_secs() < follow {
                let line = match client.call(&Request::Status)? {
                    Reply::Status(s) => s.replication.unwrap_or_default(),
                    _ => String::new(),
                };
                if line != last {
                    println!("replication: {line}");
                    if line.starts_with("Connected") && !line.contains("resync") {
                        break;
                    }
                    last = line;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        Cmd::Fence {
            cmd: FenceCmd::Confirm { node },
        } => match client.call(&Request::FenceConfirm { node: node.clone() })? {
            Reply::Refused(r) => bail!("{r}"),
            _ => println!("{node} confirmed down: this node takes over"),
        },
        Cmd::Data {
            cmd: DataCmd::ForcePrimary { confirm },
        } => match client.call(&Request::ForcePrimary {
            confirm_name: confirm.clone(),
        })? {
            Reply::Refused(r) => bail!("{r}"),
            _ => println!("this node's copy is the one to start from: it takes over"),
        },
        Cmd::Events { follow } => {
            if follow {
                client.wait_forever()?;
            }
            let mut r = client.call(&Request::Events { follow })?;
            loop {
                match r {
                    Reply::Event(e) => println!("{} {} {}: {}", e.time_ms, e.node, e.kind, e.text),
                    Reply::EventsDropped(n) => {
                        eprintln!("tandem: {n} events dropped: reader too slow");
                    }
                    Reply::Refused(r) => bail!("clusterd refused: {r}"),
                    _ => return Ok(()),
                }
                r = client.read_reply()?;
            }
        }
    }
    Ok(())
}

/// The `tandem` command line for `vzctl …` and `vzlist …` ([`vz`]); `Err` is the
/// exit status after the refusal was printed.
fn vz_cli(kind: vz::Vz, argv: &[String]) -> Result<Cli, ExitCode> {
    let name = argv
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("vzctl")
        .to_owned();
    let addresses = |n: u32| -> Result<Vec<std::net::Ipv4Addr>, String> {
        let rows = node_ves()
            .and_then(|v| Ok(v.list()?))
            .map_err(|e| format!("{e:#}"))?;
        rows.into_iter()
            .find(|r| r.id == n)
            .map(|r| r.ip)
            .ok_or_else(|| format!("VE {n} does not exist"))
    };
    match vz::translate(kind, argv.get(1..).unwrap_or_default(), &addresses) {
        Ok(args) => Ok(Cli::parse_from(
            std::iter::once("tandem".to_owned()).chain(args),
        )),
        Err(e) => {
            eprintln!("{name}: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let cli = match argv.first().and_then(|a| vz::Vz::invoked_as(a)) {
        Some(kind) => match vz_cli(kind, &argv) {
            Ok(c) => c,
            Err(code) => return code,
        },
        None => Cli::parse(),
    };
    // The configuration commands work without clusterd (on an unconfigured
    // node and on an operator's machine alike).
    if let Cmd::Config(args) = &cli.cmd {
        let code =
            tandem_config::cli::execute(args, &mut std::io::stdout(), &mut std::io::stderr());
        return ExitCode::from(code);
    }
    if let Cmd::Activate {
        destroy_data,
        fetch_from_peer: _,
        store,
        peer_wait,
    } = &cli.cmd
    {
        return match run_activate(*destroy_data, store, *peer_wait) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: activation stopped: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::NodeUp {
        store,
        etc,
        tls_dir,
        ssh_dir,
        shadow,
        chrony_conf,
    } = &cli.cmd
    {
        return match run_node_up(store, etc, tls_dir, ssh_dir, shadow, chrony_conf) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: bringing up the node's network: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Replication { cmd } = &cli.cmd {
        return ExitCode::from(run_replication(cmd, &cli.control));
    }
    if let Cmd::Firewall { cmd } = &cli.cmd {
        return match run_firewall(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: firewall: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Apply {
        file,
        this_node_only,
    } = &cli.cmd
    {
        return match run_apply(file, *this_node_only, &cli.control) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: configuration not changed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::PeerSsh = &cli.cmd {
        return match update::peer_ssh(&cli.control) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Update { cmd } = &cli.cmd {
        return match update::run(cmd, &cli.control) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: update: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Template { cmd } = &cli.cmd {
        return match template::run(cmd, &cli.control) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: template: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // VE backups go through clusterd (one job at a time, on the active node).
    if let Cmd::Ve {
        cmd: cmd @ (VeCmd::Backup { .. } | VeCmd::Backups { .. } | VeCmd::Restore { .. }),
    } = &cli.cmd
    {
        return match run_ve_backup(cmd, &cli.control) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // VE starts and stops go through clusterd, which watches the VEs it runs (R8.2),
    // and so do changes of a VE's settings.
    if let Cmd::Ve {
        cmd:
            cmd @ (VeCmd::Start { .. } | VeCmd::Stop { .. } | VeCmd::Restart { .. } | VeCmd::Set { .. }),
    } = &cli.cmd
        && let Some(client) = clusterd(&cli.control)
    {
        return match run_ve_through_clusterd(cmd, client) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Without clusterd (bring-up) and for everything else, VEs are driven directly
    // (crun, netlink) on the active node.
    if let Cmd::Ve { cmd } = cli.cmd {
        if matches!(cmd, VeCmd::Start { .. } | VeCmd::Restart { .. }) {
            eprintln!(
                "tandem: clusterd does not run on this node: the VE is started directly and nothing restarts it when it crashes"
            );
        }
        return match run_ve_with(cmd, &cli.control) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("tandem: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}
