//! The RAUC update bundle: the system image as slot content, with the
//! product's compatible string, the image's version and the changelog,
//! signed (verity format: RAUC checks the signature over the whole bundle
//! before it reads a byte of the image, and every block it then reads
//! against the bundle's dm-verity hash tree).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host::run;
use crate::signing::Signing;
use crate::{ImageError, io, write};

/// The compatible string of every node (RAUC refuses bundles for another).
pub const COMPATIBLE: &str = "tandem-sr2500";

/// Host tools of a bundle build, with their Debian packages.
pub const TOOLS: &[(&str, &str)] = &[("rauc", "rauc"), ("mksquashfs", "squashfs-tools")];

/// The bundle's manifest (`manifest.raucm`).
#[must_use]
pub fn manifest(version: &str, description: &str, build: &str) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "[update]\ncompatible={COMPATIBLE}\nversion={}\ndescription={}\nbuild={}\n\n\
         [bundle]\nformat=verity\n\n\
         [image.rootfs]\nfilename=system.img\n",
        one_line(version),
        one_line(description),
        one_line(build)
    )
}

/// Makes `out_dir/tandem-VERSION.raucb` from the built `system_image`, with
/// `changelog` (a file of the repository) inside, signed with `signing`.
/// Returns the bundle's path.
///
/// # Errors
/// A file that cannot be read or written, or `rauc bundle` failing.
pub fn build(
    system_image: &Path,
    version: &str,
    build_stamp: &str,
    changelog: &Path,
    signing: &Signing,
    out_dir: &Path,
) -> Result<PathBuf, ImageError> {
    let dir = out_dir.join("work/bundle");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let text = fs::read_to_string(changelog).map_err(io(changelog))?;
    let description = format!("tandem {version}");
    write(
        &dir.join("manifest.raucm"),
        manifest(version, &description, build_stamp).as_bytes(),
    )?;
    write(&dir.join("CHANGELOG"), text.as_bytes())?;
    let img = dir.join("system.img");
    if fs::hard_link(system_image, &img).is_err() {
        fs::copy(system_image, &img).map_err(io(system_image))?;
    }
    // One bundle per build directory: the one of this build.
    for e in fs::read_dir(out_dir).map_err(io(out_dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("tandem-") && name.ends_with(".raucb") {
            fs::remove_file(e.path()).map_err(io(&e.path()))?;
        }
    }
    let bundle = out_dir.join(format!("tandem-{version}.raucb"));
    run(Command::new("rauc")
        .arg(format!("--cert={}", signing.cert.display()))
        .arg(format!("--key={}", signing.key.display()))
        .arg(format!("--keyring={}", signing.keyring.display()))
        .arg("bundle")
        .arg(&dir)
        .arg(&bundle))?;
    Ok(bundle)
}

/// The update server's list of bundles, `index.json` beside them: nodes read it to
/// learn that a newer version exists (the bundle itself is still checked against
/// the key the node trusts before anything is written).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Index {
    /// The system the bundles are for.
    pub compatible: String,
    /// The bundles.
    pub bundles: Vec<Indexed>,
}

/// One bundle of an [`Index`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Indexed {
    /// Its version.
    pub version: String,
    /// Its file name beside the list.
    pub file: String,
    /// SHA-256 of the file, hexadecimal.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// What changed (the changelog's first section).
    #[serde(default)]
    pub changes: String,
}

/// The first section of a changelog in Markdown: the lines after the first `## `
/// heading up to the next one.
#[must_use]
pub fn first_section(changelog: &str) -> String {
    changelog
        .lines()
        .skip_while(|l| !l.starts_with("## "))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Writes `index.json` beside `bundle` listing it (version `version`, the first
/// section of `changelog` as its changes); returns the list's path. To offer
/// several versions from one server, merge their lists' `bundles`.
///
/// # Errors
/// The bundle cannot be read or the list written.
pub fn write_index(bundle: &Path, version: &str, changelog: &str) -> Result<PathBuf, ImageError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut f = fs::File::open(bundle).map_err(io(bundle))?;
    let size = std::io::copy(&mut f, &mut h).map_err(io(bundle))?;
    let sha256: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let index = Index {
        compatible: COMPATIBLE.to_owned(),
        bundles: vec![Indexed {
            version: version.to_owned(),
            file: bundle
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256,
            size,
            changes: first_section(changelog),
        }],
    };
    let dir = bundle.parent().unwrap_or(Path::new("."));
    let path = dir.join("index.json");
    let text = serde_json::to_string_pretty(&index).unwrap_or_default();
    write(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_lists_the_bundle_with_its_checksum_and_first_changelog_section() {
        let dir = std::env::temp_dir().join(format!("tandem-index-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let bundle = dir.join("tandem-0.2.0.raucb");
        fs::write(&bundle, b"abc").unwrap();
        let path = write_index(
            &bundle,
            "0.2.0",
            "# Changes\n\nintro\n\n## 0.2.0\n\n- new\n\n## 0.1.0\n\n- old\n",
        )
        .unwrap();
        let index: Index = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(index.compatible, COMPATIBLE);
        let b = &index.bundles[0];
        assert_eq!(
            (b.version.as_str(), b.file.as_str(), b.size),
            ("0.2.0", "tandem-0.2.0.raucb", 3)
        );
        assert_eq!(
            b.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(b.changes, "- new");
    }

    #[test]
    fn manifest_names_compatible_version_and_the_verity_format() {
        let m = manifest("0.1.0+abc.v2", "tandem 0.1.0+abc.v2", "20250101000000");
        assert!(m.starts_with("[update]\ncompatible=tandem-sr2500\nversion=0.1.0+abc.v2\n"));
        assert!(m.contains("\n[bundle]\nformat=verity\n"));
        assert!(m.ends_with("[image.rootfs]\nfilename=system.img\n"));
        // A value cannot start a new key.
        assert!(manifest("1\ncompatible=other", "d", "b").contains("version=1 compatible=other\n"));
    }
}
