//! `clusterd`: the cluster daemon of a tandem node, and the one privileged service of
//! its control API. Logs go to stderr.
//!
//! On a cluster member it runs the cluster (heartbeat, failover, resources, sensors,
//! e-mail) and serves the control API. With `--recovery` (a node that is not a member
//! yet: init starts it so in recovery mode) it serves only the control API's recovery
//! and login requests: the web console checks and activates an archive through it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tandem_api::DEFAULT_SOCKET;
use tandem_config::schema::{self, NotificationConfig};
use tandem_core::NodeId;
use tandem_core::ve_health::RestartPolicy;
use tandem_runtime::activate;
use tandem_runtime::admin::Admin;
use tandem_runtime::admin::activation::Engine;
use tandem_runtime::admin::ve::VeSite;
use tandem_runtime::confsync::SyncSetup;
use tandem_runtime::hw::{Board, HwConfig, parse_interval};
use tandem_runtime::mail::MailSettings;
use tandem_runtime::replication::{Replication, ReplicationPrimary};
use tandem_runtime::resources::{Chain, ServiceAddress};
use tandem_runtime::settings::{self, LocalOptions, SerialPath, Settings, UdpPath};
use tandem_runtime::storage::{DataFilesystem, Links};
use tandem_runtime::ve::health::VeSupervisor;
use tandem_runtime::ve::manager::{Layout, OnbootVes, Ves};

#[derive(Parser, Debug)]
#[command(
    name = "clusterd",
    about = "tandem cluster daemon: heartbeat, failover, resources, hardware sensors"
)]
struct Cli {
    /// This node: node1 or node2.
    #[arg(long)]
    node: String,
    /// Recovery mode: serve only the control API (login, archive check and
    /// activation) for a node that is not a cluster member (yet).
    #[arg(long, conflicts_with_all = ["config", "key_file"])]
    recovery: bool,
    /// How an activation's steps run: node (DRBD, the data area, VE 1) or, for tests of
    /// the console, sim[:DELAY_MS[:fail]].
    #[arg(long, default_value = "node")]
    activation: Engine,
    /// The process that takes the restart (SIGTERM) and power-off (SIGUSR2) signals of
    /// the Maintenance page: init.
    #[arg(long, default_value_t = 1)]
    init_pid: i32,
    /// The replicated data area (VEs, templates, backups).
    #[arg(long, default_value = tandem_runtime::activate::DATA_MOUNT)]
    data_area: PathBuf,
    /// Where the VE files are.
    #[arg(long, default_value = "/etc/tandem/ves")]
    ve_conf_dir: PathBuf,
    /// The program that installs VEs (`tandem ve create|set|start|passwd`).
    #[arg(long, default_value = "/usr/bin/tandem")]
    ve_program: PathBuf,
    /// scrypt work factor of archives exported from the console.
    #[arg(long, default_value_t = tandem_config::archive::EXPORT_WORK_FACTOR)]
    export_work_factor: u8,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control: PathBuf,
    /// Group id admitted to the control socket (mode 0660), e.g. 101 for the web
    /// console's `tandem-web` user; without it only root may connect.
    #[arg(long)]
    control_group: Option<u32>,
    /// Directory for clusterd's durable state (the boot generation), on the writable
    /// config partition.
    #[arg(long, default_value = "/config/clusterd")]
    state_dir: PathBuf,
    /// Cluster configuration (TOML). Without it, the heartbeat options below describe
    /// the cluster (for bring-up and tests).
    #[arg(long, conflicts_with_all = ["key_file", "internal", "external", "serial", "ping"])]
    config: Option<PathBuf>,
    /// The node's configuration store (default /config): the console's privileged
    /// actions act on it; with --config (its committed file) configuration changes are
    /// also exchanged with the other node over the crossover network and put in effect
    /// here.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Serial device of this node when it differs from the configuration's.
    #[arg(long, requires = "config")]
    serial_device: Option<PathBuf>,
    /// File holding the cluster key (heartbeat authentication), without --config.
    #[arg(long, required_unless_present_any = ["config", "recovery"])]
    key_file: Option<PathBuf>,
    // Without --config these describe the heartbeat; their defaults are the
    // configuration's (tandem_config::schema), the one place defaults live.
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = schema::DEFAULT_KEEPALIVE.as_millis())]
    keepalive_ms: u64,
    /// Late-path warning after this many milliseconds of silence (between keepalive
    /// and deadtime).
    #[arg(long, default_value_t = schema::DEFAULT_WARNTIME.as_millis())]
    warntime_ms: u64,
    /// Peer dead after this many milliseconds of silence on every path.
    #[arg(long, default_value_t = schema::DEFAULT_DEADTIME.as_millis())]
    deadtime_ms: u64,
    /// Start-up wait for the peer in milliseconds (at least deadtime).
    #[arg(long, default_value_t = schema::DEFAULT_INITDEAD.as_millis())]
    initdead_ms: u64,
    /// UDP port of the heartbeat on both networks.
    #[arg(long, default_value_t = schema::DEFAULT_UDP_PORT)]
    udp_port: u16,
    /// Internal (crossover) path as LOCAL,PEER addresses; omit to disable.
    #[arg(long)]
    internal: Option<String>,
    /// External path as LOCAL,PEER addresses; omit to disable.
    #[arg(long)]
    external: Option<String>,
    /// Serial heartbeat device; omit to disable.
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Serial baud rate (8N1).
    #[arg(long, default_value_t = schema::DEFAULT_BAUD)]
    baud: u32,
    /// Ping node address (repeat for several).
    #[arg(long = "ping")]
    ping: Vec<Ipv4Addr>,
    /// Interface for service addresses.
    #[arg(long)]
    service_if: Option<String>,
    /// Service address as A.B.C.D/PREFIX (repeat for several).
    #[arg(long = "service-addr")]
    service_addr: Vec<String>,
    /// Run the replicated data area (with --config): DRBD, /vz, the links of R5.2
    /// and the VEs join the takeover chain, and DRBD's state is "data known good".
    #[arg(long, requires = "config")]
    replication: bool,
    /// External network interface (default: the first port).
    #[arg(long)]
    external_if: Option<String>,
    /// Crossover network interface (default: the second port).
    #[arg(long)]
    internal_if: Option<String>,
    /// Hardware to poll: linux (the IPMI device and Areca controller, when present),
    /// lan:ADDRESS:PORT (a BMC over RMCP+, with --bmc-credentials),
    /// sim:SCENARIO.json (simulated, for tests) or none.
    #[arg(long, default_value = "linux", value_parser = parse_board)]
    board: Board,
    /// Sensor polling interval, e.g. 30s or 500ms: a changed reading becomes an event
    /// within it (polls come a little more often, to leave room for the confirming
    /// re-read).
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    sensor_interval: Duration,
    /// File with the LAN BMC's user name on the first line and password on the second.
    #[arg(long)]
    bmc_credentials: Option<PathBuf>,
    /// Outbox of e-mail alerts, kept across restarts (default: STATE_DIR/outbox).
    #[arg(long)]
    outbox: Option<PathBuf>,
    /// Apply the packet filter (nftables ruleset of `tandem firewall show`) at start and
    /// with every change of `access`; a ruleset nft refuses leaves the previous one.
    #[arg(long, requires = "config")]
    firewall: bool,
    /// The nft program.
    #[arg(long, default_value = "/usr/sbin/nft")]
    nft: PathBuf,
    /// Where the ruleset in effect is kept.
    #[arg(long, default_value = tandem_runtime::firewall::DEFAULT_RULESET_PATH)]
    firewall_file: PathBuf,
    /// The SSH server's directory (written by `tandem node-up`): its files are
    /// rewritten and sshd reloaded with every change of `access` or `passwords`.
    #[arg(long, requires = "config")]
    sshd_dir: Option<PathBuf>,
    /// The shadow file whose root line follows the node's root password for SSH
    /// (`access.password-login`; `tandem node-up` writes it first). Absent: left alone.
    #[arg(long, requires = "sshd_dir")]
    sshd_shadow: Option<PathBuf>,
    /// Report on the node's clock (chronyd, which init starts for the configuration's
    /// `network.ntp-servers`): a line in the status, an alert when it stays
    /// unsynchronised.
    #[arg(long, requires = "config")]
    time_sync: bool,
    /// The chronyc program.
    #[arg(long, default_value = tandem_runtime::chrony::CHRONYC)]
    chronyc: PathBuf,
    /// chronyd's command socket.
    #[arg(long, default_value = "/run/chrony/chronyd.sock")]
    chrony_socket: PathBuf,
    /// chronyd's configuration (written by `tandem node-up`): rewritten, or removed
    /// when no time server is left, with every change of `network.ntp-servers`, and
    /// chronyd ended so that init starts it again with it.
    #[arg(long, requires = "config")]
    chrony_conf: Option<PathBuf>,
    /// chronyd's run directory (its pid file `chronyd.pid`), with --chrony-conf.
    #[arg(long, default_value = tandem_runtime::chrony::NODE_RUN_DIR)]
    chrony_run_dir: PathBuf,
    /// The SSH client of the remote-support tunnel.
    #[arg(long, default_value = tandem_runtime::support::DEFAULT_SSH)]
    support_ssh: PathBuf,
    /// Where the remote-support tunnel's key and known-hosts files are written.
    #[arg(long, default_value = tandem_runtime::support::DEFAULT_DIR)]
    support_dir: PathBuf,
    /// Wait after a failed delivery, e.g. 30s; it doubles per failure up to an hour.
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    mail_retry: Duration,
}

/// The e-mail settings: the configuration's notification section (recipients, sender,
/// relay host, TLS policy) and DNS servers, and nothing to mail without --config.
fn mail_settings(
    cli: &Cli,
    cfg: Option<&tandem_config::ApplianceConfig>,
    node: NodeId,
) -> MailSettings {
    let (notification, hostname, dns_servers) = match cfg {
        Some(cfg) => (
            cfg.notification.clone(),
            cfg.network.node(node).hostname.as_str().to_owned(),
            tandem_runtime::mail::dns_servers(cfg),
        ),
        None => (
            NotificationConfig::default(),
            node.name().to_owned(),
            Vec::new(),
        ),
    };
    MailSettings {
        outbox: cli
            .outbox
            .clone()
            .unwrap_or_else(|| cli.state_dir.join("outbox")),
        notification,
        dns_servers,
        hostname,
        retry_initial: cli.mail_retry,
        smtp_timeout: Duration::from_secs(30),
    }
}

fn hw_config(cli: &Cli) -> anyhow::Result<HwConfig> {
    let lan_credentials = match (&cli.board, &cli.bmc_credentials) {
        (Board::Lan(_), Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading BMC credentials {}", path.display()))?;
            let mut lines = text.lines();
            let (Some(user), Some(password)) = (lines.next(), lines.next()) else {
                bail!(
                    "BMC credentials {}: expected the user on the first line and the password on the second",
                    path.display()
                );
            };
            Some((user.to_owned(), password.to_owned()))
        }
        (Board::Lan(_), None) => bail!("--board lan:... needs --bmc-credentials FILE"),
        (_, Some(_)) => bail!("--bmc-credentials is only used with --board lan:..."),
        (_, None) => None,
    };
    Ok(HwConfig {
        board: cli.board.clone(),
        interval: cli.sensor_interval,
        lan_credentials,
    })
}

fn parse_board(s: &str) -> Result<Board, String> {
    s.parse()
}

fn udp_path(flag: &str, v: &str) -> anyhow::Result<UdpPath> {
    let (l, p) = v
        .split_once(',')
        .with_context(|| format!("--{flag} {v:?}: expected LOCAL,PEER"))?;
    Ok(UdpPath {
        local: l
            .parse()
            .with_context(|| format!("--{flag}: bad local address {l:?}"))?,
        peer: p
            .parse()
            .with_context(|| format!("--{flag}: bad peer address {p:?}"))?,
    })
}

fn cidr(v: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (a, p) = v
        .split_once('/')
        .with_context(|| format!("--service-addr {v:?}: expected A.B.C.D/PREFIX"))?;
    let prefix: u8 = p
        .parse()
        .with_context(|| format!("--service-addr {v:?}: bad prefix length"))?;
    if prefix > 32 {
        bail!("--service-addr {v:?}: prefix length above 32");
    }
    Ok((
        a.parse()
            .with_context(|| format!("--service-addr {v:?}: bad address"))?,
        prefix,
    ))
}

/// The external and crossover ports: the command line's, else the first and second
/// port in slot order.
fn ports(cli: &Cli) -> (String, String) {
    let nics = activate::node_nics();
    let ext = cli
        .external_if
        .clone()
        .or_else(|| nics.first().cloned())
        .unwrap_or_else(|| "eth0".into());
    let int = cli
        .internal_if
        .clone()
        .or_else(|| nics.get(1).cloned())
        .unwrap_or_else(|| "eth1".into());
    (ext, int)
}

/// The daemon's settings, and the cluster configuration they came from (with
/// --config).
fn settings(
    cli: &Cli,
    ports: &(String, String),
) -> anyhow::Result<(Settings, Option<tandem_config::ApplianceConfig>)> {
    let node: NodeId = cli
        .node
        .parse()
        .map_err(|e| anyhow::anyhow!("--node {:?}: {e}", cli.node))?;
    let service_addresses = cli
        .service_addr
        .iter()
        .map(|s| cidr(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        let cfg = tandem_config::ApplianceConfig::from_toml(&text)
            .with_context(|| format!("configuration {}", path.display()))?;
        let s = settings::from_config(
            &cfg,
            node,
            LocalOptions {
                serial_device: cli.serial_device.clone(),
                // On a node with a data area the external port is known.
                service_interface: cli
                    .service_if
                    .clone()
                    .or_else(|| cli.replication.then(|| ports.0.clone())),
                extra_service_addresses: service_addresses,
                ves_own_addresses: cli.replication,
                control: cli.control.clone(),
                control_group: cli.control_group,
                state_dir: cli.state_dir.clone(),
            },
        );
        if !s.service_addresses.is_empty() && s.service_interface.is_none() {
            bail!(
                "service addresses are configured: --service-if must name the external interface"
            );
        }
        return Ok((s, Some(cfg)));
    }
    let key_file = cli
        .key_file
        .as_ref()
        .context("--key-file is required without --config")?;
    let mut key = std::fs::read(key_file)
        .with_context(|| format!("reading cluster key {}", key_file.display()))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    if !service_addresses.is_empty() && cli.service_if.is_none() {
        bail!("--service-addr needs --service-if");
    }
    let mut s = Settings {
        node,
        key,
        keepalive: Duration::from_millis(cli.keepalive_ms),
        warntime: Duration::from_millis(cli.warntime_ms),
        deadtime: Duration::from_millis(cli.deadtime_ms),
        initdead: Duration::from_millis(cli.initdead_ms),
        udp_port: cli.udp_port,
        internal: cli
            .internal
            .as_deref()
            .map(|v| udp_path("internal", v))
            .transpose()?,
        external: cli
            .external
            .as_deref()
            .map(|v| udp_path("external", v))
            .transpose()?,
        serial: cli.serial.clone().map(|device| SerialPath {
            device,
            baud: cli.baud,
        }),
        ping_nodes: cli.ping.clone(),
        garp_refresh: None,
        service_interface: cli.service_if.clone(),
        service_addresses,
        fencing: None,
        control: cli.control.clone(),
        control_group: cli.control_group,
        state_dir: cli.state_dir.clone(),
        config_digest: [0; 32],
        replication: None,
        firewall: None,
        sshd: None,
        time_sync: None,
        chrony: None,
        support: None,
    };
    s.config_digest = s.shared_digest();
    Ok((s, None))
}

/// Sets up replication for a node with a data area: DRBD's resource file and the
/// device attached and connecting (activation made its metadata).
fn data_area(cfg: &tandem_config::ApplianceConfig) -> anyhow::Result<Replication> {
    let repl = Replication::new(
        cfg,
        std::path::Path::new(tandem_runtime::replication::NODE_CONF_DIR),
    );
    repl.write_config(cfg, tandem_runtime::drbd::Tuning::default())?;
    let configured = repl
        .status()?
        .is_some_and(|s| s.connection != tandem_runtime::drbd::Connection::Unconfigured);
    if !configured {
        repl.up()
            .context("attaching the replicated device (was this node activated?)")?;
    }
    Ok(repl)
}

/// Gratuitous ARPs for every served address after a takeover, a VE start, and when
/// the other node is heard again after every path was lost (a router that missed one
/// learns from the next).
const GARP_COUNT: u32 = 5;
/// Their spacing.
const GARP_GAP: Duration = Duration::from_secs(1);

fn chain(s: &Settings, ves: Option<VeSupervisor>) -> Chain {
    let mut c = Chain::new();
    if let (Some(repl), Some(ves)) = (&s.replication, ves) {
        c.push(Box::new(ReplicationPrimary(repl.clone())));
        c.push(Box::new(DataFilesystem {
            device: std::path::PathBuf::from(format!("/dev/drbd{}", repl.minor)),
            mountpoint: std::path::PathBuf::from(activate::DATA_MOUNT),
        }));
        c.push(Box::new(Links {
            data_dir: std::path::Path::new(activate::DATA_MOUNT).join("tkcluster"),
            paths: activate::LINKED_PATHS
                .iter()
                .map(std::path::PathBuf::from)
                .collect(),
        }));
        c.push(Box::new(
            OnbootVes::new(ves.ves().clone(), GARP_COUNT, GARP_GAP).watched_by(ves),
        ));
    }
    if let Some(ifname) = &s.service_interface {
        for (address, prefix) in &s.service_addresses {
            c.push(Box::new(ServiceAddress::new(
                ifname.clone(),
                *address,
                *prefix,
                GARP_COUNT,
                GARP_GAP,
            )));
        }
    }
    c
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon still runs; it just cannot release on exit.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The privileged actions of the console, on this node's store.
fn admin(cli: &Cli, node: tandem_config::NodeId) -> Admin {
    let store = cli
        .store
        .clone()
        .unwrap_or_else(|| PathBuf::from("/config"));
    let mut a = Admin::new(store, node, cli.activation.clone());
    a.init_pid = cli.init_pid;
    a.ve = VeSite::at(
        &cli.data_area,
        cli.ve_conf_dir.clone(),
        cli.ve_program.clone(),
    );
    a.work_factor = cli.export_work_factor;
    a.update = tandem_runtime::admin::update::UpdateJob::new(
        tandem_runtime::update::Updater::node(cli.state_dir.clone()),
    );
    eprintln!(
        "clusterd: restart and shutdown signal process {}",
        a.init_pid
    );
    a
}

/// Recovery mode: the control API alone until a signal ends it.
fn recovery(cli: &Cli) -> anyhow::Result<()> {
    let node: tandem_config::NodeId = cli
        .node
        .parse()
        .map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let listener = tandem_runtime::control::bind(&cli.control, cli.control_group)?;
        let mut admin = admin(cli, node);
        admin.activation = admin.activation.with_shown_marker(
            cli.control
                .with_file_name(tandem_runtime::admin::activation::SHOWN_MARKER),
        );
        let service = std::sync::Arc::new(tandem_runtime::control::Service::new(admin, None));
        eprintln!(
            "clusterd: {node} in recovery mode: control API on {}",
            cli.control.display()
        );
        tokio::select! {
            () = tandem_runtime::control::serve(listener, service) => {}
            () = shutdown_signal() => {}
        }
        let _ = std::fs::remove_file(&cli.control);
        Ok(())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.recovery {
        return match recovery(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("clusterd: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let ports = ports(&cli);
    let result = settings(&cli, &ports).and_then(|(mut s, cfg)| {
        if cli.firewall {
            let cfg = cfg.as_ref().context("--firewall needs --config")?;
            s.firewall = Some(tandem_runtime::firewall::Setup {
                nft: cli.nft.clone(),
                path: cli.firewall_file.clone(),
                node: s.node,
                interfaces: tandem_runtime::firewall::Interfaces {
                    external: ports.0.clone(),
                    internal: ports.1.clone(),
                },
                initial: Box::new(cfg.clone()),
            });
        }
        if cli.time_sync {
            let cfg = cfg.as_ref().context("--time-sync needs --config")?;
            s.time_sync = Some(tandem_runtime::settings::TimeSync {
                servers: cfg
                    .network
                    .ntp_servers
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                chronyc: cli.chronyc.clone(),
                socket: cli.chrony_socket.clone(),
            });
        }
        if let Some(cfg) = &cfg {
            s.support = Some(tandem_runtime::support::Setup {
                ssh: cli.support_ssh.clone(),
                dir: cli.support_dir.clone(),
                initial: Box::new(cfg.clone()),
            });
        }
        if let Some(conf) = &cli.chrony_conf {
            s.chrony = Some(tandem_runtime::chrony::Setup {
                conf: conf.clone(),
                run_dir: cli.chrony_run_dir.clone(),
            });
        }
        if let Some(dir) = &cli.sshd_dir {
            s.sshd = Some(tandem_runtime::sshd::Setup {
                dir: dir.clone(),
                node: s.node,
                shadow: cli.sshd_shadow.clone(),
            });
        }
        let mut ves = None;
        if cli.replication {
            let cfg = cfg.as_ref().context("--replication needs --config")?;
            s.replication = Some(data_area(cfg)?);
            let (ext, int) = ports;
            // Every start and stop of a VE on this node goes through this watch
            // (the chain's and the operator's), which restarts crashed VEs.
            ves = Some(VeSupervisor::new(
                Ves {
                    layout: Layout::for_cluster(Some(cfg), ext, int),
                },
                RestartPolicy::default(),
            ));
        }
        let hw = hw_config(&cli)?;
        let mail = mail_settings(&cli, cfg.as_ref(), s.node);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let sync = match (&cli.store, &cfg) {
            (Some(store), Some(cfg)) => Some(SyncSetup::new(cfg, s.node, store.clone())),
            _ => None,
        };
        let mut admin = admin(&cli, s.node);
        admin.ve_health.clone_from(&ves);
        let c = chain(&s, ves);
        rt.block_on(tandem_runtime::daemon::run(
            s,
            c,
            hw,
            Some(mail),
            sync,
            admin,
            shutdown_signal(),
        ))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clusterd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
