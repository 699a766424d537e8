// Package image builds the appliance's firmware: a bootable disk image in
// gokrazy's layout (GPT; p1 boot FAT16, p2/p3 the A/B read-only squashfs
// roots, p4 the ext4 /perm for configuration and mail) and the upgrade
// file that `execute restore image` installs into the inactive root.
//
// The root holds gokrazy's init runtime (our image/init), gokrazy's DHCP
// client, NTP client and entropy daemon, the appliance binary, the CA
// bundle, the host name and time zone data: no shell, no compiler, nothing
// writable outside /perm and the tmpfs mounts. The kernel and Raspberry Pi
// firmware come from gokrazy's modules, pinned in go.mod (pins.go).
//
// The same inputs give the same bytes: programs are built with -trimpath
// and no build ID, file systems get fixed timestamps, sorted entries and
// GUIDs derived from the version.
package image

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"mailgate/firmware"
	"mailgate/image/disk"
)

// Target is a machine family the image boots on.
type Target struct {
	Name   string // file name part: mailgate-<Name>.img
	GOARCH string
	Kernel string // module path of the kernel
	// RaspberryPi adds the Pi firmware and device trees, and a hybrid MBR.
	RaspberryPi bool
	RootType    [16]byte // GPT type of the root partitions
}

// Targets are the images `make image` builds.
var Targets = map[string]Target{
	"amd64": {Name: "amd64", GOARCH: "amd64", Kernel: "github.com/gokrazy/kernel.amd64", RootType: disk.TypeLinuxRootAMD64},
	"rpi":   {Name: "rpi", GOARCH: "arm64", Kernel: "github.com/gokrazy/kernel.rpi", RaspberryPi: true, RootType: disk.TypeLinuxRootARM64},
}

// Disk layout, in bytes.
const (
	MiB       = 1 << 20
	bootStart = 4 * MiB
	bootSize  = 100 * MiB
	rootSize  = firmware.MaxRootSize
	// DefaultDiskSize leaves about 400 MiB for /perm. /perm keeps the
	// size the image gives it: a larger disk does not grow it.
	DefaultDiskSize = 1024 * MiB
	gptReserve      = 33 * 512 // backup GPT at the end of the disk
)

// Options are the inputs of one build.
type Options struct {
	Target   Target
	Version  string // reported by the appliance (admin.Version)
	Hostname string // default "mailgate"
	// Epoch is the timestamp of every file (SOURCE_DATE_EPOCH).
	Epoch    time.Time
	DiskSize int64  // default DefaultDiskSize
	OutDir   string // where the image and the upgrade file go
	// ModuleDir is this module's root (where go.mod is).
	ModuleDir string
	// CABundle is the PEM bundle installed as /etc/ssl/ca-bundle.pem
	// (default: the build host's Debian bundle).
	CABundle string
	// Log receives progress lines (nil: none).
	Log io.Writer
	// SkipDisk builds only the root and the upgrade file.
	SkipDisk bool
	// ApplianceArgs are extra flags the image's init gives the appliance.
	ApplianceArgs []string
	// TryBootDeadline bounds the wait for this root, installed by an
	// upgrade, to come up before the previous one returns (0: 5 minutes).
	TryBootDeadline time.Duration
}

// Result says where the build put its files.
type Result struct {
	Image      string // the whole disk
	Upgrade    string // the root file system with its upgrade header
	ImageSize  int64
	RootSize   int64 // bytes of the squashfs
	RootSHA256 string
	Partitions []disk.Partition
}

// Build assembles the image for o.Target.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Hostname == "" {
		o.Hostname = "mailgate"
	}
	if o.DiskSize == 0 {
		o.DiskSize = DefaultDiskSize
	}
	if o.CABundle == "" {
		o.CABundle = "/etc/ssl/certs/ca-certificates.crt"
	}
	if o.Version == "" {
		return nil, fmt.Errorf("image: no version")
	}
	if o.DiskSize < bootStart+bootSize+2*rootSize+64*MiB {
		return nil, fmt.Errorf("image: disk size %d MiB is too small", o.DiskSize/MiB)
	}
	work, err := os.MkdirTemp("", "mailgate-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	b := &builder{Options: o, work: work, root: filepath.Join(work, "root")}
	if err := b.stageRoot(ctx); err != nil {
		return nil, err
	}
	res := &Result{}
	squash := filepath.Join(work, "root.squashfs")
	if err := b.squashfs(ctx, squash); err != nil {
		return nil, err
	}
	sum, size, err := fileSHA256(squash)
	if err != nil {
		return nil, err
	}
	if size > rootSize {
		return nil, fmt.Errorf("image: root file system is %d MiB, the root partitions hold %d MiB", size/MiB, rootSize/MiB)
	}
	res.RootSize, res.RootSHA256 = size, sum
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	res.Upgrade = filepath.Join(o.OutDir, "mailgate-"+o.Target.Name+".upgrade")
	if err := writeUpgrade(res.Upgrade, squash, firmware.Manifest{
		Version: o.Version, Arch: o.Target.GOARCH, Target: o.Target.Name, Size: size, SHA256: sum,
	}); err != nil {
		return nil, err
	}
	if o.SkipDisk {
		return res, nil
	}
	res.Image = filepath.Join(o.OutDir, "mailgate-"+o.Target.Name+".img")
	if res.Partitions, err = b.disk(ctx, res.Image, squash); err != nil {
		return nil, err
	}
	res.ImageSize = o.DiskSize
	return res, nil
}

type builder struct {
	Options
	work, root string
	modDirs    map[string]string // moduleDir's answers
}

func (b *builder) logf(format string, args ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, format+"\n", args...)
	}
}

// goBuild compiles pkg for the target into the root at dest.
func (b *builder) goBuild(ctx context.Context, pkg, dest string, ldflags ...string) error {
	out := filepath.Join(b.root, dest)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-tags", "netgo,osusergo",
		"-ldflags", strings.Join(append([]string{"-s", "-w", "-buildid="}, ldflags...), " "),
		"-o", out, pkg}
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = b.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+b.Target.GOARCH)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("image: go build %s: %v\n%s", pkg, err, stderr.String())
	}
	return nil
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

// moduleDir returns the module cache directory of a pinned module,
// downloading it when missing; it asks the go command once per module.
func (b *builder) moduleDir(ctx context.Context, path string) (string, error) {
	if dir, ok := b.modDirs[path]; ok {
		return dir, nil
	}
	cmd := exec.CommandContext(ctx, goTool(), "mod", "download", "-json", path)
	cmd.Dir = b.ModuleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("image: go mod download %s: %v\n%s", path, err, stderr.String())
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", err
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("image: module %s: %s", path, m.Error)
	}
	if b.modDirs == nil {
		b.modDirs = map[string]string{}
	}
	b.modDirs[path] = m.Dir
	return m.Dir, nil
}

// stageRoot fills the root directory tree.
func (b *builder) stageRoot(ctx context.Context) error {
	for _, d := range []string{"bin", "dev", "etc/ssl", "proc", "sys", "tmp", "perm", "lib", "run", "mnt", "gokrazy", "user"} {
		if err := os.MkdirAll(filepath.Join(b.root, d), 0o755); err != nil {
			return err
		}
	}
	b.logf("building programs for linux/%s", b.Target.GOARCH)
	builds := []struct{ pkg, dest, ldflags string }{
		{"./image/init", "gokrazy/init", "-X main.buildTimestamp=" + b.Epoch.UTC().Format(time.RFC3339)},
		{"github.com/gokrazy/gokrazy/cmd/dhcp", "gokrazy/dhcp", ""},
		{"github.com/gokrazy/gokrazy/cmd/ntp", "gokrazy/ntp", ""},
		{"github.com/gokrazy/gokrazy/cmd/randomd", "gokrazy/randomd", ""},
		{"./cmd/mailgate", "user/mailgate", "-X mailgate/admin.Version=" + b.Version},
	}
	for _, p := range builds {
		var ld []string
		if p.ldflags != "" {
			ld = append(ld, p.ldflags)
		}
		if err := b.goBuild(ctx, p.pkg, p.dest, ld...); err != nil {
			return err
		}
	}
	kdir, err := b.moduleDir(ctx, b.Target.Kernel)
	if err != nil {
		return err
	}
	if err := copyTree(filepath.Join(kdir, "lib", "modules"), filepath.Join(b.root, "lib", "modules")); err != nil {
		return err
	}
	ca, err := os.ReadFile(b.CABundle)
	if err != nil {
		return fmt.Errorf("image: CA bundle: %w (install Debian's ca-certificates or set -ca-bundle)", err)
	}
	utc, err := goZoneinfo("UTC")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"etc/hostname":          []byte(b.Hostname),
		"etc/hosts":             []byte("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 " + b.Hostname + "\n"),
		"etc/localtime":         utc,
		"etc/ssl/ca-bundle.pem": ca,
		"etc/mailgate-release":  []byte("mailgate " + b.Version + " " + b.Target.Name + "\n"),
	}
	if len(b.ApplianceArgs) > 0 || b.TryBootDeadline > 0 {
		j, _ := json.Marshal(firmware.InitSettings{ApplianceArgs: b.ApplianceArgs, TryBootDeadline: b.TryBootDeadline})
		files[strings.TrimPrefix(firmware.InitSettingsFile, "/")] = j
	}
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(b.root, name)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.root, name), data, 0o644); err != nil {
			return err
		}
	}
	// Links: resolv.conf is written by the DHCP client into /tmp;
	// /var lives on /perm. Both targets exist only at run time.
	for link, target := range map[string]string{
		"etc/resolv.conf":                   "/tmp/resolv.conf",
		"var":                               "/perm/var",
		"etc/ssl/certs/ca-certificates.crt": "/etc/ssl/ca-bundle.pem",
	} {
		p := filepath.Join(b.root, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	return normalizeTree(b.root)
}

// goZoneinfo returns a zone file from the Go distribution's zoneinfo.zip
// (the same data the appliance embeds with time/tzdata).
func goZoneinfo(name string) ([]byte, error) {
	zr, err := zip.OpenReader(filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip"))
	if err != nil {
		return nil, fmt.Errorf("image: time zone data: %w", err)
	}
	defer zr.Close()
	f, err := zr.Open(name)
	if err != nil {
		return nil, fmt.Errorf("image: time zone %s: %w", name, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// normalizeTree gives every entry fixed permissions (mksquashfs fixes
// owners and times).
func normalizeTree(root string) error {
	return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		switch {
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			return nil
		case fi.IsDir(), fi.Mode()&0o111 != 0:
			return os.Chmod(p, 0o755)
		default:
			return os.Chmod(p, 0o644)
		}
	})
}

// squashfs packs the root with Debian's mksquashfs: gzip (the kernel's
// squashfs reads zlib only), every file root-owned, fixed times.
func (b *builder) squashfs(ctx context.Context, out string) error {
	b.logf("packing the root file system")
	epoch := strconv.FormatInt(b.Epoch.Unix(), 10)
	cmd := exec.CommandContext(ctx, "mksquashfs", b.root, out,
		"-noappend", "-comp", "gzip", "-all-root", "-no-xattrs", "-no-progress", "-quiet",
		"-mkfs-time", epoch, "-all-time", epoch, "-processors", "2")
	cmd.Env = withoutEnv(os.Environ(), "SOURCE_DATE_EPOCH") // it refuses both
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: mksquashfs: %v\n%s (install Debian's squashfs-tools)", err, out)
	}
	return nil
}

func writeUpgrade(path, squash string, m firmware.Manifest) error {
	in, err := os.Open(squash)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := firmware.WriteHeader(out, m); err != nil {
		out.Close()
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// disk writes the whole disk image.
func (b *builder) disk(ctx context.Context, path, squash string) ([]disk.Partition, error) {
	b.logf("assembling the disk image")
	seed := "mailgate " + b.Target.Name + " " + b.Version
	p1 := disk.Partition{Start: bootStart, Size: bootSize, Type: disk.TypeEFISystem, GUID: disk.DeriveGUID(seed + " boot"), Name: "boot"}
	p2 := disk.Partition{Start: p1.Start + p1.Size, Size: rootSize, Type: b.Target.RootType, GUID: disk.DeriveGUID(seed + " root A"), Name: "root-a"}
	p3 := disk.Partition{Start: p2.Start + p2.Size, Size: rootSize, Type: disk.TypeLinuxData, GUID: disk.DeriveGUID(seed + " root B"), Name: "root-b"}
	permEnd := (b.DiskSize - gptReserve) / MiB * MiB
	p4 := disk.Partition{Start: p3.Start + p3.Size, Size: permEnd - (p3.Start + p3.Size), Type: disk.TypeLinuxData, GUID: disk.DeriveGUID(seed + " perm"), Name: "perm"}
	parts := []disk.Partition{p1, p2, p3, p4}

	bootFiles, err := b.bootFiles(ctx, disk.FormatGUID(p1.GUID))
	if err != nil {
		return nil, err
	}
	perm := filepath.Join(b.work, "perm.ext4")
	if err := b.mkPerm(ctx, perm, p4.Size, disk.DeriveGUID(seed+" perm fs")); err != nil {
		return nil, err
	}

	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	defer f.Close()
	if err := f.Truncate(b.DiskSize); err != nil {
		return nil, err
	}
	mbr := disk.ProtectiveMBR
	if b.Target.RaspberryPi {
		mbr = disk.HybridMBR
	}
	if err := disk.WriteGPT(f, b.DiskSize, disk.DeriveGUID(seed+" disk"), parts, mbr); err != nil {
		return nil, err
	}
	if err := disk.WriteFAT16(f, p1.Start, p1.Size, disk.FATOptions{
		Label: "MAILGATE", VolumeID: volumeID(seed), ModTime: b.Epoch,
	}, bootFiles); err != nil {
		return nil, err
	}
	if err := copyInto(f, p2.Start, squash); err != nil {
		return nil, err
	}
	if err := copyInto(f, p4.Start, perm); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return parts, os.Rename(tmp, path)
}

func volumeID(seed string) uint32 {
	s := sha256.Sum256([]byte(seed + " volume"))
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// CmdlineLength is the fixed length of cmdline.txt and of the options in
// the boot loader entry: gokrazy rewrites both in place (root= for the A/B
// switch, a try-boot flag), so the text is padded with spaces after the
// line end to leave room.
const CmdlineLength = 1024

// Cmdline is the kernel command line of an image whose boot partition has
// the given GUID.
func Cmdline(t Target, bootGUID string) string {
	console := "console=tty1 console=ttyS0,115200"
	if t.RaspberryPi {
		console = "console=tty1 console=serial0,115200"
	}
	return console + " root=PARTUUID=" + strings.ToLower(bootGUID) + "/PARTNROFF=1 ro init=/gokrazy/init panic=10 oops=panic rootwait pci=nommconf"
}

// LoaderEntry is systemd-boot's entry for the kernel command line. gokrazy
// edits the file like cmdline.txt, appending its try-boot flag at every
// "\n": so the lines before the options end in "\r", which systemd-boot
// also takes as a line end, and only the options line ends in "\n".
func LoaderEntry(cmdline string) string {
	return "title mailgate\rlinux /vmlinuz\roptions " + cmdline
}

func padded(s string) []byte {
	b := []byte(s + "\n")
	if len(b) < CmdlineLength {
		b = append(b, bytes.Repeat([]byte(" "), CmdlineLength-len(b))...)
	}
	return b
}

// bootFiles lists the boot partition's contents.
func (b *builder) bootFiles(ctx context.Context, bootGUID string) ([]disk.File, error) {
	kdir, err := b.moduleDir(ctx, b.Target.Kernel)
	if err != nil {
		return nil, err
	}
	vmlinuz, err := os.ReadFile(filepath.Join(kdir, "vmlinuz"))
	if err != nil {
		return nil, err
	}
	cmdline := Cmdline(b.Target, bootGUID)
	files := []disk.File{
		{Path: "vmlinuz", Data: vmlinuz},
		{Path: "cmdline.txt", Data: padded(cmdline)},
	}
	if !b.Target.RaspberryPi {
		efi, err := os.ReadFile(SystemdBootEFI)
		if err != nil {
			return nil, fmt.Errorf("image: boot loader: %w (install Debian's systemd-boot-efi)", err)
		}
		files = append(files,
			disk.File{Path: "EFI/BOOT/BOOTX64.EFI", Data: efi},
			disk.File{Path: "loader/loader.conf", Data: []byte("default gokrazy.conf\ntimeout 0\n")},
			disk.File{Path: "loader/entries/gokrazy.conf", Data: padded(LoaderEntry(cmdline))},
		)
		return files, nil
	}
	// Raspberry Pi: firmware, device trees, overlays, config.txt.
	fdir, err := b.moduleDir(ctx, "github.com/gokrazy/firmware")
	if err != nil {
		return nil, err
	}
	add := func(dir, prefix string, match func(string) bool) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.IsDir() || !match(e.Name()) {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return err
			}
			files = append(files, disk.File{Path: prefix + e.Name(), Data: data})
		}
		return nil
	}
	fw := func(n string) bool {
		return n == "bootcode.bin" || strings.HasSuffix(n, ".elf") || strings.HasSuffix(n, ".dat")
	}
	if err := add(fdir, "", fw); err != nil {
		return nil, err
	}
	if err := add(kdir, "", func(n string) bool { return strings.HasSuffix(n, ".dtb") }); err != nil {
		return nil, err
	}
	if err := add(filepath.Join(kdir, "overlays"), "overlays/", func(string) bool { return true }); err != nil {
		return nil, err
	}
	files = append(files, disk.File{Path: "config.txt", Data: []byte(RaspberryPiConfig)})
	return files, nil
}

// RaspberryPiConfig is the Pi firmware's config.txt: 64-bit kernel, the
// serial console on (the banner goes there).
const RaspberryPiConfig = `# mailgate: Raspberry Pi 4 and 5
arm_64bit=1
arm_control=0x200
kernel=vmlinuz
enable_uart=1
`

// SystemdBootEFI is the UEFI boot loader (Debian's systemd-boot-efi).
var SystemdBootEFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// mke2fsConf is mke2fs's configuration for /perm, pinned here rather than
// taken from the build host: the ext4 settings of Debian's
// /etc/mke2fs.conf. Without a configuration (an empty file) mke2fs makes
// an ext2 file system even as mkfs.ext4: no journal, no extents, and
// 128-byte inodes whose times end in 2038.
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// mkPerm creates the empty ext4 /perm file system with Debian's mke2fs,
// reproducibly: fixed UUID, hash seed, time and settings.
func (b *builder) mkPerm(ctx context.Context, path string, size int64, uuid [16]byte) error {
	u := disk.FormatGUID(uuid)
	conf := filepath.Join(b.work, "mke2fs.conf")
	if err := os.WriteFile(conf, []byte(mke2fsConf), 0o644); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	f.Close()
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "perm", "-U", u,
		"-E", "root_owner=0:0,hash_seed="+u+",lazy_itable_init=0,lazy_journal_init=0,nodiscard",
		"-m", "1", path)
	cmd.Env = append(os.Environ(),
		"E2FSPROGS_FAKE_TIME="+strconv.FormatInt(b.Epoch.Unix(), 10),
		"SOURCE_DATE_EPOCH="+strconv.FormatInt(b.Epoch.Unix(), 10),
		"MKE2FS_CONFIG="+conf) // ours, not the host's
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: mkfs.ext4: %v\n%s (install Debian's e2fsprogs)", err, out)
	}
	return nil
}

// copyInto copies a file into the image at off, skipping all-zero blocks
// so the image stays sparse.
func copyInto(w io.WriterAt, off int64, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	for pos := int64(0); ; {
		n, err := io.ReadFull(f, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := w.WriteAt(buf[:n], off+pos); werr != nil {
				return werr
			}
		}
		pos += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(target, 0o755)
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o644)
		}
	})
}
