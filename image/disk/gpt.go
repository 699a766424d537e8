package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"unicode/utf16"
)

// Partition is one GPT partition. Start and Size are in bytes and must be
// multiples of 512. In the slice given to WriteGPT and returned by ReadGPT,
// parts[i] is partition number i+1; a zero Partition is an unused slot.
type Partition struct {
	Start, Size int64
	Type, GUID  [16]byte
	Name        string // at most 36 UTF-16 code units
}

func (p Partition) used() bool { return p != Partition{} }

// MBRKind selects what WriteGPT puts into the MBR in sector 0.
type MBRKind int

const (
	// ProtectiveMBR is the standard protective MBR: one 0xEE entry from LBA 1
	// to the end of the disk (or 0xFFFFFFFF sectors for disks over 2 TiB).
	ProtectiveMBR MBRKind = iota
	// HybridMBR also exposes the first partition (the FAT boot partition)
	// through the MBR, for firmware that reads only MBR partition tables (the
	// Raspberry Pi's). Entry 1 is the first partition with type 0x0E (FAT16,
	// LBA), entry 2 is the 0xEE entry from LBA 1 to the sector before the
	// first partition; entries 3 and 4 are empty.
	//
	// The FAT entry comes first because the Raspberry Pi boot ROMs before the
	// Pi 4 look only at the first MBR entry, and this is the order gokrazy's
	// images have used on every Pi model. Linux uses the GPT as long as any
	// entry is of type 0xEE starting at LBA 1 (block/partitions/efi.c accepts
	// it in any slot), and the Pi 4/5 bootloader follows the GPT too.
	HybridMBR
)

const (
	gptEntryCount   = 128
	gptEntrySize    = 128
	gptEntrySectors = gptEntryCount * gptEntrySize / sectorSize // 32
	gptHeaderSize   = 92
	gptRevision     = 0x00010000
	// FirstUsableLBA is the first sector a partition may start at (after the
	// MBR, the primary header and 32 sectors of partition entries).
	FirstUsableLBA = 2 + gptEntrySectors

	mbrTypeFAT16LBA   = 0x0E
	mbrTypeProtective = 0xEE
)

var gptSignature = [8]byte{'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'}

// WriteGPT writes a GPT partition table for a disk of diskSize bytes to w: the
// MBR (protective or hybrid, see MBRKind) in sector 0, the primary header at
// LBA 1, 128 entries of 128 bytes at LBA 2-33, the backup entries at the 33rd
// to 2nd last sectors and the backup header in the last sector. Nothing else
// is written. Partitions must lie within the usable area (LBA 34 up to 34
// sectors before the end of the disk) and must not overlap.
func WriteGPT(w io.WriterAt, diskSize int64, diskGUID [16]byte, parts []Partition, mbr MBRKind) error {
	if diskSize%sectorSize != 0 {
		return fmt.Errorf("gpt: disk size %d is not a multiple of %d", diskSize, sectorSize)
	}
	sectors := diskSize / sectorSize
	if sectors < 2*(1+gptEntrySectors)+2 {
		return fmt.Errorf("gpt: disk size %d is too small for a GPT", diskSize)
	}
	lastLBA := uint64(sectors - 1)
	lastUsable := lastLBA - 1 - gptEntrySectors
	if len(parts) > gptEntryCount {
		return fmt.Errorf("gpt: %d partitions, at most %d", len(parts), gptEntryCount)
	}
	if diskGUID == ([16]byte{}) {
		return errors.New("gpt: the disk GUID is zero")
	}
	if mbr != ProtectiveMBR && mbr != HybridMBR {
		return fmt.Errorf("gpt: unknown MBR kind %d", mbr)
	}

	entries := make([]byte, gptEntryCount*gptEntrySize)
	type span struct {
		n           int
		first, last uint64
	}
	var spans []span
	guids := map[[16]byte]int{diskGUID: 0}
	for i, p := range parts {
		if !p.used() {
			continue
		}
		n := i + 1
		if p.Start%sectorSize != 0 || p.Size%sectorSize != 0 {
			return fmt.Errorf("gpt: partition %d: start %d and size %d must be multiples of %d", n, p.Start, p.Size, sectorSize)
		}
		if p.Size <= 0 || p.Start < 0 {
			return fmt.Errorf("gpt: partition %d: start %d, size %d", n, p.Start, p.Size)
		}
		first := uint64(p.Start / sectorSize)
		last := first + uint64(p.Size/sectorSize) - 1
		if first < FirstUsableLBA || last > lastUsable {
			return fmt.Errorf("gpt: partition %d (LBA %d-%d) is outside the usable area LBA %d-%d", n, first, last, FirstUsableLBA, lastUsable)
		}
		if p.Type == ([16]byte{}) {
			return fmt.Errorf("gpt: partition %d has no type GUID", n)
		}
		if p.GUID == ([16]byte{}) {
			return fmt.Errorf("gpt: partition %d has a zero GUID", n)
		}
		if o, dup := guids[p.GUID]; dup {
			if o == 0 {
				return fmt.Errorf("gpt: partition %d has the disk's GUID %s", n, FormatGUID(p.GUID))
			}
			return fmt.Errorf("gpt: partitions %d and %d have the same GUID %s", o, n, FormatGUID(p.GUID))
		}
		guids[p.GUID] = n
		name := utf16.Encode([]rune(p.Name))
		if len(name) > 36 {
			return fmt.Errorf("gpt: partition %d: name %q is longer than 36 UTF-16 code units", n, p.Name)
		}
		e := entries[i*gptEntrySize : (i+1)*gptEntrySize]
		copy(e[0:16], p.Type[:])
		copy(e[16:32], p.GUID[:])
		binary.LittleEndian.PutUint64(e[32:], first)
		binary.LittleEndian.PutUint64(e[40:], last)
		// e[48:56]: attributes, none
		for j, u := range name {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
		spans = append(spans, span{n, first, last})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].first < spans[j].first })
	for i := 1; i < len(spans); i++ {
		if spans[i].first <= spans[i-1].last {
			return fmt.Errorf("gpt: partitions %d and %d overlap", spans[i-1].n, spans[i].n)
		}
	}

	var mbrSector [sectorSize]byte
	protSize := min(lastLBA, 0xFFFFFFFF)
	switch mbr {
	case ProtectiveMBR:
		putMBREntry(mbrSector[446:], mbrTypeProtective, 1, protSize, true)
	case HybridMBR:
		if len(parts) == 0 || !parts[0].used() {
			return errors.New("gpt: a hybrid MBR needs partition 1")
		}
		first := uint64(parts[0].Start / sectorSize)
		size := uint64(parts[0].Size / sectorSize)
		if first+size > 0xFFFFFFFF {
			return errors.New("gpt: partition 1 must end within the first 2 TiB for a hybrid MBR")
		}
		for _, s := range spans {
			if s.first < first {
				return fmt.Errorf("gpt: a hybrid MBR needs partition 1 to be the first on the disk (partition %d starts before it)", s.n)
			}
		}
		putMBREntry(mbrSector[446:], mbrTypeFAT16LBA, first, size, false)
		putMBREntry(mbrSector[462:], mbrTypeProtective, 1, first-1, true)
	}
	mbrSector[510], mbrSector[511] = 0x55, 0xAA

	entriesCRC := crc32.ChecksumIEEE(entries)
	header := func(current, backup, entriesLBA uint64) []byte {
		h := make([]byte, sectorSize)
		copy(h[0:8], gptSignature[:])
		binary.LittleEndian.PutUint32(h[8:], gptRevision)
		binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
		// h[16:20]: header CRC, computed below; h[20:24] reserved
		binary.LittleEndian.PutUint64(h[24:], current)
		binary.LittleEndian.PutUint64(h[32:], backup)
		binary.LittleEndian.PutUint64(h[40:], FirstUsableLBA)
		binary.LittleEndian.PutUint64(h[48:], lastUsable)
		copy(h[56:72], diskGUID[:])
		binary.LittleEndian.PutUint64(h[72:], entriesLBA)
		binary.LittleEndian.PutUint32(h[80:], gptEntryCount)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
		return h
	}
	backupEntriesLBA := lastLBA - gptEntrySectors
	primary := make([]byte, 0, (2+gptEntrySectors)*sectorSize)
	primary = append(primary, mbrSector[:]...)
	primary = append(primary, header(1, lastLBA, 2)...)
	primary = append(primary, entries...)
	backup := append(append([]byte(nil), entries...), header(lastLBA, 1, backupEntriesLBA)...)
	if _, err := w.WriteAt(primary, 0); err != nil {
		return fmt.Errorf("gpt: writing the primary table: %w", err)
	}
	if _, err := w.WriteAt(backup, int64(backupEntriesLBA)*sectorSize); err != nil {
		return fmt.Errorf("gpt: writing the backup table: %w", err)
	}
	return nil
}

// putMBREntry fills a 16-byte MBR partition entry (never marked bootable).
func putMBREntry(e []byte, typ byte, first, size uint64, protective bool) {
	e[0] = 0
	copy(e[1:4], chs(first, false))
	e[4] = typ
	copy(e[5:8], chs(first+size-1, protective))
	binary.LittleEndian.PutUint32(e[8:], uint32(first))
	binary.LittleEndian.PutUint32(e[12:], uint32(size))
}

// chs returns the cylinder-head-sector address of lba in the usual 255 heads,
// 63 sectors geometry, or the customary "beyond CHS" value when it does not
// fit: FE FF FF, or FF FF FF for the end of a protective entry as the UEFI
// specification asks.
func chs(lba uint64, protective bool) []byte {
	const heads, spt = 255, 63
	c := lba / (heads * spt)
	if c > 1023 {
		if protective {
			return []byte{0xFF, 0xFF, 0xFF}
		}
		return []byte{0xFE, 0xFF, 0xFF}
	}
	h := lba / spt % heads
	s := lba%spt + 1
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// ReadGPT reads and verifies the GPT of a disk: the primary header and its
// partition entries, with their CRC32s. If the primary table is damaged and r
// can tell its size (it has a Size method, like *bytes.Reader and
// *io.SectionReader, or is an io.Seeker, like *os.File also for block
// devices), the backup table at the end of the disk is used instead.
//
// parts[i] is partition number i+1, up to the last used entry; unused slots
// before it are zero Partitions.
func ReadGPT(r io.ReaderAt) (diskGUID [16]byte, parts []Partition, err error) {
	diskGUID, parts, err = readGPTAt(r, 1)
	if err == nil {
		return diskGUID, parts, nil
	}
	var size int64
	switch s := r.(type) {
	case interface{ Size() int64 }:
		size = s.Size()
	case io.Seeker:
		cur, serr := s.Seek(0, io.SeekCurrent)
		if serr == nil {
			size, _ = s.Seek(0, io.SeekEnd)
			s.Seek(cur, io.SeekStart)
		}
	}
	if size/sectorSize < 2*(1+gptEntrySectors)+2 {
		return diskGUID, nil, err
	}
	g, p, berr := readGPTAt(r, uint64(size/sectorSize-1))
	if berr != nil {
		return diskGUID, nil, fmt.Errorf("%v; backup: %v", err, berr)
	}
	return g, p, nil
}

func readGPTAt(r io.ReaderAt, lba uint64) (diskGUID [16]byte, parts []Partition, err error) {
	which := "primary"
	if lba != 1 {
		which = "backup"
	}
	h := make([]byte, sectorSize)
	if _, err := r.ReadAt(h, int64(lba)*sectorSize); err != nil {
		return diskGUID, nil, fmt.Errorf("gpt: reading the %s header: %w", which, err)
	}
	if !bytes.Equal(h[0:8], gptSignature[:]) {
		return diskGUID, nil, fmt.Errorf("gpt: no %s GPT header (signature %q)", which, h[0:8])
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < gptHeaderSize || hsize > sectorSize {
		return diskGUID, nil, fmt.Errorf("gpt: %s header size %d", which, hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	binary.LittleEndian.PutUint32(h[16:], 0)
	if got := crc32.ChecksumIEEE(h[:hsize]); got != want {
		return diskGUID, nil, fmt.Errorf("gpt: %s header CRC32 is %08x, the header says %08x", which, got, want)
	}
	if cur := binary.LittleEndian.Uint64(h[24:]); cur != lba {
		return diskGUID, nil, fmt.Errorf("gpt: %s header at LBA %d says it is at LBA %d", which, lba, cur)
	}
	firstUsable := binary.LittleEndian.Uint64(h[40:])
	lastUsable := binary.LittleEndian.Uint64(h[48:])
	copy(diskGUID[:], h[56:72])
	entriesLBA := binary.LittleEndian.Uint64(h[72:])
	count := binary.LittleEndian.Uint32(h[80:])
	esize := binary.LittleEndian.Uint32(h[84:])
	if esize < gptEntrySize || esize%8 != 0 || uint64(count)*uint64(esize) > 1<<20 {
		return diskGUID, nil, fmt.Errorf("gpt: %s header: %d entries of %d bytes", which, count, esize)
	}
	if entriesLBA > 1<<55 {
		return diskGUID, nil, fmt.Errorf("gpt: %s header: entries at LBA %d", which, entriesLBA)
	}
	entries := make([]byte, int(count)*int(esize))
	if _, err := r.ReadAt(entries, int64(entriesLBA)*sectorSize); err != nil {
		return diskGUID, nil, fmt.Errorf("gpt: reading the %s partition entries: %w", which, err)
	}
	if got, want := crc32.ChecksumIEEE(entries), binary.LittleEndian.Uint32(h[88:]); got != want {
		return diskGUID, nil, fmt.Errorf("gpt: %s partition entries CRC32 is %08x, the header says %08x", which, got, want)
	}
	for i := 0; i < int(count); i++ {
		e := entries[i*int(esize) : i*int(esize)+gptEntrySize]
		var p Partition
		copy(p.Type[:], e[0:16])
		if p.Type == ([16]byte{}) {
			parts = append(parts, Partition{})
			continue
		}
		copy(p.GUID[:], e[16:32])
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		if first > last || first < firstUsable || last > lastUsable || last >= 1<<54 {
			return diskGUID, nil, fmt.Errorf("gpt: %s partition %d: LBA %d-%d outside the usable area LBA %d-%d", which, i+1, first, last, firstUsable, lastUsable)
		}
		p.Start = int64(first) * sectorSize
		p.Size = int64(last-first+1) * sectorSize
		var name []uint16
		for j := 56; j+1 < gptEntrySize; j += 2 {
			u := binary.LittleEndian.Uint16(e[j:])
			if u == 0 {
				break
			}
			name = append(name, u)
		}
		p.Name = string(utf16.Decode(name))
		parts = append(parts, p)
	}
	for len(parts) > 0 && !parts[len(parts)-1].used() {
		parts = parts[:len(parts)-1]
	}
	return diskGUID, parts, nil
}
