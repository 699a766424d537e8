package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	gossh "golang.org/x/crypto/ssh"
)

// ---- fakes ----

type fakeAccounts struct {
	mu       sync.Mutex
	admins   map[string]AdminInfo
	idle     time.Duration
	setCalls []string
}

func (a *fakeAccounts) Admin(name string) (AdminInfo, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	info, ok := a.admins[name]
	return info, ok
}

func (a *fakeAccounts) SetPassword(name, password string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.setCalls = append(a.setCalls, name+":"+password)
	if len(password) < 8 {
		return errors.New("password too weak: use at least 8 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	info := a.admins[name]
	info.PasswordHash = string(h)
	a.admins[name] = info
	return nil
}

func (a *fakeAccounts) IdleTimeout() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.idle
}

func (a *fakeAccounts) add(t *testing.T, info AdminInfo, password string) {
	t.Helper()
	if password != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		info.PasswordHash = string(h)
	}
	a.mu.Lock()
	a.admins[info.Name] = info
	a.mu.Unlock()
}

func (a *fakeAccounts) calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.setCalls...)
}

type fakeRunLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *fakeRunLog) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *fakeRunLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

type fakeInterp struct {
	admin    string
	readOnly bool
	runs     *fakeRunLog
	exited   bool
}

func (f *fakeInterp) Prompt() string { return "t # " }

func (f *fakeInterp) Run(line string, con Console) error {
	f.runs.add(line)
	switch {
	case line == "exit":
		f.exited = true
	case strings.HasPrefix(line, "fail"):
		fmt.Fprintf(con, "command fail: %s\n", line)
		return errors.New("failed")
	case line == "ask":
		ans, err := con.ReadLine("Continue? (y/n) ")
		if err != nil {
			fmt.Fprintf(con, "aborted: %v\n", err)
			return err
		}
		fmt.Fprintf(con, "answer=%s\n", ans)
	case line == "whoami":
		fmt.Fprintf(con, "user=%s ro=%v interactive=%v\n", f.admin, f.readOnly, con.Interactive())
	default:
		fmt.Fprintf(con, "echo: %s\n", line)
	}
	return nil
}

func (f *fakeInterp) Complete(line string) (string, []string) {
	switch line {
	case "sh":
		return "show ", nil
	case "s":
		return "s", []string{"set", "show"}
	}
	return line, nil
}

func (f *fakeInterp) Help(line string) string { return "help for <" + line + ">" }
func (f *fakeInterp) Exited() bool            { return f.exited }
func (f *fakeInterp) Close()                  {}

type fakeEvents struct {
	mu   sync.Mutex
	list []string
}

func (e *fakeEvents) record(level, subsystem, user, remote, msg string) {
	e.mu.Lock()
	e.list = append(e.list, strings.Join([]string{level, subsystem, user, remote, msg}, "|"))
	e.mu.Unlock()
}

func (e *fakeEvents) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.list...)
}

func (e *fakeEvents) count(sub string) int {
	n := 0
	for _, s := range e.all() {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// waitFor waits until an event containing sub has been logged.
func (e *fakeEvents) waitFor(t *testing.T, sub string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.count(sub) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no event %q in %q", sub, e.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ---- harness ----

var testHostKey = sync.OnceValues(GenerateHostKey)

type testEnv struct {
	srv    *Server
	addr   string
	acc    *fakeAccounts
	runs   *fakeRunLog
	events *fakeEvents
	served chan error
}

func testStart(t *testing.T, mod func(*ServerConfig)) *testEnv {
	t.Helper()
	key, err := testHostKey()
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{
		acc:    &fakeAccounts{admins: map[string]AdminInfo{}},
		runs:   &fakeRunLog{},
		events: &fakeEvents{},
		served: make(chan error, 1),
	}
	cfg := ServerConfig{
		HostKeyPEM: key,
		Accounts:   e.acc,
		NewInterpreter: func(admin string, ro bool) Interpreter {
			return &fakeInterp{admin: admin, readOnly: ro, runs: e.runs}
		},
		Banner:          "mailgate test",
		Event:           e.events.record,
		FailedAuthDelay: -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	e.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	go func() { e.served <- e.srv.Serve(l) }()
	t.Cleanup(func() {
		e.srv.Close()
		select {
		case err := <-e.served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return e
}

func (e *testEnv) dial(user string, auth ...gossh.AuthMethod) (*gossh.Client, error) {
	fp := e.srv.HostKeyFingerprint()
	return gossh.Dial("tcp", e.addr, &gossh.ClientConfig{
		User: user,
		Auth: auth,
		HostKeyCallback: func(_ string, _ net.Addr, key gossh.PublicKey) error {
			if got := gossh.FingerprintSHA256(key); got != fp {
				return fmt.Errorf("host key %s, want %s", got, fp)
			}
			return nil
		},
		Timeout: 5 * time.Second,
	})
}

func (e *testEnv) mustDial(t *testing.T, user string, auth ...gossh.AuthMethod) *gossh.Client {
	t.Helper()
	c, err := e.dial(user, auth...)
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testExec runs cmd without PTY and returns stdout, stderr and exit status.
func testExec(t *testing.T, c *gossh.Client, cmd, stdin string) (string, string, int) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	sess.Stdin = strings.NewReader(stdin)
	if cmd == "" {
		err = sess.Shell()
		if err == nil {
			err = sess.Wait()
		}
	} else {
		err = sess.Run(cmd)
	}
	return out.String(), errOut.String(), testStatus(t, err)
}

func testStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *gossh.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitStatus()
	}
	t.Fatalf("session: %v", err)
	return -1
}

func testKey(t *testing.T) (gossh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(s.PublicKey()))) + " test@key"
}

// testPTY drives an interactive session.
type testPTY struct {
	t     *testing.T
	sess  *gossh.Session
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	pos   int
	done  chan error
}

func (p *testPTY) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func testOpenPTY(t *testing.T, c *gossh.Client, cmd string) *testPTY {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	p := &testPTY{t: t, sess: sess, done: make(chan error, 1)}
	if err := sess.RequestPty("xterm", 24, 120, gossh.TerminalModes{gossh.ECHO: 1}); err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	sess.Stdout = p
	sess.Stderr = p
	if cmd == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(cmd)
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- sess.Wait() }()
	t.Cleanup(func() { sess.Close() })
	return p
}

func (p *testPTY) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, s); err != nil {
		p.t.Fatalf("send %q: %v", s, err)
	}
}

// expect waits for s in the output not yet consumed and consumes the
// output up to the end of s, which it returns.
func (p *testPTY) expect(s string) string {
	p.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		rest := p.out.String()[p.pos:]
		if i := strings.Index(rest, s); i >= 0 {
			p.pos += i + len(s)
			p.mu.Unlock()
			return rest[:i+len(s)]
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			p.t.Fatalf("expected %q, got %q", s, rest)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *testPTY) all() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// wait returns the exit status once the session has ended.
func (p *testPTY) wait() int {
	p.t.Helper()
	select {
	case err := <-p.done:
		return testStatus(p.t, err)
	case <-time.After(5 * time.Second):
		p.t.Fatalf("session did not end; output %q", p.all())
	}
	return -1
}

// ---- tests ----

func TestSSHPasswordLogin(t *testing.T) {
	e := testStart(t, func(c *ServerConfig) { c.FailedAuthDelay = 0 }) // default delay
	e.acc.add(t, AdminInfo{Name: "admin"}, "s3cret-pass")
	e.acc.add(t, AdminInfo{Name: "viewer", ReadOnly: true}, "viewer-pass")

	c := e.mustDial(t, "admin", gossh.Password("s3cret-pass"))
	out, _, code := testExec(t, c, "whoami", "")
	if out != "user=admin ro=false interactive=false\n" || code != 0 {
		t.Fatalf("whoami: %q status %d", out, code)
	}
	e.events.waitFor(t, "information|admin|admin|127.0.0.1|login")
	e.events.waitFor(t, "information|admin|admin|127.0.0.1|logout")

	c = e.mustDial(t, "viewer", gossh.Password("viewer-pass"))
	if out, _, _ := testExec(t, c, "whoami", ""); out != "user=viewer ro=true interactive=false\n" {
		t.Fatalf("viewer whoami: %q", out)
	}

	for _, tc := range []struct{ user, pw, event string }{
		{"admin", "wrong", "warning|admin|admin|127.0.0.1|login failed: invalid password"},
		{"admin", "", "login failed: invalid password"},
		{"nobody", "s3cret-pass", "warning|admin|nobody|127.0.0.1|login failed: unknown user"},
	} {
		start := time.Now()
		if c, err := e.dial(tc.user, gossh.Password(tc.pw)); err == nil {
			c.Close()
			t.Fatalf("%s/%q: login succeeded", tc.user, tc.pw)
		}
		if d := time.Since(start); d < DefaultFailedAuthDelay {
			t.Errorf("%s/%q: failed after %v, want the failure delay", tc.user, tc.pw, d)
		}
		e.events.waitFor(t, tc.event)
	}
}

func TestSSHPublicKey(t *testing.T) {
	e := testStart(t, nil)
	k1, line1 := testKey(t)
	k2, line2 := testKey(t)
	e.acc.add(t, AdminInfo{Name: "admin1", PublicKeys: []string{"", "garbage", line1}}, "pw-admin-1")
	e.acc.add(t, AdminInfo{Name: "admin2", PublicKeys: []string{line2}}, "pw-admin-2")

	c := e.mustDial(t, "admin1", gossh.PublicKeys(k1))
	if out, _, _ := testExec(t, c, "whoami", ""); !strings.HasPrefix(out, "user=admin1 ") {
		t.Fatalf("whoami: %q", out)
	}
	// Another admin's key is refused.
	if c, err := e.dial("admin1", gossh.PublicKeys(k2)); err == nil {
		c.Close()
		t.Fatal("admin2's key logged in as admin1")
	}
	e.events.waitFor(t, "admin1|127.0.0.1|login failed: public key not accepted")
	// Offering a wrong key first, then the right one, works.
	c = e.mustDial(t, "admin1", gossh.PublicKeys(k2, k1))
	if out, _, _ := testExec(t, c, "whoami", ""); !strings.HasPrefix(out, "user=admin1 ") {
		t.Fatalf("whoami: %q", out)
	}
	// A probed but unusable key does not taint a later password login.
	c = e.mustDial(t, "admin2", gossh.PublicKeys(k1), gossh.Password("pw-admin-2"))
	if out, _, _ := testExec(t, c, "whoami", ""); !strings.HasPrefix(out, "user=admin2 ") {
		t.Fatalf("whoami: %q", out)
	}
}

func TestSSHTrustHosts(t *testing.T) {
	e := testStart(t, nil)
	k, line := testKey(t)
	e.acc.add(t, AdminInfo{Name: "far", PublicKeys: []string{line},
		TrustHosts: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "far-password")
	e.acc.add(t, AdminInfo{Name: "near",
		TrustHosts: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}}, "near-password")

	if c, err := e.dial("far", gossh.Password("far-password")); err == nil {
		c.Close()
		t.Fatal("login from an untrusted host succeeded")
	}
	e.events.waitFor(t, "far|127.0.0.1|login failed: not a trusted host")
	if c, err := e.dial("far", gossh.PublicKeys(k)); err == nil {
		c.Close()
		t.Fatal("public key login from an untrusted host succeeded")
	}
	c := e.mustDial(t, "near", gossh.Password("near-password"))
	if _, _, code := testExec(t, c, "whoami", ""); code != 0 {
		t.Fatalf("status %d", code)
	}
}

func TestSSHLockout(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := testStart(t, func(c *ServerConfig) {
		c.Now = clock.now
		c.MaxLoginFailures = 3
	})
	e.acc.add(t, AdminInfo{Name: "admin"}, "right-password")
	login := func(pw string) bool {
		c, err := e.dial("admin", gossh.Password(pw))
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	lockOut := func() {
		t.Helper()
		before := e.events.count("login locked out")
		for i := 0; i < 3; i++ {
			if login("bad") {
				t.Fatal("bad password accepted")
			}
		}
		if e.events.count("login locked out") != before+1 {
			t.Fatalf("no lockout event: %q", e.events.all())
		}
		if login("right-password") {
			t.Fatal("login accepted while locked out")
		}
	}

	if login("bad") || login("bad") || !login("right-password") {
		t.Fatal("two failures must not lock out")
	}
	lockOut()
	clock.advance(59 * time.Second)
	if login("right-password") {
		t.Fatal("lockout shorter than 60s")
	}
	clock.advance(2 * time.Second)
	// A repeated lockout lasts twice as long.
	lockOut()
	clock.advance(61 * time.Second)
	if login("right-password") {
		t.Fatal("second lockout not doubled")
	}
	clock.advance(60 * time.Second)
	if !login("right-password") {
		t.Fatal("login refused after the lockout")
	}
	if n := e.events.count("login failed"); n != 8 {
		t.Errorf("%d login failed events, want 8", n)
	}
}

func TestSSHThrottleGrowth(t *testing.T) {
	now := time.Unix(0, 0)
	th := &sshThrottle{now: func() time.Time { return now }, max: 1, window: time.Minute,
		base: time.Minute, maxLock: 15 * time.Minute, ips: map[netip.Addr]*sshIPState{}}
	ip := netip.MustParseAddr("192.0.2.1")
	var got []time.Duration
	for i := 0; i < 6; i++ {
		d := th.fail(ip)
		got = append(got, d)
		now = now.Add(d)
	}
	want := []time.Duration{1, 2, 4, 8, 15, 15}
	for i := range want {
		if got[i] != want[i]*time.Minute {
			t.Fatalf("lockouts %v", got)
		}
	}
	// The level decays after a quiet period.
	now = now.Add(16 * time.Minute)
	if d := th.fail(ip); d != time.Minute {
		t.Fatalf("after a quiet period: %v", d)
	}
}

func TestSSHTrustedPrefixes(t *testing.T) {
	p := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	for _, tc := range []struct {
		hosts []netip.Prefix
		ip    string
		want  bool
	}{
		{nil, "203.0.113.9", true},
		{p("192.0.2.0/24"), "192.0.2.7", true},
		{p("192.0.2.0/24"), "::ffff:192.0.2.7", true},
		{p("::ffff:192.0.2.0/120"), "192.0.2.7", true},
		{p("192.0.2.0/24"), "192.0.3.7", false},
		{p("2001:db8::/32"), "2001:db8::1", true},
	} {
		if got := sshTrusted(tc.hosts, netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("%v %s: %v", tc.hosts, tc.ip, got)
		}
	}
	if sshTrusted(p("0.0.0.0/0"), netip.Addr{}) {
		t.Error("unknown address trusted")
	}
}

// The session handler only serves the name whose credentials one of our
// handlers checked, whatever the SSH layer reports.
func TestSSHAuthStateGuard(t *testing.T) {
	c := &sshConn{accepted: map[string]bool{}}
	c.accept("lowpriv")
	c.handshakeDone("admin")
	if c.authenticated("admin") || c.authenticated("lowpriv") {
		t.Fatal("unverified name authenticated")
	}
	c.accept("admin")
	c.handshakeDone("admin")
	if !c.authenticated("admin") || c.authenticated("lowpriv") {
		t.Fatal("verified name refused")
	}
}

func TestSSHFirstLoginPTY(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "")
	if c, err := e.dial("admin", gossh.Password("x")); err == nil {
		c.Close()
		t.Fatal("non-empty password accepted for an empty one")
	}
	c := e.mustDial(t, "admin", gossh.Password(""))
	p := testOpenPTY(t, c, "")
	p.expect("You are forced to change your password. Please input a new password.")
	p.expect("New password: ")
	p.send("short\r")
	p.expect("Confirm password: ")
	p.send("short\r")
	p.expect("password too weak")
	p.expect("New password: ")
	p.send("longpassword1\r")
	p.expect("Confirm password: ")
	p.send("different-one\r")
	p.expect("do not match")
	p.expect("New password: ")
	p.send("longpassword1\r")
	p.expect("Confirm password: ")
	p.send("longpassword1\r")
	before := p.expect("t # ")
	if strings.Count(p.all(), "t # ") != 1 || !strings.HasSuffix(before, "t # ") {
		t.Fatalf("prompt shown before the password was set: %q", p.all())
	}
	if strings.Contains(p.all(), "longpassword1") || strings.Contains(p.all(), "short") {
		t.Fatalf("password echoed: %q", p.all())
	}
	if got := e.runs.get(); len(got) != 0 {
		t.Fatalf("commands ran before the password was set: %q", got)
	}
	want := []string{"admin:short", "admin:longpassword1"}
	if got := e.acc.calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SetPassword calls %q, want %q", got, want)
	}
	p.send("whoami\r")
	p.expect("user=admin ro=false interactive=true")
	p.send("exit\r")
	if code := p.wait(); code != 0 {
		t.Fatalf("status %d", code)
	}
	e.events.waitFor(t, "password changed at first login")
	// The new password now works, the empty one no longer does.
	if c, err := e.dial("admin", gossh.Password("")); err == nil {
		c.Close()
		t.Fatal("empty password still accepted")
	}
	e.mustDial(t, "admin", gossh.Password("longpassword1"))
}

func TestSSHFirstLoginGivesUp(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "")
	p := testOpenPTY(t, e.mustDial(t, "admin", gossh.Password("")), "whoami")
	for i := 0; i < 3; i++ {
		p.expect("New password: ")
		p.send("longpassword1\r")
		p.expect("Confirm password: ")
		p.send("longpassword2\r")
	}
	p.expect("Too many failed attempts")
	if code := p.wait(); code != 1 {
		t.Fatalf("status %d", code)
	}
	if len(e.runs.get()) != 0 || len(e.acc.calls()) != 0 {
		t.Fatalf("ran %q, set %q", e.runs.get(), e.acc.calls())
	}
	if strings.Contains(p.all(), "t # ") {
		t.Fatalf("prompt shown: %q", p.all())
	}
}

func TestSSHEmptyPasswordNoPTY(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "")
	c := e.mustDial(t, "admin", gossh.Password(""))
	for _, cmd := range []string{"whoami", ""} {
		out, errOut, code := testExec(t, c, cmd, "whoami\n")
		if code != 1 || out != "" || errOut != sshNeedTTYMsg {
			t.Fatalf("%q: out %q err %q status %d", cmd, out, errOut, code)
		}
	}
	if len(e.runs.get()) != 0 {
		t.Fatalf("ran %q", e.runs.get())
	}
}

func TestSSHExec(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	c := e.mustDial(t, "admin", gossh.Password("admin-password"))

	if out, _, code := testExec(t, c, "show full-configuration", ""); out != "echo: show full-configuration\n" || code != 0 {
		t.Fatalf("out %q status %d", out, code)
	}
	if out, _, code := testExec(t, c, "fail now", ""); out != "command fail: fail now\n" || code != 1 {
		t.Fatalf("out %q status %d", out, code)
	}
	// Console.ReadLine reads standard input.
	if out, _, code := testExec(t, c, "ask", "y\r\n"); out != "answer=y\n" || code != 0 {
		t.Fatalf("out %q status %d", out, code)
	}
	if got := e.runs.get(); fmt.Sprint(got) != "[show full-configuration fail now ask]" {
		t.Fatalf("runs %q", got)
	}
}

func TestSSHPipedStdin(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	c := e.mustDial(t, "admin", gossh.Password("admin-password"))

	long := strings.Repeat("x", 200000)
	out, _, code := testExec(t, c, "", "one\r\ntwo\n\nask\nyes\n"+long+"\nexit\nnever\n")
	want := "echo: one\necho: two\nanswer=yes\necho: " + long + "\n"
	if out != want || code != 0 {
		t.Fatalf("out %.200q status %d", out, code)
	}
	if got := e.runs.get(); len(got) != 5 || got[4] != "exit" {
		t.Fatalf("runs %.200q", got)
	}
	// Every line runs; one failure makes the status 1.
	out, _, code = testExec(t, c, "", "a\nfail b\nc")
	if out != "echo: a\ncommand fail: fail b\necho: c\n" || code != 1 {
		t.Fatalf("out %q status %d", out, code)
	}
}

func TestSSHInteractive(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	p := testOpenPTY(t, e.mustDial(t, "admin", gossh.Password("admin-password")), "")
	p.expect("t # ")
	if err := p.sess.WindowChange(30, 100); err != nil {
		t.Fatal(err)
	}

	// '?' shows help at once and keeps the line.
	p.send("show sys?")
	p.expect("help for <show sys>")
	p.expect("t # show sys")
	p.send("tem\r")
	p.expect("echo: show system")
	p.expect("t # ")

	// '?' in mid-line helps with the text before the cursor.
	p.send("abcd\x1b[D\x1b[D?")
	p.expect("help for <ab>")
	p.send("\r")
	p.expect("echo: abcd")

	// Ctrl-V makes '?' literal.
	p.send("x\x16?\r")
	p.expect("echo: x?")

	// Tab completes; ambiguous completions are listed.
	p.send("sh\tconf\r")
	p.expect("echo: show conf")
	p.send("s\t")
	p.expect("set   show")
	p.send("et x\r")
	p.expect("echo: set x")

	// Ctrl-C abandons the line.
	p.send("junk\x03")
	p.send("ok\r")
	p.expect("echo: ok")
	// History.
	p.send("\x1b[A\r")
	p.expect("echo: ok")

	// Console.ReadLine inside a command; '?' is literal there.
	p.send("ask\r")
	p.expect("Continue? (y/n) ")
	p.send("y?\r")
	p.expect("answer=y?")
	// Ctrl-D at a prompt of a command aborts it; the session goes on.
	p.send("ask\r")
	p.expect("Continue? (y/n) ")
	p.send("\x04")
	if got := p.expect("aborted: EOF"); got != "\r\naborted: EOF" {
		t.Fatalf("after Ctrl-D: %q", got)
	}
	p.expect("t # ")
	p.send("after\r")
	p.expect("echo: after")

	// Ctrl-D on an empty line ends the session.
	p.expect("t # ")
	p.send("\x04")
	if code := p.wait(); code != 0 {
		t.Fatalf("status %d", code)
	}
	for _, l := range e.runs.get() {
		if strings.Contains(l, "junk") {
			t.Fatalf("abandoned line ran: %q", e.runs.get())
		}
	}
	want := "[show system abcd x? show conf set x ok ok ask ask after]"
	if got := fmt.Sprint(e.runs.get()); got != want {
		t.Fatalf("runs %s, want %s", got, want)
	}
	e.events.waitFor(t, "|logout")
}

func TestSSHPTYExec(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	p := testOpenPTY(t, e.mustDial(t, "admin", gossh.Password("admin-password")), "fail x")
	p.expect("command fail: fail x")
	if code := p.wait(); code != 1 {
		t.Fatalf("status %d", code)
	}
}

func TestSSHIdleTimeout(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	e.acc.idle = 2 * time.Second
	p := testOpenPTY(t, e.mustDial(t, "admin", gossh.Password("admin-password")), "")
	p.expect("t # ")
	// Input keeps the session alive: four pauses of a quarter of the
	// timeout outlast it together, never one by one.
	for i := 0; i < 4; i++ {
		time.Sleep(600 * time.Millisecond)
		p.send("a")
	}
	p.send("\r")
	p.expect("echo: aaaa")
	start := time.Now()
	p.expect("Idle timeout, disconnecting.")
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	p.wait()
	e.events.waitFor(t, "logout: idle timeout")
}

func TestSSHHostKey(t *testing.T) {
	key, err := GenerateHostKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateHostKey()
	cfg := ServerConfig{HostKeyPEM: key, Accounts: &fakeAccounts{},
		NewInterpreter: func(string, bool) Interpreter { return nil }}
	s1, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewServer(cfg)
	cfg.HostKeyPEM = other
	s3, _ := NewServer(cfg)
	signer, err := gossh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if signer.PublicKey().Type() != gossh.KeyAlgoED25519 {
		t.Fatalf("host key type %s", signer.PublicKey().Type())
	}
	fp := s1.HostKeyFingerprint()
	if !strings.HasPrefix(fp, "SHA256:") || fp != s2.HostKeyFingerprint() || fp != gossh.FingerprintSHA256(signer.PublicKey()) {
		t.Fatalf("fingerprints %s %s", fp, s2.HostKeyFingerprint())
	}
	if fp == s3.HostKeyFingerprint() {
		t.Fatal("different keys, same fingerprint")
	}
	cfg.HostKeyPEM = nil
	if _, err := NewServer(cfg); err == nil {
		t.Fatal("server without host key")
	}
}

func TestSSHClose(t *testing.T) {
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	p := testOpenPTY(t, e.mustDial(t, "admin", gossh.Password("admin-password")), "")
	p.expect("t # ")
	// A connection still in the handshake.
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := io.ReadFull(raw, make([]byte, 8)); err != nil { // "SSH-2.0-"
		t.Fatal(err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("session survived Close")
	}
	testNoServerGoroutines(t)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, raw); err != nil {
		t.Fatalf("handshaking connection not closed: %v", err)
	}
	if err := e.srv.Serve(testListener(t)); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// testNoServerGoroutines waits until no goroutine of the SSH server or of
// gliderlabs/ssh is left.
func testNoServerGoroutines(t *testing.T) {
	t.Helper()
	markers := []string{"gliderlabs/ssh.", "cli.(*Server)", "cli.(*sshTTY)", "cli.(*sshInput)", "cli.(*sshConn)"}
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		left := ""
		for _, g := range strings.Split(stacks, "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					left = g
				}
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine left after Close:\n%s", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testListener(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSSHOpenSSHClient(t *testing.T) {
	const sshBin = "/usr/bin/ssh"
	if _, err := os.Stat(sshBin); err != nil {
		t.Fatalf("OpenSSH client required: %v", err)
	}
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen required: %v", err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	e := testStart(t, nil)
	e.acc.add(t, AdminInfo{Name: "admin", PublicKeys: []string{strings.TrimSpace(string(pub))}}, "admin-password")
	_, port, _ := net.SplitHostPort(e.addr)
	run := func(cmd string) (string, int) {
		c := exec.Command(sshBin, "-F", "/dev/null", "-i", keyFile, "-o", "IdentitiesOnly=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "LogLevel=ERROR", "-p", port, "admin@127.0.0.1", cmd)
		c.Env = append(os.Environ(), "HOME="+dir)
		var out bytes.Buffer
		c.Stdout = &out
		c.Stderr = &out
		err := c.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return out.String(), 0
		case errors.As(err, &ee):
			return out.String(), ee.ExitCode()
		}
		t.Fatalf("ssh: %v", err)
		return "", -1
	}
	if out, code := run("show full-configuration"); code != 0 || !strings.Contains(out, "echo: show full-configuration") {
		t.Fatalf("ssh: status %d, output %q", code, out)
	}
	if out, code := run("fail here"); code != 1 || !strings.Contains(out, "command fail: fail here") {
		t.Fatalf("ssh: status %d, output %q", code, out)
	}
}

func TestSSHLoginGraceTime(t *testing.T) {
	e := testStart(t, func(c *ServerConfig) { c.LoginGraceTime = 300 * time.Millisecond })
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	// A connection that never authenticates is dropped.
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.Copy(io.Discard, raw); err != nil {
		t.Fatalf("not dropped: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("dropped after %v", d)
	}
	// A session outlives the grace time.
	p := testOpenPTY(t, e.mustDial(t, "admin", gossh.Password("admin-password")), "")
	p.expect("t # ")
	time.Sleep(500 * time.Millisecond)
	p.send("still here\r")
	p.expect("echo: still here")
}
