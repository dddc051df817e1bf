//! The web console. `tandem-web cert` makes (once) and prints the TLS
//! certificate's fingerprint; `tandem-web serve` serves HTTPS on 443 and
//! redirects HTTP on 80.
//!
//! `serve` binds both ports and reads the certificate as root, then forks (see
//! `tandem_recovery::helper`): the child drops to the unprivileged user and serves
//! HTTP; the parent stays root and answers only the child's typed calls. When either
//! ends, the other follows, and the process exits non-zero for its supervisor to
//! restart it.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Extension;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tandem_recovery::helper::{self, Local, Remote};
use tandem_recovery::tls;
use tandem_recovery::web::{self, App, Peer};
use tokio::net::TcpListener;

/// uid and gid of the `tandem-web` user of the system image.
const UNPRIVILEGED: u32 = 101;

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
            eprintln!(
                "usage: tandem-web cert --dir DIR --name NAME --address IP\n       tandem-web serve --node NAME --listen IP --tls-dir DIR --config-dir DIR [--https-port N --http-port N --control SOCKET --activate-program PATH --pid-file FILE --init-pid N --ve-program PATH --data-area DIR --ve-conf-dir DIR]"
            );
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

/// Where `serve` writes its process id (`--pid-file`).
const PID_FILE: &str = "/run/tandem/tandem-web.pid";

fn write_pid(path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

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

struct Options {
    node: String,
    ip: IpAddr,
    config_dir: PathBuf,
    https_port: u16,
    http_port: u16,
    control: PathBuf,
    activate_program: PathBuf,
    /// Takes the restart and shutdown signals: init (tests name a stand-in).
    init_pid: i32,
    ve: helper::VeSite,
}

fn serve(args: &[String]) -> Result<()> {
    let node = arg(args, "--node")?;
    let node_id: tandem_config::NodeId = node
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--node: {e}"))?;
    let opts = Options {
        ip: arg(args, "--listen")?
            .parse()
            .context("--listen is not an IP address")?,
        config_dir: PathBuf::from(arg(args, "--config-dir")?),
        https_port: arg(args, "--https-port")
            .map_or(Ok(443), |p| p.parse())
            .context("--https-port")?,
        http_port: arg(args, "--http-port")
            .map_or(Ok(80), |p| p.parse())
            .context("--http-port")?,
        control: arg(args, "--control").map_or_else(
            |_| tandem_runtime::control::DEFAULT_SOCKET.into(),
            PathBuf::from,
        ),
        activate_program: arg(args, "--activate-program")
            .map_or_else(|_| PathBuf::from("/usr/bin/tandem"), PathBuf::from),
        init_pid: match arg(args, "--init-pid") {
            Ok(p) => p
                .parse::<i32>()
                .ok()
                .filter(|p| *p > 0)
                .with_context(|| format!("--init-pid {p:?} is not a process number"))?,
            Err(_) => 1,
        },
        ve: {
            let node = helper::VeSite::node();
            let data = arg(args, "--data-area").map_or(node.data_mount.clone(), PathBuf::from);
            helper::VeSite::at(
                &data,
                arg(args, "--ve-conf-dir").map_or(node.conf_dir, PathBuf::from),
                arg(args, "--ve-program").map_or(node.program, PathBuf::from),
            )
        },
        node,
    };
    let tls_dir = PathBuf::from(arg(args, "--tls-dir")?);
    let pid_file = arg(args, "--pid-file").map_or_else(|_| PathBuf::from(PID_FILE), PathBuf::from);
    let tls_config = tls::server_config(&tls_dir)
        .with_context(|| format!("loading the certificate from {}", tls_dir.display()))?;
    // For the console's "restart the web console": it signals exactly this (root)
    // process, whose end ends the web process too. Not fatal: the console then
    // says it cannot find the web console.
    if let Err(e) = write_pid(&pid_file) {
        eprintln!("tandem-web: {e:#}");
    }
    let bind = |port: u16| {
        let l = std::net::TcpListener::bind(SocketAddr::new(opts.ip, port))
            .with_context(|| format!("listening on {}:{port}", opts.ip))?;
        l.set_nonblocking(true)
            .context("making the listening socket non-blocking")?;
        anyhow::Ok(l)
    };
    let https = bind(opts.https_port)?;
    let http = bind(opts.http_port)?;
    let (root_end, web_end) = UnixStream::pair().context("creating the privileged channel")?;

    let parent = nix::unistd::getpid();
    // SAFETY: no other thread exists yet (the async runtime is built in the child only),
    // so the child starts from a consistent copy of this single-threaded process.
    match unsafe { nix::unistd::fork() }.context("forking the web process")? {
        nix::unistd::ForkResult::Parent { child } => {
            drop((web_end, https, http));
            let mut exec = Local::new(opts.config_dir, node_id, opts.activate_program);
            exec.init_pid = opts.init_pid;
            exec.ve = opts.ve;
            eprintln!(
                "tandem-web: restart and shutdown signal process {}",
                exec.init_pid
            );
            let served = helper::serve(root_end, &exec);
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGTERM);
            let status = nix::sys::wait::waitpid(child, None);
            served.context("serving the web process")?;
            bail!("the web process ended ({status:?})");
        }
        nix::unistd::ForkResult::Child => {
            drop(root_end);
            drop_privileges()?;
            // Follow the privileged parent: without it nothing here can be done. Asked
            // after the switch of user, which clears this setting (prctl(2)); a parent
            // that ended in between is caught by the check after it.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .context("asking to end with the privileged parent")?;
            if nix::unistd::getppid() != parent {
                bail!("the privileged parent ended before the web process started");
            }
            let app = App::new(&opts.node, Box::new(Remote::new(web_end)))
                .with_control(opts.control.clone());
            run_web(Arc::new(app), tls_config, https, http, &opts)
        }
    }
}

fn run_web(
    app: Arc<App>,
    tls_config: rustls::ServerConfig,
    https: std::net::TcpListener,
    http: std::net::TcpListener,
    opts: &Options,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ip, https_port) = (opts.ip, opts.https_port);
    rt.block_on(async move {
        let https = TcpListener::from_std(https).context("serving the HTTPS socket")?;
        let http = TcpListener::from_std(http).context("serving the HTTP socket")?;
        let router = web::router(app);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
        eprintln!(
            "tandem-web: serving https://{ip}:{https_port}/ for {}",
            opts.node
        );
        let target = if https_port == 443 {
            format!("https://{ip}/")
        } else {
            format!("https://{ip}:{https_port}/")
        };
        tokio::spawn(redirect(http, target));
        loop {
            let (tcp, peer) = match https.accept().await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("tandem-web: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let svc = router.clone().layer(Extension(Peer(peer.ip())));
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(t)) => t,
                    _ => return,
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc))
                    .await;
            });
        }
    })
}

async fn redirect(listener: TcpListener, target: String) {
    use axum::response::Redirect;
    let router = axum::Router::new().fallback(move || {
        let t = target.clone();
        async move { Redirect::permanent(&t) }
    });
    let _ = axum::serve(listener, router).await;
}
