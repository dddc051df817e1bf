//! Choosing the target disk (pure): never the install medium, never a
//! read-only or removable device unless named, exactly one candidate.

use std::fmt;

/// A whole block device as the installer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name, e.g. `vda`, `sda`, `nvme0n1`.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The kernel says removable (USB sticks, card readers).
    pub removable: bool,
    /// Read-only.
    pub read_only: bool,
    /// Carries the install medium's volume id.
    pub is_medium: bool,
    /// Model string, for messages.
    pub model: String,
}

impl fmt::Display for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/dev/{} ({:.1} GiB",
            self.name,
            self.bytes as f64 / f64::from(1u32 << 30)
        )?;
        if !self.model.is_empty() {
            write!(f, ", {}", self.model)?;
        }
        write!(f, ")")
    }
}

/// Why no disk was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChooseError {
    /// No disk besides the install medium.
    #[error("no disk to install on: the only disk found is the install medium itself{0}")]
    OnlyMedium(String),
    /// No disk at all.
    #[error(
        "no disk to install on was found; check that the disk is connected and its controller is supported"
    )]
    NoDisk,
    /// More than one candidate. The message says what to type at the
    /// install medium's prompt, where the operator can name the disk.
    #[error(
        "{count} disks could take the installation: {list}; to choose one, boot the install medium again and type `{node} disk={first}` at the install prompt (or another disk's name instead of {first}); unattended installs take tandem.disk={first} on the kernel command line"
    )]
    Ambiguous {
        /// How many.
        count: usize,
        /// The candidates.
        list: String,
        /// The first candidate's name.
        first: String,
        /// The node being installed, for the answer to type.
        node: String,
    },
    /// The named disk does not exist.
    #[error("disk={0} names no disk; disks found: {1}")]
    NotFound(String, String),
    /// The named disk is the install medium.
    #[error(
        "disk={0} is the install medium; the installer never writes to the medium it runs from"
    )]
    NamedMedium(String),
    /// The named disk is read-only.
    #[error("disk={0} is read-only")]
    ReadOnly(String),
}

/// Picks the target disk for `node`; `named` comes from `tandem.disk=` (typed
/// at the install prompt as `node1 disk=sdb`; with or without `/dev/`).
pub fn choose<'a>(
    disks: &'a [Disk],
    named: Option<&str>,
    node: &str,
) -> Result<&'a Disk, ChooseError> {
    let list = |ds: &[&Disk]| {
        ds.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(n) = named {
        let n = n.trim_start_matches("/dev/");
        let all: Vec<&Disk> = disks.iter().collect();
        let d = disks
            .iter()
            .find(|d| d.name == n)
            .ok_or_else(|| ChooseError::NotFound(n.to_owned(), list(&all)))?;
        if d.is_medium {
            return Err(ChooseError::NamedMedium(n.to_owned()));
        }
        if d.read_only {
            return Err(ChooseError::ReadOnly(n.to_owned()));
        }
        return Ok(d);
    }
    let candidates: Vec<&Disk> = disks
        .iter()
        .filter(|d| !d.is_medium && !d.read_only && !d.removable && d.bytes > 0)
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] if disks.iter().any(|d| d.is_medium) => {
            let others: Vec<&Disk> = disks.iter().filter(|d| !d.is_medium).collect();
            let note = if others.is_empty() {
                String::new()
            } else {
                format!(
                    " (also found, but removable or read-only: {})",
                    list(&others)
                )
            };
            Err(ChooseError::OnlyMedium(note))
        }
        [] => Err(ChooseError::NoDisk),
        many => Err(ChooseError::Ambiguous {
            count: many.len(),
            list: list(many),
            first: many[0].name.clone(),
            node: node.to_owned(),
        }),
    }
}

/// Whether a kernel block device name is a disk the installer considers.
pub fn is_disk_name(name: &str) -> bool {
    ["sd", "vd", "hd", "xvd", "nvme", "mmcblk"]
        .iter()
        .any(|p| name.starts_with(p))
        && !name.contains("boot")
        && !name.contains("rpmb")
}

/// What a PCI storage controller is, from its class code (`0x01SSPP`), for
/// messages; `None` for other classes.
#[must_use]
pub fn storage_class(class: u32) -> Option<&'static str> {
    if class >> 16 != 0x01 {
        return None;
    }
    Some(match (class >> 8) & 0xff {
        0x00 => "SCSI controller",
        0x01 => "IDE controller",
        0x04 => "RAID controller",
        0x05 => "ATA controller",
        0x06 => "SATA controller",
        0x07 => "SAS controller",
        0x08 => "NVMe controller",
        _ => "storage controller",
    })
}

/// Whether an ISO 9660 primary volume descriptor (the 2048 bytes at offset
/// 32768) carries `volume_id`.
pub fn is_install_medium(pvd: &[u8], volume_id: &str) -> bool {
    pvd.len() >= 72
        && pvd[0] == 1
        && &pvd[1..6] == b"CD001"
        && std::str::from_utf8(&pvd[40..72]).is_ok_and(|v| v.trim_end() == volume_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, gib: u64) -> Disk {
        Disk {
            name: name.into(),
            bytes: gib << 30,
            removable: false,
            read_only: false,
            is_medium: false,
            model: String::new(),
        }
    }

    #[test]
    fn the_medium_is_never_chosen() {
        let mut stick = disk("sda", 1);
        stick.is_medium = true;
        let disks = vec![stick.clone(), disk("vda", 8)];
        assert_eq!(choose(&disks, None, "node1").unwrap().name, "vda");
        assert_eq!(
            choose(&[stick.clone()], None, "node1")
                .unwrap_err()
                .to_string(),
            "no disk to install on: the only disk found is the install medium itself"
        );
        assert_eq!(
            choose(&disks, Some("/dev/sda"), "node1").unwrap_err(),
            ChooseError::NamedMedium("sda".into())
        );
    }

    #[test]
    fn two_candidates_need_a_name() {
        let disks = vec![disk("vda", 8), disk("vdb", 8)];
        let e = choose(&disks, None, "node2").unwrap_err().to_string();
        assert_eq!(
            e,
            "2 disks could take the installation: /dev/vda (8.0 GiB), /dev/vdb (8.0 GiB); \
             to choose one, boot the install medium again and type `node2 disk=vda` at the \
             install prompt (or another disk's name instead of vda); unattended installs take \
             tandem.disk=vda on the kernel command line"
        );
        assert_eq!(choose(&disks, Some("vdb"), "node1").unwrap().name, "vdb");
        assert_eq!(
            choose(&disks, Some("vdc"), "node1")
                .unwrap_err()
                .to_string(),
            "disk=vdc names no disk; disks found: /dev/vda (8.0 GiB), /dev/vdb (8.0 GiB)"
        );
        assert_eq!(choose(&[], None, "node1").unwrap_err(), ChooseError::NoDisk);
    }

    #[test]
    fn storage_classes() {
        assert_eq!(storage_class(0x010400), Some("RAID controller"));
        assert_eq!(storage_class(0x010802), Some("NVMe controller"));
        assert_eq!(storage_class(0x018000), Some("storage controller"));
        assert_eq!(storage_class(0x020000), None, "a NIC");
    }

    #[test]
    fn medium_signature() {
        let mut pvd = vec![0u8; 2048];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[40..72].copy_from_slice(format!("{:<32}", "TANDEM_INSTALL").as_bytes());
        assert!(is_install_medium(&pvd, "TANDEM_INSTALL"));
        assert!(!is_install_medium(&pvd, "OTHER"));
        assert!(!is_install_medium(&pvd[..10], "TANDEM_INSTALL"));
        assert!(is_disk_name("nvme0n1") && is_disk_name("vda") && !is_disk_name("sr0"));
        assert!(!is_disk_name("loop0") && !is_disk_name("mmcblk0boot0"));
    }
}
