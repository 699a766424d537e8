//go:build linux

package image

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/postfixtest"
	"mailgate/sshtest"
)

// The VM reaches the host only through QEMU's forwards: the network is
// restricted (nothing leaves the host), and guest connections to
// hostAddr are handed to this test binary run as a stdio proxy.
const hostAddr = "10.0.2.100"

// staticAddr is the address the test configures instead of DHCP's.
const staticAddr = "10.0.2.20"

// OVMF is Debian's UEFI firmware for QEMU (package ovmf).
var ovmfCode, ovmfVars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"

func TestMain(m *testing.M) {
	if addr := os.Getenv("MAILGATE_STDIO_PROXY"); addr != "" {
		os.Exit(stdioProxy(addr))
	}
	os.Exit(m.Run())
}

// stdioProxy connects stdin/stdout to addr (QEMU's guestfwd cmd: runs one
// per guest connection).
func stdioProxy(addr string) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 1
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, os.Stdin); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(os.Stdout, c); done <- struct{}{} }()
	<-done
	<-done
	return 0
}

// needFiles fails the test when one of files is missing.
func needFiles(t *testing.T, files ...string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is missing: make test installs qemu-system-x86, ovmf and systemd-boot-efi", f)
		}
	}
}

// vm is a QEMU virtual machine booting an image.
type vm struct {
	t                *testing.T
	cmd              *exec.Cmd
	serial           string // path of the serial console log
	ssh, smtp, https int    // host ports forwarded to 22, 25, 443
	plainHTTP        int    // forwarded to 80 (gokrazy's default, must stay closed)
	sshStatic        int    // forwarded to 22 of staticAddr
	done             chan struct{}
	mu               sync.Mutex
	exitErr          error
}

// startVM boots img under software emulation. guest maps ports on
// hostAddr, as seen from the guest, to host addresses.
func startVM(t *testing.T, img string, guest map[int]string) *vm {
	t.Helper()
	dir := t.TempDir()
	vars := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	v := &vm{t: t, serial: filepath.Join(dir, "serial.log"), ssh: postfixtest.Port(t), smtp: postfixtest.Port(t), https: postfixtest.Port(t), plainHTTP: postfixtest.Port(t), sshStatic: postfixtest.Port(t), done: make(chan struct{})}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	netdev := fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:25,hostfwd=tcp:127.0.0.1:%d-:443,hostfwd=tcp:127.0.0.1:%d-:80,hostfwd=tcp:127.0.0.1:%d-%s:22", v.ssh, v.smtp, v.https, v.plainHTTP, v.sshStatic, staticAddr)
	for port, to := range guest {
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:env MAILGATE_STDIO_PROXY=%s %s", hostAddr, port, to, self)
	}
	// One virtual CPU: under software emulation with two, the kernel's
	// live patching of its own code (static keys, via int3 and an IPI)
	// can race and oops, and oops=panic reboots the machine.
	args := []string{
		"-m", "1024", "-smp", "1", "-display", "none", "-vga", "none", "-no-user-config", "-nodefaults",
		"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,file=" + vars,
		"-drive", "file=" + img + ",format=raw,if=ide",
		"-netdev", netdev, "-device", "e1000,netdev=n0",
		"-serial", "file:" + v.serial, "-monitor", "none",
	}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	var qout bytes.Buffer
	v.cmd.Stdout, v.cmd.Stderr = &qout, &qout
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	go func() {
		err := v.cmd.Wait()
		v.mu.Lock()
		v.exitErr = fmt.Errorf("qemu exited: %v\n%s", err, qout.String())
		v.mu.Unlock()
		close(v.done)
	}()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		<-v.done
		if t.Failed() {
			t.Logf("serial console:\n%s", v.console())
		}
	})
	return v
}

func (v *vm) console() string {
	b, _ := os.ReadFile(v.serial)
	return string(b)
}

// waitConsole waits until the serial console shows want count times.
func (v *vm) waitConsole(want string, count int, timeout time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Count(v.console(), want) >= count {
			return
		}
		select {
		case <-v.done:
			v.mu.Lock()
			defer v.mu.Unlock()
			v.t.Fatalf("waiting for %q: %v", want, v.exitErr)
		case <-time.After(time.Second):
		}
	}
	v.t.Fatalf("the console did not show %q (%d times) within %v", want, count, timeout)
}

// waitSSH waits for the appliance's SSH banner on the forwarded port.
func (v *vm) waitSSH(port int, timeout time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line := make([]byte, 8)
			n, _ := io.ReadFull(c, line)
			c.Close()
			if n == 8 && string(line) == "SSH-2.0-" {
				return
			}
		}
		time.Sleep(2 * time.Second)
	}
	v.t.Fatalf("no SSH banner within %v", timeout)
}

// statusField returns a value of `get system status`.
func statusField(status, key string) string {
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestQEMUBootMailRebootUpgrade builds the amd64 image, boots it under
// QEMU, sets the first password over SSH, relays a message from swaks
// through the forwarded port 25 to an SMTP sink on the host, reboots and
// finds configuration and history intact, then upgrades A/B to a second
// build and sees the new version, kept across another reboot; an upgrade
// that does not come up is abandoned for the version before.
func TestQEMUBootMailRebootUpgrade(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "swaks", "mksquashfs", "mkfs.ext4")
	needFiles(t, ovmfCode, ovmfVars, SystemdBootEFI)
	ctx := context.Background()
	moduleDir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	epoch := testEpoch
	a, err := Build(ctx, Options{Target: Targets["amd64"], Version: "v0.0.0-test-a", Epoch: epoch, OutDir: filepath.Join(out, "a"), ModuleDir: moduleDir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(ctx, Options{Target: Targets["amd64"], Version: "v0.0.0-test-b", Epoch: epoch, OutDir: filepath.Join(out, "b"), ModuleDir: moduleDir, SkipDisk: true})
	if err != nil {
		t.Fatal(err)
	}

	broken, err := Build(ctx, Options{Target: Targets["amd64"], Version: "v0.0.0-test-broken", Epoch: epoch, OutDir: filepath.Join(out, "b", "broken"), ModuleDir: moduleDir, SkipDisk: true,
		ApplianceArgs: []string{"-ssh-port", "70000"}, TryBootDeadline: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	sink := postfixtest.StartSink(t, postfixtest.SinkOptions{})
	web := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(b.Upgrade)))}
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(wl)
	t.Cleanup(func() { web.Close() })

	v := startVM(t, a.Image, map[int]string{25: sink.Addr, 80: wl.Addr().String()})
	v.waitConsole("mailgate v0.0.0-test-a (", 1, 6*time.Minute)
	v.waitConsole("factory certificate:", 1, time.Minute)
	v.waitConsole("eth0 10.0.2.15/24", 1, 2*time.Minute) // DHCP, in the banner or after it
	v.waitSSH(v.ssh, 2*time.Minute)

	const pw = "Gate#Keeper2026"
	c := sshtest.New(t, v.ssh)
	c.Timeout = 3 * time.Minute
	c.SetFirstPassword("127.0.0.1", pw)
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, code := c.Run(pw, stdin, append([]string{"admin@127.0.0.1"}, args...)...)
		if code != 0 {
			t.Fatalf("ssh %v: status %d\n%s", args, code, out)
		}
		return out
	}
	status := run("", "get system status")
	for _, want := range []string{"mailgate v0.0.0-test-a", "Firmware", "root partition 2; upgrades go to partition 3"} {
		if !strings.Contains(status, want) {
			t.Fatalf("status lacks %q:\n%s", want, status)
		}
	}
	// The console banner names what the CLI reports.
	for _, key := range []string{"SSH host key", "Factory certificate SHA-256"} {
		val := statusField(status, key)
		if val == "" || !strings.Contains(v.console(), val) {
			t.Fatalf("the console banner lacks the %s %q:\n%s", key, val, v.console())
		}
	}
	// The web UI owns 443; gokrazy's own interface is not on the network.
	webClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := webClient.Get(fmt.Sprintf("https://127.0.0.1:%d/login", v.https))
	if err != nil {
		t.Fatalf("web UI on 443: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("web UI login page: %s", resp.Status)
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", v.plainHTTP)); err == nil {
		resp.Body.Close()
		t.Fatalf("something answers HTTP on port 80 of the appliance: %s", resp.Status)
	}

	run(strings.Join([]string{"config domain", "edit example.com", "set smtp-server " + hostAddr, "set smtp-port 25", "next", "end"}, "\n") + "\n")

	subject := "image test " + strconv.FormatInt(time.Now().UnixNano(), 36)
	sw := exec.Command("swaks", "--timeout", "120", "--server", fmt.Sprintf("127.0.0.1:%d", v.smtp),
		"--from", "someone@outside.example", "--to", "user@example.com", "--header", "Subject: "+subject)
	if swOut, err := sw.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, swOut)
	}
	if _, err := sink.WaitMessage(subject, 2*time.Minute); err != nil {
		t.Fatalf("message did not reach the sink: %v", err)
	}
	waitHistory := func() string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			h := run("", "diagnose log history")
			if strings.Contains(h, "user@example.com") && strings.Contains(h, "relay=") {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("history lacks the delivery:\n%s", h)
			}
			time.Sleep(2 * time.Second)
		}
	}
	history := waitHistory()

	// A static address instead of DHCP, applied at once. Routes and name
	// servers first, over the DHCP address; the address switch is the
	// last command of its session, which goes with the old address.
	run(strings.Join([]string{
		"config system route", "edit 1", "set gateway 10.0.2.2", "next",
		"edit 2", "set destination 198.51.100.0/24", "set gateway 10.0.2.2", "set interface port1", "next", "end",
		"config system dns", "set primary 10.0.2.3", "end"}, "\n") + "\n")
	c.Timeout = 30 * time.Second
	c.Run(pw, strings.Join([]string{"config system interface", "edit port1", "set mode static", "set ip " + staticAddr + "/24",
		"set mtu 1400", "next", "end"}, "\n")+"\n", "admin@127.0.0.1")
	c.Timeout = 3 * time.Minute
	v.waitConsole("eth0 "+staticAddr+"/24", 1, time.Minute)
	c.Port = v.sshStatic
	v.waitSSH(c.Port, time.Minute)
	events := run("", "diagnose log event 50 network")
	for _, want := range []string{"network configuration applied: route 1 0.0.0.0/0 via 10.0.2.2, route 2 198.51.100.0/24 via 10.0.2.2 port1",
		"port1 DHCP client stopped, port1 mtu 1400, port1 removed address 10.0.2.15/24, port1 address " + staticAddr + "/24"} {
		if !strings.Contains(events, want) {
			t.Fatalf("events lack %q:\n%s", want, events)
		}
	}
	config := run("", "show full-configuration")

	// Reboot: configuration and history survive on /perm; port1 comes
	// up static, with no DHCP client.
	if out := run("y\n", "execute reboot"); !strings.Contains(out, "going down") {
		t.Fatalf("reboot: %s", out)
	}
	v.waitConsole("mailgate v0.0.0-test-a (", 2, 6*time.Minute)
	v.waitConsole("eth0 "+staticAddr+"/24", 2, 2*time.Minute)
	v.waitSSH(c.Port, 2*time.Minute)
	if events := run("", "diagnose log event 50 network"); !strings.Contains(events, "network configuration applied at start: port1 mtu 1400") {
		t.Fatalf("events after the reboot lack the MTU:\n%s", events)
	}
	con := v.console()
	if after := con[strings.LastIndex(con, "mailgate v0.0.0-test-a ("):]; strings.Contains(after, "10.0.2.15") {
		t.Fatalf("port1 took a DHCP address though static:\n%s", after)
	}
	if got := run("", "show full-configuration"); got != config {
		t.Fatalf("configuration changed across the reboot:\n--- before\n%s\n--- after\n%s", config, got)
	}
	if h := run("", "diagnose log history"); !strings.Contains(h, "user@example.com") || len(h) < len(history) {
		t.Fatalf("history after the reboot:\n%s\nbefore:\n%s", h, history)
	}

	// upgrade installs the upgrade file at path on the host's web server.
	upgrade := func(path, version string) {
		t.Helper()
		url := fmt.Sprintf("http://%s/%s", hostAddr, path)
		if out, code := c.Run(pw, "y\n", "admin@127.0.0.1", "execute restore image "+url); code != 0 || !strings.Contains(out, "Firmware "+version+" installed") {
			t.Fatalf("upgrade to %s: status %d\n%s", version, code, out)
		}
	}
	// expect checks get system status and the configuration.
	expect := func(when string, wants ...string) {
		t.Helper()
		status := run("", "get system status")
		for _, want := range wants {
			if !strings.Contains(status, want) {
				t.Fatalf("status %s lacks %q:\n%s", when, want, status)
			}
		}
		if got := run("", "show full-configuration"); got != config {
			t.Fatalf("configuration changed %s:\n%s", when, got)
		}
	}

	// A/B upgrade from the host's web server.
	upgrade(filepath.Base(b.Upgrade), "v0.0.0-test-b")
	v.waitConsole("mailgate v0.0.0-test-b (", 1, 6*time.Minute)
	v.waitConsole("upgrade confirmed; root partition 3 is now permanent", 1, 2*time.Minute)
	v.waitSSH(c.Port, 2*time.Minute)
	expect("after the upgrade", "mailgate v0.0.0-test-b", "root partition 3 (upgraded and confirmed); reboot before the next upgrade")
	// gokrazy would write over the running root until the next boot.
	if out, code := c.Run(pw, "y\n", "admin@127.0.0.1", "execute restore image http://"+hostAddr+"/"+filepath.Base(b.Upgrade)); code == 0 || !strings.Contains(out, "reboot before the next upgrade") {
		t.Fatalf("a second upgrade in the same boot: status %d\n%s", code, out)
	}
	run("y\n", "execute reboot")
	v.waitConsole("mailgate v0.0.0-test-b (", 2, 6*time.Minute)
	v.waitSSH(c.Port, 2*time.Minute)

	// An upgrade whose appliance never comes up (it cannot listen on its
	// SSH port) is abandoned: the machine returns to the version before.
	upgrade("broken/"+filepath.Base(broken.Upgrade), "v0.0.0-test-broken")
	v.waitConsole("did not become ready within 30s; rebooting into the previous version", 1, 6*time.Minute)
	v.waitConsole("mailgate v0.0.0-test-b (", 3, 6*time.Minute)
	v.waitSSH(c.Port, 2*time.Minute)
	expect("after the abandoned upgrade", "mailgate v0.0.0-test-b", "root partition 3; upgrades go to partition 2")
}
