package disk

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode/utf16"
)

// fatVolume is a FAT16 file system opened for Extents; offsets are absolute
// (within the device).
type fatVolume struct {
	r            io.ReaderAt
	bps          int64 // bytes per sector
	clusterBytes int64
	fatStart     int64
	rootStart    int64
	rootEntries  int64
	dataStart    int64
	end          int64
	clusters     uint32
}

func openFAT16(r io.ReaderAt, partOffset int64) (*fatVolume, error) {
	bs := make([]byte, sectorSize)
	if _, err := r.ReadAt(bs, partOffset); err != nil {
		return nil, fmt.Errorf("fat: reading the boot sector: %w", err)
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return nil, fmt.Errorf("fat: %w: no boot sector signature", errNotFAT16)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	numFATs := int64(bs[16])
	rootEntries := int64(binary.LittleEndian.Uint16(bs[17:]))
	total := int64(binary.LittleEndian.Uint16(bs[19:]))
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(bs[32:]))
	}
	fatSectors := int64(binary.LittleEndian.Uint16(bs[22:]))
	switch {
	case bps != 512 && bps != 1024 && bps != 2048 && bps != 4096:
		return nil, fmt.Errorf("fat: %w: %d bytes per sector", errNotFAT16, bps)
	case spc == 0 || spc&(spc-1) != 0:
		return nil, fmt.Errorf("fat: %w: %d sectors per cluster", errNotFAT16, spc)
	case reserved == 0 || numFATs == 0:
		return nil, fmt.Errorf("fat: %w: %d reserved sectors, %d FATs", errNotFAT16, reserved, numFATs)
	case rootEntries == 0 || fatSectors == 0:
		return nil, fmt.Errorf("fat: %w: FAT32 or exFAT", errNotFAT16)
	}
	// Like gokrazy's reader (which assumes one FAT) but honouring the count.
	rootSectors := (rootEntries*dirEntrySize + bps - 1) / bps
	dataSector := reserved + numFATs*fatSectors + rootSectors
	if total <= dataSector {
		return nil, fmt.Errorf("fat: %w: %d sectors, data area at sector %d", errNotFAT16, total, dataSector)
	}
	clusters := (total - dataSector) / spc
	if clusters < 4085 || clusters > 65524 {
		return nil, fmt.Errorf("fat: %w: %d clusters", errNotFAT16, clusters)
	}
	if fatSectors*bps/2 < clusters+2 {
		return nil, fmt.Errorf("fat: %w: a FAT of %d sectors is too small for %d clusters", errNotFAT16, fatSectors, clusters)
	}
	return &fatVolume{
		r:            r,
		bps:          bps,
		clusterBytes: spc * bps,
		fatStart:     partOffset + reserved*bps,
		rootStart:    partOffset + (reserved+numFATs*fatSectors)*bps,
		rootEntries:  rootEntries,
		dataStart:    partOffset + dataSector*bps,
		end:          partOffset + total*bps,
		clusters:     uint32(clusters),
	}, nil
}

func (v *fatVolume) validCluster(c uint32) bool { return c >= 2 && c < v.clusters+2 }

func (v *fatVolume) clusterOffset(c uint32) int64 {
	return v.dataStart + int64(c-2)*v.clusterBytes
}

// fatEntries reads n FAT entries from cluster c on.
func (v *fatVolume) fatEntries(c uint32, n int) ([]uint16, error) {
	b := make([]byte, 2*n)
	if _, err := v.r.ReadAt(b, v.fatStart+2*int64(c)); err != nil {
		return nil, fmt.Errorf("fat: reading the FAT: %w", err)
	}
	e := make([]uint16, n)
	for i := range e {
		e[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return e, nil
}

// readDir reads the directory starting at cluster c, following its cluster
// chain.
func (v *fatVolume) readDir(c uint32) ([]byte, error) {
	var d []byte
	for n := 0; ; n++ {
		if !v.validCluster(c) {
			return nil, fmt.Errorf("fat: directory chain reaches cluster %#x", c)
		}
		if int64(len(d)) >= fatMaxDirEntries*dirEntrySize {
			return nil, fmt.Errorf("fat: directory chain longer than %d entries", fatMaxDirEntries)
		}
		buf := make([]byte, v.clusterBytes)
		if _, err := v.r.ReadAt(buf, v.clusterOffset(c)); err != nil {
			return nil, fmt.Errorf("fat: reading a directory: %w", err)
		}
		d = append(d, buf...)
		nextE, err := v.fatEntries(c, 1)
		if err != nil {
			return nil, err
		}
		next := uint32(nextE[0])
		if next >= 0xFFF8 {
			return d, nil
		}
		c = next
	}
}

// findEntry returns the 32-byte entry named name (matched case-insensitively
// against the long name, if it has a valid one, and the short name) in the
// directory d, scanning up to the end-of-directory marker.
func findEntry(d []byte, name string) []byte {
	var (
		lfn  []uint16
		want int // the next long name entry's sequence number; 0: none
		sum  byte
	)
	for i := 0; i+dirEntrySize <= len(d); i += dirEntrySize {
		e := d[i : i+dirEntrySize]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 {
			want = 0
			continue
		}
		if e[11]&0x3F == attrLongName {
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 && seq > 0 && seq <= 20 {
				lfn = make([]uint16, seq*13)
				want, sum = seq, e[13]
			}
			if want == 0 || seq != want || e[13] != sum {
				want = 0
				continue
			}
			chars := lfn[(seq-1)*13 : seq*13]
			for j := range chars {
				chars[j] = binary.LittleEndian.Uint16(e[lfnCharOffset(j):])
			}
			want--
			if want == 0 {
				want = -1 // complete, waiting for its short entry
			}
			continue
		}
		long := ""
		if want == -1 && shortChecksum(e[0:11]) == sum {
			end := 0
			for end < len(lfn) && lfn[end] != 0 {
				end++
			}
			long = string(utf16.Decode(lfn[:end]))
		}
		want = 0
		if e[11]&attrVolumeID != 0 {
			continue
		}
		short := shortString(e[0:11])
		if short == "." || short == ".." {
			continue
		}
		if (long != "" && strings.EqualFold(long, name)) || strings.EqualFold(short, name) {
			return e
		}
	}
	return nil
}

// Extents returns where the file at path (slash-separated, with or without
// a leading slash, matched case-insensitively against long and short names)
// lies in the FAT16 file system at partOffset in r: offset is absolute within
// r, length is the file's size. It is for files stored in consecutive
// clusters, as WriteFAT16 stores them, so that the range can be rewritten in
// place (keeping the length); a file whose clusters are not consecutive is an
// error. An empty file has no clusters and gives offset 0, length 0.
//
// Missing files give an error that matches fs.ErrNotExist (errors.Is).
func Extents(r io.ReaderAt, partOffset int64, path string) (offset, length int64, err error) {
	v, err := openFAT16(r, partOffset)
	if err != nil {
		return 0, 0, err
	}
	p := strings.TrimPrefix(path, "/")
	if p == "" {
		return 0, 0, fmt.Errorf("fat: %q: not a file path", path)
	}
	comps := strings.Split(p, "/")
	for _, c := range comps {
		if c == "" || c == "." || c == ".." {
			return 0, 0, fmt.Errorf("fat: %q: invalid path", path)
		}
	}
	dir := make([]byte, v.rootEntries*dirEntrySize)
	if _, err := r.ReadAt(dir, v.rootStart); err != nil {
		return 0, 0, fmt.Errorf("fat: reading the root directory: %w", err)
	}
	for i, comp := range comps {
		e := findEntry(dir, comp)
		where := "/" + strings.Join(comps[:i], "/")
		if e == nil {
			return 0, 0, fmt.Errorf("fat: %q: no %q in %s: %w", path, comp, where, fs.ErrNotExist)
		}
		cluster := uint32(binary.LittleEndian.Uint16(e[26:]))
		isDir := e[11]&attrDirectory != 0
		if i < len(comps)-1 {
			if !isDir {
				return 0, 0, fmt.Errorf("fat: %q: %q in %s is not a directory", path, comp, where)
			}
			if dir, err = v.readDir(cluster); err != nil {
				return 0, 0, fmt.Errorf("fat: %q: %w", path, err)
			}
			continue
		}
		if isDir {
			return 0, 0, fmt.Errorf("fat: %q is a directory", path)
		}
		size := int64(binary.LittleEndian.Uint32(e[28:]))
		if size == 0 {
			return 0, 0, nil
		}
		if !v.validCluster(cluster) {
			return 0, 0, fmt.Errorf("fat: %q: first cluster %#x is out of range", path, cluster)
		}
		n := (size + v.clusterBytes - 1) / v.clusterBytes
		if int64(cluster)+n > int64(v.clusters)+2 {
			return 0, 0, fmt.Errorf("fat: %q: %d bytes from cluster %d run past the end of the file system", path, size, cluster)
		}
		chain, err := v.fatEntries(cluster, int(n))
		if err != nil {
			return 0, 0, err
		}
		for j, next := range chain {
			if j == len(chain)-1 {
				if next < 0xFFF8 {
					return 0, 0, fmt.Errorf("fat: %q: its cluster chain is longer than its %d bytes", path, size)
				}
			} else if uint32(next) != cluster+uint32(j)+1 {
				return 0, 0, fmt.Errorf("fat: %q is not stored in consecutive clusters", path)
			}
		}
		offset = v.clusterOffset(cluster)
		if offset+size > v.end {
			return 0, 0, fmt.Errorf("fat: %q extends past the end of the file system", path)
		}
		return offset, size, nil
	}
	panic("unreachable")
}
