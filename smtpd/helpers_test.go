package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
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

	"golang.org/x/crypto/bcrypt"

	"mailgate/cert"
	"mailgate/config"
	"mailgate/config/configtest"
	"mailgate/queue"
)

func init() {
	authFailDelay = 50 * time.Millisecond
}

// The device identity is shared by all tests: generating keys is slow.
var identity = sync.OnceValues(func() (*cert.Identity, error) {
	return cert.GenerateIdentity("mx", "example.com", nil, time.Now())
})

func testIdentity(t testing.TB) *cert.Identity {
	t.Helper()
	id, err := identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

const (
	userName = "alice@example.com"
	userPass = "Corr3ct-Horse!"
)

var userHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(userPass), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// testConfig is the factory configuration with protected domains
// example.com and example.net, the user alice@example.com and bob (no
// domain, disabled) and the device CA as a trusted CA.
func testConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	c := config.Factory(config.FactoryOptions{})
	c.System.Global.Hostname = "mx"
	c.System.Global.LocalDomainName = "example.com"
	c.Domain = []config.Domain{{Name: "example.com"}, {Name: "example.net"}}
	c.User.Local = []config.User{
		{Name: userName, Status: true, Password: userHash()},
		{Name: "carol@example.net", Status: false, Password: userHash()},
	}
	c.System.Certificate.CA = []config.CACert{{Name: "device", Certificate: string(testIdentity(t).CACertPEM)}}
	if text == "" {
		return c
	}
	return configtest.Apply(t, c, text)
}

// memQueue is an Enqueuer that keeps messages in memory.
type memQueue struct {
	mu    sync.Mutex
	msgs  []queued
	n     int
	err   error         // returned instead of storing
	gate  chan struct{} // when set, Enqueue waits for it
	entry chan struct{} // when set, signalled when Enqueue starts
}

type queued struct {
	id  string
	env queue.Envelope
	msg []byte
}

func (q *memQueue) Enqueue(env queue.Envelope, msg io.Reader) (string, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	gate, entry := q.gate, q.entry
	q.mu.Unlock()
	if entry != nil {
		entry <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return "", q.err
	}
	q.n++
	id := fmt.Sprintf("Q%04d", q.n)
	q.msgs = append(q.msgs, queued{id: id, env: env, msg: b})
	return id, nil
}

func (q *memQueue) all() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.msgs...)
}

// env is a running server with its listeners and what it recorded.
type env struct {
	t     testing.TB
	cfg   *config.Config
	srv   *Server
	q     *memQueue
	addr  map[Kind]string
	certs *cert.Holder

	mu      sync.Mutex
	history []History
	events  []string
	rdns    map[string]string
}

type envOption func(*env, *Options)

func withRDNS(ip, name string) envOption {
	return func(e *env, _ *Options) { e.rdns[ip] = name }
}

func newEnv(t testing.TB, cfg *config.Config, opts ...envOption) *env {
	t.Helper()
	id := testIdentity(t)
	store, errs := cert.NewStore([]cert.Entry{{Name: cert.FactoryName, ChainPEM: id.FactoryCertPEM, KeyPEM: id.FactoryKeyPEM}}, cert.FactoryName, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	e := &env{t: t, cfg: cfg, q: &memQueue{}, addr: map[Kind]string{}, certs: &cert.Holder{}, rdns: map[string]string{}}
	e.certs.Set(store)
	o := Options{
		Config: func() *config.Config { return e.config() },
		Certs:  e.certs,
		Queue:  e.q,
		LookupAddr: func(_ context.Context, ip netip.Addr) (string, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if n, ok := e.rdns[ip.String()]; ok {
				return n + ".", nil
			}
			return "", fmt.Errorf("no PTR for %s", ip)
		},
		History:  func(h History) { e.mu.Lock(); e.history = append(e.history, h); e.mu.Unlock() },
		Event:    func(level, msg string) { e.mu.Lock(); e.events = append(e.events, level+": "+msg); e.mu.Unlock() },
		SpoolDir: t.TempDir(),
	}
	for _, f := range opts {
		f(e, &o)
	}
	e.srv = New(o)
	for _, k := range []Kind{SMTP, SMTPS, MSA} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.addr[k] = l.Addr().String()
		go e.srv.Serve(l, k)
	}
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func (e *env) config() *config.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

func (e *env) setConfig(c *config.Config) {
	e.mu.Lock()
	e.cfg = c
	e.mu.Unlock()
}

func (e *env) port(k Kind) string {
	_, p, _ := net.SplitHostPort(e.addr[k])
	return p
}

func (e *env) histories() []History {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]History(nil), e.history...)
}

func (e *env) eventLines() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.events, "\n")
}

// waitEvent waits until an event line contains all of the substrings.
func (e *env) waitEvent(subs ...string) string {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		for _, l := range e.events {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(l, s)
			}
			if ok {
				e.mu.Unlock()
				return l
			}
		}
		e.mu.Unlock()
		if time.Now().After(deadline) {
			e.t.Fatalf("no event with %q in:\n%s", subs, e.eventLines())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// swaks runs the real swaks client and returns its transcript.
func swaks(t testing.TB, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatalf("swaks is required for these tests (make test-deps installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"--server", "127.0.0.1", "--timeout", "20"}, args...)...)
	out, err := cmd.CombinedOutput()
	s := string(out)
	if strings.Contains(s, "TLS not available") || strings.Contains(s, "requires Net::SSLeay") {
		t.Fatalf("swaks has no TLS support (install libnet-ssleay-perl):\n%s", s)
	}
	return s, err
}

// mustContain fails unless s contains every substring.
func mustContain(t testing.TB, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("missing %q in:\n%s", sub, s)
		}
	}
}

func mustNotContain(t testing.TB, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Fatalf("unexpected %q in:\n%s", sub, s)
		}
	}
}

// client is a raw SMTP client for protocol edge cases.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// dialTLS connects with implicit TLS.
func dialTLS(t testing.TB, addr string, cfg *tls.Config) *client {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// reply reads one (possibly multi-line) reply.
func (c *client) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			if b.Len() == 0 {
				return "EOF: " + err.Error()
			}
			return b.String()
		}
		if len(line) < 4 || line[3] != '-' {
			return b.String()
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// cmd sends a command line and returns the reply.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.reply()
}

// expect sends a command and checks the reply's beginning.
func (c *client) expect(line, prefix string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%q: got %q, want %q...", line, r, prefix)
	}
	return r
}

// starttls upgrades the connection.
func (c *client) starttls(cfg *tls.Config) {
	c.t.Helper()
	c.expect("STARTTLS", "220 ")
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true}
	}
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

// closed reports whether the server closed the connection.
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadByte()
	if err == nil {
		c.t.Logf("unexpected byte %q", b)
		return false
	}
	return true
}

// writeFile writes a file in a temporary directory.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func countLines(b []byte, prefix string) int {
	n := 0
	for _, l := range bytes.Split(b, []byte("\r\n")) {
		if bytes.HasPrefix(l, []byte(prefix)) {
			n++
		}
	}
	return n
}
