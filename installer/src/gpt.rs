//! The installed disk's GUID partition table: layout (pure) and bytes.
//!
//! Layout, 1 MiB aligned:
//!
//! | # | name      | size          | content                                   |
//! |---|-----------|---------------|-------------------------------------------|
//! | 1 | bios-boot | 1 MiB         | GRUB core image for BIOS boot              |
//! | 2 | esp       | 64 MiB        | EFI system partition, GRUB + its config    |
//! | 3 | system-a  | 512 MiB       | system image (squashfs: kernel, initramfs) |
//! | 4 | system-b  | 512 MiB       | second slot for updates                    |
//! | 5 | config    | 256 MiB       | ext4: node identity, configuration, state  |
//! | 6 | data      | the rest      | replicated device (DRBD) holding `/vz`     |

/// Bytes per logical sector; the installer refuses other sector sizes.
pub const SECTOR: u64 = 512;
/// [`SECTOR`] as a buffer length.
pub const SECTOR_LEN: usize = 512;
const MIB: u64 = 1 << 20;
/// Partition entries in the table (the UEFI minimum array size).
const ENTRIES: u32 = 128;
const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array (128 × 128 bytes).
const ARRAY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;

/// Smallest data partition the installer accepts.
pub const MIN_DATA: u64 = 1 << 30;

/// A GPT partition type GUID, in its text form.
pub mod types {
    /// BIOS boot partition (GRUB's core image).
    pub const BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
    /// EFI system partition.
    pub const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    /// Linux filesystem data.
    pub const LINUX: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
}

/// One planned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// GPT partition name (also how the node finds it: `PARTNAME`).
    pub name: &'static str,
    /// Type GUID text.
    pub type_guid: &'static str,
    /// First sector.
    pub first: u64,
    /// Last sector (inclusive).
    pub last: u64,
}

impl Part {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        (self.last - self.first + 1) * SECTOR
    }
}

/// The disk is too small for the layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the disk holds {have} MiB; the appliance needs at least {need} MiB")]
pub struct TooSmall {
    /// Disk size in MiB.
    pub have: u64,
    /// Required size in MiB.
    pub need: u64,
}

/// The fixed partitions before the data partition: name, type, size.
const FIXED: &[(&str, &str, u64)] = &[
    ("bios-boot", types::BIOS_BOOT, MIB),
    ("esp", types::ESP, 64 * MIB),
    ("system-a", types::LINUX, 512 * MIB),
    ("system-b", types::LINUX, 512 * MIB),
    ("config", types::LINUX, 256 * MIB),
];

/// Smallest disk the layout fits on, in bytes.
pub fn min_disk_bytes() -> u64 {
    // 1 MiB in front (MBR, GPT, alignment), 1 MiB at the end for the backup.
    MIB + FIXED.iter().map(|f| f.2).sum::<u64>() + MIN_DATA + MIB
}

/// Plans the partitions of a disk of `sectors` 512-byte sectors.
pub fn plan(sectors: u64) -> Result<Vec<Part>, TooSmall> {
    let bytes = sectors * SECTOR;
    if bytes < min_disk_bytes() {
        return Err(TooSmall {
            have: bytes / MIB,
            need: min_disk_bytes().div_ceil(MIB),
        });
    }
    let mut parts = Vec::new();
    let mut next = MIB / SECTOR;
    for (name, ty, size) in FIXED {
        let n = size / SECTOR;
        parts.push(Part {
            name,
            type_guid: ty,
            first: next,
            last: next + n - 1,
        });
        next += n;
    }
    // Leave room for the backup array and header, keep the end MiB-aligned.
    let last_usable = sectors - 1 - ARRAY_SECTORS - 1;
    let align = MIB / SECTOR;
    let end = ((last_usable + 1) / align) * align - 1;
    parts.push(Part {
        name: "data",
        type_guid: types::LINUX,
        first: next,
        last: end,
    });
    Ok(parts)
}

/// Encodes a GUID text in GPT's mixed-endian byte order.
pub fn guid_bytes(text: &str) -> [u8; 16] {
    let hexd: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        })
        .collect();
    let mut raw = [0u8; 16];
    for (i, pair) in hexd.chunks(2).take(16).enumerate() {
        raw[i] = pair[0] << 4 | pair.get(1).copied().unwrap_or(0);
    }
    let mut out = raw;
    out[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    out[4..6].copy_from_slice(&[raw[5], raw[4]]);
    out[6..8].copy_from_slice(&[raw[7], raw[6]]);
    out
}

/// The bytes of a partition table: protective MBR (sector 0), primary header
/// (1), entries (2..34); backup entries and header at the end of the disk.
#[derive(Debug, Clone)]
pub struct Table {
    /// Sectors 0..34 (protective MBR, header, entries).
    pub primary: Vec<u8>,
    /// Written at sector `backup_lba`: entries then the backup header.
    pub backup: Vec<u8>,
    /// First sector of `backup`.
    pub backup_lba: u64,
}

/// Builds the table for `parts` on a disk of `sectors`; `disk_guid` and
/// `part_guids` are the unique ids (random at install time).
pub fn table(sectors: u64, parts: &[Part], disk_guid: [u8; 16], part_guids: &[[u8; 16]]) -> Table {
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&guid_bytes(p.type_guid));
        e[16..32].copy_from_slice(&part_guids[i]);
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        // attributes: none; bit 2 "legacy BIOS bootable" is not needed
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let last_lba = sectors - 1;
    let first_usable = 2 + ARRAY_SECTORS;
    let last_usable = last_lba - ARRAY_SECTORS - 1;
    let header = |current: u64, backup: u64, array: u64| {
        let mut h = vec![0u8; SECTOR_LEN];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&array.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut primary = protective_mbr(sectors);
    primary.extend(header(1, last_lba, 2));
    primary.extend(&entries);
    let backup_lba = last_lba - ARRAY_SECTORS;
    let mut backup = entries;
    backup.extend(header(last_lba, 1, backup_lba));
    Table {
        primary,
        backup,
        backup_lba,
    }
}

fn protective_mbr(sectors: u64) -> Vec<u8> {
    let mut m = vec![0u8; SECTOR_LEN];
    let e = &mut m[0x1be..0x1ce];
    e[0] = 0x00;
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    e[4] = 0xee;
    e[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    e[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: u64 = 8 << 30;

    #[test]
    fn layout_is_aligned_contiguous_and_fills_the_disk() {
        let parts = plan(DISK / SECTOR).unwrap();
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[0].first, 2048);
        for w in parts.windows(2) {
            assert_eq!(w[0].last + 1, w[1].first);
        }
        for p in &parts {
            assert_eq!(p.first % 2048, 0, "{} aligned", p.name);
            assert_eq!((p.last + 1) % 2048, 0, "{} ends aligned", p.name);
        }
        let data = &parts[5];
        assert!(data.bytes() > DISK - (1400 << 20));
        assert!(data.last < DISK / SECTOR - 33);
    }

    #[test]
    fn too_small_says_how_much_is_needed() {
        let e = plan((2u64 << 30) / SECTOR).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the disk holds 2048 MiB; the appliance needs at least 2371 MiB"
        );
        assert!(plan(min_disk_bytes() / SECTOR).is_ok());
    }

    #[test]
    fn guid_is_mixed_endian() {
        let b = guid_bytes(types::ESP);
        assert_eq!(b[..4], [0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(b[4..6], [0x1f, 0xf8]);
        assert_eq!(b[6..8], [0xd2, 0x11]);
        assert_eq!(b[8..], [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b]);
    }

    #[test]
    fn headers_carry_valid_checksums() {
        let sectors = DISK / SECTOR;
        let parts = plan(sectors).unwrap();
        let guids: Vec<[u8; 16]> = (0..6u8).map(|i| [i + 1; 16]).collect();
        let t = table(sectors, &parts, [9; 16], &guids);
        assert_eq!(t.primary.len(), 34 * 512);
        assert_eq!(&t.primary[510..512], &[0x55, 0xaa]);
        let h = &t.primary[512..1024];
        assert_eq!(&h[..8], b"EFI PART");
        let mut z = h[..92].to_vec();
        z[16..20].fill(0);
        assert_eq!(crc32fast::hash(&z).to_le_bytes(), h[16..20]);
        assert_eq!(crc32fast::hash(&t.primary[1024..]).to_le_bytes(), h[88..92]);
        let bh = &t.backup[t.backup.len() - 512..];
        assert_eq!(
            u64::from_le_bytes(bh[24..32].try_into().unwrap()),
            sectors - 1
        );
        assert_eq!(t.backup_lba + 33, sectors);
        // first entry's name
        let name: Vec<u16> = t.primary[1024 + 56..1024 + 56 + 18]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16_lossy(&name), "bios-boot");
    }
}
