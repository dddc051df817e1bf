//! The software bill of materials of the node's system image (SPDX 2.3, JSON):
//! every Debian package of `packages.lock` (name, version, the SHA-256 of the
//! `.deb` the build checked) and the kernel, and every Rust crate compiled into the
//! node's programs (name, version, where it came from, the checksum `Cargo.lock`
//! pins). Procedural macros run only at build time; they are listed too, marked so.
//!
//! Deterministic: the same inputs give the same bytes (sorted, no clock other than
//! the build's `SOURCE_DATE_EPOCH`, a namespace derived from the contents).

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::lock::Lock;

/// A Rust crate of the node's programs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `registry+…`, `git+…`; `None` for the workspace's own crates.
    pub source: Option<String>,
    /// The checksum `Cargo.lock` pins (registry crates).
    pub checksum: Option<String>,
    /// A procedural macro (runs at build time only).
    pub proc_macro: bool,
}

/// The crates named in `cargo tree --prefix none --format {p}` output, with their
/// source and checksum from `cargo_lock` (its text).
///
/// # Errors
/// `Cargo.lock` cannot be read, or a crate of the tree is not in it.
pub fn crates(tree: &str, cargo_lock: &str) -> Result<Vec<Crate>, String> {
    #[derive(serde::Deserialize)]
    struct LockFile {
        package: Vec<LockPackage>,
    }
    #[derive(serde::Deserialize)]
    struct LockPackage {
        name: String,
        version: String,
        source: Option<String>,
        checksum: Option<String>,
    }
    let lock: LockFile =
        toml::from_str(cargo_lock).map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut out = Vec::new();
    for line in tree.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(name), Some(v)) = (words.next(), words.next()) else {
            return Err(format!("unexpected line of cargo tree: {line:?}"));
        };
        let version = v.trim_start_matches('v');
        let p = lock
            .package
            .iter()
            .find(|p| p.name == name && p.version == version)
            .ok_or_else(|| format!("{name} {version} is not in Cargo.lock"))?;
        out.push(Crate {
            name: name.to_owned(),
            version: version.to_owned(),
            source: p.source.clone(),
            checksum: p.checksum.clone(),
            proc_macro: line.contains("(proc-macro)"),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    version_info: String,
    download_location: String,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// An SPDX identifier from free text (letters, digits, `.` and `-` only).
fn id(kind: &str, name: &str, version: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("SPDXRef-{kind}-{}-{}", clean(name), clean(version))
}

fn deb(name: &str, version: &str, sha256: &str, comment: Option<String>) -> Package {
    Package {
        spdx_id: id("deb", name, version),
        name: name.to_owned(),
        version_info: version.to_owned(),
        download_location: "NOASSERTION".to_owned(),
        files_analyzed: false,
        checksums: vec![Checksum {
            algorithm: "SHA256",
            checksum_value: sha256.to_owned(),
        }],
        external_refs: vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: format!("pkg:deb/debian/{name}@{version}?arch=amd64"),
        }],
        comment,
    }
}

fn rust(c: &Crate) -> Package {
    let registry = c
        .source
        .as_deref()
        .is_some_and(|s| s.starts_with("registry+"));
    Package {
        spdx_id: id("crate", &c.name, &c.version),
        name: c.name.clone(),
        version_info: c.version.clone(),
        download_location: match (&c.source, registry) {
            (Some(_), true) => format!(
                "https://crates.io/api/v1/crates/{}/{}/download",
                c.name, c.version
            ),
            (Some(s), false) => s.clone(),
            (None, _) => "NOASSERTION".to_owned(),
        },
        files_analyzed: false,
        checksums: c
            .checksum
            .iter()
            .map(|v| Checksum {
                algorithm: "SHA256",
                checksum_value: v.clone(),
            })
            .collect(),
        external_refs: if registry {
            vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: format!("pkg:cargo/{}@{}", c.name, c.version),
            }]
        } else {
            Vec::new()
        },
        comment: match (c.proc_macro, c.source.is_none()) {
            (true, _) => Some("procedural macro: runs at build time only".to_owned()),
            (false, true) => Some("this workspace's own crate".to_owned()),
            (false, false) => None,
        },
    }
}

/// The SPDX document of system image `version` built at `epoch` (seconds) from
/// `lock` and `crates`.
#[must_use]
pub fn spdx(version: &str, epoch: u64, lock: &Lock, crates: &[Crate]) -> String {
    let root = "SPDXRef-system-image".to_owned();
    let mut packages = vec![Package {
        spdx_id: root.clone(),
        name: "tandem-system-image".to_owned(),
        version_info: version.to_owned(),
        download_location: "NOASSERTION".to_owned(),
        files_analyzed: false,
        checksums: Vec::new(),
        external_refs: Vec::new(),
        comment: Some("the node's system image (kernel and initramfs)".to_owned()),
    }];
    let k = &lock.kernel;
    packages.push(deb(
        &k.package,
        &k.version,
        &k.sha256,
        Some(format!("kernel {}", k.release)),
    ));
    let mut debs: Vec<_> = lock.packages.iter().collect();
    debs.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    packages.extend(
        debs.iter()
            .map(|p| deb(&p.name, &p.version, &p.sha256, None)),
    );
    packages.extend(crates.iter().map(rust));
    let relationships = packages[1..]
        .iter()
        .map(|p| Relationship {
            spdx_element_id: root.clone(),
            relationship_type: "CONTAINS",
            related_spdx_element: p.spdx_id.clone(),
        })
        .collect();
    let mut doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: format!("tandem-system-image-{version}"),
        document_namespace: String::new(),
        creation_info: CreationInfo {
            created: crate::fmt_utc_iso(epoch),
            creators: vec!["Tool: tandem-image".to_owned()],
        },
        packages,
        relationships,
    };
    // The namespace must be unique per document: derived from what it lists.
    let body = serde_json::to_vec(&doc.packages).expect("serialisable");
    let digest = crate::hex(&Sha256::digest(&body));
    doc.document_namespace = format!("https://spdx.invalid/tandem/{version}/{}", &digest[..16]);
    let mut s = serde_json::to_string_pretty(&doc).expect("serialisable");
    s.push('\n');
    s
}

/// Writes `sbom.spdx.json` next to the system image of `inputs`, for the crates
/// of `tree` (`cargo tree` of the node's programs); returns its path.
///
/// # Errors
/// The package lock or `Cargo.lock` cannot be read, a crate is not in it, or the
/// file cannot be written.
pub fn write(inputs: &crate::Inputs, tree: &str) -> Result<std::path::PathBuf, crate::ImageError> {
    let lock = Lock::load(&inputs.workspace.join("image/packages.lock"))?;
    let cargo_lock_path = inputs.workspace.join("Cargo.lock");
    let cargo_lock =
        std::fs::read_to_string(&cargo_lock_path).map_err(crate::io(&cargo_lock_path))?;
    let crates = crates(tree, &cargo_lock).map_err(crate::ImageError::Missing)?;
    let out = inputs.out_dir.join("sbom.spdx.json");
    let text = spdx(&inputs.version, inputs.source_date_epoch, &lock, &crates);
    std::fs::write(&out, text).map_err(crate::io(&out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "adler2"
version = "2.0.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "3201"

[[package]]
name = "tandem-core"
version = "0.1.0"

[[package]]
name = "serde_derive"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abcd"
"#;

    #[test]
    fn the_tree_is_read_with_sources_and_checksums() {
        let tree = "adler2 v2.0.1\ntandem-core v0.1.0 (/tandem/runtime/core)\nadler2 v2.0.1 (*)\nserde_derive v1.0.0 (proc-macro)\n\n";
        let c = crates(tree, LOCK).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].name, "adler2");
        assert_eq!(c[0].checksum.as_deref(), Some("3201"));
        assert!(c[1].proc_macro);
        assert_eq!(c[2].source, None);
        let e = crates("nothere v1.0.0\n", LOCK).unwrap_err();
        assert!(e.contains("nothere 1.0.0 is not in Cargo.lock"), "{e}");
    }

    #[test]
    fn the_document_lists_everything_and_is_deterministic() {
        let lock: Lock = toml::from_str(
            r#"
[kernel]
package = "linux-image-6.1.0-56-amd64"
version = "6.1.192-2"
sha256 = "aa"
release = "6.1.0-56-amd64"
modules = []

[[package]]
name = "crun"
version = "1.8.1-1+deb12u1"
sha256 = "bb"
include = ["usr/bin/crun"]
"#,
        )
        .unwrap();
        let c = crates("adler2 v2.0.1\n", LOCK).unwrap();
        let a = spdx("0.1.0+abc", 1_700_000_000, &lock, &c);
        assert_eq!(a, spdx("0.1.0+abc", 1_700_000_000, &lock, &c));
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        let names: Vec<&str> = v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "tandem-system-image",
                "linux-image-6.1.0-56-amd64",
                "crun",
                "adler2"
            ]
        );
        assert!(a.contains("pkg:deb/debian/crun@1.8.1-1+deb12u1?arch=amd64"));
        assert!(a.contains("pkg:cargo/adler2@2.0.1"));
        assert_eq!(v["relationships"].as_array().unwrap().len(), 3);
        assert_eq!(v["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    }
}
