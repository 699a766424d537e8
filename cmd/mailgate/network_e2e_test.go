package main

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/postfixtest"
	"mailgate/sshtest"
)

// With -manage-network a commit of system interface and system route
// reaches the kernel at once: the appliance runs in a namespace of its
// own whose one interface is port1.
func TestNetworkConfigurationAppliesAtCommit(t *testing.T) {
	ns, addr, hostIP := testNetns(t)
	bin := buildBinary(t)
	sshPort := postfixtest.Port(t)
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-profile", "dev", "-data", filepath.Join(t.TempDir(), "data"),
		"-ssh-port", strconv.Itoa(sshPort), "-https-port", strconv.Itoa(postfixtest.Port(t)), "-smtp-port", strconv.Itoa(postfixtest.Port(t)),
		"-smtps-port", strconv.Itoa(postfixtest.Port(t)), "-msa-port", strconv.Itoa(postfixtest.Port(t)), "-manage-network")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	if err := postfixtest.WaitListening(net.JoinHostPort(addr, strconv.Itoa(sshPort)), 20*time.Second); err != nil {
		t.Fatalf("appliance in the namespace: %v\n%s", err, out.String())
	}
	client := sshtest.New(t, sshPort)
	client.SetFirstPassword(addr, newPassword)
	admin := "admin@" + addr
	run := func(stdin string) {
		t.Helper()
		if o, code := client.Run(newPassword, stdin, admin); code != 0 {
			t.Fatalf("%s: status %d\n%s", stdin, code, o)
		}
	}
	ip := func(args ...string) string {
		t.Helper()
		o, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, o)
		}
		return string(o)
	}

	// port1 keeps the address it has (the SSH session is on it).
	run("config system interface\nedit port1\nset mode static\nset ip " + addr + "/30\nset mtu 1400\nnext\nend\n" +
		"config system route\nedit 1\nset destination 198.51.100.0/24\nset gateway " + hostIP + "\nset interface port1\nnext\nend\n")
	if l := ip("-o", "link", "show", "up"); !strings.Contains(l, "mtu 1400") {
		t.Errorf("mtu not applied:\n%s", l)
	}
	if r := ip("route", "show", "proto", "77"); !strings.Contains(r, "198.51.100.0/24 via "+hostIP+" dev ") {
		t.Errorf("route not applied: %q", r)
	}
	// The event log is written in batches.
	var events string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if events, _ = client.Run(newPassword, "", admin, "diagnose log event 50 network"); strings.Contains(events, "port1 mtu 1400") {
			break
		}
	}
	for _, w := range []string{"network configuration applied: port1 mtu 1400", "route 1 198.51.100.0/24 via " + hostIP + " port1"} {
		if !strings.Contains(events, w) {
			t.Errorf("events lack %q:\n%s", w, events)
		}
	}

	// Taken back: the route goes, the MTU returns to 1500.
	run("config system route\ndelete 1\nend\nconfig system interface\nedit port1\nunset mtu\nnext\nend\n")
	if r := ip("route", "show", "proto", "77"); strings.TrimSpace(r) != "" {
		t.Errorf("route left: %q", r)
	}
	if l := ip("-o", "link", "show", "up"); strings.Contains(l, "mtu 1400") {
		t.Errorf("mtu 1400 left:\n%s", l)
	}
}
