//! Host tools the build drives, and the Debian packages that provide them.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::ImageError;

/// A host tool and the Debian package that installs it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Program name looked up on `PATH`.
    pub program: &'static str,
    /// Debian package providing it.
    pub package: &'static str,
    /// Whether the image bytes depend on its version (it writes or lays out
    /// what ends up in the image), as opposed to fetching or unpacking.
    pub shapes_image: bool,
}

/// Everything `build` runs on the build host.
pub const TOOLS: &[Tool] = &[
    Tool {
        program: "apt-get",
        package: "apt",
        shapes_image: false,
    },
    Tool {
        program: "dpkg-deb",
        package: "dpkg",
        shapes_image: false,
    },
    Tool {
        program: "depmod",
        package: "kmod",
        shapes_image: true,
    },
    Tool {
        program: "grub-mkimage",
        package: "grub-common",
        shapes_image: true,
    },
    Tool {
        program: "grub-mkrescue",
        package: "grub-common",
        shapes_image: true,
    },
    Tool {
        program: "xorriso",
        package: "xorriso",
        shapes_image: true,
    },
    Tool {
        program: "mformat",
        package: "mtools",
        shapes_image: true,
    },
    Tool {
        program: "mksquashfs",
        package: "squashfs-tools",
        shapes_image: true,
    },
    Tool {
        program: "zstd",
        package: "zstd",
        shapes_image: true,
    },
    Tool {
        program: "gzip",
        package: "gzip",
        shapes_image: true,
    },
    Tool {
        program: "mkfs.fat",
        package: "dosfstools",
        shapes_image: true,
    },
    Tool {
        program: "faketime",
        package: "faketime",
        shapes_image: false,
    },
    // Makes the development signing keys when no release key is given.
    Tool {
        program: "openssl",
        package: "openssl",
        shapes_image: false,
    },
];

/// Directories that must exist (GRUB's platform files), with their packages.
pub const PLATFORM_DIRS: &[(&str, &str)] = &[
    ("/usr/lib/grub/i386-pc", "grub-pc-bin"),
    ("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"),
];

/// Looks a program up on `PATH` (and the sbin directories, which a non-root
/// `PATH` often lacks).
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The Debian packages whose tools or files are missing on this host.
pub fn missing_packages() -> Vec<&'static str> {
    let mut missing: Vec<&'static str> = TOOLS
        .iter()
        .filter(|t| find_program(t.program).is_none())
        .map(|t| t.package)
        .chain(
            PLATFORM_DIRS
                .iter()
                .filter(|(d, _)| !Path::new(d).is_dir())
                .map(|(_, p)| *p),
        )
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

/// Runs a command to completion; a failure carries its stderr.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>, ImageError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ImageError::Spawn {
            command: shown.clone(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        return Err(ImageError::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: last,
        });
    }
    Ok(out.stdout)
}

/// True when the build runs as root (and may install packages or refresh
/// apt's index).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// One host package (or tool) and its version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ToolVersion {
    /// Debian package name, or the program's name when dpkg does not know
    /// it.
    pub name: String,
    /// Debian version, or the first line of `--version`, or `unknown`.
    pub version: String,
    /// The image bytes depend on it (see [`Tool::shapes_image`]).
    pub shapes_image: bool,
}

/// Versions of the host tools the build drives, one per Debian package
/// (tools and GRUB's platform files), sorted by name. The image bytes depend
/// on several of them (GRUB's code, xorriso's layout, mksquashfs's and
/// zstd's output), so a build records them: two builds of one commit that
/// differ can be told apart by these lines. A tool outside dpkg's knowledge
/// is listed by the first line of its `--version`; one that says nothing, as
/// `unknown`.
pub fn versions() -> Vec<ToolVersion> {
    let shapes = |package: &str| {
        PLATFORM_DIRS.iter().any(|(_, p)| *p == package)
            || TOOLS.iter().any(|t| t.package == package && t.shapes_image)
    };
    let mut packages: Vec<&str> = TOOLS
        .iter()
        .map(|t| t.package)
        .chain(PLATFORM_DIRS.iter().map(|(_, p)| *p))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    // dpkg-query fails when any package is unknown but still lists the
    // others: read its output whatever the status.
    let known = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package}\t${Version}\n"])
        .args(&packages)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut out: Vec<ToolVersion> = known
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(p, v)| !v.is_empty() && packages.contains(p))
        .map(|(p, v)| ToolVersion {
            name: p.to_owned(),
            version: v.to_owned(),
            shapes_image: shapes(p),
        })
        .collect();
    for t in TOOLS {
        if out.iter().any(|v| v.name == t.package) {
            continue;
        }
        let version = Command::new(t.program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned());
        out.push(ToolVersion {
            name: t.program.to_owned(),
            version,
            shapes_image: t.shapes_image,
        });
    }
    out.sort();
    out.dedup();
    out
}
