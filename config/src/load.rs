//! Reading and writing the configuration file: TOML text → version check → migrations →
//! typed tree → cross-field validation. Every problem carries the dotted path of its field.

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

/// Every migration, in order. Version 1 is the first schema, so the list is empty; a change
/// of the schema adds one entry here and bumps [`SCHEMA_VERSION`].
pub const MIGRATIONS: &[Migration] = &[];

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
/// # Errors
/// The first field that does not fit the schema, with its path.
pub fn from_table(doc: toml::Table) -> Result<ApplianceConfig, ConfigError> {
    serde_path_to_error::deserialize::<_, ApplianceConfig>(toml::Value::Table(doc)).map_err(|e| {
        ConfigError {
            problems: vec![describe(&e)],
        }
    })
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
    /// The problem found, with its path.
    pub fn parse_unvalidated(text: &str) -> Result<ApplianceConfig, ConfigError> {
        let mut doc = parse_table(text)?;
        migrate(&mut doc)?;
        from_table(doc)
    }

    /// Parses a TOML document and runs every validation rule.
    ///
    /// # Errors
    /// Every problem found, each with its path.
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
