package pop3d_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/pop3d"
	"mailgate/postfixtest"
)

// dirDrop is a maildrop of files in a directory (the test's mailbox): the
// file name is the UIDL.
type dirDrop struct {
	dir   string
	names []string
	sizes []int64
	b     *backend
}

func (d *dirDrop) Messages() []pop3d.Message {
	out := make([]pop3d.Message, len(d.names))
	for i, n := range d.names {
		out[i] = pop3d.Message{UIDL: n, Size: d.sizes[i]}
	}
	return out
}

func (d *dirDrop) Open(i int) (io.ReadCloser, error) {
	return os.Open(filepath.Join(d.dir, d.names[i]))
}

func (d *dirDrop) Delete(idx []int) error {
	for _, i := range idx {
		if err := os.Remove(filepath.Join(d.dir, d.names[i])); err != nil {
			return err
		}
	}
	return nil
}

func (d *dirDrop) Close() error {
	d.b.mu.Lock()
	d.b.closed++
	d.b.mu.Unlock()
	return nil
}

type backend struct {
	dir    string
	mu     sync.Mutex
	closed int
}

func (b *backend) Login(_ context.Context, user, pass string, _ netip.Addr) (pop3d.Maildrop, string, error) {
	if user != "alice@example.com" || pass != "Alice-Pop-1" {
		return nil, "", pop3d.ErrAuthFailed
	}
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, "", err
	}
	d := &dirDrop{dir: b.dir, b: b}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return nil, "", err
		}
		d.names = append(d.names, e.Name())
		d.sizes = append(d.sizes, fi.Size())
	}
	return d, user, nil
}

func (b *backend) files() []string {
	ents, _ := os.ReadDir(b.dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

const msg1 = "From: a@example.net\r\nTo: alice@example.com\r\nSubject: first\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\nline four\r\n"
const msg2 = "Subject: second\r\n\r\nbody of two\r\n"

type fixture struct {
	b                 *backend
	plain, pop3s      string // addresses
	caFile            string
	events            *strings.Builder
	eventsMu          *sync.Mutex
	srv               *pop3d.Server
	plainAuthListener string
}

func start(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	writeMessages(t, dir)
	ca, err := postfixtest.NewCA("pop3 test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM, 0o644)
	f := &fixture{b: &backend{dir: dir}, caFile: caFile, events: &strings.Builder{}, eventsMu: &sync.Mutex{}}
	f.srv = pop3d.New(pop3d.Options{
		Backend: f.b,
		TLS: func() *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		},
		Hostname: "mail.example.com",
		Event: func(level, msg string) {
			f.eventsMu.Lock()
			fmt.Fprintf(f.events, "%s %s\n", level, msg)
			f.eventsMu.Unlock()
		},
	})
	listen := func(implicit bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go f.srv.Serve(ln, implicit)
		return ln.Addr().String()
	}
	f.plain, f.pop3s = listen(false), listen(true)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fixture) log() string {
	f.eventsMu.Lock()
	defer f.eventsMu.Unlock()
	return f.events.String()
}

func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	out, err := exec.Command("python3", append([]string{"-c", script}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	return string(out)
}

// Python's poplib on the plain port: no password before STLS; after it
// LIST, UIDL, TOP, RETR (dot-stuffing undone by the client gives the
// exact message back), DELE applied at QUIT only.
func TestPoplibWithSTLS(t *testing.T) {
	f := start(t)
	_, port, _ := net.SplitHostPort(f.plain)
	out := python(t, `
import poplib, ssl, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=10)
caps = p.capa()
print("caps-before", sorted(caps))
try:
    p.user("alice@example.com")
    print("user-before-stls accepted")
except poplib.error_proto as e:
    print("user-before-stls", e)
ctx = ssl.create_default_context(cafile=sys.argv[3])
p.stls(context=ctx)
print("caps-after", sorted(p.capa()))
p.user("alice@example.com")
print("pass", p.pass_("Alice-Pop-1"))
print("stat", p.stat())
print("list", p.list()[1])
print("uidl", p.uidl()[1])
resp, lines, octets = p.retr(1)
sys.stdout.buffer.write(b"retr1<" + b"\r\n".join(lines) + b"\r\n>\n")
resp, lines, octets = p.top(1, 1)
print("top", lines)
print("dele", p.dele(2))
try:
    p.retr(2)
except poplib.error_proto as e:
    print("retr-deleted", e)
print("quit", p.quit())
`, "localhost", port, f.caFile)
	for _, want := range []string{
		"caps-before ['AUTH-RESP-CODE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'STLS', 'TOP', 'UIDL']",
		"user-before-stls b'-ERR [AUTH] Use STLS first: no password in plain text'",
		"caps-after ['AUTH-RESP-CODE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'SASL', 'TOP', 'UIDL', 'USER']",
		"pass b'+OK maildrop has 2 messages (" + fmt.Sprint(len(msg1)+len(msg2)) + " octets)'",
		"stat (2, " + fmt.Sprint(len(msg1)+len(msg2)) + ")",
		fmt.Sprintf("list [b'1 %d', b'2 %d']", len(msg1), len(msg2)),
		"uidl [b'1 1700000000.1', b'2 1700000000.2']",
		"retr1<" + msg1 + ">",
		"top [b'From: a@example.net', b'To: alice@example.com', b'Subject: first', b'', b'line one']",
		"dele b'+OK message 2 deleted'",
		"retr-deleted b'-ERR message 2 already deleted'",
		"quit b'+OK mail.example.com POP3 server signing off (1 messages left)'",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if got := f.b.files(); len(got) != 1 || got[0] != "1700000000.1" {
		t.Errorf("files after QUIT: %v", got)
	}
	if log := f.log(); !strings.Contains(log, "TLS TLSv1.3 ") || !strings.Contains(log, "user=alice@example.com deleted 1 messages") {
		t.Errorf("events:\n%s", log)
	}
}

// curl over POP3S and over POP3 with --ssl-reqd: list and retrieve; a
// session that ends without QUIT deletes nothing.
func TestCurl(t *testing.T) {
	f := start(t)
	curl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10", "--cacert", f.caFile, "-u", "alice@example.com:Alice-Pop-1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	_, port, _ := net.SplitHostPort(f.pop3s)
	if got := curl("pop3s://localhost:" + port + "/1"); got != msg1 {
		t.Errorf("pop3s RETR 1 = %q, want %q", got, msg1)
	}
	_, port, _ = net.SplitHostPort(f.plain)
	if got := curl("--ssl-reqd", "pop3://localhost:"+port+"/"); got != fmt.Sprintf("1 %d\r\n2 %d\r\n", len(msg1), len(msg2)) {
		t.Errorf("pop3 --ssl-reqd LIST = %q", got)
	}
	// DELE, then the connection drops: nothing is deleted.
	c, err := tls.Dial("tcp", f.pop3s, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "USER alice@example.com\r\nPASS Alice-Pop-1\r\nDELE 1\r\n")
	buf := make([]byte, 4096)
	var got string
	for !strings.Contains(got, "deleted") {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading: %v (%q)", err, got)
		}
		got += string(buf[:n])
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.log(), "connection ended without QUIT") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if files := f.b.files(); len(files) != 2 {
		t.Errorf("files after a dropped session: %v", files)
	}
}

// dialTLS opens a POP3S session and returns a function that sends lines
// and reads the replies until want appears.
func dialTLS(t *testing.T, addr string) (func(send, want string) string, net.Conn) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	buf := make([]byte, 8192)
	var pending string
	return func(send, want string) string {
		t.Helper()
		if send != "" {
			io.WriteString(c, send)
		}
		for !strings.Contains(pending, want) {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("after %q: %v; got %q, want %q", send, err, pending, want)
			}
			pending += string(buf[:n])
		}
		i := strings.Index(pending, want) + len(want)
		got := pending[:i]
		pending = pending[i:]
		return got
	}, c
}

// AUTH PLAIN with and without an initial response, pipelined commands,
// bad arguments, an overlong line; three failed logins end the session.
func TestProtocolEdges(t *testing.T) {
	f := start(t)
	plain := func(authz, user, pass string) string {
		return base64Std(authz + "\x00" + user + "\x00" + pass)
	}
	do, _ := dialTLS(t, f.pop3s)
	do("", "+OK mail.example.com POP3 server ready\r\n")
	do("AUTH\r\n", "+OK\r\nPLAIN\r\n.\r\n")
	do("AUTH CRAM-MD5\r\n", "-ERR unsupported mechanism\r\n")
	do("STAT\r\n", "-ERR log in first\r\n")
	do("AUTH PLAIN\r\n", "+ \r\n")
	do(plain("", "alice@example.com", "Alice-Pop-1")+"\r\n", "+OK maildrop has 2 messages")
	// Pipelined: every reply in order.
	got := do("STAT\r\nLIST 2\r\nUIDL 1\r\nLIST 3\r\nDELE x\r\nTOP 1\r\nNOOP\r\n", "+OK\r\n")
	for _, want := range []string{"+OK 2 147\r\n", fmt.Sprintf("+OK 2 %d\r\n", len(msg2)), "+OK 1 1700000000.1\r\n", "-ERR no such message\r\n-ERR no such message\r\n", "-ERR TOP needs a message number and a number of lines\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("pipelined replies lack %q:\n%s", want, got)
		}
	}
	do(strings.Repeat("x", 600)+"\r\n", "-ERR line too long\r\n")
	do("USER bob\r\n", "-ERR already logged in\r\n")
	do("DELE 1\r\nRSET\r\n", "+OK maildrop has 2 messages")
	do("QUIT\r\n", "(2 messages left)\r\n")

	do, c := dialTLS(t, f.pop3s)
	do("", "ready\r\n")
	do("AUTH PLAIN "+plain("bob", "alice@example.com", "Alice-Pop-1")+"\r\n", "-ERR [AUTH] authentication failed\r\n")
	do("USER alice@example.com\r\nPASS wrong\r\n", "-ERR [AUTH] authentication failed\r\n")
	do("AUTH PLAIN !!!\r\n", "-ERR [AUTH] authentication failed\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatalf("session goes on after three failures (read %d bytes)", n)
	}
	if log := f.log(); !strings.Contains(log, "authentication failed: authorization identity differs") || !strings.Contains(log, "authentication failed: malformed SASL response") {
		t.Errorf("events:\n%s", log)
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func writeMessages(t testing.TB, dir string) {
	for name, m := range map[string]string{"1700000000.1": msg1, "1700000000.2": msg2} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
