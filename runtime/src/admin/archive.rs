//! The configuration archive on the privileged side: checked once at upload (decrypted,
//! validated, kept in memory for the session that uploaded it), staged from that copy
//! at activation, exported on request.

use std::path::Path;

use tandem_api::{ArchiveSummary, MAX_SECRET, MIN_EXPORT_PASSPHRASE, NodeId, Refusal};
use tandem_config::archive::{self, ArchiveContents};
use tandem_config::store::{ImportError, ImportMode, ImportOptions, Store, import_contents};

use crate::error_chain;

/// An archive that passed the check, kept (decrypted) for activation by the session
/// that uploaded it. Dropped with the session.
#[derive(Debug, Clone)]
pub struct Checked {
    /// What it holds.
    pub contents: ArchiveContents,
    /// What the upload page showed.
    pub summary: ArchiveSummary,
}

fn open(store: &Path) -> Result<Store, Refusal> {
    Store::open(store).map_err(|e| Refusal::Failed(error_chain(&e)))
}

fn import_refusal(e: &ImportError) -> Refusal {
    let ps: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
    if ps.is_empty() {
        Refusal::Failed(error_chain(e))
    } else {
        Refusal::Archive(ps)
    }
}

/// Decrypts and checks `bytes` against the store in `store` (nothing is written).
///
/// # Errors
/// Every problem of the archive, or the store's failure.
pub fn check(store: &Path, bytes: &[u8], passphrase: Option<&str>) -> Result<Checked, Refusal> {
    if passphrase.is_some_and(|p| p.len() > MAX_SECRET) {
        return Err(Refusal::BadSecret);
    }
    let contents = archive::read_archive(bytes, passphrase)
        .map_err(|e| Refusal::Archive(e.problems.iter().map(ToString::to_string).collect()))?;
    let store = open(store)?;
    let opts = ImportOptions {
        mode: ImportMode::DryRun,
        allow_other_cluster: false,
    };
    let mut report =
        import_contents(contents.clone(), &store, &opts).map_err(|e| import_refusal(&e))?;
    // The dry run warns that a staged configuration blocks a committing import. The
    // console stages, which replaces it (a failed activation leaves one behind): that
    // warning would only mislead here.
    let staged = store.dir().join("pending.toml").display().to_string();
    report.warnings.retain(|w| !w.contains(&staged));
    let c = &report.config;
    let summary = ArchiveSummary {
        cluster_name: c.cluster.name.to_string(),
        cluster_id: report.manifest.cluster_id.to_string(),
        created: report.manifest.created.clone(),
        product_version: report.manifest.product_version.clone(),
        encrypted: report.encrypted,
        nodes: NodeId::ALL
            .iter()
            .map(|n| {
                let x = c.network.node(*n);
                (n.to_string(), x.hostname.to_string(), x.address.to_string())
            })
            .collect(),
        warnings: report.warnings,
    };
    Ok(Checked { contents, summary })
}

/// Stages `checked` in the store in `store` (replacing a staged one).
///
/// # Errors
/// The store refused it or failed.
pub fn stage(store: &Path, checked: &Checked) -> Result<(), Refusal> {
    let store = open(store)?;
    let opts = ImportOptions {
        mode: ImportMode::Stage,
        allow_other_cluster: false,
    };
    import_contents(checked.contents.clone(), &store, &opts)
        .map(|_| ())
        .map_err(|e| import_refusal(&e))
}

/// The committed configuration of the store in `store` as an archive encrypted with
/// `passphrase` (scrypt work factor `work_factor`), with its file name.
///
/// # Errors
/// A passphrase too short or too long, no configuration, or the export failed.
pub fn export(
    store: &Path,
    passphrase: &str,
    work_factor: u8,
) -> Result<(String, Vec<u8>), Refusal> {
    if passphrase.chars().count() < MIN_EXPORT_PASSPHRASE || passphrase.len() > MAX_SECRET {
        return Err(Refusal::BadSecret);
    }
    let cfg = super::current(store)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let bytes = archive::export(
        &cfg,
        &archive::ExportOptions {
            passphrase: Some(passphrase.to_owned()),
            created_unix: now,
            work_factor,
        },
    )
    .map_err(|e| Refusal::Failed(error_chain(&e)))?;
    Ok((archive::archive_file_name(now, true), bytes))
}
