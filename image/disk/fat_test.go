package disk

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const MiB = 1 << 20

var testModTime = time.Date(2026, 7, 1, 12, 34, 56, 0, time.UTC)

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// bootFiles is a boot partition's worth of files: a kernel, the files
// gokrazy rewrites in place, EFI and Raspberry Pi firmware names, 300
// device tree overlays with long names that share their first characters, a
// file of exactly one cluster (2 KiB at 100 MiB), an empty file, and names
// with spaces, several dots and non-ASCII characters.
func bootFiles() []File {
	files := []File{
		{"vmlinuz", randomBytes(1, 5*MiB+123)},
		{"cmdline.txt", []byte("console=ttyS0,115200 root=PARTUUID=60c24cc1-f3f9-427a-8199-a3b5c7d9e1f3/PARTNROFF=1 init=/gokrazy/init rootwait panic=10 oops=panic\n")},
		{"loader/loader.conf", []byte("timeout 0\ndefault gokrazy.conf\n")},
		{"loader/entries/gokrazy.conf", []byte("title mailgate\nlinux /vmlinuz\noptions console=ttyS0,115200 root=PARTUUID=60c24cc1-f3f9-427a-8199-a3b5c7d9e1f3/PARTNROFF=1 init=/gokrazy/init rootwait\n")},
		{"EFI/BOOT/BOOTX64.EFI", randomBytes(2, 123456)},
		{"EFI/BOOT/BOOTAA64.EFI", randomBytes(3, 98765)},
		{"bcm2711-rpi-4-b.dtb", randomBytes(4, 54321)},
		{"bcm2712-rpi-5-b.dtb", randomBytes(5, 76543)},
		{"config.txt", []byte("arm_64bit=1\nenable_uart=1\n")},
		{"start4.elf", randomBytes(6, 2*MiB+7)},
		{"fixup4.dat", randomBytes(7, 5432)},
		{"pieeprom.sig", []byte("0123456789abcdef\n")},
		{"vl805.sig", []byte("fedcba9876543210\n")},
		{"one-cluster.bin", randomBytes(8, 2048)},
		{"empty.txt", nil},
		{"README", []byte("upper-case 8.3 name, no long name entry\n")},
		{"Read Me Too.txt", []byte("spaces\n")},
		{"archive.tar.gz", randomBytes(9, 3000)},
		{"Grüße.txt", []byte("non-ASCII\n")},
		{"gokrazy.config", []byte("tail ~1 in the root, ~1 in loader/entries too\n")},
	}
	stems := []string{"vc4-kms-v3d-pi", "hifiberry-dacplus", "i2c-sensor", "disable-bt", "Adafruit-PiTFT", "w1-gpio-pullup"}
	r := rand.New(rand.NewPCG(42, 42))
	for i := range 300 {
		name := fmt.Sprintf("overlays/%s-%03d.dtbo", stems[i%len(stems)], i)
		files = append(files, File{name, randomBytes(uint64(100+i), 1+r.IntN(6000))})
	}
	files = append(files, File{"overlays/README", []byte("overlays\n")})
	return files
}

func writeImage(t testing.TB, files []File, size int64) *os.File {
	t.Helper()
	f := sparseFile(t, "boot.img", size)
	if err := WriteFAT16(f, 0, size, FATOptions{Label: "MAILGATE", VolumeID: 0x4D474154, ModTime: testModTime}, files); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFATWithRealTools(t *testing.T) {
	files := bootFiles()
	img := writeImage(t, files, 100*MiB)

	// fsck.fat: clean, and it agrees on the geometry.
	out := mustRun(t, "fsck.vfat", "-n", "-v", img.Name())
	for _, want := range []string{"2048 bytes per cluster", "1 FATs, 16 bit entries", "512 bytes per logical sector"} {
		if !strings.Contains(out, want) {
			t.Errorf("fsck.vfat -v does not say %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"differ", "Dirty", "ree cluster", "orrect", "nvalid", "Bad", "Reclaim", "Performing changes"} {
		if strings.Contains(out, bad) {
			t.Errorf("fsck.vfat reports %q:\n%s", bad, out)
		}
	}

	// mtools: every file and directory, under its long name.
	listing := mustRun(t, "mdir", "-/", "-b", "-i", img.Name(), "::")
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(listing), "\n") {
		got[strings.TrimSuffix(strings.TrimPrefix(l, "::/"), "/")] = true
	}
	want := map[string]bool{}
	for _, f := range files {
		for p := f.Path; p != "."; p = filepath.Dir(p) {
			want[p] = true
		}
	}
	for p := range want {
		if !got[p] {
			t.Errorf("mdir does not list %q", p)
		}
	}
	for p := range got {
		if !want[p] {
			t.Errorf("mdir lists %q, which was not written", p)
		}
	}

	// The short names are Windows' (what gokrazy's reader computes).
	entries := mustRun(t, "mdir", "-i", img.Name(), "::/loader/entries")
	if !strings.Contains(entries, "GOKRAZ~1 CON") {
		t.Errorf("loader/entries has no GOKRAZ~1.CON:\n%s", entries)
	}
	root := mustRun(t, "mdir", "-i", img.Name(), "::")
	for _, want := range []string{"CMDLINE  TXT", "GOKRAZ~1 CON", "ARCHIV~1 GZ", "README  ", "Volume in drive : is MAILGATE", "4D47-4154"} {
		if !strings.Contains(root, want) {
			t.Errorf("the root directory listing does not show %q:\n%s", want, root)
		}
	}

	// mtools reads back every file's contents.
	outDir := t.TempDir()
	mustRun(t, "mcopy", "-s", "-n", "-m", "-i", img.Name(), "::*", outDir)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(outDir, f.Path))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Equal(b, f.Data) {
			t.Errorf("mcopy %s: %d bytes, differ from the %d written", f.Path, len(b), len(f.Data))
		}
	}
	if typed := mustRun(t, "mtype", "-i", img.Name(), "::/loader/entries/gokrazy.conf"); typed != string(files[3].Data) {
		t.Errorf("mtype gokrazy.conf = %q", typed)
	}

	// Extents finds the files gokrazy rewrites in place (and others), and
	// agrees with gokrazy's own reader.
	byPath := map[string][]byte{}
	for _, f := range files {
		byPath[f.Path] = f.Data
	}
	for _, tc := range []struct {
		path, file string
		shortNames []string
	}{
		{"/cmdline.txt", "cmdline.txt", []string{"CMDLINE.TXT"}},
		{"/loader/entries/gokrazy.conf", "loader/entries/gokrazy.conf", []string{"LOADER", "ENTRIES", "GOKRAZ~1.CON"}},
		{"/pieeprom.sig", "pieeprom.sig", []string{"PIEEPROM.SIG"}},
		{"/vl805.sig", "vl805.sig", []string{"VL805.SIG"}},
		{"/vmlinuz", "vmlinuz", []string{"VMLINUZ"}},
		{"/EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/BOOTX64.EFI", []string{"EFI", "BOOT", "BOOTX64.EFI"}},
		{"/one-cluster.bin", "one-cluster.bin", []string{"ONE-CL~1.BIN"}},
	} {
		gkOff, gkLen, err := gokrazyStyleExtents(img, tc.shortNames)
		if err != nil {
			t.Errorf("%s the way gokrazy reads it: %v", tc.path, err)
		}
		for _, p := range []string{tc.path, strings.TrimPrefix(tc.path, "/"), strings.ToUpper(tc.path)} {
			off, n, err := Extents(img, 0, p)
			if err != nil {
				t.Errorf("Extents(%q): %v", p, err)
				continue
			}
			if off != gkOff || n != gkLen {
				t.Errorf("Extents(%q) = %d, %d; gokrazy's reader says %d, %d", p, off, n, gkOff, gkLen)
			}
			b := make([]byte, n)
			if _, err := img.ReadAt(b, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, byPath[tc.file]) {
				t.Errorf("the bytes at Extents(%q) are not the file", p)
			}
		}
	}
	for _, p := range []string{"/overlays/Adafruit-PiTFT-016.dtbo", "/Grüße.txt", "/GRÜßE.TXT", "/Read Me Too.txt", "/loader/entries/GOKRAZ~1.CON", "/GOKRAZ~1.CON"} {
		off, n, err := Extents(img, 0, p)
		if err != nil {
			t.Errorf("Extents(%q): %v", p, err)
			continue
		}
		b := make([]byte, n)
		img.ReadAt(b, off)
		found := false
		for _, d := range byPath {
			found = found || (len(d) > 0 && bytes.Equal(d, b))
		}
		if !found {
			t.Errorf("Extents(%q) gives bytes of no file", p)
		}
	}
	if _, n, err := Extents(img, 0, "empty.txt"); err != nil || n != 0 {
		t.Errorf("Extents(empty.txt) = %d, %v", n, err)
	}
	for _, p := range []string{"/nope.txt", "/loader/entries/other.conf", "/nodir/cmdline.txt"} {
		if _, _, err := Extents(img, 0, p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Extents(%q): %v, want fs.ErrNotExist", p, err)
		}
	}
	for _, p := range []string{"/loader", "/cmdline.txt/x", "", "/a//b"} {
		if _, _, err := Extents(img, 0, p); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Extents(%q): %v, want an error other than not found", p, err)
		}
	}

	// The same inputs give the same bytes.
	again := writeImage(t, files, 100*MiB)
	if a, b := fileHash(t, img), fileHash(t, again); a != b {
		t.Errorf("two writes differ: %x, %x", a, b)
	}
}

// gokrazyStyleExtents finds a file the way gokrazy's boot partition reader
// does, with its assumptions: the root directory right after one FAT, 8.3
// names compared case-insensitively (shortNames are what it computes for
// each path component: Windows' short names, with ~1 for names that do not
// fit), every directory scanned for as many entries as the root directory
// has, from its first cluster on and past empty entries, a directory being an
// entry whose attributes are exactly 0x10, and files in one extent.
func gokrazyStyleExtents(r io.ReaderAt, shortNames []string) (offset, length int64, err error) {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return 0, 0, err
	}
	le16 := func(b []byte) int64 { return int64(b[0]) | int64(b[1])<<8 }
	bps, spc, reserved := le16(bs[11:]), int64(bs[13]), le16(bs[14:])
	rootEntries, fatSectors := le16(bs[17:]), le16(bs[22:])
	dirOffset := (reserved + fatSectors) * bps
	dataOffset := dirOffset + (rootEntries*32+bps-1)/bps*bps
	for _, want := range shortNames {
		found := false
		for i := int64(0); i < rootEntries && !found; i++ {
			e := make([]byte, 32)
			if _, err := r.ReadAt(e, dirOffset+32*i); err != nil {
				return 0, 0, err
			}
			if e[0] == 0 {
				continue
			}
			name := strings.TrimRight(string(e[0:8]), " ")
			if e[8] != ' ' {
				name += "." + strings.TrimRight(string(e[8:11]), " ")
			}
			if !strings.EqualFold(name, want) {
				continue
			}
			found = true
			at := dataOffset + (le16(e[26:])-2)*spc*bps
			if e[11] == 0x10 {
				dirOffset = at
			} else {
				offset, length = at, int64(e[28])|int64(e[29])<<8|int64(e[30])<<16|int64(e[31])<<24
			}
		}
		if !found {
			return 0, 0, fmt.Errorf("no %s", want)
		}
	}
	return offset, length, nil
}

func fileHash(t testing.TB, f *os.File) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<40)); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// Rewriting a file in place through Extents, as an A/B switch does, leaves a
// clean file system that reads back the new contents.
func TestExtentsRewriteInPlace(t *testing.T) {
	img := writeImage(t, bootFiles(), 64*MiB)
	off, n, err := Extents(img, 0, "/loader/entries/gokrazy.conf")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	img.ReadAt(b, off)
	nb := bytes.Replace(b, []byte("PARTNROFF=1"), []byte("PARTNROFF=2"), 1)
	if bytes.Equal(nb, b) {
		t.Fatal("no root= to switch")
	}
	if _, err := img.WriteAt(nb, off); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "fsck.vfat", "-n", img.Name())
	if got := mustRun(t, "mtype", "-i", img.Name(), "::/loader/entries/gokrazy.conf"); got != string(nb) {
		t.Errorf("after the rewrite, mtype says %q", got)
	}
}

// A file whose clusters are not consecutive (as another FAT driver might
// leave it) is an error, not a wrong range.
func TestExtentsFragmented(t *testing.T) {
	img := writeImage(t, []File{{"a.bin", randomBytes(1, 3*2048)}, {"b.bin", randomBytes(2, 2048)}}, 100*MiB)
	g, err := fatLayout(100 * MiB)
	if err != nil {
		t.Fatal(err)
	}
	// There are no directories: a.bin is in clusters 2-4 and b.bin in 5;
	// point cluster 3 at a free cluster instead of 4.
	entry := func(c int64, v uint16) {
		img.WriteAt([]byte{byte(v), byte(v >> 8)}, int64(g.reserved)*512+2*c)
	}
	entry(3, 100)
	entry(100, 0xFFFF)
	if _, _, err := Extents(img, 0, "a.bin"); err == nil || !strings.Contains(err.Error(), "consecutive") {
		t.Errorf("Extents of a fragmented file: %v", err)
	}
	if _, _, err := Extents(img, 0, "b.bin"); err != nil {
		t.Errorf("Extents(b.bin): %v", err)
	}
}

func TestFATSizes(t *testing.T) {
	files := bootFiles()[:12]
	for _, tc := range []struct {
		size        int64
		clusterSize int
	}{
		{64 * MiB, 1024},
		{100 * MiB, 2048},
		{256 * MiB, 4096},
		{3 * MiB, 512},
		{512 * MiB, 16384},
		{1024 * MiB, 32768},
	} {
		t.Run(fmt.Sprint(tc.size>>20, "MiB"), func(t *testing.T) {
			g, err := fatLayout(tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if got := int(g.clusterBytes()); got != tc.clusterSize {
				t.Errorf("cluster size %d, want %d", got, tc.clusterSize)
			}
			if g.dataStart%8 != 0 || g.dataStart%g.spc != 0 || g.reserved%g.spc != 0 || g.reserved%8 != 0 {
				t.Errorf("reserved sectors %d, data area at sector %d: not aligned", g.reserved, g.dataStart)
			}
			if g.fatSectors*256 < g.clusters+2 {
				t.Errorf("%d FAT sectors for %d clusters", g.fatSectors, g.clusters)
			}
			fs := files
			if tc.size < 10*MiB {
				fs = []File{files[1], files[2], files[3]}
			}
			img := writeImage(t, fs, tc.size)
			out := mustRun(t, "fsck.vfat", "-n", "-v", img.Name())
			if want := fmt.Sprintf("%d bytes per cluster", tc.clusterSize); !strings.Contains(out, want) {
				t.Errorf("fsck.vfat does not say %q:\n%s", want, out)
			}
			mustRun(t, "mdir", "-/", "-i", img.Name(), "::")
		})
	}
	for _, size := range []int64{1 * MiB, 2100 * MiB, 4096 * MiB, 100*MiB + 100} {
		if _, err := fatLayout(size); err == nil {
			t.Errorf("a FAT16 file system of %d bytes", size)
		} else {
			t.Log(err)
		}
	}
}

func TestFATErrors(t *testing.T) {
	w := &memDisk{}
	o := FATOptions{ModTime: testModTime}
	var many []File
	for i := range 300 {
		many = append(many, File{fmt.Sprintf("file-with-a-long-name-%03d.txt", i), []byte("x")})
	}
	var short []File
	for i := range 511 {
		short = append(short, File{fmt.Sprintf("F%03d.TXT", i), nil})
	}
	for _, tc := range []struct {
		name  string
		size  int64
		o     FATOptions
		files []File
		want  string
	}{
		{"too many files", 100 * MiB, o, many, "the root directory needs 1200 entries"},
		{"too many with a label", 100 * MiB, FATOptions{Label: "X"}, append(short, File{"F511.TXT", nil}), "needs 513 entries"},
		{"too big", 64 * MiB, o, []File{{"a", make([]byte, 40*MiB)}, {"b", make([]byte, 30*MiB)}}, "the files do not fit"},
		{"too small", 1 * MiB, o, nil, "cannot be"},
		{"duplicate", 64 * MiB, o, []File{{"a/B.txt", nil}, {"A/b.TXT", nil}}, "given twice"},
		{"file as dir", 64 * MiB, o, []File{{"a", nil}, {"a/b", nil}}, "is a file"},
		{"bad char", 64 * MiB, o, []File{{"a:b", nil}}, "does not allow"},
		{"dot", 64 * MiB, o, []File{{"a/../b", nil}}, `".."`},
		{"empty component", 64 * MiB, o, []File{{"a//b", nil}}, "empty path component"},
		{"trailing dot", 64 * MiB, o, []File{{"a.", nil}}, "ends in a dot"},
		{"label", 64 * MiB, FATOptions{Label: "twelve chars"}, nil, "at most 11"},
		{"label char", 64 * MiB, FATOptions{Label: "A.B"}, nil, "not allowed"},
	} {
		err := WriteFAT16(w, 0, tc.size, tc.o, tc.files)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	// Exactly full: 511 entries and the label.
	if err := WriteFAT16(w, 0, 64*MiB, FATOptions{Label: "X"}, short); err != nil {
		t.Errorf("511 short names and a label: %v", err)
	}
}

func TestShortNames(t *testing.T) {
	root, err := buildFATTree([]File{
		{"gokrazy.conf", nil},
		{"cmdline.txt", nil},
		{"BOOTX64.EFI", nil},
		{"EFI/", nil},
		{"a.b.c", nil},
		{".hidden", nil},
		{"x+y.txt", nil},
		{"Read Me.txt", nil},
		{"Grüße.txt", nil},
		{"MixedCase", nil},
		{"GOKRAZ~1.CON", nil}, // a real 8.3 name keeps its name; the long one moves on
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nameFATDir(root); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		short string
		lfn   bool
	}{
		"gokrazy.conf": {"GOKRAZ~2.CON", true},
		"GOKRAZ~1.CON": {"GOKRAZ~1.CON", false},
		"cmdline.txt":  {"CMDLINE.TXT", true},
		"BOOTX64.EFI":  {"BOOTX64.EFI", false},
		"EFI":          {"EFI", false},
		"a.b.c":        {"AB~1.C", true},
		".hidden":      {"HIDDEN~1", true},
		"x+y.txt":      {"X_Y~1.TXT", true},
		"Read Me.txt":  {"README~1.TXT", true},
		"Grüße.txt":    {"GR__E~1.TXT", true},
		"MixedCase":    {"MIXEDC~1", true},
	}
	for _, c := range root.children {
		w := want[c.name]
		if got := shortString(c.short[:]); got != w.short || (c.lfn != nil) != w.lfn {
			t.Errorf("%q: short name %q, long name %v; want %q, %v", c.name, got, c.lfn != nil, w.short, w.lfn)
		}
	}
	if !sort.SliceIsSorted(root.children, func(i, j int) bool { return root.children[i].name < root.children[j].name }) {
		t.Error("entries not sorted")
	}

	// Many names sharing a prefix get ~1, ~2, ... ~10, ~11 in sorted order.
	var fs []File
	for i := range 12 {
		fs = append(fs, File{fmt.Sprintf("overlay-%02d.dtbo", i), nil})
	}
	root, _ = buildFATTree(fs)
	nameFATDir(root)
	for i, c := range root.children {
		want := fmt.Sprintf("OVERLA~%d.DTB", i+1)
		if i+1 >= 10 {
			want = fmt.Sprintf("OVERL~%d.DTB", i+1)
		}
		if got := shortString(c.short[:]); got != want {
			t.Errorf("%s: %s, want %s", c.name, got, want)
		}
	}
}

// The FAT inside a partitioned disk at its partition's offset.
func TestFATInDisk(t *testing.T) {
	const diskSize = 1200 * MiB
	img := sparseFile(t, "disk.img", diskSize)
	parts := testParts(diskSize)
	if err := WriteGPT(img, diskSize, DeriveGUID("test/disk"), parts, HybridMBR); err != nil {
		t.Fatal(err)
	}
	files := bootFiles()
	if err := WriteFAT16(img, parts[0].Start, parts[0].Size, FATOptions{Label: "BOOT", ModTime: testModTime}, files); err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprintf("%s@@%d", img.Name(), parts[0].Start)
	list := mustRun(t, "mdir", "-b", "-i", at, "::/loader/entries")
	if strings.TrimSpace(list) != "::/loader/entries/gokrazy.conf" {
		t.Errorf("mdir at the partition's offset:\n%s", list)
	}
	if got := mustRun(t, "mtype", "-i", at, "::cmdline.txt"); got != string(files[1].Data) {
		t.Errorf("mtype cmdline.txt = %q", got)
	}
	// The boot sector records where the partition starts.
	bs := make([]byte, 512)
	img.ReadAt(bs, parts[0].Start)
	if hidden := int64(bs[28]) | int64(bs[29])<<8 | int64(bs[30])<<16 | int64(bs[31])<<24; hidden != parts[0].Start/512 {
		t.Errorf("hidden sectors %d, want %d", hidden, parts[0].Start/512)
	}
	// Extents with the partition's offset gives offsets within the disk.
	off, n, err := Extents(img, parts[0].Start, "/loader/entries/gokrazy.conf")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	img.ReadAt(b, off)
	if !bytes.Equal(b, files[3].Data) {
		t.Errorf("Extents in the disk: wrong bytes at %d", off)
	}
	// And fsck.fat is happy with the partition (copied out).
	boot, err := os.Create(filepath.Join(t.TempDir(), "p1.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer boot.Close()
	if _, err := io.Copy(boot, io.NewSectionReader(img, parts[0].Start, parts[0].Size)); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "fsck.vfat", "-n", boot.Name())
}
