package main

import (
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

	"mailgate/dnstest"
	"mailgate/postfixtest"
)

// serverAppliance is the appliance in server mode with the mailboxes
// alice and bob in example.com, and a Postfix sink as the MX of
// outside.example.
type serverAppliance struct {
	*instance
	sink                   *postfixtest.Instance
	smtp, msa, pop3, pop3s int
}

func startServer(t *testing.T) *serverAppliance {
	t.Helper()
	sink := postfixtest.StartSink(t, postfixtest.SinkOptions{})
	_, sinkPort, _ := net.SplitHostPort(sink.Addr)
	dns := dnstest.Start(t)
	dns.AddMX("outside.example", 10, "mx.outside.example")
	dns.AddA("mx.outside.example", "127.0.0.1")
	s := &serverAppliance{sink: sink, smtp: postfixtest.Port(t), msa: postfixtest.Port(t), pop3: postfixtest.Port(t), pop3s: postfixtest.Port(t)}
	s.instance = startFresh(t, "-smtp-port", strconv.Itoa(s.smtp), "-msa-port", strconv.Itoa(s.msa),
		"-pop3-port", strconv.Itoa(s.pop3), "-pop3s-port", strconv.Itoa(s.pop3s),
		"-dns-server", dns.Addr(), "-mx-port", sinkPort)
	script := strings.Join([]string{
		"config system global", "set operation-mode server", "end", "y",
		"config profile resource", "edit small", "set disk-quota 1", "next", "end",
		"config domain", "edit example.com", "config user mail",
		"edit alice", "set password Alice-Mailbox-1", "set displayname \"Alice Liddell\"", "next",
		"edit bob", "set password Bob-Mailbox-1", "next",
		"end", "next", "end",
		"config system mailserver", "set default-auth-domain example.com", "config mail-queue", "edit default", "set queue-retry 1", "next", "end", "end",
	}, "\n") + "\n"
	if out, code := s.ssh(newPassword, script, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("server mode setup: %d\n%s", code, out)
	}
	if err := postfixtest.WaitListening(fmt.Sprintf("127.0.0.1:%d", s.pop3s), 10*time.Second); err != nil {
		t.Fatalf("POP3S: %v\n%s", err, s.out)
	}
	return s
}

// curlPOP3 runs curl against the POP3S port (or the POP3 port with
// --ssl-reqd when plain is set) and returns its output and exit status.
func (s *serverAppliance) curlPOP3(t *testing.T, user, pass, path string, plain bool) (string, int) {
	t.Helper()
	url := fmt.Sprintf("pop3s://127.0.0.1:%d/%s", s.pop3s, path)
	args := []string{"-sS", "-k", "--max-time", "20", "-u", user + ":" + pass}
	if plain {
		url = fmt.Sprintf("pop3://127.0.0.1:%d/%s", s.pop3, path)
		args = append(args, "--ssl-reqd")
	}
	out, err := exec.Command("curl", append(args, url)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// waitMessages waits until user's INBOX lists n messages over POP3S.
func (s *serverAppliance) waitMessages(t *testing.T, user, pass string, n int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := s.curlPOP3(t, user, pass, "", false)
		if code == 0 && len(strings.Fields(strings.ReplaceAll(out, "\r\n", "\n"))) == 2*n {
			return out
		}
		if time.Now().After(deadline) {
			q, _ := s.ssh(newPassword, "", "admin@127.0.0.1", "diagnose mailqueue list")
			ev, _ := s.ssh(newPassword, "", "admin@127.0.0.1", "diagnose log event 30")
			t.Fatalf("%s: want %d messages, LIST gives (%d) %q\nqueue:\n%s\nevents:\n%s", user, n, code, out, q, ev)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Server mode end to end: swaks delivers to alice; curl (POP3S, and POP3
// with --ssl-reqd) and Python's poplib read it back with the trace
// headers written at delivery; an unknown mailbox is refused at RCPT; a
// mailbox over its quota is refused at RCPT (552, or 452 with
// quota-exceeded-action tempfail), and a message that only overflows at
// delivery bounces to its sender; the mail survives a restart; alice
// submits mail out with her mailbox password.
func TestServerModeMailboxes(t *testing.T) {
	s := startServer(t)
	server := fmt.Sprintf("127.0.0.1:%d", s.smtp)
	out, code := swaks(t, "--server", server, "--from", "sender@outside.example", "--to", "alice@example.com",
		"--header", "Subject: to a mailbox", "--body", "hello alice\n.dot line\n")
	if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
		t.Fatalf("delivery to alice refused: %d\n%s", code, out)
	}
	s.waitMessages(t, "alice@example.com", "Alice-Mailbox-1", 1)
	msg, code := s.curlPOP3(t, "alice", "Alice-Mailbox-1", "1", false) // default-auth-domain
	for _, want := range []string{"Return-Path: <sender@outside.example>\r\n", "Delivered-To: alice@example.com\r\n",
		"Received: by mailgate (mailgate) id ", "\tfor <alice@example.com>; ", "Subject: to a mailbox\r\n", "\r\n.dot line\r\n"} {
		if code != 0 || !strings.Contains(msg, want) {
			t.Fatalf("RETR over POP3S (%d) lacks %q:\n%s", code, want, msg)
		}
	}
	if strings.Index(msg, "Return-Path:") != 0 {
		t.Errorf("Return-Path is not the first header:\n%s", msg)
	}
	if out, code := s.curlPOP3(t, "alice@example.com", "Alice-Mailbox-1", "", true); code != 0 || len(strings.Fields(out)) != 2 {
		t.Errorf("LIST over POP3 with STLS: %d %q", code, out)
	}
	if out, code := s.curlPOP3(t, "alice@example.com", "wrong", "", false); code == 0 {
		t.Errorf("a wrong password is accepted: %q", out)
	}

	// Python's poplib over STLS: UIDL, then DELE and QUIT.
	script := `
import poplib, ssl, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=20)
p.stls(context=ssl._create_unverified_context())
p.user("alice@example.com"); p.pass_("Alice-Mailbox-1")
print("uidl", p.uidl()[1])
print("dele", p.dele(1))
print("quit", p.quit())
`
	pyOut, err := exec.Command("python3", "-c", script, strconv.Itoa(s.pop3)).CombinedOutput()
	if err != nil || !strings.Contains(string(pyOut), "dele b'+OK message 1 deleted'") || !strings.Contains(string(pyOut), "(0 messages left)") {
		t.Fatalf("poplib: %v\n%s", err, pyOut)
	}
	s.waitMessages(t, "alice@example.com", "Alice-Mailbox-1", 0)

	// Unknown and over-quota recipients at RCPT.
	out, _ = swaks(t, "--server", server, "--from", "sender@outside.example", "--to", "nobody@example.com", "--quit-after", "RCPT")
	if !strings.Contains(out, "550 5.1.1 No such mailbox") {
		t.Fatalf("unknown mailbox:\n%s", out)
	}
	big := filepath.Join(t.TempDir(), "big.txt")
	os.WriteFile(big, []byte(strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 20000)), 0o644)
	out, code = swaks(t, "--server", server, "--from", "sender@outside.example", "--to", "bob@example.com",
		"--header", "Subject: big", "--body", "@"+big)
	if code != 0 {
		t.Fatalf("big message to bob: %d\n%s", code, out)
	}
	s.waitMessages(t, "bob@example.com", "Bob-Mailbox-1", 1)
	s.ssh(newPassword, "config domain\nedit example.com\nconfig user mail\nedit bob\nset resource-profile small\nnext\nend\nnext\nend\n", "admin@127.0.0.1")
	out, _ = swaks(t, "--server", server, "--from", "sender@outside.example", "--to", "bob@example.com", "--quit-after", "RCPT")
	if !strings.Contains(out, "552 5.2.2 Mailbox full") {
		t.Fatalf("bob over quota:\n%s", out)
	}
	s.ssh(newPassword, "config system mailserver\nset quota-exceeded-action tempfail\nend\n", "admin@127.0.0.1")
	out, _ = swaks(t, "--server", server, "--from", "sender@outside.example", "--to", "bob@example.com", "--quit-after", "RCPT")
	if !strings.Contains(out, "452 4.2.2 Mailbox full") {
		t.Fatalf("bob over quota, tempfail:\n%s", out)
	}
	// A quota of 2 MB: accepted at RCPT, over it at delivery: the bounce
	// goes to the sender, alice.
	s.ssh(newPassword, "config profile resource\nedit small\nset disk-quota 2\nnext\nend\n", "admin@127.0.0.1")
	out, code = swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", s.msa), "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.com",
		"--auth-password", "Alice-Mailbox-1", "--from", "alice@example.com", "--to", "bob@example.com", "--header", "Subject: too big", "--body", "@"+big)
	if code != 0 {
		t.Fatalf("second big message: %d\n%s", code, out)
	}
	s.waitMessages(t, "alice@example.com", "Alice-Mailbox-1", 1)
	bounce, _ := s.curlPOP3(t, "alice@example.com", "Alice-Mailbox-1", "1", false)
	if !strings.Contains(bounce, "552 5.2.2") || !strings.Contains(bounce, "bob@example.com") {
		t.Fatalf("the bounce to alice:\n%.2000s", bounce)
	}

	// Authenticated submission relays out by MX.
	out, code = swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", s.msa), "--tls", "--auth", "LOGIN", "--auth-user", "alice",
		"--auth-password", "Alice-Mailbox-1", "--from", "alice@example.com", "--to", "friend@outside.example", "--header", "Subject: out from server mode")
	if code != 0 {
		t.Fatalf("submission: %d\n%s", code, out)
	}
	if _, err := s.sink.WaitMessage("Subject: out from server mode", 30*time.Second); err != nil {
		t.Fatalf("not relayed out: %v", err)
	}

	// A restart keeps the mailboxes.
	s.stop(syscall.SIGTERM)
	s.start()
	if err := postfixtest.WaitListening(fmt.Sprintf("127.0.0.1:%d", s.pop3s), 20*time.Second); err != nil {
		t.Fatalf("POP3S after restart: %v\n%s", err, s.out)
	}
	s.waitMessages(t, "bob@example.com", "Bob-Mailbox-1", 1)
	s.waitMessages(t, "alice@example.com", "Alice-Mailbox-1", 1)
}
