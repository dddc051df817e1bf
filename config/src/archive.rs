//! The configuration archive: one file that carries the whole cluster configuration
//! between nodes (`tkcluster_2500_YYYYMMDD_HHMMSS.tar`, `.tar.age` when encrypted).
//!
//! Layout: a ustar archive with exactly these regular files, in this order:
//! `manifest.toml` (format and schema version, product version, cluster id, creation time,
//! size and SHA-256 of every other member), `config.toml` (everything but the secrets),
//! `secrets/passwords.toml` (the `[passwords]` table) and `secrets/keys.toml` (the `[keys]`
//! table). By default the tar is encrypted and authenticated with a passphrase using the age
//! format (scrypt recipient); `--no-encrypt` writes the bare tar.
//!
//! Reading is strict and never touches the file system: the archive is parsed from memory,
//! every member is checked (name, type, size, checksum) and the configuration is validated.
//! All problems found are returned together, each naming its member and field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::load::{self, ConfigError};
use crate::schema::{ApplianceConfig, SCHEMA_VERSION};
use crate::types::{ClusterId, encode_hex};

/// Version of the archive layout.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest member.
pub const MANIFEST: &str = "manifest.toml";
/// The non-secret configuration member.
pub const CONFIG: &str = "config.toml";
/// The password hashes.
pub const PASSWORDS: &str = "secrets/passwords.toml";
/// The keys and certificates.
pub const KEYS: &str = "secrets/keys.toml";
/// Every member, in archive order.
pub const MEMBERS: [&str; 4] = [MANIFEST, CONFIG, PASSWORDS, KEYS];
/// Largest accepted member.
pub const MAX_MEMBER_BYTES: u64 = 256 * 1024;
/// Largest accepted tar (after decryption).
pub const MAX_TAR_BYTES: u64 = 2 * 1024 * 1024;
/// Largest accepted archive file as uploaded (encryption adds little).
pub const MAX_ARCHIVE_BYTES: usize = 3 * 1024 * 1024;
/// scrypt work factor (log2 N) used for export: about 256 MiB and a second of work, fixed
/// rather than calibrated so that a slow node can still open what a fast one wrote.
pub const EXPORT_WORK_FACTOR: u8 = 18;
/// Largest scrypt work factor accepted on import: the factory's own ([`EXPORT_WORK_FACTOR`],
/// 256 MiB). An archive may not ask the node for more memory and time than an archive
/// this product writes needs: every step up doubles both, and the console's upload is
/// reachable from the network. Fuzzing builds accept far less so that inputs that reach
/// the key derivation stay fast (the bound itself is what is tested there).
pub const MAX_WORK_FACTOR: u8 = if cfg!(fuzzing) { 4 } else { EXPORT_WORK_FACTOR };

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The product string written into the manifest and the archive name.
pub const PRODUCT: &str = "tandem";
/// Name prefix kept from the original appliance so operators recognise the file.
const NAME_PREFIX: &str = "tkcluster_2500";

/// Which table of the configuration each secret member holds.
const SECRET_MEMBERS: [(&str, &str); 2] = [(PASSWORDS, "passwords"), (KEYS, "keys")];

/// Why an archive was refused, for callers that map refusals to responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// Not a well-formed archive (bad tar, bad TOML, missing member).
    Malformed,
    /// A member that must never be unpacked: a path outside the archive, a link, a device,
    /// a FIFO, a duplicate or unexpected name.
    Unsafe,
    /// Over a size limit.
    TooLarge,
    /// A checksum does not match the manifest, or the encrypted data was tampered with.
    Integrity,
    /// The passphrase is missing or wrong.
    Passphrase,
    /// An archive format or schema version this software does not read.
    Version,
    /// The configuration inside is not valid.
    Invalid,
    /// The archive belongs to another cluster than the node.
    OtherCluster,
}

/// One problem of an archive: the member and field it concerns and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveProblem {
    /// Classification.
    pub kind: ProblemKind,
    /// Member name, or `""` for the archive as a whole.
    pub member: String,
    /// Dotted field path inside the member, or `""`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ArchiveProblem {
    pub(crate) fn new(
        kind: ProblemKind,
        member: &str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        ArchiveProblem {
            kind,
            member: member.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ArchiveProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let member = if self.member.is_empty() {
            "archive"
        } else {
            &self.member
        };
        if self.field.is_empty() {
            write!(f, "{member}: {}", self.message)
        } else {
            write!(f, "{member}: {}: {}", self.field, self.message)
        }
    }
}

/// An archive that was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveError {
    /// The problems, never empty.
    pub problems: Vec<ArchiveProblem>,
}

impl ArchiveError {
    fn one(kind: ProblemKind, member: &str, field: &str, message: impl Into<String>) -> Self {
        ArchiveError {
            problems: vec![ArchiveProblem::new(kind, member, field, message)],
        }
    }

    /// Whether any problem is of this kind.
    #[must_use]
    pub fn has(&self, kind: ProblemKind) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            p.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ArchiveError {}

/// Size and digest of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MemberDigest {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// The archive's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// Schema version of the configuration inside.
    pub schema_version: u32,
    /// Product and version that wrote the archive.
    pub product_version: String,
    /// The cluster the configuration belongs to.
    pub cluster_id: ClusterId,
    /// Creation time, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: String,
    /// Every other member.
    pub members: BTreeMap<String, MemberDigest>,
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Passphrase; `None` writes an unencrypted archive (which exposes every secret).
    pub passphrase: Option<String>,
    /// Creation time, seconds since the Unix epoch (UTC).
    pub created_unix: u64,
    /// scrypt work factor; [`EXPORT_WORK_FACTOR`] unless a test needs speed.
    pub work_factor: u8,
}

/// Problems writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The configuration does not pass validation; nothing invalid is ever exported.
    #[error("the configuration is not valid")]
    Invalid(#[source] ConfigError),
    /// The passphrase is empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The work factor is outside what import accepts.
    #[error("work factor {0} is out of range (expected 1 to {MAX_WORK_FACTOR})")]
    WorkFactor(u8),
    /// Writing the tar or the encryption stream failed (in memory, so only on exhaustion).
    #[error("writing the archive")]
    Write(#[source] std::io::Error),
}

/// The archive file name for a creation time: `tkcluster_2500_20070510_174309.tar`
/// (`.tar.age` when encrypted).
#[must_use]
pub fn archive_file_name(created_unix: u64, encrypted: bool) -> String {
    let (y, mo, d, h, mi, s) = civil(created_unix);
    let ext = if encrypted { "tar.age" } else { "tar" };
    format!("{NAME_PREFIX}_{y:04}{mo:02}{d:02}_{h:02}{mi:02}{s:02}.{ext}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
#[must_use]
pub fn rfc3339(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Unix seconds → (year, month, day, hour, minute, second), UTC. Times beyond the
/// calendar's range (year 9999) show as its end.
fn civil(unix: u64) -> (i32, u8, u8, u8, u8, u8) {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
        .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC));
    (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn sha256_hex(data: &[u8]) -> String {
    encode_hex(&Sha256::digest(data))
}

/// The members' contents for a configuration (manifest excluded).
fn member_texts(cfg: &ApplianceConfig) -> Vec<(&'static str, String)> {
    let mut t = cfg.to_table();
    let mut out = Vec::new();
    let mut secrets = Vec::new();
    for (member, key) in SECRET_MEMBERS {
        let table = match t.remove(key) {
            Some(toml::Value::Table(tab)) => tab,
            _ => toml::Table::new(),
        };
        secrets.push((member, table.to_string()));
    }
    out.push((CONFIG, t.to_string()));
    out.extend(secrets);
    out
}

/// Writes the archive for a configuration; the configuration must be valid.
///
/// # Errors
/// See [`ExportError`].
pub fn export(cfg: &ApplianceConfig, opts: &ExportOptions) -> Result<Vec<u8>, ExportError> {
    cfg.validate()
        .map_err(|problems| ExportError::Invalid(ConfigError { problems }))?;
    let members = member_texts(cfg);
    let manifest = Manifest {
        format: FORMAT_VERSION,
        schema_version: SCHEMA_VERSION,
        product_version: format!("{PRODUCT} {}", env!("CARGO_PKG_VERSION")),
        cluster_id: cfg.cluster.id,
        created: rfc3339(opts.created_unix),
        members: members
            .iter()
            .map(|(name, text)| {
                (
                    (*name).to_owned(),
                    MemberDigest {
                        size: text.len() as u64,
                        sha256: sha256_hex(text.as_bytes()),
                    },
                )
            })
            .collect(),
    };
    let manifest_text = match toml::to_string(&manifest) {
        Ok(t) => t,
        Err(e) => unreachable!("manifest does not serialise: {e}"),
    };
    let mut b = tar::Builder::new(Vec::new());
    for (name, text) in
        std::iter::once((MANIFEST, &manifest_text)).chain(members.iter().map(|(n, t)| (*n, t)))
    {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).map_err(ExportError::Write)?;
        h.set_size(text.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(opts.created_unix);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, text.as_bytes()).map_err(ExportError::Write)?;
    }
    let tar = b.into_inner().map_err(ExportError::Write)?;
    let Some(pass) = &opts.passphrase else {
        return Ok(tar);
    };
    if pass.is_empty() {
        return Err(ExportError::EmptyPassphrase);
    }
    if opts.work_factor == 0 || opts.work_factor > MAX_WORK_FACTOR {
        return Err(ExportError::WorkFactor(opts.work_factor));
    }
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(pass.clone()));
    recipient.set_work_factor(opts.work_factor);
    let enc = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .map_err(|e| ExportError::Write(std::io::Error::other(e.to_string())))?;
    let mut out = Vec::with_capacity(tar.len() + 512);
    let mut w = enc.wrap_output(&mut out).map_err(ExportError::Write)?;
    std::io::Write::write_all(&mut w, &tar).map_err(ExportError::Write)?;
    w.finish().map_err(ExportError::Write)?;
    Ok(out)
}

/// Reads an upload of unknown length (an HTTP body, a file) without ever buffering more than
/// [`MAX_ARCHIVE_BYTES`] + 1 bytes; pass the result to [`read_archive`] or
/// [`crate::import_archive`].
///
/// # Errors
/// When the upload is too large or reading fails.
pub fn read_upload(r: impl std::io::Read) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    r.take(MAX_ARCHIVE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ArchiveError::one(
                ProblemKind::Malformed,
                "",
                "",
                format!("could not be read completely ({e})"),
            )
        })?;
    if out.len() > MAX_ARCHIVE_BYTES {
        return Err(ArchiveError::one(
            ProblemKind::TooLarge,
            "",
            "",
            format!("is larger than {MAX_ARCHIVE_BYTES} bytes"),
        ));
    }
    Ok(out)
}

/// Whether the bytes are an age-encrypted file.
#[must_use]
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC)
}

/// A checked archive: its manifest and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveContents {
    /// The manifest.
    pub manifest: Manifest,
    /// The configuration, validated.
    pub config: ApplianceConfig,
    /// Whether the archive was encrypted.
    pub encrypted: bool,
}

/// Decrypts (when needed) and checks an archive held in memory.
///
/// # Errors
/// Every problem found; see [`ProblemKind`].
pub fn read_archive(
    bytes: &[u8],
    passphrase: Option<&str>,
) -> Result<ArchiveContents, ArchiveError> {
    if bytes.len() > MAX_ARCHIVE_BYTES {
        return Err(ArchiveError::one(
            ProblemKind::TooLarge,
            "",
            "",
            format!(
                "{} bytes is too large (expected at most {MAX_ARCHIVE_BYTES})",
                bytes.len()
            ),
        ));
    }
    let encrypted = is_encrypted(bytes);
    let plain;
    let tar: &[u8] = if encrypted {
        let Some(pass) = passphrase.filter(|p| !p.is_empty()) else {
            return Err(ArchiveError::one(
                ProblemKind::Passphrase,
                "",
                "",
                "is encrypted (expected a passphrase)",
            ));
        };
        plain = decrypt(bytes, pass)?;
        &plain
    } else {
        bytes
    };
    let members = walk_tar(tar)?;
    let (manifest, config) = check_members(&members)?;
    Ok(ArchiveContents {
        manifest,
        config,
        encrypted,
    })
}

fn decrypt(bytes: &[u8], pass: &str) -> Result<Vec<u8>, ArchiveError> {
    let damaged = |what: &str| {
        ArchiveError::one(
            ProblemKind::Integrity,
            "",
            "",
            format!("encrypted data is damaged or was altered ({what})"),
        )
    };
    let d = age::Decryptor::new_buffered(bytes).map_err(|e| match e {
        age::DecryptError::UnknownFormat => ArchiveError::one(
            ProblemKind::Version,
            "",
            "",
            "is encrypted with an unknown age format version",
        ),
        _ => damaged("invalid header"),
    })?;
    if !d.is_scrypt() {
        return Err(ArchiveError::one(
            ProblemKind::Passphrase,
            "",
            "",
            "is not encrypted with a passphrase (expected an age scrypt recipient)",
        ));
    }
    let mut id = age::scrypt::Identity::new(SecretString::from(pass.to_owned()));
    id.set_max_work_factor(MAX_WORK_FACTOR);
    let r = d
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::ExcessiveWork { required, .. } => ArchiveError::one(
                ProblemKind::TooLarge,
                "",
                "",
                format!(
                    "passphrase work factor {required} is too high (expected at most {MAX_WORK_FACTOR})"
                ),
            ),
            age::DecryptError::DecryptionFailed
            | age::DecryptError::NoMatchingKeys
            | age::DecryptError::KeyDecryptionFailed => ArchiveError::one(
                ProblemKind::Passphrase,
                "",
                "",
                "wrong passphrase",
            ),
            age::DecryptError::InvalidMac => damaged("header authentication failed"),
            _ => damaged("invalid header"),
        })?;
    let mut plain = Vec::new();
    r.take(MAX_TAR_BYTES + 1)
        .read_to_end(&mut plain)
        .map_err(|_| damaged("payload authentication failed or data truncated"))?;
    if plain.len() as u64 > MAX_TAR_BYTES {
        return Err(ArchiveError::one(
            ProblemKind::TooLarge,
            "",
            "",
            format!("decrypted content is larger than {MAX_TAR_BYTES} bytes"),
        ));
    }
    Ok(plain)
}

/// Walks the tar, checking every header; returns the members' contents.
fn walk_tar(tar: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ArchiveError> {
    if tar.len() as u64 > MAX_TAR_BYTES {
        return Err(ArchiveError::one(
            ProblemKind::TooLarge,
            "",
            "",
            format!(
                "{} bytes of tar is too large (expected at most {MAX_TAR_BYTES})",
                tar.len()
            ),
        ));
    }
    if tar.len() < 1024 || !tar.len().is_multiple_of(512) {
        return Err(ArchiveError::one(
            ProblemKind::Malformed,
            "",
            "",
            format!(
                "is not a tar archive or is truncated ({} bytes, expected whole 512-byte blocks)",
                tar.len()
            ),
        ));
    }
    let mut problems = Vec::new();
    let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|_| ArchiveError::one(ProblemKind::Malformed, "", "", "is not a tar archive"))?;
    let mut end = 0u64;
    for (index, entry) in entries.enumerate() {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(ArchiveProblem::new(
                    ProblemKind::Malformed,
                    "",
                    "",
                    format!(
                        "is not a valid tar archive after member {index} ({})",
                        tar_error_text(&e)
                    ),
                ));
                return Err(ArchiveError { problems });
            }
        };
        let size = entry.size();
        let data_start = entry.raw_file_position();
        end = data_start.saturating_add(size.div_ceil(512).saturating_mul(512));
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let shown = if name.is_empty() {
            format!("member {index}")
        } else {
            name.clone()
        };
        if end > tar.len() as u64 {
            // The header claims more data than there is: nothing after it can be trusted.
            let (kind, msg) = if size > MAX_MEMBER_BYTES {
                (
                    ProblemKind::TooLarge,
                    format!("{size} bytes is too large (expected at most {MAX_MEMBER_BYTES})"),
                )
            } else {
                (
                    ProblemKind::Malformed,
                    format!(
                        "truncated (header says {size} bytes, {} present)",
                        (tar.len() as u64).saturating_sub(data_start)
                    ),
                )
            };
            problems.push(ArchiveProblem::new(kind, &shown, "", msg));
            return Err(ArchiveError { problems });
        }
        let mut refuse =
            |kind, msg: String| problems.push(ArchiveProblem::new(kind, &shown, "", msg));
        if std::str::from_utf8(&raw).is_err() || raw.iter().any(|b| b.is_ascii_control()) {
            refuse(
                ProblemKind::Unsafe,
                "name is not printable UTF-8".to_owned(),
            );
            continue;
        }
        if name.starts_with('/') {
            refuse(
                ProblemKind::Unsafe,
                "absolute path (expected a name relative to the archive)".to_owned(),
            );
            continue;
        }
        if name.split('/').any(|c| c == "..") {
            refuse(
                ProblemKind::Unsafe,
                "path contains \"..\" (expected a name inside the archive)".to_owned(),
            );
            continue;
        }
        let ty = entry.header().entry_type();
        let what = match ty {
            tar::EntryType::Regular | tar::EntryType::Continuous => None,
            tar::EntryType::Symlink => Some("is a symbolic link"),
            tar::EntryType::Link => Some("is a hard link"),
            tar::EntryType::Char => Some("is a character device"),
            tar::EntryType::Block => Some("is a block device"),
            tar::EntryType::Fifo => Some("is a FIFO"),
            tar::EntryType::Directory => Some("is a directory"),
            tar::EntryType::GNUSparse => Some("is a sparse file"),
            tar::EntryType::XGlobalHeader => Some("is a PAX global header"),
            _ => Some("is a special entry"),
        };
        if let Some(what) = what {
            refuse(
                ProblemKind::Unsafe,
                format!("{what} (expected a regular file)"),
            );
            continue;
        }
        if !MEMBERS.contains(&name.as_str()) {
            refuse(
                ProblemKind::Unsafe,
                format!("unexpected member (expected only {})", MEMBERS.join(", ")),
            );
            continue;
        }
        if found.contains_key(&name) {
            refuse(
                ProblemKind::Unsafe,
                "appears twice (expected each member once)".to_owned(),
            );
            continue;
        }
        if size > MAX_MEMBER_BYTES {
            refuse(
                ProblemKind::TooLarge,
                format!("{size} bytes is too large (expected at most {MAX_MEMBER_BYTES})"),
            );
            continue;
        }
        let mut data = Vec::new();
        let read = (&mut entry)
            .take(MAX_MEMBER_BYTES + 1)
            .read_to_end(&mut data);
        if read.is_err() || data.len() as u64 != size {
            refuse(
                ProblemKind::Malformed,
                format!(
                    "truncated (header says {size} bytes, {} present)",
                    data.len()
                ),
            );
            return Err(ArchiveError { problems });
        }
        found.insert(name, data);
    }
    // A well-formed tar ends with two zero blocks after the last member; anything else
    // means it was cut short or has trailing data.
    let tail = usize::try_from(end).ok().and_then(|e| tar.get(e..));
    match tail {
        Some(t) if t.len() >= 1024 && t.iter().all(|b| *b == 0) => {}
        Some(t) if t.iter().all(|b| *b == 0) => problems.push(ArchiveProblem::new(
            ProblemKind::Malformed,
            "",
            "",
            "truncated (end-of-archive marker missing)",
        )),
        _ => problems.push(ArchiveProblem::new(
            ProblemKind::Malformed,
            "",
            "",
            "has data after the end-of-archive marker or a damaged member header",
        )),
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(ArchiveError { problems })
    }
}

/// What went wrong reading a tar header, in words of our own: the header's bytes are never
/// echoed, since a header field that does not parse may be a member's contents (a size
/// that disagrees with its data puts data where the next header should be).
fn tar_error_text(e: &std::io::Error) -> String {
    let t = e.to_string();
    if e.kind() == std::io::ErrorKind::UnexpectedEof
        || t.contains("EOF")
        || t.contains("entire block")
    {
        return "truncated".to_owned();
    }
    if let Some(field) = t
        .split(" when getting ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .filter(|f| f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        return format!("damaged header: its {field} field is not a number");
    }
    if t.contains("checksum") {
        "header checksum mismatch".to_owned()
    } else if t.contains("numeric field") {
        "damaged header: a number field is not a number".to_owned()
    } else if t.contains("sparse") {
        "damaged or misplaced sparse-file header".to_owned()
    } else if t.contains("pax") || t.contains("extension") {
        "damaged extended (PAX or GNU) header".to_owned()
    } else {
        "unreadable header".to_owned()
    }
}

fn toml_member(name: &str, data: &[u8], problems: &mut Vec<ArchiveProblem>) -> Option<toml::Table> {
    let Ok(text) = std::str::from_utf8(data) else {
        problems.push(ArchiveProblem::new(
            ProblemKind::Malformed,
            name,
            "",
            "is not UTF-8 text",
        ));
        return None;
    };
    match load::parse_table(text) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.extend(
                e.problems
                    .into_iter()
                    .map(|p| ArchiveProblem::new(ProblemKind::Malformed, name, &p.path, p.message)),
            );
            None
        }
    }
}

/// The member a configuration path lives in.
fn member_of(path: &str) -> &'static str {
    let top = path.split(['.', '[']).next().unwrap_or("");
    SECRET_MEMBERS
        .iter()
        .find(|(_, key)| *key == top)
        .map_or(CONFIG, |(m, _)| m)
}

fn check_members(
    members: &BTreeMap<String, Vec<u8>>,
) -> Result<(Manifest, ApplianceConfig), ArchiveError> {
    let mut problems = Vec::new();
    for m in MEMBERS {
        if !members.contains_key(m) {
            problems.push(ArchiveProblem::new(
                ProblemKind::Malformed,
                m,
                "",
                "missing",
            ));
        }
    }
    let Some(manifest_data) = members.get(MANIFEST) else {
        return Err(ArchiveError { problems });
    };
    let manifest = toml_member(MANIFEST, manifest_data, &mut problems).and_then(|t| {
        match serde_path_to_error::deserialize::<_, Manifest>(toml::Value::Table(t)) {
            Ok(m) => Some(m),
            Err(e) => {
                let p = load::describe(&e);
                problems.push(ArchiveProblem::new(
                    ProblemKind::Malformed,
                    MANIFEST,
                    &p.path,
                    p.message,
                ));
                None
            }
        }
    });
    let Some(manifest) = manifest else {
        return Err(ArchiveError { problems });
    };
    if manifest.format != FORMAT_VERSION {
        problems.push(ArchiveProblem::new(
            ProblemKind::Version,
            MANIFEST,
            "format",
            format!(
                "{} is not a supported archive format (expected {FORMAT_VERSION})",
                manifest.format
            ),
        ));
    }
    let oldest = load::MIGRATIONS.first().map_or(SCHEMA_VERSION, |m| m.from);
    if manifest.schema_version < oldest || manifest.schema_version > SCHEMA_VERSION {
        problems.push(ArchiveProblem::new(
            ProblemKind::Version,
            MANIFEST,
            "schema-version",
            format!(
                "{} is not a supported schema version (expected {})",
                manifest.schema_version,
                if oldest == SCHEMA_VERSION {
                    SCHEMA_VERSION.to_string()
                } else {
                    format!("{oldest} to {SCHEMA_VERSION}")
                }
            ),
        ));
    }
    if !is_rfc3339_utc(&manifest.created) {
        problems.push(ArchiveProblem::new(
            ProblemKind::Malformed,
            MANIFEST,
            "created",
            format!(
                "{:?} is not a UTC time (expected YYYY-MM-DDTHH:MM:SSZ)",
                manifest.created
            ),
        ));
    }
    if manifest.product_version.len() > 128
        || manifest.product_version.chars().any(char::is_control)
    {
        problems.push(ArchiveProblem::new(
            ProblemKind::Malformed,
            MANIFEST,
            "product-version",
            "is not a single line of at most 128 characters",
        ));
    }
    let listed: BTreeSet<&str> = manifest.members.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = MEMBERS[1..].iter().copied().collect();
    for extra in listed.difference(&expected) {
        problems.push(ArchiveProblem::new(
            ProblemKind::Malformed,
            MANIFEST,
            &format!("members.{extra}"),
            "lists a member that the format does not have",
        ));
    }
    for m in expected.difference(&listed) {
        problems.push(ArchiveProblem::new(
            ProblemKind::Malformed,
            MANIFEST,
            &format!("members.{m}"),
            "missing",
        ));
    }
    for (name, digest) in &manifest.members {
        let Some(data) = members.get(name.as_str()) else {
            continue;
        };
        let actual = sha256_hex(data);
        if data.len() as u64 != digest.size || actual != digest.sha256.to_ascii_lowercase() {
            problems.push(ArchiveProblem::new(
                ProblemKind::Integrity,
                name,
                "",
                format!(
                    "checksum mismatch (manifest says {} bytes sha256 {}, content is {} bytes sha256 {actual})",
                    digest.size,
                    digest.sha256,
                    data.len()
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ArchiveError { problems });
    }

    // The members are intact; now the configuration itself.
    let config = members
        .get(CONFIG)
        .and_then(|d| toml_member(CONFIG, d, &mut problems));
    let mut secrets = Vec::new();
    for (member, key) in SECRET_MEMBERS {
        if let Some(t) = members
            .get(member)
            .and_then(|d| toml_member(member, d, &mut problems))
        {
            secrets.push((member, key, t));
        }
    }
    let Some(mut doc) = config else {
        return Err(ArchiveError { problems });
    };
    if !problems.is_empty() {
        return Err(ArchiveError { problems });
    }
    for (member, key, table) in secrets {
        if doc.contains_key(key) {
            problems.push(ArchiveProblem::new(
                ProblemKind::Malformed,
                CONFIG,
                key,
                format!("belongs in {member} (expected no [{key}] table here)"),
            ));
        }
        doc.insert(key.to_owned(), toml::Value::Table(table));
    }
    match doc.get("schema-version") {
        Some(toml::Value::Integer(v)) if *v == i64::from(manifest.schema_version) => {}
        other => problems.push(ArchiveProblem::new(
            ProblemKind::Version,
            CONFIG,
            "schema-version",
            format!(
                "{} does not match the manifest's schema version {}",
                other.map_or_else(|| "missing".to_owned(), ToString::to_string),
                manifest.schema_version
            ),
        )),
    }
    if !problems.is_empty() {
        return Err(ArchiveError { problems });
    }
    let to_problems = |e: ConfigError, kind| {
        e.problems
            .into_iter()
            .map(|p| ArchiveProblem::new(kind, member_of(&p.path), &p.path, p.message))
            .collect::<Vec<_>>()
    };
    if let Err(e) = load::migrate(&mut doc) {
        return Err(ArchiveError {
            problems: to_problems(e, ProblemKind::Version),
        });
    }
    let config = load::from_table(doc).map_err(|e| ArchiveError {
        problems: to_problems(e, ProblemKind::Invalid),
    })?;
    if let Err(v) = config.validate() {
        return Err(ArchiveError {
            problems: to_problems(ConfigError { problems: v }, ProblemKind::Invalid),
        });
    }
    if config.cluster.id != manifest.cluster_id {
        return Err(ArchiveError::one(
            ProblemKind::Integrity,
            CONFIG,
            "cluster.id",
            format!(
                "{} does not match the manifest's cluster id {}",
                config.cluster.id, manifest.cluster_id
            ),
        ));
    }
    Ok((manifest, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_bounded() {
        let big = std::io::repeat(0).take(10 * MAX_ARCHIVE_BYTES as u64);
        assert_eq!(
            read_upload(big).unwrap_err().to_string(),
            "archive: is larger than 3145728 bytes"
        );
        assert_eq!(read_upload(&b"abc"[..]).unwrap(), b"abc");
    }

    #[test]
    fn names_and_times() {
        // 2007-05-10 17:43:09 UTC, the manual's example archive.
        assert_eq!(
            archive_file_name(1_178_818_989, false),
            "tkcluster_2500_20070510_174309.tar"
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert!(is_rfc3339_utc(&rfc3339(4_102_444_800)));
        assert!(!is_rfc3339_utc("2007-05-10 17:43:09"));
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn archives_asking_for_more_work_than_the_factory_are_refused() {
        let cfg = crate::init::new_cluster(&crate::init::InitOptions::default())
            .unwrap()
            .0;
        let opts = |work_factor| ExportOptions {
            passphrase: Some("passphrase".into()),
            created_unix: 0,
            work_factor,
        };
        assert!(matches!(
            export(&cfg, &opts(EXPORT_WORK_FACTOR + 1)),
            Err(ExportError::WorkFactor(_))
        ));
        // The work factor is in the archive's header, read before any work is done:
        // one above the factory's is refused without a key derivation.
        let bytes = export(&cfg, &opts(10)).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let line_end = text.find(" 10\n").expect("the scrypt stanza");
        let mut hostile = bytes.clone();
        hostile.splice(line_end..line_end + 3, b" 19".iter().copied());
        let e = read_archive(&hostile, Some("passphrase")).unwrap_err();
        assert!(e.to_string().contains("work factor 19 is too high"), "{e}");
        assert!(read_archive(&bytes, Some("passphrase")).is_ok());
    }
}
