//! The `config` subcommands of the `tandem` command line (also built as `tandem-config`).
//!
//! Exit codes: 0 success, 1 refused input (invalid file, refused archive) or failure,
//! 2 usage error. Every refusal names the member (or file) and the field and says what was
//! expected. Embed [`ConfigArgs`] as a clap subcommand and call [`execute`].

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read as _, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand};

use crate::archive::{self, ExportOptions};
use crate::init::{self, InitOptions};
use crate::schema::ApplianceConfig;
use crate::secrets;
use crate::store::{ImportError, ImportMode, ImportOptions, Store, import_archive};
use crate::types::{Hostname, Ipv4, Netmask};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the input was refused, or the operation failed.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: the command line was wrong.
pub const EXIT_USAGE: u8 = 2;

/// `tandem config …`: arguments shared by every subcommand, and the subcommand.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Directory of the node's configuration store.
    #[arg(
        long,
        env = "TANDEM_CONFIG_DIR",
        default_value = "/config",
        global = true
    )]
    pub store: PathBuf,
    /// The subcommand.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a complete, commented configuration for a new cluster, keys generated.
    Init(InitArgs),
    /// Check a configuration file and list every problem.
    Validate {
        /// The TOML file.
        file: PathBuf,
    },
    /// Write the committed configuration as an archive (encrypted unless --no-encrypt).
    Export(ExportArgs),
    /// Check an archive and make it the node's configuration.
    Import(ImportArgs),
    /// Drop the staged configuration (pending.toml), if any.
    Discard,
    /// Print a configuration with every secret redacted.
    Show {
        /// A TOML file; the committed configuration when absent.
        file: Option<PathBuf>,
    },
    /// Read a password from standard input and print its argon2id hash.
    HashPassword {
        /// Print its SHA-512 crypt hash instead (`passwords.root-node1-crypt` /
        /// `root-node2-crypt`, which the nodes' SSH server checks).
        #[arg(long)]
        crypt: bool,
    },
}

/// `config init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the file (standard output when absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Cluster name.
    #[arg(long)]
    pub cluster_name: Option<Hostname>,
    /// Host name of node1.
    #[arg(long)]
    pub node1_hostname: Option<Hostname>,
    /// Host name of node2.
    #[arg(long)]
    pub node2_hostname: Option<Hostname>,
    /// External address of node1.
    #[arg(long)]
    pub node1_address: Option<Ipv4>,
    /// External address of node2.
    #[arg(long)]
    pub node2_address: Option<Ipv4>,
    /// External netmask.
    #[arg(long)]
    pub netmask: Option<Netmask>,
    /// Default gateway.
    #[arg(long)]
    pub gateway: Option<Ipv4>,
    /// A ping node (repeatable).
    #[arg(long = "ping-node")]
    pub ping_nodes: Vec<Ipv4>,
    /// A DNS server (repeatable, at most two).
    #[arg(long = "dns-server")]
    pub dns_servers: Vec<Ipv4>,
}

/// `config export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Directory to write the archive into.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Export this file instead of the committed configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// File holding the passphrase (first line); else TANDEM_PASSPHRASE.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Write an unencrypted archive: passwords hashes and private keys in clear.
    #[arg(long)]
    pub no_encrypt: bool,
}

/// `config import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The archive.
    pub file: PathBuf,
    /// Check everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stage as pending instead of committing.
    #[arg(long, conflicts_with = "dry_run")]
    pub stage: bool,
    /// File holding the passphrase (first line); else TANDEM_PASSPHRASE.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Accept an archive of another cluster than the node's.
    #[arg(long)]
    pub allow_other_cluster: bool,
}

/// The standalone binary's command line.
#[derive(Debug, Parser)]
#[command(
    name = "tandem-config",
    version,
    about = "tandem cluster configuration"
)]
struct Cli {
    #[command(flatten)]
    args: ConfigArgs,
}

/// Parses `args` (program name first) and runs the command, printing to stdout/stderr.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    ExitCode::from(execute(&cli.args, &mut io::stdout(), &mut io::stderr()))
}

/// Outcome of a command: refused input or failure, or a usage error.
enum Failure {
    Refused(anyhow::Error),
    Usage(String),
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Failure {
        Failure::Refused(anyhow::Error::new(e))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Refused(e)
    }
}

/// Runs one subcommand, writing results to `out` and messages to `err`; returns the exit
/// code.
pub fn execute(args: &ConfigArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let r = match &args.command {
        ConfigCommand::Init(a) => cmd_init(a, out, err),
        ConfigCommand::Validate { file } => cmd_validate(file, out, err),
        ConfigCommand::Export(a) => cmd_export(&args.store, a, out, err),
        ConfigCommand::Import(a) => cmd_import(&args.store, a, out, err),
        ConfigCommand::Discard => cmd_discard(&args.store, out),
        ConfigCommand::Show { file } => cmd_show(&args.store, file.as_deref(), out),
        ConfigCommand::HashPassword { crypt } => cmd_hash_password(*crypt, out),
    };
    match r {
        Ok(code) => code,
        Err(Failure::Refused(e)) => {
            let _ = writeln!(err, "error: {e:#}");
            EXIT_REFUSED
        }
        Err(Failure::Usage(m)) => {
            let _ = writeln!(err, "usage error: {m}");
            EXIT_USAGE
        }
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > crate::load::MAX_CONFIG_BYTES as u64 {
        return Err(anyhow!(
            "{}: {} bytes is too large (expected at most {})",
            path.display(),
            meta.len(),
            crate::load::MAX_CONFIG_BYTES
        ));
    }
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn parse_file(path: &Path, err: &mut dyn Write) -> Result<Option<ApplianceConfig>, Failure> {
    let text = read_text(path)?;
    match ApplianceConfig::from_toml(&text) {
        Ok(c) => Ok(Some(c)),
        Err(e) => {
            for p in &e.problems {
                let _ = writeln!(err, "{}: {p}", path.display());
            }
            Ok(None)
        }
    }
}

fn cmd_validate(file: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    match parse_file(file, err)? {
        Some(_) => {
            let _ = writeln!(out, "{}: valid", file.display());
            Ok(EXIT_OK)
        }
        None => Ok(EXIT_REFUSED),
    }
}

fn cmd_discard(store: &Path, out: &mut dyn Write) -> Result<u8, Failure> {
    let store = Store::open(store)?;
    let pending = store.dir().join("pending.toml");
    let what = if store.discard()? {
        "discarded"
    } else {
        "nothing staged"
    };
    let _ = writeln!(out, "{}: {what}", pending.display());
    Ok(EXIT_OK)
}

fn cmd_show(store: &Path, file: Option<&Path>, out: &mut dyn Write) -> Result<u8, Failure> {
    let cfg = match file {
        Some(f) => {
            let text = read_text(f)?;
            ApplianceConfig::from_toml(&text)
                .with_context(|| format!("{} is not valid", f.display()))?
        }
        None => Store::open(store)?.current()?.ok_or_else(|| {
            anyhow!(
                "the node is not configured ({} holds no configuration)",
                store.display()
            )
        })?,
    };
    let _ = out.write_all(cfg.to_toml_redacted().as_bytes());
    Ok(EXIT_OK)
}

fn cmd_hash_password(crypt: bool, out: &mut dyn Write) -> Result<u8, Failure> {
    let mut line = String::new();
    io::stdin()
        .take(4096)
        .read_to_string(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.lines().next().unwrap_or("");
    if crypt {
        let h = secrets::crypt_password(pw).map_err(|e| anyhow!(e))?;
        let _ = writeln!(out, "{h}");
    } else {
        let h = secrets::hash_password(pw).map_err(|e| anyhow!(e))?;
        let _ = writeln!(out, "{h}");
    }
    Ok(EXIT_OK)
}

fn cmd_init(a: &InitArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    let mut o = InitOptions::default();
    if let Some(v) = &a.cluster_name {
        o.cluster_name = v.clone();
    }
    if let Some(v) = &a.node1_hostname {
        o.hostnames[0] = v.clone();
    }
    if let Some(v) = &a.node2_hostname {
        o.hostnames[1] = v.clone();
    }
    if let Some(v) = a.node1_address {
        o.addresses[0] = v;
    }
    if let Some(v) = a.node2_address {
        o.addresses[1] = v;
    }
    if let Some(v) = a.netmask {
        o.netmask = v;
    }
    if let Some(v) = a.gateway {
        o.gateway = v;
        if a.ping_nodes.is_empty() {
            o.ping_nodes = vec![v];
        }
    }
    if !a.ping_nodes.is_empty() {
        o.ping_nodes.clone_from(&a.ping_nodes);
    }
    if !a.dns_servers.is_empty() {
        o.dns_servers.clone_from(&a.dns_servers);
    }
    if let Some(p) = &a.out
        && p.exists()
        && !a.force
    {
        return Err(Failure::Usage(format!(
            "{} exists (use --force to overwrite)",
            p.display()
        )));
    }
    let (cfg, pw) = init::new_cluster(&o)
        .map_err(|e| anyhow!("the options do not make a valid configuration:\n{e}"))?;
    let text = init::render_commented(&cfg);
    match &a.out {
        Some(p) => write_private(p, text.as_bytes())?,
        None => {
            let _ = out.write_all(text.as_bytes());
        }
    }
    let _ = writeln!(
        err,
        "initial passwords (shown once; the file holds only their hashes):\n  admin       {}\n  root node1  {}\n  root node2  {}",
        pw.admin, pw.root_node1, pw.root_node2
    );
    Ok(EXIT_OK)
}

/// Writes a file readable only by its owner, atomically.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn passphrase(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(f) = file {
        let text = read_text(f)?;
        let line = text.lines().next().unwrap_or("").to_owned();
        if line.is_empty() {
            return Err(anyhow!("{}: the passphrase is empty", f.display()));
        }
        return Ok(Some(line));
    }
    Ok(std::env::var("TANDEM_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty()))
}

fn cmd_export(
    store: &Path,
    a: &ExportArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Failure> {
    let cfg = match &a.config {
        Some(f) => match parse_file(f, err)? {
            Some(c) => c,
            None => return Ok(EXIT_REFUSED),
        },
        None => Store::open(store)?.current()?.ok_or_else(|| {
            anyhow!(
                "the node is not configured ({} holds no configuration)",
                store.display()
            )
        })?,
    };
    let pass = if a.no_encrypt {
        let _ = writeln!(
            err,
            "warning: writing an unencrypted archive; it holds password hashes and private keys in clear"
        );
        None
    } else {
        Some(passphrase(a.passphrase_file.as_deref())?.ok_or_else(|| {
            Failure::Usage(
                "a passphrase is needed (--passphrase-file or TANDEM_PASSPHRASE), or --no-encrypt"
                    .to_owned(),
            )
        })?)
    };
    let created_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let bytes = archive::export(
        &cfg,
        &ExportOptions {
            passphrase: pass,
            created_unix,
            work_factor: archive::EXPORT_WORK_FACTOR,
        },
    )
    .context("exporting")?;
    let path = a
        .out
        .join(archive::archive_file_name(created_unix, !a.no_encrypt));
    write_private(&path, &bytes)?;
    let _ = writeln!(out, "{}", path.display());
    Ok(EXIT_OK)
}

fn cmd_import(
    store: &Path,
    a: &ImportArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Failure> {
    let meta = fs::metadata(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if meta.len() > archive::MAX_ARCHIVE_BYTES as u64 {
        let _ = writeln!(
            err,
            "{}: archive: {} bytes is too large (expected at most {})",
            a.file.display(),
            meta.len(),
            archive::MAX_ARCHIVE_BYTES
        );
        return Ok(EXIT_REFUSED);
    }
    let bytes = fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let pass = if archive::is_encrypted(&bytes) {
        passphrase(a.passphrase_file.as_deref())?
    } else {
        None
    };
    let store = Store::open(store)?;
    let mode = if a.dry_run {
        ImportMode::DryRun
    } else if a.stage {
        ImportMode::Stage
    } else {
        ImportMode::Commit
    };
    let started = Instant::now();
    match import_archive(
        &bytes,
        pass.as_deref(),
        &store,
        &ImportOptions {
            mode,
            allow_other_cluster: a.allow_other_cluster,
        },
    ) {
        Ok(r) => {
            for w in &r.warnings {
                let _ = writeln!(err, "warning: {w}");
            }
            let what = match (r.mode, r.replaced_staged) {
                (ImportMode::DryRun, _) => "checked (dry run, nothing written)",
                (ImportMode::Stage, false) => "staged",
                (ImportMode::Stage, true) => "staged, replacing the configuration staged before",
                (ImportMode::Commit, false) => "imported",
                (ImportMode::Commit, true) => "imported (it was staged; no longer)",
            };
            let _ = writeln!(
                out,
                "{}: {what}: cluster {} ({}), schema {}, created {}{} in {} ms",
                a.file.display(),
                r.config.cluster.name,
                r.config.cluster.id,
                r.manifest.schema_version,
                r.manifest.created,
                if r.unchanged {
                    ", same as the current configuration"
                } else {
                    ""
                },
                started.elapsed().as_millis()
            );
            Ok(EXIT_OK)
        }
        Err(ImportError::Refused(e)) => {
            for p in &e.problems {
                let _ = writeln!(err, "{}: {p}", a.file.display());
            }
            Ok(EXIT_REFUSED)
        }
        Err(e @ ImportError::Staged { .. }) => {
            let _ = writeln!(err, "{}: {e}", a.file.display());
            Ok(EXIT_REFUSED)
        }
        Err(e @ ImportError::Store(_)) => Err(Failure::Refused(anyhow::Error::new(e))),
    }
}
