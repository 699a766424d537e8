package cli

import (
	"bytes"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/firmware/firmwaretest"
	"mailgate/sshtest"
)

// upgradeAccounts are fake accounts that can install firmware.
type upgradeAccounts struct {
	*fakeAccounts
	fw      admin.Firmware // may be nil
	reboots chan struct{}
}

func (a *upgradeAccounts) Firmware() admin.Firmware { return a.fw }
func (a *upgradeAccounts) Reboot()                  { a.reboots <- struct{}{} }

// scpStart starts a server whose accounts install into fw (nil: not on the
// image) with the admins "admin" and the read-only "viewer".
func scpStart(t *testing.T, fw admin.Firmware) (*testEnv, chan struct{}) {
	t.Helper()
	reboots := make(chan struct{}, 10)
	e := testStart(t, func(c *ServerConfig) {
		c.Accounts = &upgradeAccounts{fakeAccounts: c.Accounts.(*fakeAccounts), fw: fw, reboots: reboots}
	})
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	e.acc.add(t, AdminInfo{Name: "viewer", ReadOnly: true}, "viewer-password")
	e.acc.add(t, AdminInfo{Name: "fresh"}, "")
	return e, reboots
}

// testUpgradeFile writes an upgrade file with size random bytes of root
// file system; corrupt flips a byte of it after the manifest was made.
func testUpgradeFile(t *testing.T, size int, corrupt bool) (path string, root []byte) {
	t.Helper()
	root = make([]byte, size)
	rand.Read(root)
	header := firmwaretest.Header(t, "9.9.9-test", runtime.GOARCH, root)
	if corrupt {
		root = append([]byte(nil), root...)
		root[size/2] ^= 0x40
	}
	path = filepath.Join(t.TempDir(), "mailgate-amd64.upgrade")
	if err := os.WriteFile(path, append(header, root...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, root
}

// runSCP runs OpenSSH's scp against e with password authentication and
// returns its output and exit status.
func runSCP(t *testing.T, e *testEnv, password string, args ...string) (string, int) {
	t.Helper()
	_, port, _ := net.SplitHostPort(e.addr)
	p, _ := strconv.Atoi(port)
	return sshtest.New(t, p).SCP(password, args...)
}

func expectReboot(t *testing.T, reboots chan struct{}) {
	t.Helper()
	select {
	case <-reboots:
	case <-time.After(5 * time.Second):
		t.Fatal("no reboot after the upgrade")
	}
}

func expectNoReboot(t *testing.T, reboots chan struct{}) {
	t.Helper()
	select {
	case <-reboots:
		t.Fatal("rebooted")
	case <-time.After(200 * time.Millisecond):
	}
}

// A valid upgrade file arrives byte for byte, the progress and result are
// shown, the event logged and the appliance reboots.
func TestSCPUpgrade(t *testing.T) {
	fw := &firmwaretest.Fake{StatusText: "test"}
	e, reboots := scpStart(t, fw)
	file, root := testUpgradeFile(t, 3<<20+12345, false)
	// -p makes scp send the file times first.
	out, code := runSCP(t, e, "admin-password", "-O", "-p", file, "admin@127.0.0.1:image")
	t.Logf("scp: status %d: %s", code, out)
	if code != 0 {
		t.Fatalf("scp: status %d\n%s", code, out)
	}
	for _, want := range []string{"Writing version 9.9.9-test (3158073 bytes)...", "Checksum verified.", "Firmware 9.9.9-test installed. The system is rebooting."} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	calls, installs := fw.Calls(), fw.Installs()
	if calls != 1 || len(installs) != 1 || !bytes.Equal(installs[0], root) {
		t.Fatalf("%d installs of %d calls; root file system received intact: %v", len(installs), calls, len(installs) == 1 && bytes.Equal(installs[0], root))
	}
	expectReboot(t, reboots)
	if n := e.events.exact("notice|system|admin|127.0.0.1|firmware 9.9.9-test installed from an scp upload; rebooting to try it"); n != 1 {
		t.Errorf("%d install events: %q", n, e.events.all())
	}
	expectNoReboot(t, reboots)
}

// A corrupted root file system fails the checksum: scp reports it and
// exits non-zero, nothing is installed and the appliance does not reboot.
func TestSCPUpgradeCorrupted(t *testing.T) {
	fw := &firmwaretest.Fake{StatusText: "test"}
	e, reboots := scpStart(t, fw)
	file, _ := testUpgradeFile(t, 2<<20, true)
	out, code := runSCP(t, e, "admin-password", "-O", file, "admin@127.0.0.1:image")
	if code == 0 || !strings.Contains(out, "checksum mismatch: received ") || strings.Contains(out, "installed") {
		t.Fatalf("scp: status %d\n%s", code, out)
	}
	if calls, installs := fw.Calls(), fw.Installs(); calls != 1 || len(installs) != 0 {
		t.Fatalf("%d calls, %d installs", calls, len(installs))
	}
	e.events.waitFor(t, "error|system|admin|127.0.0.1|firmware upgrade from an scp upload failed: checksum mismatch")
	expectNoReboot(t, reboots)

	// Not an upgrade file at all.
	junk := filepath.Join(t.TempDir(), "notes.txt")
	// Large enough that the server must take the rest after Install gave up.
	if err := os.WriteFile(junk, append([]byte("hello\n"), make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runSCP(t, e, "admin-password", "-O", junk, "admin@127.0.0.1:image")
	if code == 0 || !strings.Contains(out, "not a mailgate upgrade file") {
		t.Fatalf("scp: status %d\n%s", code, out)
	}
	expectNoReboot(t, reboots)
}

// Uploads are refused, with the reason, to any other name, to read-only
// admins, before the first password is set, when the appliance does not
// run from the image, and without -O (SFTP); downloads too.
func TestSCPRefused(t *testing.T) {
	fw := &firmwaretest.Fake{StatusText: "test"}
	e, reboots := scpStart(t, fw)
	noImage, _ := scpStart(t, nil)
	file, _ := testUpgradeFile(t, 4096, false)
	for _, tc := range []struct {
		env       *testEnv
		user, pw  string
		args      []string
		want, log string
	}{
		{e, "admin", "admin-password", []string{"-O", file, "admin@127.0.0.1:firmware.bin"}, scpWrongTarget, "firmware.bin"},
		{e, "admin", "admin-password", []string{"-O", file, "admin@127.0.0.1:"}, scpWrongTarget, ""},
		{e, "viewer", "viewer-password", []string{"-O", file, "viewer@127.0.0.1:image"}, scpReadOnly, "viewer"},
		{e, "fresh", "", []string{"-O", file, "fresh@127.0.0.1:image"}, scpMustChange, "fresh"},
		{noImage, "admin", "admin-password", []string{"-O", file, "admin@127.0.0.1:image"}, admin.ErrNoFirmware.Error(), "admin"},
		{e, "admin", "admin-password", []string{file, "admin@127.0.0.1:image"}, "scp -O mailgate-amd64.upgrade admin@appliance:image", ""},
		{e, "admin", "admin-password", []string{"-O", "admin@127.0.0.1:image", filepath.Join(t.TempDir(), "x")}, scpDownload, ""},
	} {
		out, code := runSCP(t, tc.env, tc.pw, tc.args...)
		t.Logf("scp %q: status %d: %s", tc.args, code, out)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("scp %q: status %d, want the message %q:\n%s", tc.args, code, tc.want, out)
		}
	}
	if n := e.events.count("scp upload refused: " + scpReadOnly); n != 1 {
		t.Errorf("%d read-only refusals logged: %q", n, e.events.all())
	}
	if n := noImage.events.count("scp upload refused: " + admin.ErrNoFirmware.Error()); n != 1 {
		t.Errorf("%d refusals logged: %q", n, noImage.events.all())
	}
	if calls := fw.Calls(); calls != 0 {
		t.Errorf("Install called %d times", calls)
	}
	expectNoReboot(t, reboots)
}

// ServiceAccounts hands the service's firmware and reboot to the server.
func TestSCPServiceAccounts(t *testing.T) {
	svc, _, _ := openSSHService(t)
	if err := svc.SetPassword("admin", "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	fw := &firmwaretest.Fake{StatusText: "test"}
	reboots := make(chan struct{}, 1)
	svc.Firmware = fw
	svc.Reboot = func() { reboots <- struct{}{} }
	e := testStart(t, func(c *ServerConfig) { c.Accounts = ServiceAccounts(svc) })
	file, root := testUpgradeFile(t, 100000, false)
	if out, code := runSCP(t, e, "admin-password", "-O", file, "admin@127.0.0.1:image"); code != 0 {
		t.Fatalf("scp: status %d\n%s", code, out)
	}
	if installs := fw.Installs(); len(installs) != 1 || !bytes.Equal(installs[0], root) {
		t.Fatal("not installed")
	}
	expectReboot(t, reboots)
}

func TestSCPArgs(t *testing.T) {
	for _, tc := range []struct {
		cmd    string
		ok     bool
		errMsg string
	}{
		{"show system status", false, ""},
		{"scp -t image", true, ""},
		{"scp -v -p -t -- image", true, ""},
		{"scp -pt image", true, ""},
		{"scp -t /etc/passwd", true, scpWrongTarget},
		{"scp -t image other", true, scpOneFile},
		{"scp -d -t image", true, scpOneFile},
		{"scp -r -t image", true, scpOneFile},
		{"scp -f image", true, scpDownload},
		{"scp image", true, scpDownload},
		{"scp -x -t image", true, "scp: unsupported option -x"},
	} {
		ok, err := scpArgs(strings.Fields(tc.cmd))
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if ok != tc.ok || msg != tc.errMsg {
			t.Errorf("%q: %v %q, want %v %q", tc.cmd, ok, msg, tc.ok, tc.errMsg)
		}
	}
}
