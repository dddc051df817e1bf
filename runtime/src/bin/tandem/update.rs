//! `tandem update status|install|rollback`: requests to clusterd, then (for an
//! install) its progress until the node restarts into the new system.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tandem_api::Client;
use tandem_api::{JobState, Reply, Request, UpdateJobView, UpdateView};

/// `tandem update …`.
#[derive(Subcommand, Debug)]
pub enum UpdateCmd {
    /// The system slots (version, state), the install running or the last one, the
    /// trial of a new system and the history.
    Status {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Install the update bundle FILE (on this node) into the inactive slot and
    /// restart into it; the new system is kept once the node is healthy, otherwise
    /// the node goes back by itself. Only on the passive node.
    Install {
        /// The bundle (`tandem-VERSION.raucb`).
        #[arg(
            required_unless_present = "from_server",
            conflicts_with = "from_server"
        )]
        file: Option<String>,
        /// Download the bundle the update server offers first (`tandem update
        /// download`) and install that.
        #[arg(long)]
        from_server: bool,
        /// Accept a bundle older than the running system.
        #[arg(long)]
        force_downgrade: bool,
    },
    /// Ask the update server (`[updates]`) now what it offers that is newer than the
    /// running system (clusterd also asks once a day).
    Check,
    /// Download the bundle the update server offered at its last check onto this
    /// node (kept in memory until the node restarts) and have it checked; prints
    /// the file to install.
    Download,
    /// Go back to the system in the other slot (it must have run well) and restart.
    /// Only on the passive node.
    Rollback,
    /// Update both nodes from the bundle FILE (on this node), on the node that runs
    /// the services: the other node first (it restarts into the new system and
    /// must keep it), then the services move to it, then this node. Stops, with
    /// the services running, when a step fails. Follows it until this node restarts.
    Rolling {
        /// The bundle (`tandem-VERSION.raucb`).
        #[arg(
            required_unless_present = "from_server",
            conflicts_with = "from_server"
        )]
        file: Option<String>,
        /// Download the bundle the update server offers first (`tandem update
        /// download`) and update the pair with that.
        #[arg(long)]
        from_server: bool,
        /// Move the services back to this node at the end (a second switchover,
        /// once this node runs the new system, kept, and its copy is current).
        #[arg(long)]
        switch_back: bool,
        /// Accept a bundle older than the running system.
        #[arg(long)]
        force_downgrade: bool,
    },
}

fn expect(reply: Reply) -> anyhow::Result<Reply> {
    match reply {
        Reply::Refused(r) => bail!("clusterd refused: {r}"),
        other => Ok(other),
    }
}

fn status(client: &mut Client) -> anyhow::Result<UpdateView> {
    let Reply::Update(v) = expect(client.call(&Request::UpdateStatus)?)? else {
        bail!("clusterd sent no update status");
    };
    Ok(*v)
}

fn print(v: &UpdateView) {
    println!("running system: {}", v.version);
    if let Some(e) = &v.slots_error {
        println!("slots: unknown ({e})");
    }
    for s in &v.slots {
        let mark = if v.booted.as_deref() == Some(s.bootname.as_str()) {
            "*"
        } else {
            " "
        };
        println!(
            "{mark} slot {} {:<12} {:<9} {:<5} {}",
            s.bootname,
            s.device,
            s.state,
            s.boot_status,
            s.version.as_deref().unwrap_or("(as installed)")
        );
    }
    if let Some(t) = &v.trial {
        println!("{t}");
    }
    if let Some(r) = &v.rolling {
        println!("rolling update: {r}");
    }
    if let Some(s) = &v.server {
        print_server(s);
    }
    match &v.job.state {
        JobState::Idle => {}
        JobState::Running => println!(
            "installing {}: {}% {}",
            v.job.to_version.as_deref().unwrap_or("?"),
            v.job.percent,
            v.job.step
        ),
        JobState::Succeeded => println!("last install: {}", v.job.step),
        JobState::Failed { error } => println!("last install failed: {error}"),
    }
    for h in &v.history {
        println!(
            "{} {} {}",
            tandem_notify::UnixSecs(h.at),
            if h.ok { "ok    " } else { "FAILED" },
            h.text
        );
    }
}

fn print_server(s: &tandem_api::UpdateServerView) {
    let when = s.checked_at.map_or_else(
        || "not asked yet".to_owned(),
        |t| format!("asked {}", tandem_notify::UnixSecs(t)),
    );
    println!("update server: {} ({when})", s.url);
    match &s.offer {
        Some(o) => {
            println!("  offers {} ({}, {} MiB)", o.version, o.file, o.size >> 20);
            for l in o.changes.lines().filter(|l| !l.trim().is_empty()) {
                println!("    {l}");
            }
        }
        None if s.error.is_none() => println!("  nothing newer than the running system"),
        None => {}
    }
    if let Some(e) = &s.error {
        println!("  last check failed: {e}");
    }
}

/// Follows the job `job` picks from clusterd's update status until it ends, its
/// progress on the error stream: `Some` when it succeeded, `None` when clusterd went
/// away (the node restarts).
fn follow_job(
    client: &mut Client,
    what: &str,
    job: impl Fn(UpdateView) -> Option<UpdateJobView>,
) -> anyhow::Result<Option<UpdateJobView>> {
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let Ok(v) = status(client) else {
            return Ok(None);
        };
        let Some(j) = job(v) else {
            bail!("clusterd lost the {what}");
        };
        match &j.state {
            JobState::Running => {
                let line = format!("{:>3}% {}", j.percent, j.step);
                if line != last {
                    if tty {
                        eprint!("\r{line:<80}");
                    } else {
                        eprintln!("{line}");
                    }
                    last = line;
                }
            }
            JobState::Succeeded => {
                if tty {
                    eprintln!();
                }
                return Ok(Some(j));
            }
            JobState::Failed { error } => {
                if tty {
                    eprintln!();
                }
                bail!("{error}");
            }
            JobState::Idle => bail!("clusterd lost the {what}"),
        }
    }
}

/// Starts the download of the offered bundle and follows it; returns the file.
fn download(client: &mut Client) -> anyhow::Result<String> {
    expect(client.call(&Request::UpdateDownload)?)?;
    let Some(d) = follow_job(client, "download", |v| v.server.and_then(|s| s.download))? else {
        bail!("clusterd went away during the download");
    };
    eprintln!("{}", d.step);
    d.file.context("clusterd names no downloaded file")
}

/// The bundle named, or the one downloaded from the update server.
fn bundle(client: &mut Client, file: Option<&String>, from_server: bool) -> anyhow::Result<String> {
    match file {
        Some(f) if !from_server => Ok(std::fs::canonicalize(f)
            .with_context(|| format!("{f}: no such bundle file"))?
            .display()
            .to_string()),
        _ => download(client),
    }
}

/// Runs `cmd` against clusterd's socket `control`.
///
/// # Errors
/// clusterd refused or cannot be reached; the install failed.
pub fn run(cmd: &UpdateCmd, control: &Path) -> anyhow::Result<()> {
    let mut client = Client::connect(control)?;
    match cmd {
        UpdateCmd::Status { json } => {
            let v = status(&mut client)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print(&v);
            }
            Ok(())
        }
        UpdateCmd::Check => {
            let Reply::Update(v) = expect(client.call(&Request::UpdateCheck)?)? else {
                bail!("clusterd sent no update status");
            };
            let s = v.server.context("clusterd asked no update server")?;
            print_server(&s);
            match s.error {
                Some(e) => bail!("the update server was not asked successfully: {e}"),
                None => Ok(()),
            }
        }
        UpdateCmd::Download => {
            let file = download(&mut client)?;
            println!("{file}");
            println!(
                "install it with `tandem update rolling {file}` on the node that runs the services (both nodes), or `tandem update install {file}` on the passive node"
            );
            Ok(())
        }
        UpdateCmd::Rollback => {
            expect(client.call(&Request::UpdateRollback)?)?;
            println!("the other slot's system starts next: this node restarts now");
            Ok(())
        }
        UpdateCmd::Rolling {
            file,
            from_server,
            switch_back,
            force_downgrade,
        } => {
            let path = bundle(&mut client, file.as_ref(), *from_server)?;
            expect(client.call(&Request::UpdateRolling {
                file: path,
                switch_back: *switch_back,
                force_downgrade: *force_downgrade,
            })?)?;
            follow_rolling(&mut client)
        }
        UpdateCmd::Install {
            file,
            from_server,
            force_downgrade,
        } => {
            let path = bundle(&mut client, file.as_ref(), *from_server)?;
            expect(client.call(&Request::UpdateInstall {
                file: path,
                force_downgrade: *force_downgrade,
            })?)?;
            // The node restarts right after a good install: the socket goes away.
            match follow_job(&mut client, "install", |v| Some(v.job))? {
                Some(j) => println!("{}", j.step),
                None => println!("the node is restarting into the new system"),
            }
            Ok(())
        }
    }
}

/// Prints each new step of the rolling update until this node restarts into the new
/// system (its trial ends the update there) or the update stops.
fn follow_rolling(client: &mut Client) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Ok(v) = status(client) else {
            println!(
                "this node restarts into the new system; the rolling update ends there once it is kept: `tandem update status` after the restart"
            );
            return Ok(());
        };
        let Some(r) = v.rolling else {
            let end = v.history.last().map(|h| h.text.clone()).unwrap_or_default();
            println!("{end}");
            return Ok(());
        };
        if r != last {
            println!("{r}");
            if let Some(why) = r.strip_prefix("stopped: ") {
                bail!("the rolling update stopped: {why}");
            }
            last = r;
        }
    }
}

/// `tandem peer-ssh`: the forced command of the other node's key. One of the few
/// steps of a rolling update the other node leads, named in `SSH_ORIGINAL_COMMAND`;
/// anything else is refused.
///
/// # Errors
/// The command is not one of them, or it failed.
pub fn peer_ssh(control: &Path) -> anyhow::Result<()> {
    use tandem_runtime::update::peer::{BUNDLE, MAX_BUNDLE, PeerCommand};
    let line = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let cmd = PeerCommand::parse(&line).map_err(anyhow::Error::msg)?;
    match cmd {
        PeerCommand::ReceiveBundle => {
            use std::io::Read as _;
            let part = format!("{BUNDLE}.part");
            let mut out =
                std::fs::File::create(&part).with_context(|| format!("creating {part}"))?;
            let copied = std::io::copy(&mut std::io::stdin().lock().take(MAX_BUNDLE + 1), &mut out)
                .with_context(|| format!("writing {part}"));
            let n = match copied {
                Ok(n) if n <= MAX_BUNDLE => n,
                other => {
                    let _ = std::fs::remove_file(&part);
                    other?;
                    bail!(
                        "the bundle is larger than a system slot ({} MiB): refused, nothing kept",
                        MAX_BUNDLE >> 20
                    );
                }
            };
            out.sync_all().with_context(|| format!("writing {part}"))?;
            std::fs::rename(&part, BUNDLE).with_context(|| format!("renaming {part}"))?;
            println!("{n} bytes in {BUNDLE}");
            Ok(())
        }
        PeerCommand::Install { force_downgrade } => run(
            &UpdateCmd::Install {
                file: Some(BUNDLE.to_owned()),
                from_server: false,
                force_downgrade,
            },
            control,
        ),
        PeerCommand::Status => run(&UpdateCmd::Status { json: true }, control),
    }
}
