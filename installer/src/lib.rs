//! The installer: runs from the install medium and puts the appliance on a
//! node's local disk.
//!
//! Pure parts — disk choice ([`disks`]), partition layout and table bytes
//! ([`gpt`]), GRUB's BIOS boot sector set-up ([`grub`]) — are separate from
//! the IO in [`apply`], which finds the medium (never a target), checks
//! every file it copies against the medium's SHA256SUMS, writes the disk,
//! reads the system slot back, and wipes the partition table again if
//! anything fails half-way.
//!
//! It also writes the boot selection (`grub/grubenv` on the EFI system
//! partition): slot A good, slot B empty, in RAUC's convention, which updates
//! use from then on.
//!
//! Not done here: disks with sectors other than 512 bytes (4Kn).

pub mod apply;
pub mod disks;
pub mod gpt;
pub mod grub;

/// Kernel command line options for the installer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// `tandem.install=node1|node2`.
    pub install: Option<String>,
    /// `tandem.disk=vda`.
    pub disk: Option<String>,
}

impl Cmdline {
    /// Parses `/proc/cmdline`.
    pub fn parse(text: &str) -> Self {
        let mut c = Self::default();
        for word in text.split_whitespace() {
            if let Some(v) = word.strip_prefix("tandem.install=") {
                c.install = Some(v.to_owned());
            } else if let Some(v) = word.strip_prefix("tandem.disk=") {
                c.disk = Some(v.to_owned());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline() {
        let c = Cmdline::parse("quiet tandem.install=node2 console=ttyS0 tandem.disk=/dev/sdb\n");
        assert_eq!(c.install.as_deref(), Some("node2"));
        assert_eq!(c.disk.as_deref(), Some("/dev/sdb"));
    }
}
