// Package disk writes and reads the appliance disk image's partition table
// and boot file system, with no outside tools:
//
//   - WriteGPT and ReadGPT: a GPT (128 entries, primary and backup, CRC32s
//     verified on reading) behind a protective MBR, or behind a hybrid MBR
//     that also shows the boot partition to the Raspberry Pi firmware.
//   - WriteFAT16 and Extents: the FAT16 boot partition in the layout
//     gokrazy's runtime reads (one FAT, files in one extent each, Windows
//     short names) with VFAT long names for UEFI firmware, systemd-boot and
//     the Raspberry Pi firmware; Extents finds a file's byte range on the
//     device so that cmdline.txt and loader/entries/gokrazy.conf can be
//     rewritten in place to switch between the A and B root partitions.
//   - ParseGUID, FormatGUID and DeriveGUID: GUIDs in the GPT's on-disk
//     encoding, and reproducible ones derived from a seed.
//
// The same inputs always give the same bytes.
package disk
