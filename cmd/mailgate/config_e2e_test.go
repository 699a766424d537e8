package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/dnstest"
	"mailgate/postfixtest"
)

// Tests of settings that apply to the running appliance, without a
// restart: `system dns` for MX lookups, and the SMTP listeners of
// `system mailserver`.

// startDNS53 starts a test DNS server on port 53 of a loopback address of
// its own (127.53.x.y): `system dns` takes an address, and the appliance
// asks it on port 53. Binding port 53 needs root, as Postfix does.
func startDNS53(t *testing.T) *dnstest.Server {
	t.Helper()
	var last error
	for range 20 {
		addr := fmt.Sprintf("127.53.%d.%d:53", 1+rand.IntN(250), 1+rand.IntN(250))
		s, err := dnstest.ListenAt(addr)
		if err == nil {
			t.Cleanup(s.Close)
			return s
		}
		if errors.Is(err, syscall.EACCES) {
			t.Fatalf("a DNS server on port 53 needs root (or CAP_NET_BIND_SERVICE): %v", err)
		}
		last = err
	}
	t.Fatalf("no loopback address free on port 53: %v", last)
	return nil
}

// TestGatewaySystemDNSAtRuntime runs the appliance without the
// -dns-server override, so MX lookups use `system dns` (at start: none
// set, so resolv.conf). Setting the primary server, then changing it,
// takes effect for the next delivery, without a restart.
func TestGatewaySystemDNSAtRuntime(t *testing.T) {
	one, two := startDNS53(t), startDNS53(t)
	one.AddMX("first.example", 10, "mx.first.example")
	one.AddA("mx.first.example", "127.0.0.1")
	two.AddMX("second.example", 10, "mx.second.example")
	two.AddA("mx.second.example", "127.0.0.1")
	g := startGateway(t, "-dns-server=") // no override: the configuration decides

	submit := func(rcpt, subject string) {
		t.Helper()
		out, code := swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", g.msa), "--tls", "--from", "alice@example.com",
			"--to", rcpt, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "Alice#Submit2026",
			"--header", "Subject: "+subject)
		if code != 0 || !strings.Contains(out, "250 2.0.0") {
			t.Fatalf("submission to %s refused: %d\n%s", rcpt, code, out)
		}
	}
	host := func(s *dnstest.Server) string { h, _, _ := net.SplitHostPort(s.Addr()); return h }
	// The message itself, not the bounce (which quotes its headers) that
	// a failed lookup leads to.
	delivered := func(subject string) error {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			for _, m := range g.sink.Messages() {
				if strings.Contains(m, "Subject: "+subject) && strings.Contains(m, "Return-Path: <alice@example.com>") {
					return nil
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%q not delivered within 30s", subject)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	g.configure("config system dns", "set primary "+host(one), "end")
	submit("friend@first.example", "dns one")
	if err := delivered("dns one"); err != nil {
		t.Fatalf("not delivered by the MX of the configured DNS server: %v\nqueue:\n%s", err, g.cli("diagnose mailqueue list"))
	}
	if one.Queries() == 0 {
		t.Fatal("the configured DNS server was never asked")
	}

	// The first server knows nothing of second.example (NXDOMAIN: the
	// message would bounce); the second one does.
	asked := one.Queries()
	g.configure("config system dns", "set primary "+host(two), "end")
	submit("friend@second.example", "dns two")
	if err := delivered("dns two"); err != nil {
		t.Fatalf("not delivered after the DNS server changed: %v\nqueue:\n%s\nhistory:\n%s", err,
			g.cli("diagnose mailqueue list"), g.cli("diagnose log history 10"))
	}
	if two.Queries() == 0 || one.Queries() != asked {
		t.Fatalf("queries after the change: old server %d (was %d), new server %d", one.Queries(), asked, two.Queries())
	}
	if ev := g.cli("diagnose log event 100"); !strings.Contains(ev, "DNS servers for MX and reverse lookups: "+two.Addr()) {
		t.Fatalf("event log lacks the DNS change:\n%s", ev)
	}
}

// greets dials addr and returns the first reply line (a 220 greeting).
func greets(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	return greeting(c)
}

// greeting reads the first line the server sends on c (plain or TLS) and
// closes c; the error says when it is not a 220 greeting.
func greeting(c net.Conn) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && !strings.HasPrefix(line, "220 ") {
		err = fmt.Errorf("greeting %q", line)
	}
	return line, err
}

// waitListener waits until addr greets (open) or refuses connections.
func waitListener(t *testing.T, addr string, open bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := greets(addr)
		switch {
		case open && err == nil:
			return
		case !open && errors.Is(err, syscall.ECONNREFUSED):
			return
		case time.Now().After(deadline):
			t.Fatalf("%s: want open=%v, got %v", addr, open, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// smtpsHandshake runs openssl s_client against an implicit-TLS port and
// returns its output: the handshake, then the greeting and the reply to
// QUIT over TLS.
func smtpsHandshake(t *testing.T, addr string) (string, error) {
	t.Helper()
	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-brief", "-crlf", "-ign_eof")
	cmd.Stdin = strings.NewReader("QUIT\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestGatewayListenersFollowConfiguration runs the appliance without port
// overrides and changes `system mailserver` over SSH: the
// SMTPS and submission listeners close and open with their status, and
// the SMTP listener moves with smtp-port.
func TestGatewayListenersFollowConfiguration(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required")
	}
	a := startFresh(t) // the dev profile's ports until the configuration moves them
	g := &gateway{instance: a}
	smtpPort, smtpsPort, msaPort, movedPort := postfixtest.Port(t), postfixtest.Port(t), postfixtest.Port(t), postfixtest.Port(t)
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	settings := func(lines ...string) {
		t.Helper()
		g.configure(append(append([]string{"config system mailserver"}, lines...), "end")...)
	}
	settings("set smtp-port "+strconv.Itoa(smtpPort), "set smtps-port "+strconv.Itoa(smtpsPort),
		"set smtp-msa-port "+strconv.Itoa(msaPort))
	for _, p := range []int{smtpPort, msaPort} {
		waitListener(t, addr(p), true)
	}
	tlsWorks := func() {
		t.Helper()
		out, err := smtpsHandshake(t, addr(smtpsPort))
		if err != nil || !strings.Contains(out, "Protocol version: TLSv1.3") || !strings.Contains(out, "220 ") || !strings.Contains(out, "221 ") {
			t.Fatalf("SMTPS handshake on %d: %v\n%s", smtpsPort, err, out)
		}
	}
	tlsWorks()

	// SMTPS off: its port refuses connections; the others stay.
	settings("set smtps-tls-status disable")
	waitListener(t, addr(smtpsPort), false)
	if out, err := smtpsHandshake(t, addr(smtpsPort)); err == nil {
		t.Fatalf("SMTPS handshake with smtps-tls-status disabled:\n%s", out)
	}
	waitListener(t, addr(smtpPort), true)
	// And on again.
	settings("set smtps-tls-status enable")
	tlsWorks()

	// Submission off and on.
	settings("set smtp-msa disable")
	waitListener(t, addr(msaPort), false)
	waitListener(t, addr(smtpPort), true)
	settings("set smtp-msa enable")
	waitListener(t, addr(msaPort), true)

	// smtp-port moves: the old port closes, the new one greets.
	settings("set smtp-port " + strconv.Itoa(movedPort))
	waitListener(t, addr(smtpPort), false)
	if line, err := greets(addr(movedPort)); err != nil {
		t.Fatalf("no greeting on the new SMTP port %d: %v", movedPort, err)
	} else if !strings.Contains(line, "ESMTP") {
		t.Fatalf("greeting %q", line)
	}
	// Mail is accepted there.
	g.configure("config domain", "edit example.com", "set smtp-server 127.0.0.1", "next", "end")
	out, code := swaks(t, "--server", addr(movedPort), "--from", "a@outside.example", "--to", "bob@example.com", "--quit-after", "RCPT")
	if code != 0 || !strings.Contains(out, "250 2.1.5") {
		t.Fatalf("RCPT on the moved port: %d\n%s", code, out)
	}
}

// TestGatewaySMTPServiceAndAuth changes `system mailserver` over SSH and
// checks with swaks: smtp-auth decides whether EHLO on the SMTP port lists
// AUTH after STARTTLS (never before it, with smtp-auth-over-tls), and
// smtp-service disable closes the SMTP port while submission and SMTPS
// keep working.
func TestGatewaySMTPServiceAndAuth(t *testing.T) {
	g := startGateway(t)
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	ehlo := func(port int, tlsArg string) string {
		t.Helper()
		out, code := swaks(t, "--server", addr(port), tlsArg, "--from", "a@outside.example", "--to", "bob@example.com", "--quit-after", "HELO")
		if code != 0 {
			t.Fatalf("swaks on %d: %d\n%s", port, code, out)
		}
		return out
	}
	submit := func() {
		t.Helper()
		out, code := swaks(t, "--server", addr(g.msa), "--tls", "--from", "alice@example.com", "--to", "friend@outside.example",
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "Alice#Submit2026")
		if code != 0 || !strings.Contains(out, "250 2.0.0") {
			t.Fatalf("submission refused: %d\n%s", code, out)
		}
	}
	plain, _ := swaks(t, "--server", addr(g.smtp), "--from", "a@outside.example", "--to", "bob@example.com", "--quit-after", "HELO")
	if strings.Contains(plain, "AUTH") {
		t.Errorf("AUTH listed in plain text:\n%s", plain)
	}
	if out := ehlo(g.smtp, "--tls"); !strings.Contains(out, "250-AUTH PLAIN LOGIN") {
		t.Errorf("factory: EHLO after STARTTLS lacks AUTH:\n%s", out)
	}
	g.configure("config system mailserver", "set smtp-auth disable", "end")
	if out := ehlo(g.smtp, "--tls"); strings.Contains(out, "AUTH") {
		t.Errorf("smtp-auth disable: EHLO on the SMTP port lists AUTH:\n%s", out)
	}
	if out := ehlo(g.smtps, "--tlsc"); !strings.Contains(out, "250-AUTH PLAIN LOGIN") {
		t.Errorf("smtp-auth disable: SMTPS lacks AUTH:\n%s", out)
	}
	submit()

	g.configure("config system mailserver", "set smtp-service disable", "end")
	waitListener(t, addr(g.smtp), false)
	submit()
	if out := ehlo(g.smtps, "--tlsc"); !strings.Contains(out, "220 ") {
		t.Errorf("SMTPS with smtp-service disable:\n%s", out)
	}
	g.configure("config system mailserver", "set smtp-service enable", "set smtp-auth enable", "end")
	waitListener(t, addr(g.smtp), true)
	if out := ehlo(g.smtp, "--tls"); !strings.Contains(out, "250-AUTH PLAIN LOGIN") {
		t.Errorf("smtp-auth enable again: EHLO lacks AUTH:\n%s", out)
	}
}
