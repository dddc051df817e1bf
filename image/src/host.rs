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
}

/// Everything `build` runs on the build host.
pub const TOOLS: &[Tool] = &[
    Tool {
        program: "apt-get",
        package: "apt",
    },
    Tool {
        program: "dpkg-deb",
        package: "dpkg",
    },
    Tool {
        program: "depmod",
        package: "kmod",
    },
    Tool {
        program: "grub-mkimage",
        package: "grub-common",
    },
    Tool {
        program: "grub-mkrescue",
        package: "grub-common",
    },
    Tool {
        program: "xorriso",
        package: "xorriso",
    },
    Tool {
        program: "mformat",
        package: "mtools",
    },
    Tool {
        program: "mksquashfs",
        package: "squashfs-tools",
    },
    Tool {
        program: "zstd",
        package: "zstd",
    },
    Tool {
        program: "gzip",
        package: "gzip",
    },
    Tool {
        program: "mkfs.fat",
        package: "dosfstools",
    },
    Tool {
        program: "faketime",
        package: "faketime",
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
