//! `tandem`: the node's admin command line, a client of clusterd's control API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tandem_runtime::control::{Client, DEFAULT_SOCKET, HwJson, StatusJson};

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

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut client = Client::connect(&cli.control)?;
    match cli.cmd {
        Cmd::Config(_) => unreachable!("handled in main"),
        Cmd::Status { json } => {
            let r = client.call("status", false)?;
            if !r.ok {
                bail!("clusterd refused: {}", r.error.unwrap_or_default());
            }
            let s = r.status.context("clusterd sent no status")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
        }
        Cmd::Hw { json } => {
            let r = client.call("hw", false)?;
            if !r.ok {
                bail!("clusterd refused: {}", r.error.unwrap_or_default());
            }
            let h = r.hw.context("clusterd sent no hardware report")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                print_hw(&h);
            }
        }
        Cmd::Switchover => {
            let r = client.call("switchover", false)?;
            if !r.ok {
                bail!("{}", r.error.unwrap_or_default());
            }
            println!("switchover started");
        }
        Cmd::Events { follow } => {
            if follow {
                client.wait_forever()?;
            }
            let mut r = client.call("events", follow)?;
            loop {
                match (&r.event, r.ok) {
                    (Some(e), _) => println!("{} {} {}: {}", e.time_ms, e.node, e.kind, e.text),
                    (None, true) => return Ok(()),
                    (None, false) => eprintln!("tandem: {}", r.error.unwrap_or_default()),
                }
                r = client.read_response()?;
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The configuration commands work without clusterd (on an unconfigured
    // node and on an operator's machine alike).
    if let Cmd::Config(args) = &cli.cmd {
        let code =
            tandem_config::cli::execute(args, &mut std::io::stdout(), &mut std::io::stderr());
        return ExitCode::from(code);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}
