package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
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

// testNetns makes a network namespace joined to this one by a veth pair:
// the namespace's end (its only interface besides lo, so port1 for an
// appliance running inside) has applianceIP, this end hostIP. Creating
// namespaces needs root, as `make test` has.
func testNetns(t *testing.T) (ns, applianceIP, hostIP string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root (ip netns add): run make test as root")
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	ns, host, inside := "mgt"+id, "mgh"+id, "mgn"+id
	net3 := 16 + int(b[0])%200
	applianceIP, hostIP = fmt.Sprintf("10.231.%d.1", net3), fmt.Sprintf("10.231.%d.2", net3)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", host, "type", "veth", "peer", "name", inside)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	ip("link", "set", inside, "netns", ns)
	ip("addr", "add", hostIP+"/30", "dev", host)
	ip("link", "set", host, "up")
	ip("-n", ns, "addr", "add", applianceIP+"/30", "dev", inside)
	ip("-n", ns, "link", "set", inside, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	return ns, applianceIP, hostIP
}

// `system interface … allowaccess` decides which services answer on an
// interface: the appliance runs in a namespace whose one interface is
// port1, and the test reaches it over a veth pair.
func TestAllowAccessPerInterface(t *testing.T) {
	ns, addr, hostIP := testNetns(t)
	bin := buildBinary(t)
	sshPort, webPort, smtpPort, smtpsPort := postfixtest.Port(t), postfixtest.Port(t), postfixtest.Port(t), postfixtest.Port(t)
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-profile", "dev", "-data", filepath.Join(t.TempDir(), "data"),
		"-ssh-port", strconv.Itoa(sshPort), "-https-port", strconv.Itoa(webPort), "-smtp-port", strconv.Itoa(smtpPort),
		"-smtps-port", strconv.Itoa(smtpsPort), "-manage-icmp")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	at := func(port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
	for _, p := range []int{sshPort, webPort, smtpPort, smtpsPort} {
		if err := postfixtest.WaitListening(at(p), 20*time.Second); err != nil {
			t.Fatalf("appliance in the namespace: %v\n%s", err, out.String())
		}
	}
	client := sshtest.New(t, sshPort)
	client.SetFirstPassword(addr, newPassword)
	admin := "admin@" + addr

	web := func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", at(webPort), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
		return err
	}
	ping := func() bool {
		return exec.Command("ping", "-c", "1", "-W", "2", addr).Run() == nil
	}
	set := func(services, mail string) {
		t.Helper()
		if o, code := client.Run(newPassword, "config system interface\nedit port1\nset allowaccess "+services+"\nset mailaccess "+mail+"\nnext\nend\n", admin); code != 0 {
			t.Fatalf("set allowaccess %s, mailaccess %s: %d\n%s", services, mail, code, o)
		}
	}
	smtps := func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", at(smtpsPort), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			_, err = greeting(c)
			c.Close()
		}
		return err
	}

	// The factory allows everything.
	if err := web(); err != nil {
		t.Fatalf("web UI: %v", err)
	}
	if _, err := greets(at(smtpPort)); err != nil {
		t.Fatalf("SMTP: %v", err)
	}
	if err := smtps(); err != nil {
		t.Fatalf("SMTPS: %v", err)
	}
	if !ping() {
		t.Fatal("no answer to ping")
	}

	// Without https and ping, and smtps: the web UI's and the SMTPS
	// port's connections are closed at once and ping goes unanswered; SSH
	// and SMTP still answer.
	set("ssh", "smtp")
	if err := web(); err == nil {
		t.Fatal("web UI reachable without https in allowaccess")
	}
	if _, err := greets(at(smtpPort)); err != nil {
		t.Fatalf("SMTP: %v", err)
	}
	if err := smtps(); err == nil {
		t.Fatal("SMTPS served without smtps in mailaccess")
	}
	if ping() {
		t.Fatal("ping answered without ping in allowaccess")
	}
	events, _ := client.Run(newPassword, "", admin, "diagnose log event 20 refused")
	if !strings.Contains(events, "https connection from "+hostIP+" refused on port1: not in its allowaccess") {
		t.Fatalf("no event for the refused connection:\n%s", events)
	}

	// Without smtp: the SMTP port gives no greeting; SMTPS is back.
	set("ssh https ping", "smtps")
	if g, err := greets(at(smtpPort)); err == nil {
		t.Fatalf("SMTP greeting %q without smtp in mailaccess", g)
	}
	if err := web(); err != nil || !ping() || smtps() != nil {
		t.Fatalf("web UI (%v), ping or SMTPS not back", err)
	}
	events, _ = client.Run(newPassword, "", admin, "diagnose log event 20 refused")
	if !strings.Contains(events, "smtp connection from "+hostIP+" refused on port1: not in its mailaccess") {
		t.Fatalf("no event for the refused SMTP connection:\n%s", events)
	}

	// Without ssh: the CLI is closed to this interface.
	set("https", "smtp")
	if o, code := client.Run(newPassword, "", admin, "get system status"); code == 0 {
		t.Fatalf("SSH served without ssh in allowaccess:\n%s", o)
	}
}
