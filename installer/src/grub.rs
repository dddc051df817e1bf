//! Sets up GRUB's BIOS boot code, as `grub-bios-setup` does for a GPT disk
//! with a BIOS boot partition: the boot sector learns where the core image
//! starts, and the core image's first sector learns where the rest of it is.

use crate::gpt::SECTOR_LEN;

/// Offset in `boot.img` of the core image's first sector (LE u64).
const KERNEL_SECTOR: usize = 0x5c;
/// Offset of the boot drive byte; 0xff = use the drive the BIOS booted.
const BOOT_DRIVE: usize = 0x64;
/// Offset of the floppy/drive check jump, replaced by two NOPs on disks.
const DRIVE_CHECK: usize = 0x66;
/// The boot code ends where the disk signature / partition table begin.
const CODE_END: usize = 0x1b8;
/// Size of a blocklist entry at the end of the core image's first sector.
const BLOCKLIST: usize = 12;
/// Load segment of the core image's second sector (0x800 + 512 / 16).
const SEGMENT: u16 = 0x820;

/// Bad GRUB images.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrubError {
    /// `boot.img` is not one sector.
    #[error("boot.img is {0} bytes, not 512")]
    BootSize(usize),
    /// `core.img` is too small or too large.
    #[error("core.img is {0} bytes; it must be between 512 bytes and the BIOS boot partition")]
    CoreSize(usize),
}

/// Returns the MBR: GRUB's boot code over `mbr` (whose partition table and
/// signature are kept), pointing at the core image at `core_lba`.
pub fn boot_sector(boot_img: &[u8], mbr: &[u8], core_lba: u64) -> Result<Vec<u8>, GrubError> {
    if boot_img.len() != SECTOR_LEN || mbr.len() != SECTOR_LEN {
        return Err(GrubError::BootSize(boot_img.len()));
    }
    let mut out = mbr.to_vec();
    out[..CODE_END].copy_from_slice(&boot_img[..CODE_END]);
    // The BPB area stays as it was on the disk (all zero on a fresh table).
    out[3..0x5a].copy_from_slice(&mbr[3..0x5a]);
    out[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    out[BOOT_DRIVE] = 0xff;
    out[DRIVE_CHECK] = 0x90;
    out[DRIVE_CHECK + 1] = 0x90;
    Ok(out)
}

/// Returns the core image padded to whole sectors with its first blocklist
/// set to the sectors after `core_lba`, for a core image stored contiguously
/// in a partition of `room` bytes.
pub fn core_image(core_img: &[u8], core_lba: u64, room: u64) -> Result<Vec<u8>, GrubError> {
    let sector = SECTOR_LEN;
    if core_img.len() < sector || core_img.len() as u64 > room {
        return Err(GrubError::CoreSize(core_img.len()));
    }
    let nsec = core_img.len().div_ceil(sector);
    let rest = u16::try_from(nsec - 1).map_err(|_| GrubError::CoreSize(core_img.len()))?;
    let mut out = core_img.to_vec();
    out.resize(nsec * sector, 0);
    // Clear the blocklists GRUB left (entries grow downwards from the end of
    // the first sector), then write one entry and a terminator.
    let mut at = sector - BLOCKLIST;
    while at > 0 {
        let len = u16::from_le_bytes([out[at + 8], out[at + 9]]);
        out[at..at + BLOCKLIST].fill(0);
        if len == 0 {
            break;
        }
        at -= BLOCKLIST;
    }
    let first = sector - BLOCKLIST;
    out[first..first + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    out[first + 8..first + 10].copy_from_slice(&rest.to_le_bytes());
    out[first + 10..first + 12].copy_from_slice(&SEGMENT.to_le_bytes());
    out[first - BLOCKLIST..first].fill(0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_keeps_the_partition_table() {
        let boot = vec![0xAAu8; 512];
        let mut mbr = vec![0u8; 512];
        mbr[0x1be] = 0x00;
        mbr[0x1c2] = 0xee;
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let out = boot_sector(&boot, &mbr, 2048).unwrap();
        assert_eq!(out[0], 0xAA);
        assert_eq!(out[3], 0); // BPB kept
        assert_eq!(&out[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(out[0x64], 0xff);
        assert_eq!(&out[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(&out[0x1b8..], &mbr[0x1b8..]);
    }

    #[test]
    fn core_blocklist_points_after_the_first_sector() {
        let mut core = vec![1u8; 512 * 3 + 100];
        // GRUB's own placeholder entry: start 2, len 3
        core[500..508].copy_from_slice(&2u64.to_le_bytes());
        core[508..510].copy_from_slice(&3u16.to_le_bytes());
        core[488..500].fill(0);
        let out = core_image(&core, 2048, 1 << 20).unwrap();
        assert_eq!(out.len(), 512 * 4);
        assert_eq!(&out[500..508], &2049u64.to_le_bytes());
        assert_eq!(&out[508..510], &3u16.to_le_bytes());
        assert_eq!(&out[510..512], &0x820u16.to_le_bytes());
        assert!(out[488..500].iter().all(|b| *b == 0));
        assert!(core_image(&core, 2048, 1000).is_err());
    }
}
