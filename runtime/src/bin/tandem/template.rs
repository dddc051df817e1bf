//! `tandem template add|list|delete`: the OS templates of the data area, through
//! clusterd on the active node.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tandem_api::{Client, Refusal, Reply, Request, TemplateView};

/// `tandem template …`.
#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Add the root filesystem tarball FILE (on this node: .tar, .tar.gz, .tar.xz or
    /// .tar.zst), or fetch it from the http:// or https:// URL FILE, as an OS
    /// template; the whole file is checked before anything is written. On the
    /// active node.
    Add {
        /// The tarball, or its URL.
        file: String,
        /// The template's name (default: FILE's name without its .tar… suffix).
        #[arg(long)]
        name: Option<String>,
    },
    /// The OS templates: name, size, time, the VEs that use them.
    List {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete an OS template that no VE uses.
    Delete {
        /// The template.
        name: String,
    },
}

fn expect(reply: Reply) -> anyhow::Result<Reply> {
    match reply {
        Reply::Refused(Refusal::NoDataArea) => bail!(
            "the data area is on the other node: run this there (tandem status shows which node is active); nothing was changed"
        ),
        Reply::Refused(r) => bail!("clusterd refused: {r}"),
        other => Ok(other),
    }
}

fn line(t: &TemplateView) -> String {
    let used = if t.used_by.is_empty() {
        "-".to_owned()
    } else {
        t.used_by
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let (size, date) = if t.built_in {
        ("built in".to_owned(), "-".to_owned())
    } else {
        (
            super::human(t.bytes),
            t.modified.map_or_else(
                || "?".to_owned(),
                |s| tandem_notify::UnixSecs(s).to_string(),
            ),
        )
    };
    format!("{:<32} {:>10}  {:<23}  {used}", t.name, size, date)
}

/// Runs `cmd` against clusterd's socket `control`.
///
/// # Errors
/// clusterd refused or cannot be reached.
pub fn run(cmd: &TemplateCmd, control: &Path) -> anyhow::Result<()> {
    let mut client = Client::connect(control)?;
    match cmd {
        TemplateCmd::List { json } => {
            let Reply::Templates(list) = expect(client.call(&Request::VeTemplates)?)? else {
                bail!("clusterd sent no list of templates");
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!("{:<32} {:>10}  {:<23}  USED BY VE", "NAME", "SIZE", "DATE");
            for t in &list {
                println!("{}", line(t));
            }
        }
        TemplateCmd::Add { file, name }
            if file.starts_with("http://") || file.starts_with("https://") =>
        {
            if std::io::stderr().is_terminal() {
                eprintln!("fetching {file}, then checking it (the whole file is read)");
            }
            client.wait_forever()?;
            let Reply::TemplateAdded(t) = expect(client.call(&Request::TemplateFetch {
                url: file.clone(),
                name: name.clone(),
            })?)?
            else {
                bail!("clusterd did not say what it added");
            };
            println!(
                "template {} added from {file}: {} ({})",
                t.name,
                t.file.as_deref().unwrap_or("?"),
                super::human(t.bytes)
            );
        }
        TemplateCmd::Add { file, name } => {
            let path =
                std::fs::canonicalize(file).with_context(|| format!("{file}: no such file"))?;
            if std::io::stderr().is_terminal() {
                eprintln!("checking {} (the whole file is read)", path.display());
            }
            // The check reads the whole file: as long as that takes.
            client.wait_forever()?;
            let Reply::TemplateAdded(t) = expect(client.call(&Request::TemplateAdd {
                file: path.display().to_string(),
                name: name.clone(),
            })?)?
            else {
                bail!("clusterd did not say what it added");
            };
            println!(
                "template {} added: {} ({})",
                t.name,
                t.file.as_deref().unwrap_or("?"),
                super::human(t.bytes)
            );
        }
        TemplateCmd::Delete { name } => {
            expect(client.call(&Request::TemplateDelete { name: name.clone() })?)?;
            println!("template {name} deleted");
        }
    }
    Ok(())
}
