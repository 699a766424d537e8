package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// memDisk is a sparse in-memory disk (io.WriterAt and io.ReaderAt) for sizes
// no test file should have.
type memDisk struct {
	chunks map[int64][]byte
	size   int64
}

const memChunk = 64 << 10

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if m.chunks == nil {
		m.chunks = map[int64][]byte{}
	}
	for n := 0; n < len(p); {
		c, o := (off+int64(n))/memChunk, (off+int64(n))%memChunk
		if m.chunks[c] == nil {
			m.chunks[c] = make([]byte, memChunk)
		}
		n += copy(m.chunks[c][o:], p[n:])
	}
	m.size = max(m.size, off+int64(len(p)))
	return len(p), nil
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	for n := 0; n < len(p); {
		c, o := (off+int64(n))/memChunk, (off+int64(n))%memChunk
		if ch := m.chunks[c]; ch != nil {
			n += copy(p[n:], ch[o:])
		} else {
			k := copy(p[n:], make([]byte, memChunk-o))
			n += k
		}
	}
	return len(p), nil
}

// testParts is the appliance's layout: the 100 MiB boot partition at 4 MiB,
// two root file systems and /perm up to the last MiB.
func testParts(diskSize int64) []Partition {
	const boot, root = 100 * MiB, 400 * MiB
	p1 := int64(8192 * 512)
	return []Partition{
		{Start: p1, Size: boot, Type: TypeEFISystem, GUID: DeriveGUID("test/p1"), Name: "boot"},
		{Start: p1 + boot, Size: root, Type: TypeLinuxRootAMD64, GUID: DeriveGUID("test/p2"), Name: "root A"},
		{Start: p1 + boot + root, Size: root, Type: TypeLinuxRootAMD64, GUID: DeriveGUID("test/p3"), Name: "root B"},
		{Start: p1 + boot + 2*root, Size: diskSize - MiB - (p1 + boot + 2*root), Type: TypeLinuxData, GUID: DeriveGUID("test/p4"), Name: "perm — données"},
	}
}

var dumpLine = regexp.MustCompile(`^\S+(\d) : start=\s*(\d+), size=\s*(\d+), type=([0-9A-F-]+), uuid=([0-9A-F-]+), name="([^"]*)"$`)

func TestGPTWithRealTools(t *testing.T) {
	const diskSize = 1200 * MiB
	diskGUID := DeriveGUID("test/disk")
	parts := testParts(diskSize)
	for _, kind := range []MBRKind{ProtectiveMBR, HybridMBR} {
		t.Run(fmt.Sprint(map[MBRKind]string{ProtectiveMBR: "protective", HybridMBR: "hybrid"}[kind]), func(t *testing.T) {
			img := sparseFile(t, "disk.img", diskSize)
			if err := WriteGPT(img, diskSize, diskGUID, parts, kind); err != nil {
				t.Fatal(err)
			}

			dump := mustRun(t, "sfdisk", "--dump", img.Name())
			for _, want := range []string{"label: gpt", "label-id: " + strings.ToUpper(FormatGUID(diskGUID)), "first-lba: 34", fmt.Sprintf("last-lba: %d", diskSize/512-34)} {
				if !strings.Contains(dump, want+"\n") {
					t.Errorf("sfdisk --dump does not say %q:\n%s", want, dump)
				}
			}
			n := 0
			for _, l := range strings.Split(dump, "\n") {
				m := dumpLine.FindStringSubmatch(l)
				if m == nil {
					continue
				}
				n++
				i := int(m[1][0] - '1')
				p := parts[i]
				if name, err := strconv.Unquote(`"` + m[6] + `"`); err == nil {
					m[6] = name // sfdisk writes non-ASCII bytes as \xNN
				}
				want := []string{fmt.Sprint(p.Start / 512), fmt.Sprint(p.Size / 512), strings.ToUpper(FormatGUID(p.Type)), strings.ToUpper(FormatGUID(p.GUID)), p.Name}
				if got := m[2:]; strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("sfdisk: partition %d is %q, want %q", i+1, got, want)
				}
			}
			if n != len(parts) {
				t.Errorf("sfdisk --dump shows %d partitions, want %d:\n%s", n, len(parts), dump)
			}
			if out := mustRun(t, "sfdisk", "--verify", img.Name()); !strings.Contains(out, "No errors detected") {
				t.Errorf("sfdisk --verify:\n%s", out)
			}
			if out := mustRun(t, "sgdisk", "-v", img.Name()); !strings.Contains(out, "No problems found") {
				t.Errorf("sgdisk -v:\n%s", out)
			}

			// The MBR, read directly.
			mbr := make([]byte, 512)
			img.ReadAt(mbr, 0)
			if mbr[510] != 0x55 || mbr[511] != 0xAA {
				t.Errorf("no MBR signature: % x", mbr[510:])
			}
			entry := func(i int) (typ byte, start, size uint32, status byte) {
				e := mbr[446+16*i:]
				return e[4], binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:]), e[0]
			}
			type ent struct {
				typ         byte
				start, size uint32
				status      byte
			}
			want := []ent{{0xEE, 1, diskSize/512 - 1, 0}, {}, {}, {}}
			if kind == HybridMBR {
				want = []ent{{0x0E, 8192, 100 * MiB / 512, 0}, {0xEE, 1, 8191, 0}, {}, {}}
			}
			for i, w := range want {
				var g ent
				g.typ, g.start, g.size, g.status = entry(i)
				if g != w {
					t.Errorf("MBR entry %d: %+v, want %+v", i+1, g, w)
				}
			}
			if kind == HybridMBR {
				// fdisk reads the MBR half as a dos label; Linux (and
				// fdisk by default) still take the GPT.
				out := mustRun(t, "sfdisk", "--label-nested", "dos", "--dump", img.Name())
				for _, want := range []string{"label: dos", "start=        8192, size=      204800, type=e", "start=           1, size=        8191, type=ee"} {
					if !strings.Contains(out, want) {
						t.Errorf("sfdisk --label-nested dos --dump does not say %q:\n%s", want, out)
					}
				}
				if out := mustRun(t, "fdisk", "-l", img.Name()); !strings.Contains(out, "Disklabel type: gpt") {
					t.Errorf("fdisk -l does not take the GPT:\n%s", out)
				}
				if out := mustRun(t, "sgdisk", "-O", img.Name()); !strings.Contains(out, "W95 FAT16 (LBA)") && !strings.Contains(out, "0x0E") {
					t.Logf("sgdisk -O:\n%s", out)
				}
			}

			// ReadGPT round-trips.
			g, got, err := ReadGPT(img)
			if err != nil {
				t.Fatal(err)
			}
			if g != diskGUID || fmt.Sprint(got) != fmt.Sprint(parts) {
				t.Errorf("ReadGPT = %s %+v\nwant %s %+v", FormatGUID(g), got, FormatGUID(diskGUID), parts)
			}
			// gokrazy's rootdev takes the first partition entry at byte
			// 1024 (it assumes 512-byte sectors) as the PARTUUID that
			// root=PARTUUID=.../PARTNROFF=1 names; blkid agrees with
			// FormatGUID on the text form.
			e := make([]byte, 128)
			img.ReadAt(e, 1024)
			if !bytes.Equal(e[16:32], parts[0].GUID[:]) {
				t.Errorf("first entry's GUID % x, want % x", e[16:32], parts[0].GUID[:])
			}
		})
	}
}

// readerOnly hides a reader's size, so ReadGPT cannot find the backup.
type readerOnly struct{ io.ReaderAt }

func TestReadGPTDamaged(t *testing.T) {
	const diskSize = 64 * MiB
	disk := func() *bytes.Reader {
		m := &memDisk{}
		parts := []Partition{{Start: MiB, Size: 10 * MiB, Type: TypeEFISystem, GUID: DeriveGUID("a"), Name: "boot"}}
		if err := WriteGPT(m, diskSize, DeriveGUID("d"), parts, ProtectiveMBR); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, diskSize)
		m.ReadAt(b, 0)
		return bytes.NewReader(b)
	}
	corrupt := func(r *bytes.Reader, off int64) *bytes.Reader {
		b := make([]byte, r.Size())
		r.ReadAt(b, 0)
		b[off] ^= 0x40
		return bytes.NewReader(b)
	}
	last := int64(diskSize - 512)
	for _, tc := range []struct {
		name       string
		off        []int64
		wantErr    string // with the backup unreachable
		backupSave bool
	}{
		{"entry", []int64{2*512 + 60}, "partition entries CRC32", true},
		{"header", []int64{512 + 40}, "header CRC32", true},
		{"signature", []int64{512}, "no primary GPT header", true},
		{"both", []int64{2*512 + 60, last - 32*512 + 60}, "partition entries CRC32", false},
		{"both headers", []int64{512 + 40, last + 40}, "header CRC32", false},
	} {
		r := disk()
		for _, o := range tc.off {
			r = corrupt(r, o)
		}
		if _, _, err := ReadGPT(readerOnly{r}); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: ReadGPT without the backup: %v, want %q", tc.name, err, tc.wantErr)
		}
		_, parts, err := ReadGPT(r)
		if tc.backupSave {
			if err != nil || len(parts) != 1 || parts[0].Start != MiB || parts[0].Name != "boot" {
				t.Errorf("%s: ReadGPT with the backup: %+v, %v", tc.name, parts, err)
			}
		} else if err == nil {
			t.Errorf("%s: ReadGPT of a disk with both tables damaged succeeds", tc.name)
		}
	}
}

func TestWriteGPTErrors(t *testing.T) {
	const diskSize = 64 * MiB
	ok := Partition{Start: MiB, Size: 10 * MiB, Type: TypeEFISystem, GUID: DeriveGUID("a")}
	with := func(f func(*Partition)) Partition { p := ok; f(&p); return p }
	g := DeriveGUID("d")
	for _, tc := range []struct {
		name  string
		size  int64
		guid  [16]byte
		parts []Partition
		mbr   MBRKind
		want  string
	}{
		{"odd disk", diskSize + 1, g, nil, ProtectiveMBR, "multiple of 512"},
		{"tiny disk", 20 * 512, g, nil, ProtectiveMBR, "too small"},
		{"zero disk guid", diskSize, [16]byte{}, nil, ProtectiveMBR, "disk GUID is zero"},
		{"unaligned", diskSize, g, []Partition{with(func(p *Partition) { p.Start += 100 })}, ProtectiveMBR, "multiples of 512"},
		{"in the table", diskSize, g, []Partition{with(func(p *Partition) { p.Start = 33 * 512 })}, ProtectiveMBR, "outside the usable area"},
		{"past the end", diskSize, g, []Partition{with(func(p *Partition) { p.Size = diskSize - MiB - 32*512 })}, ProtectiveMBR, "outside the usable area"},
		{"no type", diskSize, g, []Partition{with(func(p *Partition) { p.Type = [16]byte{} })}, ProtectiveMBR, "no type GUID"},
		{"long name", diskSize, g, []Partition{with(func(p *Partition) { p.Name = strings.Repeat("x", 37) })}, ProtectiveMBR, "longer than 36"},
		{"overlap", diskSize, g, []Partition{ok, with(func(p *Partition) { p.Start += 5 * MiB; p.GUID = DeriveGUID("b") })}, ProtectiveMBR, "overlap"},
		{"same guid", diskSize, g, []Partition{ok, with(func(p *Partition) { p.Start += 20 * MiB })}, ProtectiveMBR, "same GUID"},
		{"hybrid without p1", diskSize, g, []Partition{{}, ok}, HybridMBR, "needs partition 1"},
		{"hybrid p1 not first", diskSize, g, []Partition{with(func(p *Partition) { p.Start += 20 * MiB; p.GUID = DeriveGUID("b") }), ok}, HybridMBR, "first on the disk"},
	} {
		err := WriteGPT(&memDisk{}, tc.size, tc.guid, tc.parts, tc.mbr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// Unused slots keep the partition numbers; disks over 2 TiB get the
// protective entry's maximum size.
func TestGPTSlotsAndLargeDisk(t *testing.T) {
	const diskSize = 3 << 40
	m := &memDisk{}
	parts := []Partition{
		{Start: MiB, Size: 10 * MiB, Type: TypeEFISystem, GUID: DeriveGUID("a"), Name: "boot"},
		{},
		{Start: 2 << 40, Size: 10 * MiB, Type: TypeLinuxData, GUID: DeriveGUID("c"), Name: "far"},
	}
	if err := WriteGPT(m, diskSize, DeriveGUID("d"), parts, ProtectiveMBR); err != nil {
		t.Fatal(err)
	}
	_, got, err := ReadGPT(m)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(parts) {
		t.Errorf("ReadGPT = %+v\nwant %+v", got, parts)
	}
	mbr := make([]byte, 512)
	m.ReadAt(mbr, 0)
	if size := binary.LittleEndian.Uint32(mbr[446+12:]); size != 0xFFFFFFFF {
		t.Errorf("protective entry size %#x on a 3 TiB disk", size)
	}
	if !bytes.Equal(mbr[446+5:446+8], []byte{0xFF, 0xFF, 0xFF}) {
		t.Errorf("protective entry end CHS % x", mbr[446+5:446+8])
	}
}

func TestGUIDs(t *testing.T) {
	want := []byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}
	if !bytes.Equal(TypeEFISystem[:], want) {
		t.Errorf("EFI System type on disk: % x", TypeEFISystem[:])
	}
	if s := FormatGUID(TypeEFISystem); s != "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" {
		t.Errorf("FormatGUID = %s", s)
	}
	for _, g := range [][16]byte{TypeLinuxRootAMD64, TypeLinuxRootARM64, TypeLinuxData, DeriveGUID("x")} {
		if p, err := ParseGUID(strings.ToUpper(FormatGUID(g))); err != nil || p != g {
			t.Errorf("round trip of %s: %s, %v", FormatGUID(g), FormatGUID(p), err)
		}
	}
	for _, bad := range []string{"", "c12a7328f81f11d2ba4b00a0c93ec93b", "c12a7328-f81f-11d2-ba4b-00a0c93ec93", "x12a7328-f81f-11d2-ba4b-00a0c93ec93b", "{c12a7328-f81f-11d2-ba4b-00a0c93ec9}"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeds", bad)
		}
	}
	a, b := DeriveGUID("host/p1"), DeriveGUID("host/p2")
	if a == b || a != DeriveGUID("host/p1") {
		t.Error("DeriveGUID is not a function of its seed")
	}
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, g := range [][16]byte{a, b} {
		if !v4.MatchString(FormatGUID(g)) {
			t.Errorf("DeriveGUID gives %s, not RFC 4122 version 4", FormatGUID(g))
		}
	}
}
