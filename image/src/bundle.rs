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

#[cfg(test)]
mod tests {
    use super::*;

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
