package firmware

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
)

func upgradeFile(t *testing.T, root []byte, edit func(*Manifest)) []byte {
	t.Helper()
	sum := sha256.Sum256(root)
	m := Manifest{Version: "v1.2.3", Arch: "amd64", Target: "amd64", Size: int64(len(root)), SHA256: hex.EncodeToString(sum[:])}
	if edit != nil {
		edit(&m)
	}
	var b bytes.Buffer
	if err := WriteHeader(&b, m); err != nil {
		t.Fatal(err)
	}
	b.Write(root)
	return b.Bytes()
}

func TestHeaderRoundTrip(t *testing.T) {
	root := bytes.Repeat([]byte("hsqs"), 1000)
	br := bufio.NewReader(bytes.NewReader(upgradeFile(t, root, nil)))
	m, err := ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "v1.2.3" || m.Arch != "amd64" || m.Size != int64(len(root)) {
		t.Fatalf("manifest %+v", m)
	}
	rest, _ := io.ReadAll(br)
	if !bytes.Equal(rest, root) {
		t.Fatal("reader not left at the root file system")
	}
}

func TestHeaderRejects(t *testing.T) {
	root := []byte("root")
	for name, tc := range map[string]struct {
		file []byte
		want string
	}{
		"not an upgrade":  {[]byte("hsqs\x00\x00 a squashfs alone"), "not a mailgate upgrade file"},
		"empty":           {nil, "not a mailgate upgrade file"},
		"no manifest end": {[]byte(Magic + `{"version":"x"`), "manifest"},
		"bad json":        {[]byte(Magic + "{]\n"), "manifest"},
		"unknown field":   {[]byte(Magic + `{"version":"v","size":1,"sha256":"` + strings.Repeat("a", 64) + `","extra":1}` + "\n"), "unknown field"},
		"no version":      {upgradeFile(t, root, func(m *Manifest) { m.Version = "" }), "no version"},
		"size zero":       {upgradeFile(t, root, func(m *Manifest) { m.Size = 0 }), "out of range"},
		"size too big":    {upgradeFile(t, root, func(m *Manifest) { m.Size = MaxRootSize + 1 }), "out of range"},
		"bad checksum":    {upgradeFile(t, root, func(m *Manifest) { m.SHA256 = "xyz" }), "not a SHA-256"},
	} {
		_, err := ReadHeader(bufio.NewReader(bytes.NewReader(tc.file)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}

func TestReadPayload(t *testing.T) {
	root := bytes.Repeat([]byte("root"), 5000)
	file := upgradeFile(t, root, nil)
	br := bufio.NewReader(bytes.NewReader(file))
	m, err := ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := ReadPayload(br, m, &got); err != nil || !bytes.Equal(got.Bytes(), root) {
		t.Fatalf("payload: %v, %d bytes", err, got.Len())
	}
	var bad *FileError
	short := bufio.NewReader(bytes.NewReader(file[:len(file)-10]))
	ReadHeader(short)
	if err := ReadPayload(short, m, io.Discard); !errors.As(err, &bad) || !strings.Contains(err.Error(), "truncated: 19990 of 20000") {
		t.Fatalf("truncated: %v", err)
	}
	altered := bytes.Clone(file)
	altered[len(altered)-1] ^= 1
	br = bufio.NewReader(bytes.NewReader(altered))
	ReadHeader(br)
	if err := ReadPayload(br, m, io.Discard); !errors.As(err, &bad) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("altered: %v", err)
	}
	if err := m.CheckArch("arm64"); !errors.As(err, &bad) || !strings.Contains(err.Error(), "this appliance is arm64") {
		t.Fatalf("arch: %v", err)
	}
}

func TestRootPartition(t *testing.T) {
	for cmdline, want := range map[string]int{
		"console=ttyS0 root=PARTUUID=2f0e3a6c-1d2b-4c5e-9f00-0123456789ab/PARTNROFF=1 ro init=/gokrazy/init": 2,
		"root=PARTUUID=2f0e3a6c-1d2b-4c5e-9f00-0123456789ab/PARTNROFF=2 gokrazy.try_boot_inactive=1":         3,
		"root=/dev/sda3 ro":           3,
		"root=/dev/mmcblk0p2":         2,
		"console=tty1 ro quiet":       0,
		"root=PARTUUID=x/PARTNROFF=7": 0,
	} {
		if got := RootPartition(cmdline); got != want {
			t.Errorf("RootPartition(%q) = %d, want %d", cmdline, got, want)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte(Magic + `{"version":"v1","arch":"amd64","target":"amd64","size":4,"sha256":"` + strings.Repeat("0", 64) + `"}` + "\nhsqs"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadHeader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if m.Version == "" || m.Size <= 0 || m.Size > MaxRootSize || len(m.SHA256) != 64 {
			t.Fatalf("accepted a bad manifest: %+v", m)
		}
	})
}

func TestCanInstall(t *testing.T) {
	for _, tc := range []struct {
		st   State
		want string
	}{
		{State{Running: 2, Booted: 2, Next: 2, Inactive: 3}, ""},
		{State{Running: 3, Booted: 3, Next: 3, Inactive: 2}, ""},
		{State{Running: 3, Booted: 2, Next: 2, Inactive: 3, Trial: true}, "test boot"},
		{State{Running: 3, Booted: 2, Next: 3, Inactive: 3}, "reboot before the next upgrade"},
	} {
		err := tc.st.CanInstall()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.st, err, tc.want)
		}
	}
}

// TestCleanFlagsAfterGokrazyEdits replays what gokrazy does to a padded
// cmdline.txt over an upgrade (append the try-boot flag at the line end,
// writing past the file's length; rename it when the test boot starts,
// padding the shortened line before its "\n"; switch root=) and checks
// that CleanFlags restores the file with only root= changed, upgrade
// after upgrade.
func TestCleanFlagsAfterGokrazyEdits(t *testing.T) {
	const length = 1024
	line := "console=ttyS0,115200 root=PARTUUID=0f0e/PARTNROFF=1 ro init=/gokrazy/init panic=10"
	pad := func(s string) []byte {
		return append([]byte(s+"\n"), bytes.Repeat([]byte(" "), length-len(s)-1)...)
	}
	file := pad(line)
	gokrazyEdit := func(b []byte, replace func([]byte) []byte) []byte {
		rep := replace(b)
		if n := len(b) - len(rep); n > 0 {
			rep = bytes.ReplaceAll(rep, []byte("\n"), append(bytes.Repeat([]byte(" "), n), '\n'))
		}
		return rep[:len(b)] // the file keeps its length
	}
	for i, root := range []string{"2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1", "2", "1"} {
		file = gokrazyEdit(file, func(b []byte) []byte {
			return bytes.ReplaceAll(b, []byte("\n"), []byte(" gokrazy.try_boot_inactive=1\n"))
		})
		if !bytes.Contains(file, []byte("gokrazy.try_boot_inactive=1\n")) {
			t.Fatalf("upgrade %d: the flag does not fit any more:\n%q", i, file)
		}
		file = gokrazyEdit(file, func(b []byte) []byte {
			return bytes.ReplaceAll(b, []byte("gokrazy.try_boot_inactive=1"), []byte("gokrazy.switch_on_boot=1"))
		})
		file = gokrazyEdit(file, func(b []byte) []byte {
			return regexp.MustCompile(`PARTNROFF=[12]`).ReplaceAll(b, []byte("PARTNROFF="+root))
		})
		file = CleanFlags(file)
		want := pad(strings.Replace(line, "PARTNROFF=1", "PARTNROFF="+root, 1))
		if !bytes.Equal(file, want) {
			t.Fatalf("upgrade %d:\n got %q\nwant %q", i, file, want)
		}
	}
}

// One install at a time, whichever interface asks: the second is refused
// before it reads anything.
func TestInstallBusy(t *testing.T) {
	g := New(t.TempDir() + "/no-gokrazy.sock")
	g.installing.Lock()
	defer g.installing.Unlock()
	r := strings.NewReader("unread")
	if _, err := g.Install(t.Context(), r, io.Discard); !errors.Is(err, ErrBusy) {
		t.Fatalf("second install: %v, want ErrBusy", err)
	}
	if r.Len() != len("unread") {
		t.Fatal("the refused install read its input")
	}
}
