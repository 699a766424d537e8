//go:build linux

package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/firmware"
	"mailgate/image/disk"
)

// The structural tests check the images with the tools an administrator
// would use (util-linux, gdisk, mtools, dosfstools, squashfs-tools,
// e2fsprogs, file), not only with our own readers. The Raspberry Pi image
// cannot boot here, so this is its whole test.

// testEpoch is the fixed build time of the images the tests build.
var testEpoch = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// buildTest builds the image of target with version into dir.
func buildTest(t *testing.T, target, version, dir string) *Result {
	t.Helper()
	needTools(t, "mksquashfs", "mkfs.ext4")
	if target == "amd64" {
		needFiles(t, SystemdBootEFI)
	}
	moduleDir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Build(context.Background(), Options{
		Target: Targets[target], Version: version, Epoch: testEpoch,
		OutDir: dir, ModuleDir: moduleDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s image %s in %v", target, version, time.Since(start).Round(100*time.Millisecond))
	return res
}

// toolPath finds a checking tool, also in /usr/sbin and /sbin when those
// are not in $PATH.
func toolPath(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s is required for this test (make test-deps installs fdisk, gdisk, mtools, dosfstools, squashfs-tools, e2fsprogs and file)", name)
	return ""
}

func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		toolPath(t, n)
	}
}

// runTool runs a tool in the C locale and UTC and returns its combined
// output and exit status.
func runTool(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, toolPath(t, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC", "MTOOLS_SKIP_CHECK=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		}
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return out.String(), 0
}

// mustTool is runTool for commands that must succeed.
func mustTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, code := runTool(t, name, args...)
	if code != 0 {
		t.Fatalf("%s %q: exit status %d:\n%s", name, args, code, out)
	}
	return out
}

// extract copies size bytes at off of img into a new sparse file dst.
func extract(t *testing.T, img string, off, size int64, dst string) {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for pos := int64(0); pos < size; {
		n := int(min(int64(len(buf)), size-pos))
		if _, err := in.ReadAt(buf[:n], off+pos); err != nil {
			t.Fatalf("reading %s at %d: %v", img, off+pos, err)
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], pos); err != nil {
				t.Fatal(err)
			}
		}
		pos += int64(n)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, f string, off, n int64) []byte {
	t.Helper()
	r, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		t.Fatalf("reading %d bytes of %s at %d: %v", n, f, off, err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSum(t *testing.T, f string) string {
	t.Helper()
	sum, _, err := fileSHA256(f)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// moduleFile reads a file of a pinned module (kernel, Pi firmware).
func moduleFile(t *testing.T, module, name string) []byte {
	t.Helper()
	moduleDir, _ := filepath.Abs("..")
	b := &builder{Options: Options{ModuleDir: moduleDir}}
	dir, err := b.moduleDir(context.Background(), module)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sfdiskPart is one partition line of `sfdisk --dump`.
type sfdiskPart struct {
	start, size int64 // sectors
	typ, uuid   string
	name        string
}

var sfdiskLine = regexp.MustCompile(`^\S+ : start=\s*(\d+), size=\s*(\d+), type=([^,]+)(?:, uuid=([^,]+))?(?:, name="([^"]*)")?`)

func parseSfdiskDump(t *testing.T, out string) (header map[string]string, parts []sfdiskPart) {
	t.Helper()
	header = map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if m := sfdiskLine.FindStringSubmatch(line); m != nil {
			start, _ := strconv.ParseInt(m[1], 10, 64)
			size, _ := strconv.ParseInt(m[2], 10, 64)
			parts = append(parts, sfdiskPart{start, size, m[3], m[4], m[5]})
		} else if k, v, ok := strings.Cut(line, ": "); ok && !strings.Contains(k, " ") {
			header[k] = v
		}
	}
	return header, parts
}

// checkGPT checks the partition table against the layout with our reader,
// sfdisk and sgdisk, and returns the partitions as ReadGPT sees them.
func checkGPT(t *testing.T, tg Target, res *Result) []disk.Partition {
	t.Helper()
	f, err := os.Open(res.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != DefaultDiskSize || res.ImageSize != DefaultDiskSize {
		t.Fatalf("image is %d bytes (Result says %d), want %d", fi.Size(), res.ImageSize, DefaultDiskSize)
	}
	diskGUID, parts, err := disk.ReadGPT(f)
	if err != nil {
		t.Fatalf("ReadGPT: %v", err)
	}
	permEnd := int64((DefaultDiskSize - 33*512) / MiB * MiB)
	want := []struct {
		start, size int64
		typ         [16]byte
		name        string
		typeName    string // as fdisk names it
	}{
		{4 * MiB, 100 * MiB, disk.TypeEFISystem, "boot", "EFI System"},
		{104 * MiB, 256 * MiB, tg.RootType, "root-a", map[string]string{"amd64": "Linux root (x86-64)", "arm64": "Linux root (ARM-64)"}[tg.GOARCH]},
		{360 * MiB, 256 * MiB, disk.TypeLinuxData, "root-b", "Linux filesystem"},
		{616 * MiB, permEnd - 616*MiB, disk.TypeLinuxData, "perm", "Linux filesystem"},
	}
	if len(parts) != len(want) {
		t.Fatalf("ReadGPT: %d partitions, want %d: %+v", len(parts), len(want), parts)
	}
	seen := map[[16]byte]bool{diskGUID: true}
	for i, w := range want {
		p := parts[i]
		if p.Start != w.start || p.Size != w.size || p.Type != w.typ || p.Name != w.name {
			t.Errorf("partition %d: start %d size %d type %s name %q; want start %d size %d type %s name %q",
				i+1, p.Start, p.Size, disk.FormatGUID(p.Type), p.Name, w.start, w.size, disk.FormatGUID(w.typ), w.name)
		}
		if seen[p.GUID] || p.GUID == ([16]byte{}) {
			t.Errorf("partition %d: GUID %s is zero or not unique", i+1, disk.FormatGUID(p.GUID))
		}
		seen[p.GUID] = true
	}
	if fmt.Sprint(parts) != fmt.Sprint(res.Partitions) {
		t.Errorf("the image's GPT differs from Result.Partitions:\n%+v\n%+v", parts, res.Partitions)
	}

	// util-linux reads the same table.
	header, sparts := parseSfdiskDump(t, mustTool(t, "sfdisk", "--dump", res.Image))
	if header["label"] != "gpt" || !strings.EqualFold(header["label-id"], disk.FormatGUID(diskGUID)) ||
		header["first-lba"] != "34" || header["last-lba"] != strconv.FormatInt(DefaultDiskSize/512-34, 10) {
		t.Errorf("sfdisk --dump header: %v (disk GUID %s)", header, disk.FormatGUID(diskGUID))
	}
	if len(sparts) != len(want) {
		t.Fatalf("sfdisk --dump: %d partitions, want %d", len(sparts), len(want))
	}
	for i, sp := range sparts {
		p := parts[i]
		if sp.start*512 != p.Start || sp.size*512 != p.Size || !strings.EqualFold(sp.typ, disk.FormatGUID(p.Type)) ||
			!strings.EqualFold(sp.uuid, disk.FormatGUID(p.GUID)) || sp.name != p.Name {
			t.Errorf("sfdisk sees partition %d as %+v, ReadGPT as %+v", i+1, sp, p)
		}
	}
	list := mustTool(t, "sfdisk", "--list", "--output", "Device,Type", res.Image)
	for i, w := range want {
		dev := fmt.Sprintf("%s%d", res.Image, i+1)
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(dev) + `\s+` + regexp.QuoteMeta(w.typeName) + `\s*$`)
		if !re.MatchString(list) {
			t.Errorf("sfdisk --list does not name partition %d %q:\n%s", i+1, w.typeName, list)
		}
	}
	// gdisk's verification: CRCs, backup table, overlaps, alignment.
	if out := mustTool(t, "sgdisk", "-v", res.Image); !strings.Contains(out, "No problems found.") {
		t.Errorf("sgdisk -v:\n%s", out)
	}

	// Sector 0.
	mbr := readAt(t, res.Image, 0, 512)
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		t.Errorf("MBR signature %x", mbr[510:])
	}
	type entry struct {
		typ         byte
		first, size uint32
	}
	var entries [4]entry
	for i := range entries {
		e := mbr[446+16*i:]
		entries[i] = entry{e[4], binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])}
		if e[0] != 0 {
			t.Errorf("MBR entry %d is marked bootable (%#x)", i+1, e[0])
		}
	}
	sectors := uint32(DefaultDiskSize / 512)
	wantMBR := [4]entry{{0xEE, 1, sectors - 1}}
	dosDump := []string{"start=           1, size=     2097151, type=ee"}
	if tg.RaspberryPi {
		p1 := parts[0]
		wantMBR = [4]entry{{0x0E, uint32(p1.Start / 512), uint32(p1.Size / 512)}, {0xEE, 1, uint32(p1.Start/512) - 1}}
		dosDump = []string{"start=        8192, size=      204800, type=e", "start=           1, size=        8191, type=ee"}
	}
	if entries != wantMBR {
		t.Errorf("MBR entries %+v, want %+v", entries, wantMBR)
	}
	out := mustTool(t, "sfdisk", "--label-nested", "dos", "--dump", res.Image)
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(line, " : "); ok {
			got = append(got, rest)
		}
	}
	if !strings.Contains(out, "label: dos") || strings.Join(got, "\n") != strings.Join(dosDump, "\n") {
		t.Errorf("sfdisk --label-nested dos --dump:\n%s\nwant the entries\n%s", out, strings.Join(dosDump, "\n"))
	}
	return parts
}

// bootFAT lists the boot partition with mtools and checks it with fsck.
type bootFAT struct {
	t     *testing.T
	img   string
	files map[string]bool // paths without "::/", directories end in "/"
}

func openBootFAT(t *testing.T, res *Result, p1 disk.Partition) *bootFAT {
	t.Helper()
	b := &bootFAT{t: t, img: fmt.Sprintf("%s@@%d", res.Image, p1.Start), files: map[string]bool{}}
	for _, line := range strings.Split(mustTool(t, "mdir", "-/", "-b", "-i", b.img, "::"), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "::/"); ok {
			b.files[p] = true
		}
	}
	fat := filepath.Join(t.TempDir(), "boot.fat")
	extract(t, res.Image, p1.Start, p1.Size, fat)
	if out, code := runTool(t, "fsck.vfat", "-n", fat); code != 0 {
		t.Errorf("fsck.vfat -n of the boot partition: status %d\n%s", code, out)
	}
	// The label and volume ID the builder sets.
	if out := mustTool(t, "file", "-b", fat); !strings.Contains(out, `label: "MAILGATE   "`) || !strings.Contains(out, "FAT (16 bit)") {
		t.Errorf("file on the boot partition: %s", out)
	}
	return b
}

func (b *bootFAT) read(name string) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, toolPath(b.t, "mtype"), "-i", b.img, "::"+name)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "MTOOLS_SKIP_CHECK=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("mtype ::%s: %v\n%s", name, err, stderr.String())
	}
	return out
}

// checkCmdlineFile checks a padded command line file: text, "\n", then
// spaces up to CmdlineLength.
func checkCmdlineFile(t *testing.T, name string, got []byte, text string) {
	t.Helper()
	if len(got) != CmdlineLength {
		t.Errorf("%s is %d bytes, want %d", name, len(got), CmdlineLength)
	}
	line, pad, ok := bytes.Cut(got, []byte("\n"))
	if !ok || string(line) != text || strings.Trim(string(pad), " ") != "" {
		t.Errorf("%s is %q, want %q, a newline and spaces", name, got, text)
	}
}

// checkCmdline checks the kernel command line of an image whose first
// partition has the given GUID.
func checkCmdline(t *testing.T, tg Target, cmdline string, p1 disk.Partition) {
	t.Helper()
	console := "console=ttyS0,115200"
	if tg.RaspberryPi {
		console = "console=serial0,115200"
	}
	fields := strings.Fields(cmdline)
	for _, want := range []string{
		"root=PARTUUID=" + strings.ToLower(disk.FormatGUID(p1.GUID)) + "/PARTNROFF=1",
		"init=/gokrazy/init", "ro", console,
	} {
		found := false
		for _, f := range fields {
			found = found || f == want
		}
		if !found {
			t.Errorf("the kernel command line %q lacks %q", cmdline, want)
		}
	}
	if cmdline != Cmdline(tg, disk.FormatGUID(p1.GUID)) {
		t.Errorf("kernel command line %q, Cmdline gives %q", cmdline, Cmdline(tg, disk.FormatGUID(p1.GUID)))
	}
}

// rootEntry is one line of `unsquashfs -lls`.
type rootEntry struct {
	mode, owner, time, target string
	size                      int64
}

// checkRoot lists the root file system from p2 and checks its contents;
// it returns the path of the extracted squashfs.
func checkRoot(t *testing.T, tg Target, version string, res *Result, p2, p3 disk.Partition) string {
	t.Helper()
	sb := readAt(t, res.Image, p2.Start, 96)
	if string(sb[:4]) != "hsqs" {
		t.Fatalf("partition 2 does not start with a squashfs superblock: %q", sb[:4])
	}
	bytesUsed := int64(binary.LittleEndian.Uint64(sb[40:]))
	if mkfsTime := binary.LittleEndian.Uint32(sb[8:]); int64(mkfsTime) != testEpoch.Unix() {
		t.Errorf("squashfs creation time %d, want the epoch %d", mkfsTime, testEpoch.Unix())
	}
	if bytesUsed <= 0 || bytesUsed > res.RootSize || res.RootSize != (bytesUsed+4095)/4096*4096 || res.RootSize > p2.Size {
		t.Errorf("squashfs of %d bytes (padded %d) in a partition of %d", bytesUsed, res.RootSize, p2.Size)
	}
	sqfs := filepath.Join(t.TempDir(), "root.squashfs")
	extract(t, res.Image, p2.Start, bytesUsed, sqfs)

	// A fresh image has nothing in the other root partition.
	zero := make([]byte, MiB)
	for off := int64(0); off < p3.Size; off += MiB {
		if !bytes.Equal(readAt(t, res.Image, p3.Start+off, MiB), zero) {
			t.Errorf("partition 3 (root B) is not empty in a fresh image (at %d)", off)
			break
		}
	}

	entries := map[string]rootEntry{}
	out := mustTool(t, "unsquashfs", "-lls", sqfs)
	date := testEpoch.UTC().Format("2006-01-02 15:04")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[5], "squashfs-root") {
			continue
		}
		p := strings.TrimPrefix(strings.TrimPrefix(f[5], "squashfs-root"), "/")
		e := rootEntry{mode: f[0], owner: f[1], time: f[3] + " " + f[4]}
		e.size, _ = strconv.ParseInt(f[2], 10, 64)
		if len(f) == 8 && f[6] == "->" {
			e.target = f[7]
		}
		entries[p] = e
	}
	if len(entries) < 20 {
		t.Fatalf("unsquashfs -lls lists %d entries:\n%s", len(entries), out)
	}
	forbidden := map[string]bool{"sh": true, "bash": true, "dash": true, "ash": true, "busybox": true,
		"go": true, "gofmt": true, "gcc": true, "cc": true, "gokr-pw.txt": true, "breakglass": true}
	for p, e := range entries {
		if e.owner != "root/root" {
			t.Errorf("/%s is owned by %s", p, e.owner)
		}
		if e.time != date {
			t.Errorf("/%s has the time %s, want %s", p, e.time, date)
		}
		if forbidden[path.Base(p)] || strings.HasPrefix(p, "usr/") || strings.Contains(p, "pkg/tool/") {
			t.Errorf("the root holds /%s", p)
		}
		// Read-only for everyone but root (the file system is read-only
		// anyway), no set-id bits.
		if e.mode[0] != 'l' && (e.mode[5] == 'w' || e.mode[8] == 'w' || strings.ContainsAny(e.mode, "sStT")) {
			t.Errorf("/%s has the mode %s", p, e.mode)
		}
	}
	for _, p := range []string{"gokrazy/init", "gokrazy/dhcp", "gokrazy/ntp", "gokrazy/randomd", "user/mailgate"} {
		if e, ok := entries[p]; !ok || e.mode != "-rwxr-xr-x" || e.size < 1<<20 {
			t.Errorf("/%s: %+v, want an executable", p, e)
		}
	}
	for _, p := range []string{"etc/ssl/ca-bundle.pem", "etc/hostname", "etc/hosts", "etc/localtime", "etc/mailgate-release"} {
		if e, ok := entries[p]; !ok || e.mode != "-rw-r--r--" {
			t.Errorf("/%s: %+v, want a file", p, e)
		}
	}
	for _, p := range []string{"dev", "proc", "sys", "tmp", "run", "perm", "lib/modules"} {
		if e, ok := entries[p]; !ok || e.mode != "drwxr-xr-x" {
			t.Errorf("/%s: %+v, want a directory (mount point)", p, e)
		}
	}
	for p, target := range map[string]string{
		"etc/resolv.conf": "/tmp/resolv.conf", "var": "/perm/var",
		"etc/ssl/certs/ca-certificates.crt": "/etc/ssl/ca-bundle.pem",
	} {
		if e := entries[p]; e.mode != "lrwxrwxrwx" || e.target != target {
			t.Errorf("/%s: %+v, want a link to %s", p, e, target)
		}
	}
	var modules int
	for p := range entries {
		if strings.HasPrefix(p, "lib/modules/") && strings.HasSuffix(p, ".ko") {
			modules++
		}
	}
	if modules == 0 {
		t.Errorf("no kernel modules in /lib/modules")
	}

	// Some files' contents.
	dir := filepath.Join(t.TempDir(), "root")
	mustTool(t, "unsquashfs", "-d", dir, "-no-xattrs", "-no-progress", sqfs,
		"user/mailgate", "gokrazy/init", "etc/hostname", "etc/localtime", "etc/ssl/ca-bundle.pem", "etc/mailgate-release")
	arch := map[string]string{"amd64": "x86-64", "arm64": "ARM aarch64"}[tg.GOARCH]
	for _, p := range []string{"user/mailgate", "gokrazy/init"} {
		out := mustTool(t, "file", "-b", filepath.Join(dir, p))
		if !strings.HasPrefix(out, "ELF 64-bit LSB executable, "+arch+",") || !strings.Contains(out, "statically linked") {
			t.Errorf("file /%s: %s", p, out)
		}
	}
	bin, err := os.ReadFile(filepath.Join(dir, "user/mailgate"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("/user/mailgate does not carry the version %s", version)
	}
	modcache, err := exec.Command(goTool(), "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bin, bytes.TrimSpace(modcache)) || bytes.Contains(bin, []byte(mustAbs(t, ".."))) {
		t.Errorf("/user/mailgate holds build paths (no -trimpath?)")
	}
	utc, err := goZoneinfo("UTC")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string][]byte{
		"etc/hostname":          []byte("mailgate"),
		"etc/localtime":         utc,
		"etc/ssl/ca-bundle.pem": ca,
		"etc/mailgate-release":  []byte("mailgate " + version + " " + tg.Name + "\n"),
	} {
		got, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("/%s: %q (%v), want %.40q", p, got, err, want)
		}
	}
	return sqfs
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkUpgrade parses the upgrade file and compares its root with p2.
func checkUpgrade(t *testing.T, tg Target, version string, res *Result, p2 disk.Partition) {
	t.Helper()
	f, err := os.Open(res.Upgrade)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	m, err := firmware.ReadHeader(r)
	if err != nil {
		t.Fatalf("ReadHeader: %v", err)
	}
	want := firmware.Manifest{Version: version, Arch: tg.GOARCH, Target: tg.Name, Size: res.RootSize, SHA256: res.RootSHA256}
	if m != want {
		t.Errorf("upgrade manifest %+v, want %+v", m, want)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	if n != m.Size || hex.EncodeToString(h.Sum(nil)) != m.SHA256 {
		t.Errorf("upgrade payload: %d bytes, SHA-256 %x; the manifest says %d bytes, %s", n, h.Sum(nil), m.Size, m.SHA256)
	}
	if sum := sha256Hex(readAt(t, res.Image, p2.Start, m.Size)); sum != m.SHA256 {
		t.Errorf("partition 2 holds a root with SHA-256 %s, the upgrade file %s", sum, m.SHA256)
	}
}

// checkPerm checks the empty ext4 /perm in p4.
func checkPerm(t *testing.T, res *Result, p4 disk.Partition) {
	t.Helper()
	fs := filepath.Join(t.TempDir(), "perm.ext4")
	extract(t, res.Image, p4.Start, p4.Size, fs)
	if out, code := runTool(t, "e2fsck", "-fn", fs); code != 0 {
		t.Errorf("e2fsck -fn of /perm: status %d\n%s", code, out)
	}
	out := mustTool(t, "dumpe2fs", "-h", fs)
	field := func(k string) string {
		for _, line := range strings.Split(out, "\n") {
			if key, v, ok := strings.Cut(line, ":"); ok && key == k {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	num := func(k string) int64 {
		n, err := strconv.ParseInt(field(k), 10, 64)
		if err != nil {
			t.Errorf("dumpe2fs -h: %s: %v", k, err)
		}
		return n
	}
	created := testEpoch.UTC().Format("Mon Jan _2 15:04:05 2006")
	for k, want := range map[string]string{
		"Filesystem volume name": "perm",
		"Filesystem state":       "clean",
		"Filesystem created":     created,
		"Last write time":        created,
		"Mount count":            "0",
		"Inode size":             "256", // timestamps beyond 2038
		"Reserved blocks uid":    "0 (user root)",
	} {
		if got := field(k); got != want {
			t.Errorf("dumpe2fs -h: %s is %q, want %q", k, got, want)
		}
	}
	features := " " + field("Filesystem features") + " "
	for _, want := range []string{"has_journal", "extent", "dir_index", "filetype", "flex_bg", "64bit", "huge_file", "extra_isize", "metadata_csum"} {
		if !strings.Contains(features, " "+want+" ") {
			t.Errorf("/perm lacks the ext4 feature %s: %s", want, features)
		}
	}
	if bs := num("Block size"); bs*num("Block count") != p4.Size {
		t.Errorf("/perm has %d blocks of %d bytes, the partition is %d bytes", num("Block count"), bs, p4.Size)
	}
	// Empty: only the reserved inodes and lost+found are in use.
	if used := num("Inode count") - num("Free inodes"); used != num("First inode") {
		t.Errorf("/perm has %d inodes in use, want %d", used, num("First inode"))
	}
	ls := mustTool(t, "debugfs", "-R", "ls -p /", fs)
	var names []string
	for _, line := range strings.Split(ls, "\n") {
		if f := strings.Split(line, "/"); len(f) >= 7 && f[0] == "" {
			names = append(names, f[5])
		}
	}
	if strings.Join(names, " ") != ". .. lost+found" {
		t.Errorf("/perm holds %q, want only lost+found:\n%s", names, ls)
	}
}

// buildChecked builds target with the tools the structure tests use and
// checks its partition table.
func buildChecked(t *testing.T, target, version string) (*Result, []disk.Partition) {
	t.Helper()
	needTools(t, "sfdisk", "sgdisk", "mdir", "mtype", "fsck.vfat", "unsquashfs", "e2fsck", "dumpe2fs", "debugfs", "file")
	res := buildTest(t, target, version, t.TempDir())
	parts := checkGPT(t, Targets[target], res)
	if t.Failed() {
		t.FailNow()
	}
	return res, parts
}

// TestRaspberryPiImageStructure builds the Raspberry Pi image and checks
// everything but booting it: the GPT and the hybrid MBR the Pi firmware
// reads, the boot partition's firmware, device trees, overlays,
// config.txt and cmdline.txt, the root file system's contents, the
// upgrade file and the empty /perm.
func TestRaspberryPiImageStructure(t *testing.T) {
	const version = "v0.0.0-test-rpi"
	tg := Targets["rpi"]
	res, parts := buildChecked(t, "rpi", version)

	t.Run("boot", func(t *testing.T) {
		fat := openBootFAT(t, res, parts[0])
		for _, f := range []string{"vmlinuz", "cmdline.txt", "config.txt", "bootcode.bin", "start4.elf", "fixup4.dat",
			"bcm2711-rpi-4-b.dtb", "bcm2712-rpi-5-b.dtb", "overlays/"} {
			if !fat.files[f] {
				t.Errorf("the boot partition lacks %s", f)
			}
		}
		overlays := 0
		for f := range fat.files {
			if strings.HasPrefix(f, "overlays/") && strings.HasSuffix(f, ".dtbo") {
				overlays++
			}
		}
		if overlays <= 100 {
			t.Errorf("the boot partition has %d overlays", overlays)
		}
		if got := string(fat.read("config.txt")); got != RaspberryPiConfig {
			t.Errorf("config.txt is %q, want %q", got, RaspberryPiConfig)
		}
		cmdline := fat.read("cmdline.txt")
		text, _, _ := strings.Cut(string(cmdline), "\n")
		checkCmdlineFile(t, "cmdline.txt", cmdline, text)
		checkCmdline(t, tg, text, parts[0])
		for module, files := range map[string][]string{
			tg.Kernel:                     {"vmlinuz", "bcm2712-rpi-5-b.dtb"},
			"github.com/gokrazy/firmware": {"start4.elf", "fixup4.dat", "bootcode.bin"},
		} {
			for _, f := range files {
				if !bytes.Equal(fat.read(f), moduleFile(t, module, f)) {
					t.Errorf("%s differs from the one in %s", f, module)
				}
			}
		}
		off, n, err := extentsOf(res.Image, parts[0], "cmdline.txt")
		if err != nil || n != CmdlineLength || !bytes.Equal(readAt(t, res.Image, off, n), cmdline) {
			t.Errorf("disk.Extents(cmdline.txt): offset %d, length %d, %v", off, n, err)
		}
	})
	t.Run("root", func(t *testing.T) {
		checkRoot(t, tg, version, res, parts[1], parts[2])
	})
	t.Run("upgrade", func(t *testing.T) {
		checkUpgrade(t, tg, version, res, parts[1])
	})
	t.Run("perm", func(t *testing.T) {
		checkPerm(t, res, parts[3])
	})
}

func extentsOf(img string, p disk.Partition, name string) (off, n int64, err error) {
	f, err := os.Open(img)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return disk.Extents(f, p.Start, name)
}

// TestImageLayout checks the amd64 image: the GPT with a protective MBR,
// the UEFI boot partition (systemd-boot, its loader entry and
// cmdline.txt, both rewritable in place by gokrazy), the root file system,
// the upgrade file and /perm.
func TestImageLayout(t *testing.T) {
	const version = "v0.0.0-test-amd64"
	tg := Targets["amd64"]
	res, parts := buildChecked(t, "amd64", version)

	t.Run("boot", func(t *testing.T) {
		fat := openBootFAT(t, res, parts[0])
		var files []string
		for f := range fat.files {
			if !strings.HasSuffix(f, "/") {
				files = append(files, f)
			}
		}
		want := []string{"EFI/BOOT/BOOTX64.EFI", "cmdline.txt", "loader/entries/gokrazy.conf", "loader/loader.conf", "vmlinuz"}
		if slices.Sort(files); !slices.Equal(files, want) {
			t.Errorf("boot partition files %q, want %q", files, want)
		}
		efi, err := os.ReadFile(SystemdBootEFI)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fat.read("EFI/BOOT/BOOTX64.EFI"), efi) {
			t.Errorf("EFI/BOOT/BOOTX64.EFI differs from %s", SystemdBootEFI)
		}
		if !bytes.Equal(fat.read("vmlinuz"), moduleFile(t, tg.Kernel, "vmlinuz")) {
			t.Errorf("vmlinuz differs from the one in %s", tg.Kernel)
		}
		if got := string(fat.read("loader/loader.conf")); got != "default gokrazy.conf\ntimeout 0\n" {
			t.Errorf("loader/loader.conf is %q", got)
		}

		cmdline := fat.read("cmdline.txt")
		text, _, _ := strings.Cut(string(cmdline), "\n")
		checkCmdlineFile(t, "cmdline.txt", cmdline, text)
		checkCmdline(t, tg, text, parts[0])

		// systemd-boot's entry: "\r" ends the lines before the options,
		// so that gokrazy's edits at "\n" touch only the options line.
		entry := fat.read("loader/entries/gokrazy.conf")
		checkCmdlineFile(t, "loader/entries/gokrazy.conf", entry, LoaderEntry(text))
		line, _, _ := strings.Cut(string(entry), "\n")
		if lines := strings.Split(line, "\r"); len(lines) != 3 || lines[0] != "title mailgate" || lines[1] != "linux /vmlinuz" || lines[2] != "options "+text {
			t.Errorf("loader entry lines %q", lines)
		}
		if strings.Count(string(entry), "\n") != 1 {
			t.Errorf("the loader entry has %d newlines, want 1", strings.Count(string(entry), "\n"))
		}

		// Where gokrazy finds the files to rewrite them.
		for name, want := range map[string][]byte{"cmdline.txt": cmdline, "loader/entries/gokrazy.conf": entry} {
			off, n, err := extentsOf(res.Image, parts[0], name)
			if err != nil {
				t.Errorf("disk.Extents(%s): %v", name, err)
				continue
			}
			if n != CmdlineLength || off < parts[0].Start || off+n > parts[0].Start+parts[0].Size || !bytes.Equal(readAt(t, res.Image, off, n), want) {
				t.Errorf("disk.Extents(%s): offset %d, length %d do not hold the file", name, off, n)
			}
		}
	})
	t.Run("root", func(t *testing.T) {
		checkRoot(t, tg, version, res, parts[1], parts[2])
	})
	t.Run("upgrade", func(t *testing.T) {
		checkUpgrade(t, tg, version, res, parts[1])
	})
	t.Run("perm", func(t *testing.T) {
		checkPerm(t, res, parts[3])
	})
	layoutBuild.Lock()
	layoutBuild.version, layoutBuild.image, layoutBuild.root = version, fileSum(t, res.Image), res.RootSHA256
	layoutBuild.Unlock()
}

// layoutBuild is what TestReproducibleImage needs of TestImageLayout's
// image when both run: it is of another version than its own builds.
var layoutBuild struct {
	sync.Mutex
	version, image, root string // the image's and the root's SHA-256
}

// firstDifference returns the first offset at which files a and b differ
// (or where the shorter one ends), -1 when they are equal.
func firstDifference(t *testing.T, a, b string) int64 {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; {
		na, erra := io.ReadFull(ra, ba)
		nb, errb := io.ReadFull(rb, bb)
		n := min(na, nb)
		for i := 0; i < n; i++ {
			if ba[i] != bb[i] {
				return off + int64(i)
			}
		}
		if na != nb {
			return off + int64(n)
		}
		off += int64(n)
		if erra != nil || errb != nil {
			return -1
		}
	}
}

// where names the part of the image an offset falls in.
func where(parts []disk.Partition, off int64) string {
	for i, p := range parts {
		if off >= p.Start && off < p.Start+p.Size {
			return fmt.Sprintf("partition %d (%s) at offset %d", i+1, p.Name, off-p.Start)
		}
	}
	if off < 34*512 {
		return "the MBR or the primary GPT"
	}
	return "outside the partitions (the backup GPT or a gap)"
}

// TestReproducibleImage builds the amd64 image twice from the same inputs
// and wants the same bytes; a different version must give a different
// image.
func TestReproducibleImage(t *testing.T) {
	const version = "v0.0.0-test-repro"
	dir := t.TempDir()
	a := buildTest(t, "amd64", version, filepath.Join(dir, "a"))
	b := buildTest(t, "amd64", version, filepath.Join(dir, "b"))
	var imageSum string
	for _, f := range []struct{ name, a, b string }{
		{"disk image", a.Image, b.Image},
		{"upgrade file", a.Upgrade, b.Upgrade},
	} {
		sa, sb := fileSum(t, f.a), fileSum(t, f.b)
		if f.a == a.Image {
			imageSum = sa
		}
		if sa == sb {
			t.Logf("%s: SHA-256 %s both times", f.name, sa)
			continue
		}
		off := firstDifference(t, f.a, f.b)
		switch f.name {
		case "disk image":
			t.Errorf("the %s differs between two builds (SHA-256 %s, %s): first at byte %d, in %s", f.name, sa, sb, off, where(a.Partitions, off))
		default:
			t.Errorf("the %s differs between two builds (SHA-256 %s, %s): first at byte %d", f.name, sa, sb, off)
		}
	}
	if a.RootSHA256 != b.RootSHA256 {
		t.Errorf("root file system SHA-256 %s, then %s", a.RootSHA256, b.RootSHA256)
	}

	// Another version gives another image: TestImageLayout's, or one
	// built here when that test did not run.
	layoutBuild.Lock()
	other, otherImage, otherRoot := layoutBuild.version, layoutBuild.image, layoutBuild.root
	layoutBuild.Unlock()
	if other == "" {
		other = version + "-other"
		c := buildTest(t, "amd64", other, filepath.Join(dir, "c"))
		otherImage, otherRoot = fileSum(t, c.Image), c.RootSHA256
	}
	if otherImage == imageSum || otherRoot == a.RootSHA256 {
		t.Errorf("the version %s gives the same image or root file system as %s", other, version)
	}
}
