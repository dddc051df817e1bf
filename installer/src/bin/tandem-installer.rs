//! Installs this machine as node1 or node2 (run by the node's init when the
//! kernel command line says `tandem.install=`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tandem_installer::Cmdline;
use tandem_installer::apply::{self, Consoles, Options, Progress};

fn main() -> ExitCode {
    let cmdline = Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let consoles: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let mut out = Consoles::open(&consoles);
    let Some(node) = cmdline
        .install
        .clone()
        .filter(|n| n == "node1" || n == "node2")
    else {
        out.line("tandem.install= must be node1 or node2; nothing was written.");
        return ExitCode::from(2);
    };
    let opts = Options {
        node: node.clone(),
        disk: cmdline.disk,
        medium_mount: PathBuf::from("/medium"),
        medium_wait: Duration::from_secs(20),
        disk_wait: Duration::from_secs(30),
        version: std::fs::read_to_string("/etc/tandem-version")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    out.line("");
    out.line(&format!("Installing this machine as {node}."));
    let start = Instant::now();
    let (target, medium) = match apply::discover(&opts, &mut out) {
        Ok(v) => v,
        Err(e) => {
            out.line("");
            out.line(&format!("INSTALLATION STOPPED: {e:#}."));
            out.line(
                "Nothing was written to any disk. Fix the cause and boot the install medium again.",
            );
            return ExitCode::from(1);
        }
    };
    out.line(&format!("Target: {target}. All data on it is erased."));
    match apply::install(&opts, &target, &medium, &mut out) {
        Ok(()) => {
            out.line(&format!(
                "Installation of {node} complete in {:.0} s.",
                start.elapsed().as_secs_f64()
            ));
            let optical = medium
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("sr"));
            if optical {
                match apply::eject(&medium) {
                    Ok(()) => out.line("The DVD was ejected: take it out of the drive."),
                    Err(e) => out.line(&format!(
                        "The DVD could not be ejected ({e}); take it out of the drive."
                    )),
                }
            }
            out.line(
                "Restarting from the disk. Should the install medium start again, it starts the installed node by itself after 10 s.",
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            out.line(&format!("INSTALLATION FAILED: {e:#}."));
            out.line(
                "The disk was left unbootable on purpose. Boot the install medium again to retry.",
            );
            ExitCode::from(1)
        }
    }
}
