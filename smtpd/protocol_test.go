package smtpd

import (
	"errors"
	"fmt"
	"math/rand"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSmugglingProbe sends the known end-of-data variants with a smuggled
// transaction behind them over a raw socket. Each message must be refused
// as a whole, nothing may be queued, and the session must stay in step:
// the reply to the next command is the next reply.
func TestSmugglingProbe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	for _, end := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r.\n", "\r\n.\r", "\r\n\r.\r\n", "\n.", "\r"} {
		c := dial(t, e.addr[SMTP])
		c.reply()
		c.expect("EHLO probe.example", "250")
		c.expect("MAIL FROM:<a@sender.example>", "250")
		c.expect("RCPT TO:<bob@example.com>", "250")
		c.expect("DATA", "354")
		c.send("Subject: probe\r\n\r\nhello" + end +
			"MAIL FROM:<evil@sender.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
		r := c.reply()
		if r != "550 5.6.0 Message contains bare CR or LF (not accepted: SMTP smuggling protection)\r\n" {
			t.Fatalf("%q: got %q", end, r)
		}
		c.expect("NOOP", "250 2.0.0 I have successfully done nothing")
		// A clean message afterwards goes through.
		c.expect("MAIL FROM:<a@sender.example>", "250")
		c.expect("RCPT TO:<bob@example.com>", "250")
		c.expect("DATA", "354")
		c.expect("Subject: clean\r\n\r\n..leading dot\r\nend\r\n.", "250 2.0.0 Ok: queued as") // dot-stuffed
		c.expect("QUIT", "221")
	}
	msgs := e.q.all()
	for _, m := range msgs {
		if strings.Contains(string(m.msg), "smuggled") || len(m.env.Recipients) != 1 || m.env.Recipients[0] != "bob@example.com" {
			t.Fatalf("smuggled content queued: %+v\n%s", m.env, m.msg)
		}
		if !strings.HasSuffix(string(m.msg), "\r\n\r\n.leading dot\r\nend\r\n") {
			t.Fatalf("message body %q", m.msg)
		}
	}
	if len(msgs) != 9 {
		t.Fatalf("queued %d", len(msgs))
	}
	for _, h := range e.histories() {
		if h.Classifier != "SMTP Smuggling" || h.Disposition != "Reject" || h.To != "bob@example.com" || !strings.HasPrefix(h.Status, "550 5.6.0") {
			t.Fatalf("history %+v", h)
		}
	}
	e.waitEvent("warning: message from unknown[127.0.0.1] refused: bare CR or LF")
}

func TestBDAT(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	c := dial(t, e.addr[SMTP])
	c.reply()
	mustContain(t, c.expect("EHLO x.example", "250"), "CHUNKING")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.send("BDAT 12\r\nSubject: a\nb")
	if r := c.reply(); r != "250 2.0.0 Continue\r\n" {
		t.Fatalf("got %q", r)
	}
	c.send("BDAT 7 LAST\r\nody\rend")
	if r := c.reply(); !strings.HasPrefix(r, "250 2.0.0 Ok: queued as") {
		t.Fatalf("got %q", r)
	}
	m := e.q.all()
	if len(m) != 1 || !strings.HasSuffix(string(m[0].msg), "\r\nSubject: a\r\nbody\r\nend\r\n") {
		t.Fatalf("queue %+v", m)
	}
}

func TestSTARTTLSInjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	// Plain text pipelined after STARTTLS must never be taken as a command.
	c.send("STARTTLS\r\nMAIL FROM:<evil@sender.example>\r\nRCPT TO:<bob@example.com>\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "220 2.0.0") {
		t.Fatalf("got %q", r)
	}
	if r := c.reply(); !strings.HasPrefix(r, "EOF") {
		t.Fatalf("injected commands answered: %q", r)
	}
	e.waitEvent("warning: TLS handshake failed")
}

func TestHeloAgainAfterSTARTTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO before.example", "250")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.starttls(nil)
	c.expect("RCPT TO:<bob@example.com>", "503 5.5.1 Send EHLO again after STARTTLS")
	c.expect("MAIL FROM:<a@sender.example>", "503 5.5.1")
	c.expect("AUTH PLAIN "+plainIR(userName, userPass), "503 5.5.1")
	c.expect("STARTTLS", "502 5.5.1 Already running in TLS")
	c.expect("EHLO after.example", "250")
	c.expect("RCPT TO:<bob@example.com>", "503 5.5.1") // the earlier MAIL is forgotten
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.expect("DATA", "354")
	c.expect("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Ok")
	if m := e.q.all(); len(m) != 1 || m[0].env.Helo != "after.example" {
		t.Fatalf("queue %+v", m)
	}
}

func TestMalformedCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	// The last command's reply, by RFC 5321's meaning: 500 unrecognised,
	// 501 bad arguments, 502 not implemented, 503 out of sequence, 504
	// parameter not implemented, 555 unknown parameter.
	for _, tc := range []struct {
		cmds []string
		want string
	}{
		{[]string{""}, "500 5.5.2"}, {[]string{"XY"}, "500 5.5.2"}, {[]string{"\x00\x01\x02\x03\x04"}, "500 5.5.2"},
		{[]string{"\xff\xfe\xfd garbage"}, "500 5.5.2"}, {[]string{"FOOBAR baz"}, "500 5.5.2"},
		{[]string{"MAIL FROM:<a@b.example>"}, "503 5.5.1"},
		{[]string{"EHLO"}, "501 5.5.2"}, {[]string{"HELO"}, "501 5.5.2"},
		{[]string{"EXPN root"}, "502 5.5.1"}, {[]string{"HELP"}, "502 5.5.1"}, {[]string{"TURN"}, "502 5.5.1"},
		{[]string{"EHLO x", "MAIL FROM:a b c"}, "501 5.5.2"}, {[]string{"EHLO x", "MAIL TO:<a@b.example>"}, "501 5.5.2"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example> SIZE=abc"}, "501 5.5.4"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example> FOO=bar"}, "555 5.5.4"}, {[]string{"EHLO x", "MAIL FROM:<a@b@c>>"}, "555 5.5.4"},
		{[]string{"EHLO x", "RCPT TO:<bob@example.com>"}, "503 5.5.1"}, {[]string{"EHLO x", "DATA"}, "503 5.5.1"},
		{[]string{"EHLO x", "BDAT"}, "501 5.5.4"}, {[]string{"EHLO x", "BDAT x LAST"}, "501 5.5.4"},
		{[]string{"EHLO x", "AUTH"}, "501 5.5.4"}, {[]string{"EHLO x", "AUTH CRAM-MD5"}, "538 5.7.11"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<>"}, "501 5.5.2"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:bob"}, "501 5.5.2"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@example.com> NOTIFY=NEVER"}, "504 5.5.4"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@example.com> FOO=bar"}, "555 5.5.4"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "DATA"}, "503 5.5.1"}, {[]string{"EHLO x", "DATA x"}, "501 5.5.4"},
		// During a BDAT transfer (a first chunk "a\r\n" taken), commands
		// other than BDAT are out of sequence.
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@example.com>", "BDAT 3\r\na", "MAIL FROM:<a@b.example>"}, "503 5.5.1"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@example.com>", "BDAT 3\r\na", "RCPT TO:<bob@example.com>"}, "503 5.5.1"},
		{[]string{"EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@example.com>", "BDAT 3\r\na", "DATA"}, "503 5.5.1"},
	} {
		c := dial(t, e.addr[SMTP])
		c.reply()
		var r string
		for _, cmd := range tc.cmds {
			r = c.cmd(cmd)
		}
		if !strings.HasPrefix(r, tc.want+" ") {
			t.Errorf("%q: got %q, want %s", tc.cmds, r, tc.want)
		}
	}
	// Random garbage: every reply is well-formed, nothing crashes.
	rng := rand.New(rand.NewSource(1))
	reply := regexp.MustCompile(`^[2-5]\d\d[ -]`)
	for i := 0; i < 20; i++ {
		c := dial(t, e.addr[SMTP])
		c.reply()
		junk := make([]byte, 200+rng.Intn(800))
		for j := range junk {
			junk[j] = byte(rng.Intn(256))
			if rng.Intn(20) == 0 {
				junk[j] = '\n'
			}
		}
		c.send(string(junk) + "\r\nQUIT\r\n")
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				break
			}
			if !reply.MatchString(line) {
				t.Fatalf("malformed reply %q", line)
			}
		}
	}
	out, err := swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("server broken: %v\n%s", err, out)
	}
	if strings.Contains(e.eventLines(), "panic") {
		t.Fatalf("panic:\n%s", e.eventLines())
	}
}

func TestReceivedHeader(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "config system global\n set timezone Europe/Berlin\nend")
	fixed := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	e := newEnv(t, cfg, func(_ *env, o *Options) {
		o.Now = func() time.Time { return fixed }
		o.Hostname = func() string { return "gw.example.org" }
	})
	c := dialTLS(t, e.addr[SMTPS], nil)
	c.reply()
	c.expect("EHLO client(evil);example", "250")
	c.expect("AUTH PLAIN "+plainIR(userName, userPass), "235")
	for _, m := range []string{"first", "second"} {
		c.expect("MAIL FROM:<"+userName+">", "250")
		c.expect("RCPT TO:<x@elsewhere.example>", "250")
		c.expect("DATA", "354")
		c.expect("Subject: "+m+"\r\n\r\nbody\r\n.", "250")
	}
	msgs := e.q.all()
	if len(msgs) != 2 {
		t.Fatalf("queued %d", len(msgs))
	}
	sid := msgs[0].env.SessionID
	for i, m := range msgs {
		want := fmt.Sprintf("Received: from client?evil??example (unknown [127.0.0.1])\r\n"+
			"\tby gw.example.org (mailgate) with ESMTPSA id %s-%d\r\n"+
			"\t(version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 bits=128)\r\n"+
			"\tfor <x@elsewhere.example>; Thu, 15 Jan 2026 13:00:00 +0100\r\nSubject: ", sid, i+1)
		if !strings.HasPrefix(string(m.msg), want) {
			t.Errorf("got\n%q\nwant\n%q", m.msg, want)
		}
	}
	// HELO (not EHLO), plain text: "with SMTP".
	p := dial(t, e.addr[SMTP])
	p.reply()
	p.expect("HELO old.example", "250")
	p.expect("MAIL FROM:<a@sender.example>", "250")
	p.expect("RCPT TO:<bob@example.com>", "250")
	p.expect("DATA", "354")
	p.expect("Subject: x\r\n\r\nx\r\n.", "250")
	if m := e.q.all(); len(m) != 3 || !strings.Contains(string(m[2].msg), "by gw.example.org (mailgate) with SMTP id ") {
		t.Fatalf("HELO header: %q", m[2].msg)
	}
	// IPv6 clients get an IPv6 address literal, where the host has ::1.
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback: %v", err)
		return
	}
	go e.srv.Serve(l, SMTP)
	c6 := dial(t, l.Addr().String())
	c6.reply()
	c6.expect("EHLO v6.example", "250")
	c6.expect("MAIL FROM:<a@sender.example>", "250")
	c6.expect("RCPT TO:<bob@example.com>", "250")
	c6.expect("DATA", "354")
	c6.expect("Subject: x\r\n\r\nx\r\n.", "250")
	if m := e.q.all(); len(m) != 4 || !strings.HasPrefix(string(m[3].msg), "Received: from v6.example (unknown [IPv6:::1])\r\n") {
		t.Fatalf("IPv6 header: %q", m[3].msg)
	}
}

type fullDisk struct{}

func (fullDisk) Error() string  { return "queue volume full" }
func (fullDisk) DiskFull() bool { return true }

func TestQueueErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	for _, c := range []struct {
		err        error
		reply      string
		classifier string
	}{
		{fmt.Errorf("writing spool: %w", syscall.ENOSPC), "452 4.3.1 Insufficient system storage", "Disk Full"},
		{fmt.Errorf("enqueue: %w", fullDisk{}), "452 4.3.1 Insufficient system storage", "Disk Full"},
		{errors.New("database closed"), "451 4.3.0 ", "Queue Error"},
	} {
		e.q.mu.Lock()
		e.q.err = c.err
		e.q.mu.Unlock()
		out, err := swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "bob@example.com,carol@example.net")
		if err == nil {
			t.Fatalf("%v: acknowledged:\n%s", c.err, out)
		}
		mustContain(t, out, c.reply)
		hs := e.histories()
		hs = hs[len(hs)-2:]
		for _, h := range hs {
			if h.Disposition != "Temp Fail" || h.Classifier != c.classifier || !strings.HasPrefix(h.Status, c.reply) {
				t.Fatalf("history %+v", h)
			}
		}
		if hs[0].To != "bob@example.com" || hs[1].To != "carol@example.net" {
			t.Fatalf("history %+v", hs)
		}
	}
	e.waitEvent("error: message ", "not queued: database closed")
}

// TestAcknowledgeAfterEnqueue: the 250 comes only after Enqueue returned.
func TestAcknowledgeAfterEnqueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	gate, entry := make(chan struct{}), make(chan struct{}, 1)
	e.q.mu.Lock()
	e.q.gate, e.q.entry = gate, entry
	e.q.mu.Unlock()
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.expect("DATA", "354")
	c.send("Subject: wait\r\n\r\nbody\r\n.\r\n")
	select {
	case <-entry:
	case <-time.After(5 * time.Second):
		t.Fatal("Enqueue not called")
	}
	c.conn.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	if b, err := c.r.ReadByte(); err == nil {
		t.Fatalf("reply before Enqueue returned: %q", b)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read: %v", err)
	}
	close(gate)
	if r := c.reply(); r != "250 2.0.0 Ok: queued as Q0001\r\n" {
		t.Fatalf("got %q", r)
	}
}

func TestPipeliningClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	out, err := swaks(t, "--port", e.port(SMTP), "--pipeline", "--from", "a@sender.example", "--to", "bob@example.com,x@elsewhere.example,carol@example.net")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, out, "550 5.7.1 Relaying denied", "250 2.0.0 Ok: queued as Q0001")
	if m := e.q.all(); len(m) != 1 || len(m[0].env.Recipients) != 2 {
		t.Fatalf("queue %+v", m)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	t2 := dialTLS(t, e.addr[SMTPS], nil)
	t2.reply()
	done := make(chan error, 1)
	go func() { done <- e.srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if !c.closed() || !t2.closed() {
		t.Fatal("sessions left open")
	}
	if _, err := net.DialTimeout("tcp", e.addr[SMTP], time.Second); err == nil {
		t.Fatal("listener still open")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Serve(l, SMTP); err != ErrServerClosed {
		t.Fatalf("Serve after Close: %v", err)
	}
}
