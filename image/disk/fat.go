package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// File is one file for WriteFAT16. Path is slash-separated and relative to
// the root ("EFI/BOOT/BOOTX64.EFI"); the directories on the way are created as
// needed. A Path ending in "/" (with no Data) makes an empty directory.
type File struct {
	Path string
	Data []byte
}

// FATOptions are the volume's label, its ID (serial number) and the timestamp
// every file and directory carries.
type FATOptions struct {
	Label    string // at most 11 characters; upper-cased; "" means none
	VolumeID uint32
	ModTime  time.Time // the zero time means 1980-01-01 00:00:00
}

const (
	sectorSize   = 512
	dirEntrySize = 32

	// FATRootEntries is the size of the root directory in entries. A long
	// name takes one more entry per 13 characters.
	FATRootEntries = 512
	fatRootSectors = FATRootEntries * dirEntrySize / sectorSize

	// The cluster count decides between FAT12, FAT16 and FAT32 (4085 and
	// 65525 are the limits); stay clear of the limits, as the FAT
	// specification advises, in case a reader is off by a few.
	fatMinClusters = 4085 + 16
	fatMaxClusters = 65524 - 16
	fatMaxSPC      = 64 // 32 KiB clusters; larger ones are not portable

	// fatMinDirBytes is the least space a subdirectory gets: as many
	// entries as the root directory has. gokrazy's FAT reader scans that
	// many entries from a subdirectory's first cluster, without stopping at
	// the end marker, so they must all lie inside the directory.
	fatMinDirBytes   = FATRootEntries * dirEntrySize
	fatMaxDirEntries = 65536

	attrReadOnly  = 0x01
	attrHidden    = 0x02
	attrSystem    = 0x04
	attrVolumeID  = 0x08
	attrDirectory = 0x10
	attrArchive   = 0x20
	attrLongName  = attrReadOnly | attrHidden | attrSystem | attrVolumeID

	fatMedia = 0xF8
	fatEOC   = 0xFFFF
)

// fatGeometry is the layout of a FAT16 file system, in sectors from its
// start unless noted.
type fatGeometry struct {
	totalSectors uint32
	spc          uint32 // sectors per cluster
	reserved     uint32
	fatSectors   uint32
	dataStart    uint32
	clusters     uint32 // data clusters, numbered 2..clusters+1
}

func (g fatGeometry) clusterBytes() int64 { return int64(g.spc) * sectorSize }

// fatLayout picks the smallest cluster size that keeps the cluster count
// within FAT16's range, and aligns the reserved area's end and the data area
// to the cluster size, and to at least 4 KiB.
func fatLayout(size int64) (fatGeometry, error) {
	if size <= 0 || size%sectorSize != 0 {
		return fatGeometry{}, fmt.Errorf("fat: size %d is not a positive multiple of %d", size, sectorSize)
	}
	if size/sectorSize > 0xFFFFFFFF {
		return fatGeometry{}, fmt.Errorf("fat: size %d is too large for FAT16", size)
	}
	t := uint32(size / sectorSize)
	for spc := uint32(1); spc <= fatMaxSPC; spc *= 2 {
		if t < 1+fatRootSectors+spc {
			break
		}
		upper := (t - 1 - fatRootSectors) / spc
		fatSectors := ((upper+2)*2 + sectorSize - 1) / sectorSize
		// The reserved area is one aligned unit (the Raspberry Pi 3 wants it
		// to be whole clusters); the FAT grows to align the data area.
		reserved := max(spc, 8)
		dataStart := (reserved + fatSectors + fatRootSectors + reserved - 1) / reserved * reserved
		fatSectors = dataStart - reserved - fatRootSectors
		if dataStart >= t || fatSectors > 0xFFFF {
			break
		}
		clusters := (t - dataStart) / spc
		if clusters > fatMaxClusters {
			continue
		}
		if clusters < fatMinClusters {
			break
		}
		return fatGeometry{
			totalSectors: t,
			spc:          spc,
			reserved:     reserved,
			fatSectors:   fatSectors,
			dataStart:    dataStart,
			clusters:     clusters,
		}, nil
	}
	minSize := int64(fatMinClusters+80) * sectorSize
	maxSize := int64(fatMaxClusters) * fatMaxSPC * sectorSize
	return fatGeometry{}, fmt.Errorf("fat: a FAT16 file system cannot be %d bytes: FAT16 needs between %d and %d clusters, which with 512-byte to 32 KiB clusters means about %d KiB to %d MiB",
		size, fatMinClusters, fatMaxClusters, minSize>>10, maxSize>>20)
}

type fatNode struct {
	name     string
	dir      bool
	data     []byte
	parent   *fatNode
	children []*fatNode
	byKey    map[string]*fatNode
	short    [11]byte
	lfn      []uint16 // the long name, when one is needed
	cluster  uint32
	nclust   uint32
	entries  int // directories: entries used, with . and .. or the label
}

func (n *fatNode) path() string {
	if n.parent == nil {
		return "/"
	}
	if n.parent.parent == nil {
		return n.name
	}
	return n.parent.path() + "/" + n.name
}

// fatKey is what makes two names the same name on FAT: case is ignored.
func fatKey(name string) string { return strings.ToUpper(name) }

func buildFATTree(files []File) (*fatNode, error) {
	root := &fatNode{dir: true, byKey: map[string]*fatNode{}}
	for _, f := range files {
		p := strings.TrimPrefix(f.Path, "/")
		wantDir := strings.HasSuffix(p, "/")
		p = strings.TrimSuffix(p, "/")
		if wantDir && len(f.Data) > 0 {
			return nil, fmt.Errorf("fat: %q: a directory cannot have data", f.Path)
		}
		comps := strings.Split(p, "/")
		cur := root
		for i, c := range comps {
			if err := validLongName(c); err != nil {
				return nil, fmt.Errorf("fat: path %q: %v", f.Path, err)
			}
			last := i == len(comps)-1
			if n, ok := cur.byKey[fatKey(c)]; ok {
				switch {
				case last && wantDir && n.dir:
				case last:
					return nil, fmt.Errorf("fat: path %q: %q is given twice (FAT names ignore case)", f.Path, n.path())
				case !n.dir:
					return nil, fmt.Errorf("fat: path %q: %q is a file", f.Path, n.path())
				}
				cur = n
				continue
			}
			n := &fatNode{name: c, parent: cur}
			if !last || wantDir {
				n.dir = true
				n.byKey = map[string]*fatNode{}
			} else {
				n.data = f.Data
				if int64(len(f.Data)) > 0xFFFFFFFF {
					return nil, fmt.Errorf("fat: %q is larger than 4 GiB", f.Path)
				}
			}
			cur.byKey[fatKey(c)] = n
			cur.children = append(cur.children, n)
			cur = n
		}
	}
	return root, nil
}

// nameFATDir sorts a directory's entries and gives each its short name and,
// unless its name is a plain upper-case 8.3 name, its long name. Names that
// fit 8.3 up to case keep that short name; the others get the first free
// numeric tail (~1, ~2, ...), assigned in sorted order.
func nameFATDir(d *fatNode) error {
	sort.Slice(d.children, func(i, j int) bool { return d.children[i].name < d.children[j].name })
	used := map[[11]byte]bool{}
	var tailed []*fatNode
	for _, c := range d.children {
		base, ext, fits := shortBasis(c.name)
		if !fits {
			tailed = append(tailed, c)
			continue
		}
		if ext == "" && c.name == strings.ToLower(base) {
			// gokrazy's reader matches a name without an extension only
			// when the short name holds it exactly as written (its own
			// writer stores them in lower case): "loader", "entries".
			// The long name entry carries it for every other reader.
			base = c.name
		}
		c.short = packShort(base, ext)
		used[c.short] = true
		if shortString(c.short[:]) != c.name || base != strings.ToUpper(base) {
			c.lfn = utf16.Encode([]rune(c.name))
		}
	}
	for _, c := range tailed {
		base, ext, _ := shortBasis(c.name)
		for n := 1; ; n++ {
			if n > 999999 {
				return fmt.Errorf("fat: no free short name for %q", c.path())
			}
			if s := withTail(base, ext, n); !used[s] {
				c.short = s
				used[s] = true
				break
			}
		}
		c.lfn = utf16.Encode([]rune(c.name))
	}
	if d.parent == nil {
		d.entries = 0
	} else {
		d.entries = 2 // . and ..
	}
	for _, c := range d.children {
		d.entries += 1 + (len(c.lfn)+12)/13
		if c.dir {
			if err := nameFATDir(c); err != nil {
				return err
			}
		}
	}
	if d.entries > fatMaxDirEntries {
		return fmt.Errorf("fat: directory %q needs %d entries, at most %d", d.path(), d.entries, fatMaxDirEntries)
	}
	return nil
}

// walkFAT calls fn for every node below d, depth first, in sorted order.
func walkFAT(d *fatNode, fn func(*fatNode)) {
	for _, c := range d.children {
		fn(c)
		if c.dir {
			walkFAT(c, fn)
		}
	}
}

func fatDateTime(t time.Time) (date, tm uint16) {
	if t.IsZero() || t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tm = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, tm
}

func fatLabel(label string) ([11]byte, error) {
	var b [11]byte
	copy(b[:], "NO NAME    ")
	if label == "" {
		return b, nil
	}
	l := strings.ToUpper(label)
	if len(l) > 11 || l[0] == ' ' {
		return b, fmt.Errorf("fat: label %q: at most 11 characters, not starting with a space", label)
	}
	for _, r := range l {
		if r != ' ' && (r >= 0x80 || shortChar(r) != byte(r)) {
			return b, fmt.Errorf("fat: label %q: %q is not allowed in a label", label, r)
		}
	}
	copy(b[:], "           ")
	copy(b[:], l)
	return b, nil
}

// putShortEntry fills a 32-byte short directory entry.
func putShortEntry(e []byte, name [11]byte, attr byte, cluster uint32, size uint32, date, tm uint16) {
	copy(e[0:11], name[:])
	e[11] = attr
	binary.LittleEndian.PutUint16(e[14:], tm)   // creation time
	binary.LittleEndian.PutUint16(e[16:], date) // creation date
	binary.LittleEndian.PutUint16(e[18:], date) // last access date
	binary.LittleEndian.PutUint16(e[22:], tm)   // modification time
	binary.LittleEndian.PutUint16(e[24:], date) // modification date
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], size)
}

// putLongEntries writes the long file name entries for name (which belong
// right before the short entry with the given checksum) and returns how many
// bytes they took.
func putLongEntries(b []byte, name []uint16, checksum byte) int {
	n := (len(name) + 12) / 13
	padded := make([]uint16, n*13)
	copy(padded, name)
	for i := len(name); i < len(padded); i++ {
		if i == len(name) {
			padded[i] = 0
		} else {
			padded[i] = 0xFFFF
		}
	}
	off := 0
	for seq := n; seq >= 1; seq-- {
		e := b[off : off+dirEntrySize]
		e[0] = byte(seq)
		if seq == n {
			e[0] |= 0x40 // the last (first stored) entry
		}
		e[11] = attrLongName
		e[13] = checksum
		chars := padded[(seq-1)*13 : seq*13]
		for i, u := range chars {
			binary.LittleEndian.PutUint16(e[lfnCharOffset(i):], u)
		}
		off += dirEntrySize
	}
	return off
}

// WriteFAT16 writes a FAT16 file system of size bytes holding files to w at
// offset. The layout is the one gokrazy's boot partition reader expects:
// 512-byte sectors, one FAT, a 512-entry root directory, and every file and
// directory in consecutive clusters, so that a file's data is one extent.
// Names get VFAT long names unless they are upper-case 8.3 names, and short
// names like Windows makes them ("gokrazy.conf" is GOKRAZ~1.CON). Entries
// are sorted by name; every timestamp is o.ModTime: the same inputs give the
// same bytes.
//
// Written are the boot sector and reserved sectors, the FAT, the root
// directory, every directory's clusters and every file's clusters (the data
// padded with zeros to the end of its last cluster), and the file system's
// last sector (zeros), so that a regular file grows to the full size. Free
// clusters are not written: a new file stays sparse, and on a reused device
// they keep their old bytes.
//
// The cluster size is the smallest that keeps the cluster count within
// FAT16's range: 2 KiB for 100 MiB, 1 KiB for 64 MiB, 4 KiB for 256 MiB.
// Sizes from about 2 MiB to 2 GiB work.
func WriteFAT16(w io.WriterAt, offset, size int64, o FATOptions, files []File) error {
	if offset < 0 || offset%sectorSize != 0 || offset/sectorSize > 0xFFFFFFFF {
		return fmt.Errorf("fat: offset %d is not a multiple of %d below 2 TiB", offset, sectorSize)
	}
	g, err := fatLayout(size)
	if err != nil {
		return err
	}
	label, err := fatLabel(o.Label)
	if err != nil {
		return err
	}
	root, err := buildFATTree(files)
	if err != nil {
		return err
	}
	if err := nameFATDir(root); err != nil {
		return err
	}
	if o.Label != "" {
		root.entries++
	}
	if root.entries > FATRootEntries {
		return fmt.Errorf("fat: the root directory needs %d entries (long names take one more per 13 characters), it has %d", root.entries, FATRootEntries)
	}

	// Allocate clusters: all directories first, then the files, each in one
	// run of consecutive clusters.
	cb := g.clusterBytes()
	next := uint32(2)
	var needed int64
	alloc := func(n *fatNode, bytes int64) {
		c := uint32((bytes + cb - 1) / cb)
		needed += int64(c)
		if c == 0 || needed > int64(g.clusters) {
			return
		}
		n.cluster, n.nclust = next, c
		next += c
	}
	var dirs, regular []*fatNode
	walkFAT(root, func(n *fatNode) {
		if n.dir {
			dirs = append(dirs, n)
		} else {
			regular = append(regular, n)
		}
	})
	for _, d := range dirs {
		alloc(d, max(int64(d.entries)*dirEntrySize, fatMinDirBytes))
	}
	for _, f := range regular {
		alloc(f, int64(len(f.data)))
	}
	if needed > int64(g.clusters) {
		return fmt.Errorf("fat: the files do not fit: they need %d clusters of %d bytes (%d KiB), the %d-byte file system has %d (%d KiB)",
			needed, cb, needed*cb>>10, size, g.clusters, int64(g.clusters)*cb>>10)
	}

	date, tm := fatDateTime(o.ModTime)
	dirBytes := func(d *fatNode, buf []byte) {
		off := 0
		if d.parent == nil {
			if o.Label != "" {
				putShortEntry(buf[0:], label, attrVolumeID, 0, 0, date, tm)
				off += dirEntrySize
			}
		} else {
			parent := d.parent.cluster // 0 for the root
			putShortEntry(buf[0:], packShort(".", ""), attrDirectory, d.cluster, 0, date, tm)
			putShortEntry(buf[32:], packShort("..", ""), attrDirectory, parent, 0, date, tm)
			off += 2 * dirEntrySize
		}
		for _, c := range d.children {
			if c.lfn != nil {
				off += putLongEntries(buf[off:], c.lfn, shortChecksum(c.short[:]))
			}
			attr := byte(attrArchive)
			size := uint32(len(c.data))
			if c.dir {
				attr, size = attrDirectory, 0
			}
			putShortEntry(buf[off:], c.short, attr, c.cluster, size, date, tm)
			off += dirEntrySize
		}
	}

	// The last sector first: file data written later may share it.
	if _, err := w.WriteAt(make([]byte, sectorSize), offset+int64(g.totalSectors-1)*sectorSize); err != nil {
		return fmt.Errorf("fat: %w", err)
	}

	// Boot sector, reserved sectors, FAT and root directory.
	meta := make([]byte, int64(g.dataStart)*sectorSize)
	bs := meta[:sectorSize]
	copy(bs[0:3], []byte{0xEB, 0x3C, 0x90}) // jump over the BPB to the code at 0x3E
	copy(bs[3:11], "MSWIN4.1")              // the OEM name most readers expect
	binary.LittleEndian.PutUint16(bs[11:], sectorSize)
	bs[13] = byte(g.spc)
	binary.LittleEndian.PutUint16(bs[14:], uint16(g.reserved))
	bs[16] = 1 // one FAT: gokrazy's reader assumes it
	binary.LittleEndian.PutUint16(bs[17:], FATRootEntries)
	if g.totalSectors < 0x10000 {
		binary.LittleEndian.PutUint16(bs[19:], uint16(g.totalSectors))
	} else {
		binary.LittleEndian.PutUint32(bs[32:], g.totalSectors)
	}
	bs[21] = fatMedia
	binary.LittleEndian.PutUint16(bs[22:], uint16(g.fatSectors))
	binary.LittleEndian.PutUint16(bs[24:], 63)  // sectors per track
	binary.LittleEndian.PutUint16(bs[26:], 255) // heads
	binary.LittleEndian.PutUint32(bs[28:], uint32(offset/sectorSize))
	bs[36] = 0x80 // drive number
	bs[38] = 0x29 // extended boot signature: ID, label and type follow
	binary.LittleEndian.PutUint32(bs[39:], o.VolumeID)
	copy(bs[43:54], label[:])
	copy(bs[54:62], "FAT16   ")
	// Not bootable from a BIOS: int 18h (try the next boot device), then halt.
	copy(bs[62:], []byte{0xCD, 0x18, 0xF4, 0xEB, 0xFD})
	bs[510], bs[511] = 0x55, 0xAA

	fat := meta[int64(g.reserved)*sectorSize : int64(g.reserved+g.fatSectors)*sectorSize]
	binary.LittleEndian.PutUint16(fat[0:], 0xFF00|fatMedia)
	binary.LittleEndian.PutUint16(fat[2:], 0xFFFF) // clean, no I/O errors
	for _, n := range append(dirs, regular...) {
		for i := uint32(0); i < n.nclust; i++ {
			v := uint16(n.cluster + i + 1)
			if i == n.nclust-1 {
				v = fatEOC
			}
			binary.LittleEndian.PutUint16(fat[2*(n.cluster+i):], v)
		}
	}
	dirBytes(root, meta[int64(g.reserved+g.fatSectors)*sectorSize:])
	if _, err := w.WriteAt(meta, offset); err != nil {
		return fmt.Errorf("fat: %w", err)
	}

	clusterOffset := func(c uint32) int64 {
		return offset + int64(g.dataStart)*sectorSize + int64(c-2)*cb
	}
	for _, d := range dirs {
		buf := make([]byte, int64(d.nclust)*cb)
		dirBytes(d, buf)
		if _, err := w.WriteAt(buf, clusterOffset(d.cluster)); err != nil {
			return fmt.Errorf("fat: %w", err)
		}
	}
	zeros := make([]byte, cb)
	for _, f := range regular {
		if f.nclust == 0 {
			continue
		}
		at := clusterOffset(f.cluster)
		if _, err := w.WriteAt(f.data, at); err != nil {
			return fmt.Errorf("fat: %w", err)
		}
		if pad := int64(f.nclust)*cb - int64(len(f.data)); pad > 0 {
			if _, err := w.WriteAt(zeros[:pad], at+int64(len(f.data))); err != nil {
				return fmt.Errorf("fat: %w", err)
			}
		}
	}
	return nil
}

var errNotFAT16 = errors.New("not a FAT16 file system")

// lfnCharOffset is where the i-th (0..12) UTF-16 unit of a long file name
// entry's 13 sits in the 32-byte entry: 5 at 1, 6 at 14, 2 at 28.
func lfnCharOffset(i int) int {
	switch {
	case i < 5:
		return 1 + 2*i
	case i < 11:
		return 14 + 2*(i-5)
	}
	return 28 + 2*(i-11)
}
