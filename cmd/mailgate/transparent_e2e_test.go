package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
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

// inPath is the appliance in transparent mode in the network path, in
// network namespaces of the test's own:
//
//	client  eth0 192.0.2.10 ── port2 eth1 192.0.2.1    [appliance]
//	                           port3 eth2 198.51.100.1 ── eth0 198.51.100.25  server (Postfix)
//	test    mgt  203.0.113.1 ── port1 eth0 203.0.113.2 (management: SSH)
type inPath struct {
	t                   *testing.T
	client, box, server string // namespace names
	sink                *postfixtest.Instance
	cmd                 *exec.Cmd
	out                 *bytes.Buffer
	ssh                 *sshtest.Client
	data                string
}

const (
	tpBox    = "203.0.113.2"
	tpServer = "198.51.100.25"
)

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func startInPath(t *testing.T) *inPath {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("transparent mode tests need root for network namespaces")
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	p := &inPath{t: t, client: "mgtc" + id, box: "mgta" + id, server: "mgts" + id}
	for _, ns := range []string{p.client, p.box, p.server} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	// The appliance's ports in order: eth0 (port1), eth1, eth2.
	mgt := "mgt" + id
	ipCmd(t, "link", "add", mgt, "type", "veth", "peer", "name", "eth0", "netns", p.box)
	t.Cleanup(func() { exec.Command("ip", "link", "del", mgt).Run() })
	ipCmd(t, "-n", p.client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns", p.box)
	ipCmd(t, "-n", p.box, "link", "add", "eth2", "type", "veth", "peer", "name", "eth0", "netns", p.server)
	ipCmd(t, "addr", "add", "203.0.113.1/24", "dev", mgt)
	ipCmd(t, "link", "set", mgt, "up")
	for _, x := range [][3]string{
		{p.box, "eth0", tpBox + "/24"}, {p.box, "eth1", "192.0.2.1/24"}, {p.box, "eth2", "198.51.100.1/24"},
		{p.client, "eth0", "192.0.2.10/24"}, {p.server, "eth0", tpServer + "/24"},
	} {
		ipCmd(t, "-n", x[0], "addr", "add", x[2], "dev", x[1])
		ipCmd(t, "-n", x[0], "link", "set", x[1], "up")
	}
	ipCmd(t, "-n", p.client, "route", "add", "default", "via", "192.0.2.1")
	ipCmd(t, "-n", p.server, "route", "add", "default", "via", "198.51.100.1")

	ca, err := postfixtest.NewCA("example.com internal CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("mail.example.com")
	if err != nil {
		t.Fatal(err)
	}
	p.sink = postfixtest.StartSink(t, postfixtest.SinkOptions{NetNS: p.server, Listen: tpServer, Port: 25,
		Hostname: "mail.example.com", TLSCertPEM: certPEM, TLSKeyPEM: keyPEM})

	p.data = filepath.Join(t.TempDir(), "data")
	port := 2222
	p.ssh = sshtest.New(t, port)
	p.start()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.stop()
		}
	})
	p.ssh.SetFirstPassword(tpBox, newPassword)
	return p
}

func (p *inPath) start() {
	p.t.Helper()
	p.out = &bytes.Buffer{}
	p.cmd = exec.Command("ip", "netns", "exec", p.box, buildBinary(p.t), "-profile", "dev", "-data", p.data, "-listen", "",
		"-ssh-port", "2222", "-smtp-port", "25")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	if err := postfixtest.WaitListening(tpBox+":2222", 20*time.Second); err != nil {
		p.t.Fatalf("appliance did not listen: %v\n%s", err, p.out)
	}
}

func (p *inPath) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		p.t.Fatalf("appliance did not stop\n%s", p.out)
	}
}

func (p *inPath) cli(stdin string, args ...string) string {
	p.t.Helper()
	out, code := p.ssh.Run(newPassword, stdin, append([]string{"admin@" + tpBox}, args...)...)
	if code != 0 {
		p.t.Fatalf("ssh %v: %d\n%s\n%s", args, code, out, p.out)
	}
	return out
}

// swaks runs swaks in the client namespace, to the server's own address.
func (p *inPath) swaks(args ...string) (string, int) {
	p.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.client, "swaks", "--timeout", "10", "--server", tpServer + ":25",
		"--from", "alice@client.example", "--to", "bob@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	return string(out), 0
}

// Transparent mode in router mode: with port2's pick-up at
// pass-through, swaks in the client's network reaches the server itself;
// with proxy, the same session to the server's own address is picked up
// by the appliance (its greeting, its history, one event line), the mail
// queued and relayed to the domain's server, plain and with STARTTLS on
// both legs; with hide-transparent-box, the server sees the client's
// address and HELO name and no trace of the appliance; with drop, the
// connection is dropped. Stopping the
// appliance removes its rules.
func TestTransparentModeRelay(t *testing.T) {
	p := startInPath(t)
	p.cli(strings.Join([]string{"config system global", "set operation-mode transparent", "end", "y"}, "\n") + "\n")
	p.cli(strings.Join([]string{
		"config domain", "edit example.com", "set smtp-server " + tpServer, "next", "end",
		"config system mailserver", "config mail-queue", "edit default", "set queue-retry 1", "next", "end", "end",
	}, "\n") + "\n")

	// pass-through: the server answers, the appliance sees nothing.
	out, code := p.swaks("--header", "Subject: passed through")
	if code != 0 || !strings.Contains(out, "220 mail.example.com ESMTP") {
		t.Fatalf("pass-through: %d\n%s", code, out)
	}
	msg, err := p.sink.WaitMessage("passed through", 20*time.Second)
	if err != nil || !strings.Contains(msg, "[192.0.2.10]") {
		t.Fatalf("the passed-through message: %v\n%s", err, msg)
	}

	p.cli(strings.Join([]string{"config system interface", "edit port2", "set proxy-smtp-in-mode proxy", "next", "end"}, "\n") + "\n")
	for _, tls := range []bool{false, true} {
		subject := "picked up " + strconv.FormatBool(tls)
		args := []string{"--header", "Subject: " + subject}
		if tls {
			args = append(args, "--tls")
		}
		out, code := p.swaks(args...)
		if code != 0 || strings.Contains(out, "220 mail.example.com ESMTP") || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
			t.Fatalf("picked up (TLS %v): %d\n%s\n%s", tls, code, out, p.cli("", "diagnose log event 30"))
		}
		if tls && !strings.Contains(out, "TLS started") {
			t.Fatalf("no STARTTLS with the appliance:\n%s", out)
		}
		msg, err := p.sink.WaitMessage(subject, 30*time.Second)
		if err != nil {
			t.Fatalf("the relayed message: %v\n%s\n%s", err, p.cli("", "diagnose mailqueue list"), p.cli("", "diagnose log event 30"))
		}
		// The server's Received line names the appliance (the box is not
		// hidden), and the leg was encrypted.
		if !strings.Contains(msg, "[198.51.100.1]") || tls && !strings.Contains(msg, "(using TLS") {
			t.Fatalf("the relayed message's trace:\n%s", msg)
		}
	}
	if h := p.cli("", "diagnose log history"); !strings.Contains(h, "bob@example.com") || !strings.Contains(h, "192.0.2.10") {
		t.Fatalf("history lacks the picked-up sessions:\n%s", h)
	}
	if ev := p.cli("", "diagnose log event 50"); !strings.Contains(ev, "picked up SMTP session on port2 from 192.0.2.10:") ||
		!strings.Contains(ev, "to "+tpServer+":25: relay, incoming for example.com") || !strings.Contains(ev, "interception rules: eth1 tcp/25 to "+tpServer+"/32: intercept") {
		t.Fatalf("events:\n%s", ev)
	}

	// Hidden: the server sees the client's address and HELO, and no
	// Received line of the appliance.
	p.cli(strings.Join([]string{"config domain", "edit example.com", "set hide-transparent-box enable", "next", "end"}, "\n") + "\n")
	if out, code := p.swaks("--ehlo", "pc1.client.example", "--header", "Subject: hidden"); code != 0 || strings.Contains(out, "220 mail.example.com ESMTP") {
		t.Fatalf("hidden: %d\n%s", code, out)
	}
	msg, err = p.sink.WaitMessage("Subject: hidden", 30*time.Second)
	if err != nil {
		t.Fatalf("the hidden message: %v\n%s\n%s", err, p.cli("", "diagnose mailqueue list"), p.cli("", "diagnose log event 30"))
	}
	if !strings.Contains(msg, "Received: from pc1.client.example (unknown [192.0.2.10])") || strings.Contains(msg, "mailgate") || strings.Contains(msg, "198.51.100.1") {
		t.Fatalf("the hidden message's trace:\n%s", msg)
	}
	if ev := p.cli("", "diagnose log event 10"); !strings.Contains(ev, "incoming for example.com, hidden") {
		t.Fatalf("events:\n%s", ev)
	}

	status := p.cli("", "diagnose system transparent")
	for _, want := range []string{"transparent sockets (IP_TRANSPARENT): ok", "eth1 tcp/25 to " + tpServer + "/32: intercept",
		"iif eth1 tcp dport 25 to " + tpServer + "/32 lookup interception", "sessions picked up since start: 3 incoming, 0 outgoing"} {
		if !strings.Contains(status, want) {
			t.Fatalf("diagnose system transparent lacks %q:\n%s", want, status)
		}
	}

	// drop: the connection goes nowhere.
	p.cli(strings.Join([]string{"config system interface", "edit port2", "set proxy-smtp-in-mode drop", "next", "end"}, "\n") + "\n")
	if out, code := p.swaks("--header", "Subject: dropped"); code == 0 || strings.Contains(out, "220 ") {
		t.Fatalf("drop: %d\n%s", code, out)
	}

	if status := p.cli("", "diagnose system transparent"); !strings.Contains(status, "dropped eth1:25: ") || strings.Contains(status, "dropped eth1:25: 0 packets") {
		t.Fatalf("the drop rule counted nothing:\n%s", status)
	}

	p.stop()
	if rules := ipCmd(t, "-n", p.box, "rule"); strings.Contains(rules, "lookup 2525") || strings.Contains(rules, "dport 25") {
		t.Fatalf("rules left after the appliance stopped:\n%s", rules)
	}
}
