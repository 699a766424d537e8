package smtpd

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, "config system mailserver\n set max-message-size 1\nend"))
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 64) // 4 KiB
	out, err := swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "bob@example.com", "--body", big)
	if err == nil {
		t.Fatalf("oversized message accepted:\n%.2000s", out)
	}
	mustContain(t, out, "250 SIZE 1024", "552 5.3.4 Message size exceeds fixed maximum message size")
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	c.expect("MAIL FROM:<a@sender.example> SIZE=5000", "552 5.3.4")
	// DATA over the limit: refused, and the session stays in step.
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.expect("DATA", "354")
	c.send(strings.ReplaceAll(big, "\n", "\r\n"))
	c.expect(".", "552 5.3.4")
	c.expect("NOOP", "250 2.0.0")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	chunk := strings.Repeat(strings.Repeat("x", 78)+"\r\n", 25)
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	if r := c.reply(); !strings.HasPrefix(r, "552 5.3.4") {
		t.Fatalf("BDAT: got %q", r)
	}
	c.expect("NOOP", "250 2.0.0")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.expect("DATA", "354")
	c.expect("Subject: small\r\n\r\nfits\r\n.", "250 2.0.0 Ok: queued as")
	if n := len(e.q.all()); n != 1 {
		t.Fatalf("queued %d", n)
	}
	hs := e.histories()
	if len(hs) != 2 || hs[0].Classifier != "Message Size" || hs[0].Disposition != "Reject" || !strings.HasPrefix(hs[0].Status, "552 5.3.4") {
		t.Fatalf("history %+v", hs)
	}
}

func TestMaxRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, "config system mailserver\n set max-recipients 2\nend"))
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<a@example.com>", "250")
	c.expect("RCPT TO:<x@elsewhere.example>", "550 5.7.1") // refused ones do not count
	c.expect("RCPT TO:<b@example.com>", "250")
	c.expect("RCPT TO:<c@example.com>", "452 4.5.3 Too many recipients")
	c.expect("DATA", "354")
	c.expect("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok")
	m := e.q.all()
	if len(m) != 1 || strings.Join(m[0].env.Recipients, ",") != "a@example.com,b@example.com" {
		t.Fatalf("queue %+v", m)
	}
	if hs := e.histories(); len(hs) != 2 || hs[1].Classifier != "Recipient Limit" || hs[1].Disposition != "Temp Fail" ||
		hs[1].To != "c@example.com" || hs[1].Status != "452 4.5.3 Too many recipients" {
		t.Fatalf("history %+v", hs)
	}
	// The count starts again with the next transaction.
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<a@example.com>", "250")
	c.expect("RCPT TO:<b@example.com>", "250")
}

func dialFrom(t *testing.T, local, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: newReader(conn)}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, "config system mailserver\n set smtp-max-connections 2\nend"))
	a := dial(t, e.addr[SMTP])
	mustContain(t, a.reply(), "220 ")
	b := dialFrom(t, "127.0.0.2", e.addr[MSA]) // the limit is over all listeners
	mustContain(t, b.reply(), "220 ")
	c := dialFrom(t, "127.0.0.3", e.addr[SMTPS]) // refused before any TLS
	if r := c.reply(); r != "421 4.7.0 Too many connections\r\n" {
		t.Fatalf("got %q", r)
	}
	if !c.closed() {
		t.Fatal("refused connection left open")
	}
	e.waitEvent("warning: connection from 127.0.0.3 refused: limit of 2 connections in total reached")
	a.expect("QUIT", "221")
	waitFor(t, func() bool {
		d := dial(t, e.addr[SMTP])
		ok := strings.HasPrefix(d.reply(), "220 ")
		d.conn.Close()
		return ok
	})
}

func TestMaxConnectionsPerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, "config system mailserver\n set max-connections-per-ip 2\nend"))
	for i := 0; i < 2; i++ {
		mustContain(t, dial(t, e.addr[SMTP]).reply(), "220 ")
	}
	c := dial(t, e.addr[SMTP])
	if r := c.reply(); r != "421 4.7.0 Too many connections\r\n" {
		t.Fatalf("got %q", r)
	}
	if !c.closed() {
		t.Fatal("refused connection left open")
	}
	mustContain(t, dialFrom(t, "127.0.0.2", e.addr[SMTP]).reply(), "220 ")
	out, err := swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "bob@example.com")
	if err == nil {
		t.Fatalf("swaks got through:\n%s", out)
	}
	mustContain(t, out, "421 4.7.0 Too many connections")
	e.waitEvent("limit of 2 connections from 127.0.0.1 reached")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCommandTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	cfg.System.Mailserver.CommandTimeout = 1 // below the configurable minimum, to keep the test short
	e := newEnv(t, cfg)
	for _, k := range []Kind{SMTP, SMTPS} {
		var c *client
		if k == SMTPS {
			c = dialTLS(t, e.addr[k], nil)
		} else {
			c = dial(t, e.addr[k])
		}
		c.reply()
		c.expect("EHLO x.example", "250")
		start := time.Now()
		if r := c.reply(); !strings.HasPrefix(r, "421 4.4.2") {
			t.Fatalf("%s: got %q", k, r)
		}
		if d := time.Since(start); d < 900*time.Millisecond || d > 4*time.Second {
			t.Errorf("%s: timeout after %v", k, d)
		}
		if !c.closed() {
			t.Fatalf("%s: connection left open", k)
		}
	}
}

func TestDataTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	cfg.System.Mailserver.DataTimeout = 1
	cfg.System.Mailserver.CommandTimeout = 30
	e := newEnv(t, cfg)
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	time.Sleep(1500 * time.Millisecond) // commands have the longer timeout
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.expect("DATA", "354")
	c.send("Subject: slow\r\n\r\npart")
	start := time.Now()
	if r := c.reply(); r != "421 4.4.2 Timeout waiting for data, closing connection\r\n" {
		t.Fatalf("got %q", r)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("timeout after %v", d)
	}
	if !c.closed() {
		t.Fatal("connection left open")
	}
	if n := len(e.q.all()); n != 0 {
		t.Fatal("partial message queued")
	}
	if hs := e.histories(); len(hs) != 1 || hs[0].Disposition != "Temp Fail" || hs[0].Classifier != "Data Timeout" {
		t.Fatalf("history %+v", hs)
	}
}

func TestMaxLineLength(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, "config system mailserver\n set max-line-length 1000\nend"))
	// 1000 bytes with CRLF is fine.
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("NOOP "+strings.Repeat("x", 1000-len("NOOP \r\n")), "250 2.0.0")
	c.send("NOOP " + strings.Repeat("x", 1001-len("NOOP \r\n")) + "\r\n")
	if r := c.reply(); r != "500 5.5.2 Line too long\r\n" {
		t.Fatalf("got %q", r)
	}
	if !c.closed() {
		t.Fatal("connection left open")
	}
	// The same after STARTTLS, and without any line end at all.
	c = dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	c.starttls(nil)
	c.send("EHLO " + strings.Repeat("y", 5000))
	if r := c.reply(); r != "500 5.5.2 Line too long\r\n" {
		t.Fatalf("under TLS: got %q", r)
	}
	if !c.closed() {
		t.Fatal("connection left open")
	}
	// A message line.
	c = dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.expect("DATA", "354")
	c.send("Subject: long\r\n\r\n" + strings.Repeat("z", 3000) + "\r\n.\r\n")
	if r := c.reply(); r != "500 5.5.2 Line too long\r\n" {
		t.Fatalf("in DATA: got %q", r)
	}
	if !c.closed() {
		t.Fatal("connection left open")
	}
	if n := len(e.q.all()); n != 0 {
		t.Fatal("queued")
	}
	waitFor(t, func() bool {
		hs := e.histories()
		return len(hs) == 1 && hs[0].Classifier == "Line Length" && hs[0].Status == "500 5.5.2 Line too long"
	})
	e.waitEvent("warning: line longer than 1000 bytes")
}
