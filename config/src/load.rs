//! Reading and writing the configuration file: TOML text → version check → migrations →
//! typed tree → cross-field validation. Every problem carries the dotted path of its field.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::schema::{ApplianceConfig, SCHEMA_VERSION};
use crate::validate::ValidationError;

/// Upper bound for a configuration file; real ones are a few KiB.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// A configuration that could not be read or is not valid: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, never empty.
    pub problems: Vec<ValidationError>,
}

impl ConfigError {
    fn one(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![ValidationError::new(path, message)],
        }
    }
}

impl fmt::Display for ConfigError {
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

impl std::error::Error for ConfigError {}

/// One schema migration: rewrites a document of version `from` into version `from + 1`.
///
/// Migrations work on the untyped TOML table so that old documents never need old types.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version this migration reads.
    pub from: u32,
    /// The rewrite.
    pub forward: fn(&mut toml::Table) -> Result<(), ValidationError>,
}

/// Every migration, in order; a change of the schema adds one entry here and bumps
/// [`SCHEMA_VERSION`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    forward: add_revision,
}];

/// 1 → 2: `cluster.revision` counts the changes made on the running cluster; a
/// configuration from before it has had none since it was written, so it starts at 1.
fn add_revision(doc: &mut toml::Table) -> Result<(), ValidationError> {
    match doc.get_mut("cluster") {
        Some(toml::Value::Table(cluster)) => {
            cluster.entry("revision").or_insert(toml::Value::Integer(1));
            Ok(())
        }
        // Validation names the missing or malformed section.
        _ => Ok(()),
    }
}

/// Brings a document of any supported version to [`SCHEMA_VERSION`].
///
/// # Errors
/// When the version is missing, not a number, newer than this software or older than the
/// oldest migration.
pub fn migrate(doc: &mut toml::Table) -> Result<(), ConfigError> {
    migrate_with(doc, MIGRATIONS, SCHEMA_VERSION)
}

/// [`migrate`] with an explicit migration table and target version (tests exercise the
/// machinery with tables of their own).
///
/// # Errors
/// As [`migrate`].
pub fn migrate_with(
    doc: &mut toml::Table,
    migrations: &[Migration],
    target: u32,
) -> Result<(), ConfigError> {
    let oldest = migrations.first().map_or(target, |m| m.from);
    let expected = if oldest == target {
        format!("expected {target}")
    } else {
        format!("expected {oldest} to {target}")
    };
    let mut version = match doc.get("schema-version") {
        None => {
            return Err(ConfigError::one(
                "schema-version",
                format!("missing ({expected})"),
            ));
        }
        Some(toml::Value::Integer(v)) => u32::try_from(*v)
            .ok()
            .filter(|v| *v >= oldest)
            .ok_or_else(|| {
                ConfigError::one(
                    "schema-version",
                    format!("{v} is not a supported schema version ({expected})"),
                )
            })?,
        Some(other) => {
            return Err(ConfigError::one(
                "schema-version",
                format!("{} is not a number ({expected})", other.type_str()),
            ));
        }
    };
    if version > target {
        return Err(ConfigError::one(
            "schema-version",
            format!("{version} is newer than this software supports ({expected})"),
        ));
    }
    while version < target {
        let m = migrations
            .iter()
            .find(|m| m.from == version)
            .ok_or_else(|| {
                ConfigError::one(
                    "schema-version",
                    format!("no migration from version {version}"),
                )
            })?;
        (m.forward)(doc).map_err(|e| ConfigError { problems: vec![e] })?;
        version += 1;
        doc.insert(
            "schema-version".to_owned(),
            toml::Value::Integer(i64::from(version)),
        );
    }
    Ok(())
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses TOML text into an untyped table (syntax only).
///
/// # Errors
/// A syntax error, with line and column.
pub fn parse_table(text: &str) -> Result<toml::Table, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::one(
            "",
            format!(
                "{} bytes is too large (expected at most {MAX_CONFIG_BYTES})",
                text.len()
            ),
        ));
    }
    text.parse::<toml::Table>().map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                ConfigError::one("", format!("line {line}, column {col}: {msg}"))
            }
            None => ConfigError::one("", msg),
        }
    })
}

/// Turns a migrated table into the typed tree (field checks only, no cross-field rules).
///
/// Every field is checked, not just the first bad one: a value that does not fit the
/// schema, an unknown field or a missing required field is recorded with its path, taken
/// out of the document, and the rest is read again, until the document reads or nothing
/// more can be learnt from it.
///
/// # Errors
/// Every field that does not fit the schema, each with its path, in document order.
pub fn from_table(doc: toml::Table) -> Result<ApplianceConfig, ConfigError> {
    let mut c = Collector::new(doc);
    let mut rounds = 0;
    let mut last = None;
    loop {
        let attempt = serde_path_to_error::deserialize::<_, ApplianceConfig>(toml::Value::Table(
            c.doc.clone(),
        ));
        let e = match attempt {
            Ok(cfg) if c.problems.is_empty() => return Ok(cfg),
            Ok(_) => break,
            Err(e) => e,
        };
        rounds += 1;
        let more = c.absorb(&e);
        last = Some(e);
        if !more {
            break;
        }
        if c.problems.len() >= MAX_PROBLEMS || rounds >= MAX_ROUNDS {
            c.problems.push(ValidationError::new(
                "",
                format!(
                    "too many problems (the first {} are listed)",
                    c.problems.len()
                ),
            ));
            break;
        }
    }
    if c.problems.is_empty() {
        // Every error is recorded before anything is taken out, so this is not expected;
        // a refusal must still say why.
        c.problems.extend(last.as_ref().map(describe));
    }
    Err(ConfigError {
        problems: c.problems,
    })
}

/// At most this many field problems are listed for one document.
const MAX_PROBLEMS: usize = 100;
/// Each round takes at least one value out of the document; this bounds the work on a
/// hostile file all the same.
const MAX_ROUNDS: usize = 4 * MAX_PROBLEMS;

/// The required fields of every table (those without a default that are not optional), in
/// declaration order, keyed by the table's dotted path.
///
/// serde names only the first missing required field of a table; this list lets the
/// others be named in the same pass. It restates what `schema.rs` declares, so the test
/// `required_fields_match_the_schema` derives the same list from the schema (by removing
/// each field of a complete document in turn) and fails when the two differ.
pub(crate) const REQUIRED: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "schema-version",
            "cluster",
            "network",
            "heartbeat",
            "replication",
            "passwords",
            "keys",
            "updates",
        ],
    ),
    ("cluster", &["id", "name", "revision"]),
    (
        "network",
        &[
            "netmask",
            "gateway",
            "ping-nodes",
            "dns-servers",
            "node1",
            "node2",
        ],
    ),
    (
        "network.node1",
        &["hostname", "address", "internal-address"],
    ),
    (
        "network.node2",
        &["hostname", "address", "internal-address"],
    ),
    ("heartbeat", &["auth-key"]),
    ("replication", &["shared-secret"]),
    ("ves.ve101", &["hostname", "address"]),
    ("passwords", &["admin", "root-node1", "root-node2"]),
    ("passwords.ve-manager", &["user", "password"]),
    (
        "keys",
        &[
            "ssh-host-node1",
            "ssh-host-node2",
            "cluster-ssh",
            "support-ssh",
            "tls-certificate",
            "tls-key",
        ],
    ),
    ("updates", &["url", "user", "password"]),
    ("support", &["host", "user"]),
    ("fencing", &["node1", "node2"]),
    ("fencing.node1", &["address", "user", "password"]),
    ("fencing.node2", &["address", "user", "password"]),
    (
        "backup",
        &[
            "target-host",
            "target-user",
            "target-path",
            "target-host-key",
        ],
    ),
];

/// One step into the document: a key of a table or an index of an array.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

/// `a.b[2].c`, the form serde_path_to_error and the messages use.
fn path_text(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Collects the field problems of a document by reading it again and again.
///
/// serde stops at the first error. Each error is recorded and its cause taken out of the
/// document: a bad value or an unknown field is removed; a table that lacks a required
/// field is removed from its parent once all its own fields have been read (serde checks
/// for missing fields only after reading every present one, so nothing in it is left
/// unchecked). A field that was removed here is not reported again as missing. When the
/// top-level table itself lacks a field, every present field has been read and the
/// collection ends. Removing an array element shifts the later ones, so the original
/// indices are kept to report every path as it is in the file.
struct Collector {
    /// The document, shrinking as problems are taken out.
    doc: toml::Table,
    problems: Vec<ValidationError>,
    /// Original paths of the values taken out.
    removed: HashSet<Vec<Step>>,
    /// For each array an element was taken out of (by original path): the original
    /// indices of the elements left, in order.
    indices: HashMap<Vec<Step>, Vec<usize>>,
}

impl Collector {
    fn new(doc: toml::Table) -> Collector {
        Collector {
            doc,
            problems: Vec::new(),
            removed: HashSet::new(),
            indices: HashMap::new(),
        }
    }

    /// Records one error and takes its cause out of the document; `false` when nothing
    /// more can be learnt.
    fn absorb(&mut self, e: &serde_path_to_error::Error<toml::de::Error>) -> bool {
        let mut current = Vec::new();
        for seg in e.path() {
            match seg {
                serde_path_to_error::Segment::Map { key } => current.push(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => current.push(Step::Index(*index)),
                // Inside the value of an enum field (`protocol = { C = 1 }`): the field is
                // the problem, and the field is what is taken out.
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => break,
            }
        }
        let msg = e.inner().message().trim();
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            // `current` is the table that lacks it; every field present in it was read.
            let table = self.original(&current);
            self.report_missing(&current, &table, field);
            if current.is_empty() {
                return false;
            }
            return self.take_out(&current, table);
        }
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            if current.last() != Some(&Step::Key(field.to_owned())) {
                current.push(Step::Key(field.to_owned()));
            }
            let orig = self.original(&current);
            self.problems.push(ValidationError::new(
                path_text(&orig),
                "unknown field (not part of the schema)",
            ));
            return self.take_out(&current, orig);
        }
        let orig = self.original(&current);
        self.problems
            .push(ValidationError::new(path_text(&orig), msg));
        !current.is_empty() && self.take_out(&current, orig)
    }

    /// The path in the file of a path in the current document.
    fn original(&self, current: &[Step]) -> Vec<Step> {
        let mut out = Vec::with_capacity(current.len());
        for s in current {
            let step = match s {
                Step::Index(i) => Step::Index(
                    self.indices
                        .get(&out)
                        .and_then(|left: &Vec<usize>| left.get(*i))
                        .copied()
                        .unwrap_or(*i),
                ),
                Step::Key(_) => s.clone(),
            };
            out.push(step);
        }
        out
    }

    /// Records `table.field` and every other required field absent from the table, unless
    /// it was taken out here (its problem is listed already).
    fn report_missing(&mut self, current: &[Step], table: &[Step], field: &str) {
        let present = |c: &Collector, name: &str| {
            let now = if current.is_empty() {
                Some(&c.doc)
            } else {
                get(&c.doc, current).and_then(toml::Value::as_table)
            };
            now.is_some_and(|t| t.contains_key(name))
        };
        let text = path_text(table);
        let required = REQUIRED
            .iter()
            .find(|(t, _)| *t == text)
            .map_or(&[][..], |(_, f)| f);
        let mut names = vec![field];
        names.extend(required.iter().copied().filter(|f| *f != field));
        for name in names {
            let mut path = table.to_vec();
            path.push(Step::Key(name.to_owned()));
            if present(self, name) || self.removed.contains(&path) {
                continue;
            }
            let p = ValidationError::new(path_text(&path), "missing");
            if !self.problems.contains(&p) {
                self.problems.push(p);
            }
        }
    }

    /// Removes the value at `current` (original path `orig`); `false` if it is not there.
    fn take_out(&mut self, current: &[Step], orig: Vec<Step>) -> bool {
        let Some((last, parent)) = current.split_last() else {
            return false;
        };
        let parent_orig = &orig[..orig.len() - 1];
        let parent_value = if parent.is_empty() {
            None
        } else {
            match get_mut(&mut self.doc, parent) {
                Some(v) => Some(v),
                None => return false,
            }
        };
        let done = match (last, parent_value) {
            (Step::Key(k), None) => self.doc.remove(k).is_some(),
            (Step::Key(k), Some(toml::Value::Table(t))) => t.remove(k).is_some(),
            (Step::Index(i), Some(toml::Value::Array(a))) if *i < a.len() => {
                let len = a.len();
                a.remove(*i);
                let left = self
                    .indices
                    .entry(parent_orig.to_vec())
                    .or_insert_with(|| (0..len).collect());
                if *i < left.len() {
                    left.remove(*i);
                }
                true
            }
            _ => false,
        };
        if done {
            self.removed.insert(orig);
        }
        done
    }
}

fn get<'a>(doc: &'a toml::Table, path: &[Step]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let Step::Key(k) = first else { return None };
    let mut v = doc.get(k)?;
    for s in rest {
        v = match (s, v) {
            (Step::Key(k), toml::Value::Table(t)) => t.get(k)?,
            (Step::Index(i), toml::Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn get_mut<'a>(doc: &'a mut toml::Table, path: &[Step]) -> Option<&'a mut toml::Value> {
    let (first, rest) = path.split_first()?;
    let Step::Key(k) = first else { return None };
    let mut v = doc.get_mut(k)?;
    for s in rest {
        v = match (s, v) {
            (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k)?,
            (Step::Index(i), toml::Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// A deserialisation error as a path and a message that names the field itself.
pub(crate) fn describe(e: &serde_path_to_error::Error<toml::de::Error>) -> ValidationError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let msg = e.inner().message().trim().to_owned();
    let join = |field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else if path.ends_with(field) {
            path.clone()
        } else {
            format!("{path}.{field}")
        }
    };
    // serde reports a missing field at its parent; name the field itself.
    if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return ValidationError::new(join(field), "missing");
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return ValidationError::new(join(field), "unknown field (not part of the schema)");
    }
    ValidationError::new(path, msg)
}

impl ApplianceConfig {
    /// Parses, migrates and checks the fields of a TOML document, without the cross-field
    /// rules of [`ApplianceConfig::validate`].
    ///
    /// # Errors
    /// A syntax or schema-version error, or every field that does not fit the schema, each
    /// with its path.
    pub fn parse_unvalidated(text: &str) -> Result<ApplianceConfig, ConfigError> {
        let mut doc = parse_table(text)?;
        migrate(&mut doc)?;
        from_table(doc)
    }

    /// Parses a TOML document and runs every validation rule.
    ///
    /// # Errors
    /// Every problem found, each with its path: the field problems when there are any
    /// (the cross-field rules need every field), else every cross-field problem.
    pub fn from_toml(text: &str) -> Result<ApplianceConfig, ConfigError> {
        let cfg = ApplianceConfig::parse_unvalidated(text)?;
        cfg.validate()
            .map_err(|problems| ConfigError { problems })?;
        Ok(cfg)
    }

    /// The untyped form of the tree.
    #[must_use]
    pub fn to_table(&self) -> toml::Table {
        match toml::Table::try_from(self) {
            Ok(t) => t,
            // Every field serialises to a TOML value by construction.
            Err(e) => unreachable!("configuration does not serialise: {e}"),
        }
    }

    /// The normalised TOML text of this configuration (secrets included).
    #[must_use]
    pub fn to_toml(&self) -> String {
        self.to_table().to_string()
    }

    /// The TOML text with every secret replaced by `"[redacted]"` (for display).
    #[must_use]
    pub fn to_toml_redacted(&self) -> String {
        let mut t = self.to_table();
        redact(&mut t);
        t.to_string()
    }
}

/// Paths (table, key) of the values that are secret; `*` is any key of that table.
pub const SECRET_PATHS: &[(&str, &str)] = &[
    ("heartbeat", "auth-key"),
    ("replication", "shared-secret"),
    ("passwords", "*"),
    ("keys", "*"),
    ("updates", "password"),
    ("fencing.node1", "password"),
    ("fencing.node2", "password"),
];

fn redact(t: &mut toml::Table) {
    for (table, key) in SECRET_PATHS {
        let mut cur = Some(&mut *t);
        for part in table.split('.') {
            cur = cur
                .and_then(|c| c.get_mut(part))
                .and_then(toml::Value::as_table_mut);
        }
        let Some(tab) = cur else { continue };
        for (k, v) in tab.iter_mut() {
            if *key == "*" || k == key {
                *v = toml::Value::String("[redacted]".to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up version 1 → 2 change: `heartbeat.interval` renamed to `keepalive`.
    fn rename_interval(doc: &mut toml::Table) -> Result<(), ValidationError> {
        let hb = doc
            .get_mut("heartbeat")
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| ValidationError::new("heartbeat", "missing"))?;
        if let Some(v) = hb.remove("interval") {
            hb.insert("keepalive".to_owned(), v);
        }
        Ok(())
    }

    const TABLE: &[Migration] = &[Migration {
        from: 1,
        forward: rename_interval,
    }];

    #[test]
    fn migrations_run_in_order_and_bump_the_version() {
        let mut doc: toml::Table = "schema-version = 1\n[heartbeat]\ninterval = \"2s\"\n"
            .parse()
            .unwrap();
        migrate_with(&mut doc, TABLE, 2).unwrap();
        assert_eq!(
            doc.to_string(),
            "schema-version = 2\n\n[heartbeat]\nkeepalive = \"2s\"\n"
        );
    }

    /// Every (table, key) of a document, depth first, in document order.
    fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<(String, String)>) {
        for (k, v) in t {
            out.push((prefix.to_owned(), k.clone()));
            if let toml::Value::Table(sub) = v {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                keys(sub, &p, out);
            }
        }
    }

    #[test]
    fn required_fields_match_the_schema() {
        // full.toml has every optional section; removing one field at a time shows which
        // fields the schema requires.
        let full: toml::Table = include_str!("../tests/cases/full.toml").parse().unwrap();
        let mut all = Vec::new();
        keys(&full, "", &mut all);
        let mut derived: Vec<(String, String)> = Vec::new();
        for (table, key) in &all {
            let mut doc = full.clone();
            let t = if table.is_empty() {
                &mut doc
            } else {
                table.split('.').fold(&mut doc, |t, part| {
                    t.get_mut(part).and_then(toml::Value::as_table_mut).unwrap()
                })
            };
            t.remove(key);
            let path = if table.is_empty() {
                key.clone()
            } else {
                format!("{table}.{key}")
            };
            let missing = migrate(&mut doc)
                .and_then(|()| from_table(doc))
                .err()
                .is_some_and(|e| {
                    e.problems
                        .iter()
                        .any(|p| p.path == path && p.message.starts_with("missing"))
                });
            if missing {
                derived.push((table.clone(), key.clone()));
            }
        }
        let listed: Vec<(String, String)> = REQUIRED
            .iter()
            .flat_map(|(t, fields)| fields.iter().map(|f| ((*t).to_owned(), (*f).to_owned())))
            .collect();
        let sorted = |mut v: Vec<(String, String)>| {
            v.sort();
            v
        };
        assert_eq!(sorted(derived), sorted(listed));
    }

    #[test]
    fn a_schema_1_document_gets_revision_1() {
        let mut doc: toml::Table = include_str!("../tests/cases/full.toml").parse().unwrap();
        doc.insert("schema-version".to_owned(), toml::Value::Integer(1));
        let Some(toml::Value::Table(cluster)) = doc.get_mut("cluster") else {
            panic!("no cluster table");
        };
        cluster.remove("revision");
        let text = toml::to_string(&doc).unwrap();
        let cfg = crate::ApplianceConfig::from_toml(&text).unwrap();
        assert_eq!(cfg.schema_version, crate::schema::SCHEMA_VERSION);
        assert_eq!(cfg.cluster.revision, 1);
        // A revision already there is kept.
        let mut doc: toml::Table = include_str!("../tests/cases/full.toml").parse().unwrap();
        doc.insert("schema-version".to_owned(), toml::Value::Integer(1));
        let Some(toml::Value::Table(cluster)) = doc.get_mut("cluster") else {
            panic!("no cluster table");
        };
        cluster.insert("revision".to_owned(), toml::Value::Integer(7));
        let cfg = crate::ApplianceConfig::from_toml(&toml::to_string(&doc).unwrap()).unwrap();
        assert_eq!(cfg.cluster.revision, 7);
    }

    #[test]
    fn every_missing_field_of_a_table_is_named() {
        let mut doc: toml::Table = include_str!("../tests/cases/full.toml").parse().unwrap();
        doc.insert("keys".to_owned(), toml::Value::Table(toml::Table::new()));
        doc.remove("updates");
        let e = from_table(doc).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keys.ssh-host-node1: missing\nkeys.ssh-host-node2: missing\nkeys.cluster-ssh: missing\n\
             keys.support-ssh: missing\nkeys.tls-certificate: missing\nkeys.tls-key: missing\n\
             updates: missing"
        );
    }

    #[test]
    fn problem_count_is_bounded() {
        let mut text = String::from(include_str!("../tests/cases/minimal.toml"));
        text = text.replace(
            "ping-nodes = [\"10.20.30.1\", \"10.20.30.254\"]",
            &format!("ping-nodes = [{}]", vec!["\"x\""; 500].join(", ")),
        );
        let e = ApplianceConfig::parse_unvalidated(&text).unwrap_err();
        assert_eq!(e.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            e.problems[99].to_string(),
            "network.ping-nodes[99]: \"x\" is not an IPv4 address"
        );
        assert_eq!(
            e.problems[100].to_string(),
            "too many problems (the first 100 are listed)"
        );
    }

    #[test]
    fn versions_outside_the_table_are_refused() {
        let check = |text: &str| {
            let mut doc: toml::Table = text.parse().unwrap();
            migrate_with(&mut doc, TABLE, 2).unwrap_err().to_string()
        };
        assert_eq!(
            check("schema-version = 3"),
            "schema-version: 3 is newer than this software supports (expected 1 to 2)"
        );
        assert_eq!(
            check("schema-version = 0"),
            "schema-version: 0 is not a supported schema version (expected 1 to 2)"
        );
        assert_eq!(
            check("schema-version = \"1\""),
            "schema-version: string is not a number (expected 1 to 2)"
        );
        let mut doc: toml::Table = "schema-version = 1".parse().unwrap();
        assert_eq!(
            migrate_with(&mut doc, TABLE, 2).unwrap_err().to_string(),
            "heartbeat: missing"
        );
    }
}
