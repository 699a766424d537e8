package firmware

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"mailgate/image/disk"
)

// Socket is gokrazy's HTTP interface. The image ships no gokrazy password,
// so gokrazy listens only here (root only), never on the network.
const Socket = "/run/gokrazy-http.sock"

// Runtime is the gokrazy runtime of the appliance image.
type Runtime struct {
	Arch   string // GOARCH an upgrade must match
	client *http.Client
	// installing serialises Install, whichever interface asks.
	installing sync.Mutex
}

// Detect returns the image's runtime, or nil when the process does not run
// on the appliance image (make run, tests).
func Detect() *Runtime {
	if _, err := os.Stat(Socket); err != nil {
		return nil
	}
	if _, err := os.Stat("/gokrazy/init"); err != nil {
		return nil
	}
	return New(Socket)
}

// New returns a runtime client talking to gokrazy on socket.
func New(socket string) *Runtime {
	return &Runtime{Arch: runtime.GOARCH, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

func (g *Runtime) do(ctx context.Context, method, path string, body io.Reader) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://gokrazy"+path, body)
	if err != nil {
		return "", err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

var errWriteEnded = errors.New("gokrazy ended the write")

// ErrBusy is returned while another upgrade is being installed: there is
// one inactive root partition.
var ErrBusy = errors.New("another firmware upgrade is in progress")

// ErrTrial is returned while a test boot awaits confirmation.
var ErrTrial = errors.New("the running version is a test boot still being confirmed; try again in a few minutes")

// ErrRebootFirst is returned after an upgrade was confirmed in the running
// boot: gokrazy still counts the old root as active and would write over
// the running one.
var ErrRebootFirst = errors.New("the running version was installed by an upgrade confirmed in this boot; reboot before the next upgrade")

// Install writes the upgrade file in r to the inactive root partition,
// verifies what was written against the manifest's checksum, and arms a
// test boot of it at the next reboot. progress receives short lines.
func (g *Runtime) Install(ctx context.Context, r io.Reader, progress io.Writer) (Manifest, error) {
	if !g.installing.TryLock() {
		return Manifest{}, ErrBusy
	}
	defer g.installing.Unlock()
	br := bufio.NewReaderSize(r, MaxHeaderSize)
	m, err := ReadHeader(br)
	if err != nil {
		return m, err
	}
	if err := m.CheckArch(g.Arch); err != nil {
		return m, err
	}
	st, err := ReadState()
	if err != nil {
		return m, err
	}
	if err := st.CanInstall(); err != nil {
		return m, err
	}
	if st.InactiveSize > 0 && m.Size > st.InactiveSize {
		return m, badFile("root file system of %d bytes does not fit the %d-byte partition", m.Size, st.InactiveSize)
	}
	fmt.Fprintf(progress, "Writing version %s (%d bytes) to root partition %d...\n", m.Version, m.Size, st.Inactive)
	// The payload streams to gokrazy, which writes the partition; a short
	// or altered file aborts the request (nothing is switched).
	pr, pw := io.Pipe()
	payloadErr := make(chan error, 1)
	go func() {
		err := ReadPayload(br, m, pw)
		pw.CloseWithError(err)
		payloadErr <- err
	}()
	got, err := g.do(ctx, http.MethodPut, "/update/root", pr)
	pr.CloseWithError(errWriteEnded) // unblock the copy if gokrazy stopped reading
	perr := <-payloadErr
	var bad *FileError
	switch {
	case errors.As(perr, &bad):
		return m, perr
	case perr != nil && !errors.Is(perr, errWriteEnded):
		return m, fmt.Errorf("reading the upgrade file: %w", perr)
	case err != nil:
		return m, fmt.Errorf("writing the root partition: %w", err)
	case perr != nil:
		return m, fmt.Errorf("writing the root partition: %w", perr)
	}
	sum := m.SHA256
	if strings.TrimSpace(got) != sum {
		return m, fmt.Errorf("checksum mismatch: gokrazy wrote %s, received %s; nothing was switched", strings.TrimSpace(got), sum)
	}
	if st.InactiveDevice != "" {
		fmt.Fprintf(progress, "Verifying %s...\n", st.InactiveDevice)
		if err := verifyDevice(st.InactiveDevice, m.Size, m.SHA256); err != nil {
			return m, err
		}
	}
	if _, err := g.do(ctx, http.MethodPost, "/update/testboot", nil); err != nil {
		return m, fmt.Errorf("arming the test boot: %w", err)
	}
	fmt.Fprintf(progress, "Checksum verified (sha256 %s). The next boot tries version %s and keeps it once it is up; otherwise it returns to the current version.\n", sum[:16], m.Version)
	return m, nil
}

// verifyDevice reads the partition back from the device, not from the
// page cache gokrazy's write left behind, and compares its checksum.
func verifyDevice(dev string, size int64, want string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	// The written pages are clean (gokrazy synced them): dropping them
	// makes the reads below go to the disk.
	if err := unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("reading back %s: %w", dev, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, size)); err != nil {
		return fmt.Errorf("reading back %s: %w", dev, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("read-back of %s does not match: %s, want %s; nothing was switched", dev, got, want)
	}
	return nil
}

// Reboot asks gokrazy to stop every service (SIGTERM, then SIGKILL after
// 100 s), unmount /perm and reboot; it returns just before the reboot. A
// supervised service must not wait for that (gokrazy waits for it to
// exit): it closes its own files, syncs, and asks with async, which
// reboots one second later whatever the other services do.
func (g *Runtime) Reboot(ctx context.Context, async bool) error {
	path := "/reboot"
	if async {
		unix.Sync()
		path += "?async=true"
	}
	_, err := g.do(ctx, http.MethodPost, path, nil)
	return err
}

// Confirm makes the running test boot's root the permanent one.
func (g *Runtime) Confirm(ctx context.Context) error {
	_, err := g.do(ctx, http.MethodPost, "/update/switch", nil)
	return err
}

// Status describes the root partitions for `get system status`.
func (g *Runtime) Status() string {
	st, err := ReadState()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	switch {
	case st.Trial:
		return fmt.Sprintf("test boot of root partition %d, confirmation pending (partition %d is the fallback)", st.Running, st.Next)
	case st.Running != st.Booted:
		return fmt.Sprintf("root partition %d (upgraded and confirmed); reboot before the next upgrade", st.Running)
	}
	return fmt.Sprintf("root partition %d; upgrades go to partition %d", st.Running, st.Inactive)
}

// State is where the image runs from.
type State struct {
	Running int // partition number of the mounted root (2 or 3)
	// Booted is the root the kernel was booted with (root= in
	// /proc/cmdline). gokrazy writes upgrades to the other one.
	Booted int
	// Next is the root the next boot uses (root= in the boot partition's
	// cmdline.txt now).
	Next           int
	BootDevice     string // the boot partition, e.g. /dev/sda1
	Inactive       int    // where an upgrade goes: not Booted
	InactiveDevice string // e.g. /dev/sda3
	InactiveSize   int64  // bytes
	// Trial: the running root is a test boot not yet confirmed (the next
	// boot returns to the other root).
	Trial bool
}

// CanInstall reports why an upgrade cannot be installed now, if it cannot.
func (st State) CanInstall() error {
	if st.Trial {
		return ErrTrial
	}
	if st.Inactive == st.Running {
		return ErrRebootFirst
	}
	return nil
}

// ReadState reads the partition state from /proc, /sys and the boot
// partition.
func ReadState() (State, error) {
	var st State
	var s syscall.Stat_t
	if err := syscall.Stat("/", &s); err != nil {
		return st, err
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(s.Dev), unix.Minor(s.Dev))
	n, err := readInt(filepath.Join(sys, "partition"))
	if err != nil {
		return st, fmt.Errorf("root device: %w", err)
	}
	st.Running = n
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return st, err
	}
	if st.Booted = RootPartition(string(cmdline)); st.Booted == 0 {
		st.Booted = st.Running
	}
	st.Inactive = 5 - st.Booted
	// The disk is the parent of the partition in /sys.
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return st, err
	}
	diskDir := filepath.Dir(real)
	ents, err := os.ReadDir(diskDir)
	if err != nil {
		return st, err
	}
	for _, e := range ents {
		p, err := readInt(filepath.Join(diskDir, e.Name(), "partition"))
		if err != nil {
			continue
		}
		switch p {
		case 1:
			st.BootDevice = "/dev/" + e.Name()
		case st.Inactive:
			st.InactiveDevice = "/dev/" + e.Name()
			if sectors, err := readInt(filepath.Join(diskDir, e.Name(), "size")); err == nil {
				st.InactiveSize = int64(sectors) * 512
			}
		}
	}
	st.Next = st.Booted
	if st.BootDevice != "" {
		if c, err := readBootFile(st.BootDevice, "cmdline.txt"); err == nil {
			if n := RootPartition(c); n != 0 {
				st.Next = n
			}
		}
	}
	st.Trial = st.Running != st.Next
	return st, nil
}

// readBootFile reads a file from the boot partition.
func readBootFile(dev, name string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	off, n, err := disk.Extents(f, 0, name)
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return "", err
	}
	return string(b), nil
}

// bootFlags are the markers gokrazy adds to the kernel command line for a
// test boot ("try_boot_inactive", rewritten to "switch_on_boot" when the
// test boot starts).
var bootFlags = []string{" gokrazy.try_boot_inactive=1", " gokrazy.switch_on_boot=1"}

// CleanCmdline removes gokrazy's test-boot markers from the boot
// partition's cmdline.txt and boot loader entry, once a test boot is
// confirmed. gokrazy appends a marker at every test boot, each time
// taking room from the padding the files were written with; without this,
// some dozens of upgrades would exhaust it. Each file keeps its length.
func CleanCmdline(bootDevice string) error {
	f, err := os.OpenFile(bootDevice, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, name := range []string{"cmdline.txt", "loader/entries/gokrazy.conf"} {
		off, n, err := disk.Extents(f, 0, name)
		if errors.Is(err, fs.ErrNotExist) && name != "cmdline.txt" {
			continue // Raspberry Pi: no boot loader entry
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		clean := CleanFlags(b)
		if bytes.Equal(clean, b) {
			continue
		}
		if _, err := f.WriteAt(clean, off); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// CleanFlags removes the test-boot markers from a padded command line
// file and pads it back to its length with spaces after the last line end.
func CleanFlags(b []byte) []byte {
	out := b
	for _, flag := range bootFlags {
		out = bytes.ReplaceAll(out, []byte(flag), nil)
	}
	// gokrazy pads a shortened line with spaces before its "\n"; drop
	// them, then pad at the end.
	for bytes.Contains(out, []byte(" \n")) {
		out = bytes.ReplaceAll(out, []byte(" \n"), []byte("\n"))
	}
	if len(out) < len(b) {
		out = append(out, bytes.Repeat([]byte(" "), len(b)-len(out))...)
	}
	return out
}

// RootPartition returns the partition number root= names on a kernel
// command line (PARTUUID=<first partition>/PARTNROFF=N means N+1, or a
// device path ending in the number), or 0.
func RootPartition(cmdline string) int {
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "root=")
		if !ok {
			continue
		}
		if _, off, ok := strings.Cut(v, "/PARTNROFF="); ok {
			switch off {
			case "1":
				return 2
			case "2":
				return 3
			}
			return 0
		}
		switch {
		case strings.HasSuffix(v, "2"):
			return 2
		case strings.HasSuffix(v, "3"):
			return 3
		}
	}
	return 0
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var n int
	_, err = fmt.Sscan(strings.TrimSpace(string(b)), &n)
	return n, err
}

// Ready marks the appliance as up (image/init confirms a test boot on it).
func Ready(path string) error {
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}
