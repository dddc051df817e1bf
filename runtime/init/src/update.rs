//! The node's side of updates: RAUC's system configuration, written at boot
//! from the partitions of the disk the node runs from.
//!
//! RAUC (`rauc service`, on the system bus that init also runs) installs a
//! signed bundle into the slot that did not boot and switches GRUB's boot
//! selection to it (`grubenv` on the EFI system partition, see
//! `image/grub/node.cfg`). The keyring is part of the system image.

use std::path::Path;

/// Where init writes RAUC's system configuration.
pub const SYSTEM_CONF: &str = "/etc/rauc/system.conf";
/// The CA certificate(s) bundles must be signed under (baked into the image).
pub const KEYRING: &str = "/etc/rauc/keyring.pem";
/// Where the EFI system partition is mounted (GRUB's configuration and
/// environment block live there).
pub const ESP_MOUNT: &str = "/boot/esp";
/// GRUB's environment block, which RAUC's GRUB backend edits.
pub const GRUBENV: &str = "/boot/esp/grub/grubenv";
/// RAUC's status of the slots (installed bundle version, times), on the
/// configuration partition so that it survives a restart.
pub const DATA_DIR: &str = "/config/rauc";
/// The compatible string every bundle for this product must carry.
pub const COMPATIBLE: &str = "tandem-sr2500";

/// The text of [`SYSTEM_CONF`] for a disk whose system slots are `a` and `b`.
#[must_use]
pub fn system_conf(a: &Path, b: &Path) -> String {
    format!(
        "# Written by init at boot from the disk's partitions (system-a, system-b).\n\
         [system]\n\
         compatible={COMPATIBLE}\n\
         bootloader=grub\n\
         grubenv={GRUBENV}\n\
         bundle-formats=-plain\n\
         data-directory={DATA_DIR}\n\
         \n\
         [keyring]\n\
         path={KEYRING}\n\
         \n\
         [slot.rootfs.0]\n\
         device={}\n\
         type=raw\n\
         bootname=A\n\
         \n\
         [slot.rootfs.1]\n\
         device={}\n\
         type=raw\n\
         bootname=B\n",
        a.display(),
        b.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_conf_names_both_slots_grub_and_the_keyring() {
        let text = system_conf(Path::new("/dev/sda3"), Path::new("/dev/sda4"));
        assert!(text.contains(
            "[system]\ncompatible=tandem-sr2500\nbootloader=grub\ngrubenv=/boot/esp/grub/grubenv\nbundle-formats=-plain\n"
        ));
        assert!(text.contains("[keyring]\npath=/etc/rauc/keyring.pem\n"));
        assert!(text.contains("[slot.rootfs.0]\ndevice=/dev/sda3\ntype=raw\nbootname=A\n"));
        assert!(text.ends_with("[slot.rootfs.1]\ndevice=/dev/sda4\ntype=raw\nbootname=B\n"));
    }
}
