//! The web console. `tandem-web cert` makes (once) and prints the TLS certificate's
//! fingerprint; `tandem-web serve` serves HTTPS (443) and redirects HTTP (80).
//!
//! `serve` binds both ports and reads the certificate as root, then drops to the
//! unprivileged `tandem-web` user for good before it reads a request. Everything else
//! it asks clusterd's control API (`--control`), whose socket admits that user's group.
//! It exits non-zero on any start-up failure for its supervisor (init) to restart it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tandem_recovery::app::App;
use tandem_recovery::listen::{self, Limits};
use tandem_recovery::{tls, web};
use tokio::net::TcpListener;

/// uid and gid of the `tandem-web` user of the system image.
const UNPRIVILEGED: u32 = 101;

/// How long after its own start the console waits for clusterd to listen (both
/// start at boot; clusterd's start under emulation takes seconds).
const STARTUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(180);

/// Where `serve` writes its process id (`--pid-file`).
const PID_FILE: &str = "/run/tandem/tandem-web.pid";

const USAGE: &str = "usage: tandem-web cert --dir DIR --name NAME --address IP\n       tandem-web serve --node NAME --listen IP --tls-dir DIR [--hsts --https-port N --http-port N --control SOCKET --pid-file FILE]";

fn arg(args: &[String], name: &str) -> Result<String> {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .with_context(|| format!("missing {name}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("cert") => cert(&args),
        Some("serve") => serve(&args),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-web: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn cert(args: &[String]) -> Result<()> {
    let dir = PathBuf::from(arg(args, "--dir")?);
    let fp = tls::ensure(&dir, &arg(args, "--name")?, &arg(args, "--address")?)
        .with_context(|| format!("preparing the certificate in {}", dir.display()))?;
    println!("{fp}");
    Ok(())
}

fn write_pid(path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Drops root for good: supplementary groups, group, user; then checks that root
/// cannot be regained.
fn drop_privileges() -> Result<()> {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    if !Uid::effective().is_root() {
        return Ok(());
    }
    setgroups(&[]).context("dropping supplementary groups")?;
    setgid(Gid::from_raw(UNPRIVILEGED)).context("switching group")?;
    setuid(Uid::from_raw(UNPRIVILEGED)).context("switching user")?;
    if setuid(Uid::from_raw(0)).is_ok() {
        bail!("could regain root after dropping privileges");
    }
    Ok(())
}

fn serve(args: &[String]) -> Result<()> {
    let node = arg(args, "--node")?;
    node.parse::<tandem_config::NodeId>()
        .map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let ip: IpAddr = arg(args, "--listen")?
        .parse()
        .context("--listen is not an IP address")?;
    let port = |name: &str, default: u16| -> Result<u16> {
        arg(args, name).map_or(Ok(default), |p| {
            p.parse().with_context(|| format!("{name} {p:?}"))
        })
    };
    let (https_port, http_port) = (port("--https-port", 443)?, port("--http-port", 80)?);
    let control =
        arg(args, "--control").map_or_else(|_| tandem_api::DEFAULT_SOCKET.into(), PathBuf::from);
    let hsts = args.iter().any(|a| a == "--hsts");
    let tls_dir = PathBuf::from(arg(args, "--tls-dir")?);
    let pid_file = arg(args, "--pid-file").map_or_else(|_| PathBuf::from(PID_FILE), PathBuf::from);
    let tls_config = tls::server_config(&tls_dir)
        .with_context(|| format!("loading the certificate from {}", tls_dir.display()))?;
    // For the console's "restart the web console". Not fatal: the console then says
    // it cannot find the web console.
    if let Err(e) = write_pid(&pid_file) {
        eprintln!("tandem-web: {e:#}");
    }
    let bind = |port: u16| {
        let l = std::net::TcpListener::bind(SocketAddr::new(ip, port))
            .with_context(|| format!("listening on {ip}:{port}"))?;
        l.set_nonblocking(true)
            .context("making the listening socket non-blocking")?;
        anyhow::Ok(l)
    };
    let https = bind(https_port)?;
    let http = bind(http_port)?;
    drop_privileges()?;
    // Started together with clusterd: a request in its first minutes waits for the
    // daemon's control socket instead of telling the operator that nobody answers.
    let control = tandem_api::Socket::new(control)
        .patient_until(std::time::Instant::now() + STARTUP_PATIENCE);
    let app = Arc::new(App::new(&node, Box::new(control)).with_hsts(hsts));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let https = TcpListener::from_std(https).context("serving the HTTPS socket")?;
        let http = TcpListener::from_std(http).context("serving the HTTP socket")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
        eprintln!("tandem-web: serving https://{ip}:{https_port}/ for {node}");
        let target = if https_port == 443 {
            format!("https://{ip}/")
        } else {
            format!("https://{ip}:{https_port}/")
        };
        let redirect = axum::Router::new().fallback(move || {
            let t = target.clone();
            async move { axum::response::Redirect::permanent(&t) }
        });
        tokio::spawn(listen::serve(http, None, redirect, Limits::default()));
        listen::serve(https, Some(acceptor), web::router(app), Limits::default()).await;
        Ok(())
    })
}
