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

	"mailgate/admin"
	"mailgate/admin/admintest"
	"mailgate/config"
	"mailgate/eventlog"
)

// ---- fakes ----

type fakeAdmin struct {
	info  AdminInfo
	hash  string   // bcrypt; "" is the empty first-boot password
	trust []string // trusted-hosts
}

// fakeAccounts stands in for admin.Service: it checks, logs and counts
// logins the same way (the trusted hosts with admin.TrustedHost), but an
// address stays locked out after lockAfter failures until unlock.
type fakeAccounts struct {
	mu        sync.Mutex
	admins    map[string]fakeAdmin
	idle      time.Duration
	setCalls  []string
	event     func(level, subsystem, user, remote, msg string) // may be nil
	lockAfter int                                              // 0: admin.LoginMaxFailures
	fails     map[netip.Addr]int
	locked    map[netip.Addr]bool
	failures  int // RecordLoginFailure calls
}

func (a *fakeAccounts) Admin(name string) (AdminInfo, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ad, ok := a.admins[name]
	info := ad.info
	info.MustChangePassword = ok && ad.hash == ""
	return info, ok
}

func (a *fakeAccounts) CheckLogin(name, password string, ip netip.Addr) (admin.Access, error) {
	if a.LoginThrottled(ip) {
		return admin.Access{}, admin.ErrLoginThrottled
	}
	a.mu.Lock()
	ad, ok := a.admins[name]
	a.mu.Unlock()
	var reason string
	switch {
	case !ok:
		reason = "unknown user"
	case ad.hash == "" && password != "",
		ad.hash != "" && bcrypt.CompareHashAndPassword([]byte(ad.hash), []byte(password)) != nil:
		reason = "invalid password"
	case a.LoginRefusal(name, ip) != "":
		reason = a.LoginRefusal(name, ip)
	default:
		a.ClearLoginFailures(ip)
		a.log("information", name, ip, "login")
		return admin.Access{Name: name, ReadOnly: ad.info.ReadOnly, MustChangePassword: ad.hash == ""}, nil
	}
	a.RecordLoginFailure(name, ip, reason)
	return admin.Access{}, admin.ErrLoginFailed
}

func (a *fakeAccounts) LoginRefusal(name string, ip netip.Addr) string {
	a.mu.Lock()
	ad, ok := a.admins[name]
	a.mu.Unlock()
	if !ok {
		return "unknown user"
	}
	return admin.LoginRefusal(config.Admin{Name: name, Status: true, Access: []string{admin.ChannelCLI}, TrustedHosts: ad.trust}, ip, admin.ChannelCLI)
}

func (a *fakeAccounts) LoginThrottled(ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.locked[ip]
}

func (a *fakeAccounts) RecordLoginFailure(name string, ip netip.Addr, reason string) {
	a.mu.Lock()
	a.failures++
	lock := false
	if !a.locked[ip] {
		if a.fails == nil {
			a.fails, a.locked = map[netip.Addr]int{}, map[netip.Addr]bool{}
		}
		a.fails[ip]++
		max := a.lockAfter
		if max == 0 {
			max = admin.LoginMaxFailures
		}
		if a.fails[ip] >= max {
			delete(a.fails, ip)
			a.locked[ip], lock = true, true
		}
	}
	a.mu.Unlock()
	a.log("warning", name, ip, "login failed: "+reason)
	if lock {
		a.log("warning", name, ip, "login locked out")
	}
}

func (a *fakeAccounts) ClearLoginFailures(ip netip.Addr) {
	a.mu.Lock()
	delete(a.fails, ip)
	a.mu.Unlock()
}

func (a *fakeAccounts) unlock(ip netip.Addr) {
	a.mu.Lock()
	delete(a.locked, ip)
	a.mu.Unlock()
}

func (a *fakeAccounts) failureCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failures
}

func (a *fakeAccounts) log(level, user string, ip netip.Addr, msg string) {
	if a.event != nil {
		a.event(level, "admin", user, ip.String(), msg)
	}
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
	ad := a.admins[name]
	ad.hash = string(h)
	a.admins[name] = ad
	return nil
}

func (a *fakeAccounts) IdleTimeout() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.idle
}

// add adds an administrator with password ("": the first-boot one) and
// up to three trusted hosts (none: every address).
func (a *fakeAccounts) add(t *testing.T, info AdminInfo, password string, trust ...string) {
	t.Helper()
	ad := fakeAdmin{info: info}
	if password != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		ad.hash = string(h)
	}
	ad.trust = append([]string(nil), trust...)
	a.mu.Lock()
	a.admins[info.Name] = ad
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

// exact counts the events equal to ev.
func (e *fakeEvents) exact(ev string) int {
	n := 0
	for _, s := range e.all() {
		if s == ev {
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
		acc:    &fakeAccounts{admins: map[string]fakeAdmin{}},
		runs:   &fakeRunLog{},
		events: &fakeEvents{},
		served: make(chan error, 1),
	}
	e.acc.event = e.events.record
	cfg := ServerConfig{
		HostKeyPEM: key,
		Accounts:   e.acc,
		NewInterpreter: func(admin string, ro bool) Interpreter {
			return &fakeInterp{admin: admin, readOnly: ro, runs: e.runs}
		},
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
	return gossh.Dial("tcp", e.addr, e.clientConfig(user, auth))
}

// clientConfig logs in as user with auth, checking the server's host key.
func (e *testEnv) clientConfig(user string, auth []gossh.AuthMethod) *gossh.ClientConfig {
	fp := e.srv.HostKeyFingerprint()
	return &gossh.ClientConfig{
		User: user,
		Auth: auth,
		HostKeyCallback: func(_ string, _ net.Addr, key gossh.PublicKey) error {
			if got := gossh.FingerprintSHA256(key); got != fp {
				return fmt.Errorf("host key %s, want %s", got, fp)
			}
			return nil
		},
		Timeout: 5 * time.Second,
	}
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
	// The password login is logged once, by the login check.
	if n := e.events.exact("information|admin|admin|127.0.0.1|login"); n != 1 {
		t.Fatalf("%d login events: %q", n, e.events.all())
	}

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
	k3, _ := testKey(t)
	e.acc.add(t, AdminInfo{Name: "admin1", PublicKeys: []string{"", "garbage", line1}}, "pw-admin-1")
	e.acc.add(t, AdminInfo{Name: "admin2", PublicKeys: []string{line2}}, "pw-admin-2")

	c := e.mustDial(t, "admin1", gossh.PublicKeys(k1))
	if out, _, _ := testExec(t, c, "whoami", ""); !strings.HasPrefix(out, "user=admin1 ") {
		t.Fatalf("whoami: %q", out)
	}
	// A public-key login is logged by the server when the session starts.
	e.events.waitFor(t, "information|admin|admin1|127.0.0.1|logout")
	if n := e.events.exact("information|admin|admin1|127.0.0.1|login"); n != 1 {
		t.Fatalf("%d login events: %q", n, e.events.all())
	}
	// Other keys are refused, and count as one failure per connection.
	if c, err := e.dial("admin1", gossh.PublicKeys(k2, k3)); err == nil {
		c.Close()
		t.Fatal("admin2's key logged in as admin1")
	}
	e.events.waitFor(t, "warning|admin|admin1|127.0.0.1|login failed: public key not accepted")
	if n := e.acc.failureCount(); n != 1 {
		t.Fatalf("%d failures recorded for one connection: %q", n, e.events.all())
	}
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
	e.acc.add(t, AdminInfo{Name: "far", PublicKeys: []string{line}}, "far-password", "10.0.0.0/8")
	e.acc.add(t, AdminInfo{Name: "near"}, "near-password", "10.0.0.0/8", "127.0.0.0/8")

	if c, err := e.dial("far", gossh.Password("far-password")); err == nil {
		c.Close()
		t.Fatal("login from an untrusted host succeeded")
	}
	e.events.waitFor(t, "far|127.0.0.1|login failed: not a trusted host")
	if c, err := e.dial("far", gossh.PublicKeys(k)); err == nil {
		c.Close()
		t.Fatal("public key login from an untrusted host succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.events.count("far|127.0.0.1|login failed: not a trusted host") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("public key from an untrusted host not logged: %q", e.events.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := e.mustDial(t, "near", gossh.Password("near-password"))
	if _, _, code := testExec(t, c, "whoami", ""); code != 0 {
		t.Fatalf("status %d", code)
	}
}

// The server leaves the lockout to Accounts, refuses password and key
// logins while the address is locked out and logs no failure itself.
func TestSSHLockout(t *testing.T) {
	e := testStart(t, nil)
	e.acc.lockAfter = 3
	key, line := testKey(t)
	wrong1, _ := testKey(t)
	wrong2, _ := testKey(t)
	e.acc.add(t, AdminInfo{Name: "admin", PublicKeys: []string{line}}, "right-password")
	ip := netip.MustParseAddr("127.0.0.1")
	login := func(auth gossh.AuthMethod) bool {
		t.Helper()
		c, err := e.dial("admin", auth)
		if err != nil {
			return false
		}
		defer c.Close()
		if _, _, code := testExec(t, c, "whoami", ""); code != 0 {
			t.Fatalf("status %d", code)
		}
		return true
	}
	bad, right := gossh.Password("bad"), gossh.Password("right-password")

	// A password login clears the failures, and so does a key login.
	if login(bad) || login(bad) || !login(right) {
		t.Fatal("two failures must not lock out")
	}
	if login(bad) || login(bad) || !login(gossh.PublicKeys(key)) {
		t.Fatal("two failures must not lock out")
	}
	if login(bad) || login(bad) || !login(right) {
		t.Fatal("a key login did not clear the failures")
	}
	// Several rejected keys on one connection are one failure.
	if login(gossh.PublicKeys(wrong1, wrong2)) {
		t.Fatal("wrong keys accepted")
	}
	e.events.waitFor(t, "login failed: public key not accepted")
	if login(bad) || e.acc.LoginThrottled(ip) {
		t.Fatal("locked out after two failures")
	}
	if login(bad) || !e.acc.LoginThrottled(ip) {
		t.Fatal("not locked out after three failures")
	}
	if n := e.events.count("login locked out"); n != 1 {
		t.Fatalf("%d lockout events", n)
	}
	failures := e.acc.failureCount()
	if login(right) || login(gossh.PublicKeys(key)) {
		t.Fatal("login accepted while locked out")
	}
	e.acc.unlock(ip)
	if !login(gossh.PublicKeys(key)) || !login(right) {
		t.Fatal("login refused after the lockout")
	}
	// Attempts during the lockout were not counted, and every failure was
	// logged exactly once.
	if n := e.acc.failureCount(); n != failures {
		t.Errorf("%d failures recorded during the lockout", n-failures)
	}
	if n := e.events.count("login failed"); n != failures || failures != 9 {
		t.Errorf("%d login failed events, %d failures, want 9: %q", n, failures, e.events.all())
	}
}

// openSSHService opens an admin.Service with a settable clock.
func openSSHService(t *testing.T) (*admin.Service, *eventlog.Log, *admintest.Clock) {
	t.Helper()
	clk := admintest.NewClock()
	svc, lg := admintest.Open(t, t.TempDir(), clk.Now)
	return svc, lg, clk
}

// setAdmin changes the administrator name of svc, adding it if needed.
func setAdmin(t *testing.T, svc *admin.Service, name string, fn func(*config.Admin)) {
	t.Helper()
	err := svc.Update("test", "admin "+name, func(c *config.Config) error {
		for i := range c.System.Admin {
			if c.System.Admin[i].Name == name {
				fn(&c.System.Admin[i])
				return nil
			}
		}
		ad := config.Admin{Name: name, Status: true, Access: []string{"cli", "gui"}, AccessProfile: "super_admin_prof"}
		fn(&ad)
		c.System.Admin = append(c.System.Admin, ad)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ServiceAccounts answers from the committed configuration and leaves the
// login checks to the service.
func TestServiceAccounts(t *testing.T) {
	svc, _, _ := openSSHService(t)
	acc := ServiceAccounts(svc)
	_, line := testKey(t)
	info, ok := acc.Admin("admin")
	if !ok || !info.MustChangePassword || info.ReadOnly || len(info.PublicKeys) != 0 {
		t.Fatalf("factory admin: %+v %v", info, ok)
	}
	if _, ok := acc.Admin("nobody"); ok {
		t.Fatal("unknown admin found")
	}
	// The idle timeout is admin-idle-timeout as committed now.
	if d := acc.IdleTimeout(); d != 5*time.Minute {
		t.Fatalf("factory idle timeout %v", d)
	}
	if err := svc.Update("test", "idle", func(c *config.Config) error {
		c.System.Global.AdminIdleTimeout = 2
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if d := acc.IdleTimeout(); d != 2*time.Minute {
		t.Fatalf("idle timeout %v after set admin-idle-timeout 2", d)
	}
	setAdmin(t, svc, "admin", func(ad *config.Admin) {
		ad.SSHKeys = []string{line}
		ad.TrustedHosts = []string{"192.0.2.0/24", "2001:db8::/32"}
	})
	setAdmin(t, svc, "viewer", func(ad *config.Admin) {
		ad.AccessProfile = "read_only_prof"
		ad.TrustedHosts = []string{"0.0.0.0/0", "::/0"}
	})
	if err := acc.SetPassword("viewer", "viewer-password"); err != nil {
		t.Fatal(err)
	}
	info, _ = acc.Admin("admin")
	if fmt.Sprint(info.PublicKeys) != "["+line+"]" {
		t.Fatalf("keys %q", info.PublicKeys)
	}
	if info, _ := acc.Admin("viewer"); !info.ReadOnly || info.MustChangePassword {
		t.Fatalf("viewer: %+v", info)
	}
	for _, tc := range []struct {
		name, ip string
		want     bool
	}{
		{"admin", "192.0.2.7", true},
		{"admin", "::ffff:192.0.2.7", true},
		{"admin", "192.0.3.7", false},
		{"admin", "2001:db8::1", true},
		{"viewer", "203.0.113.9", true},
		{"viewer", "2001:db8::1", true},
		{"nobody", "192.0.2.7", false},
	} {
		if got := acc.LoginRefusal(tc.name, netip.MustParseAddr(tc.ip)) == ""; got != tc.want {
			t.Errorf("%s from %s: %v", tc.name, tc.ip, got)
		}
	}
	if acc.LoginRefusal("admin", netip.Addr{}) == "" {
		t.Error("unknown address trusted")
	}
	ip := netip.MustParseAddr("192.0.2.7")
	if _, err := acc.CheckLogin("admin", "", ip); err != nil {
		t.Fatalf("first-boot password: %v", err)
	}
	if _, err := acc.CheckLogin("admin", "", netip.MustParseAddr("192.0.3.7")); !errors.Is(err, admin.ErrLoginFailed) {
		t.Fatalf("untrusted host: %v", err)
	}
	if a, err := acc.CheckLogin("viewer", "viewer-password", ip); err != nil || !a.ReadOnly || a.Name != "viewer" {
		t.Fatalf("viewer: %+v %v", a, err)
	}
	for range admin.LoginMaxFailures {
		acc.RecordLoginFailure("viewer", ip, "public key not accepted")
	}
	if !acc.LoginThrottled(ip) || !svc.LoginThrottled(ip) {
		t.Fatal("recorded failures did not lock out")
	}
	if _, err := acc.CheckLogin("viewer", "viewer-password", ip); !errors.Is(err, admin.ErrLoginThrottled) {
		t.Fatalf("locked out: %v", err)
	}
	// Clearing the failures does not end a lockout.
	acc.ClearLoginFailures(ip)
	if !acc.LoginThrottled(ip) {
		t.Fatal("lockout cleared")
	}
}

// Failed logins over SSH and through admin.CheckLogin (as the web UI
// does) share one lockout per address, and each is logged once.
func TestSSHSharedLockout(t *testing.T) {
	svc, lg, clk := openSSHService(t)
	key, line := testKey(t)
	if err := svc.SetPassword("admin", "admin", "right-password"); err != nil {
		t.Fatal(err)
	}
	setAdmin(t, svc, "admin", func(ad *config.Admin) { ad.SSHKeys = []string{line} })
	hostKey, err := testHostKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{
		HostKeyPEM: hostKey,
		Accounts:   ServiceAccounts(svc),
		NewInterpreter: func(user string, ro bool) Interpreter {
			return &fakeInterp{admin: user, readOnly: ro, runs: &fakeRunLog{}}
		},
		Event: func(level, subsystem, user, remote, msg string) {
			lv, err := eventlog.ParseLevel(level)
			if err != nil {
				t.Errorf("event level %q", level)
			}
			svc.Event(lv, subsystem, user, remote, msg)
		},
		FailedAuthDelay: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := testListener(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	e := &testEnv{srv: srv, addr: l.Addr().String()}
	login := func(auth gossh.AuthMethod) bool {
		t.Helper()
		c, err := e.dial("admin", auth)
		if err != nil {
			return false
		}
		defer c.Close()
		if out, _, code := testExec(t, c, "whoami", ""); code != 0 || !strings.HasPrefix(out, "user=admin ") {
			t.Fatalf("whoami: %q status %d", out, code)
		}
		return true
	}
	events := func(contains string) []eventlog.Event {
		t.Helper()
		if err := lg.Flush(); err != nil {
			t.Fatal(err)
		}
		evs, err := lg.Query(eventlog.Filter{Subsystem: "admin", Contains: contains})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	ip := netip.MustParseAddr("127.0.0.1")

	if !login(gossh.Password("right-password")) || !login(gossh.PublicKeys(key)) {
		t.Fatal("login refused")
	}
	for range admin.LoginMaxFailures - 2 {
		if login(gossh.Password("wrong")) {
			t.Fatal("wrong password accepted")
		}
	}
	if svc.LoginThrottled(ip) {
		t.Fatal("locked out before the threshold")
	}
	for range 2 {
		if _, err := svc.CheckLogin("admin", "wrong", ip, admin.ChannelCLI); !errors.Is(err, admin.ErrLoginFailed) {
			t.Fatalf("CheckLogin: %v", err)
		}
	}
	if !svc.LoginThrottled(ip) {
		t.Fatal("SSH and CheckLogin failures are counted apart")
	}
	if login(gossh.Password("right-password")) || login(gossh.PublicKeys(key)) {
		t.Fatal("SSH login accepted while locked out")
	}
	if _, err := svc.CheckLogin("admin", "right-password", ip, admin.ChannelCLI); !errors.Is(err, admin.ErrLoginThrottled) {
		t.Fatalf("CheckLogin while locked out: %v", err)
	}
	clk.Advance(admin.LoginLockout + time.Second)
	if !login(gossh.PublicKeys(key)) {
		t.Fatal("key login refused after the lockout")
	}

	if n := len(events("login failed")); n != admin.LoginMaxFailures {
		t.Errorf("%d login failed events, want %d", n, admin.LoginMaxFailures)
	}
	if n := len(events("login locked out")); n != 1 {
		t.Errorf("%d lockout events, want 1", n)
	}
	// One "login" event per login: the password login's by CheckLogin,
	// the key logins' by the SSH server.
	deadline := time.Now().Add(5 * time.Second)
	for len(events("logout")) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logins := 0
	for _, ev := range events("login") {
		if ev.Message == "login" {
			logins++
		}
	}
	if logins != 3 {
		t.Errorf("%d login events, want 3: %v", logins, events(""))
	}
}

// The session handler only serves the name whose credentials one of our
// handlers checked, whatever the SSH layer reports.
func TestSSHAuthStateGuard(t *testing.T) {
	c := &sshConn{accepted: map[string]string{}}
	authenticated := func(user string) bool {
		_, _, ok := c.authenticated(user)
		return ok
	}
	c.accept("lowpriv", "password")
	if m := c.handshakeDone("admin"); m != "" {
		t.Fatalf("handshake for an unverified name: %q", m)
	}
	if authenticated("admin") || authenticated("lowpriv") {
		t.Fatal("unverified name authenticated")
	}
	c.accept("admin", "publickey")
	if m := c.handshakeDone("admin"); m != "publickey" {
		t.Fatalf("handshake: %q", m)
	}
	if m, _, ok := c.authenticated("admin"); !ok || m != "publickey" || authenticated("lowpriv") {
		t.Fatal("verified name refused")
	}
}

// A session is served for the key the client signed with, checked again
// against the administrator's keys when the session starts: another key
// of the same administrator that was accepted while the client probed
// does not stand in for it.
func TestSSHSessionRechecksSigningKey(t *testing.T) {
	e := testStart(t, nil)
	keyA, lineA := testKey(t)
	keyB, lineB := testKey(t)
	e.acc.add(t, AdminInfo{Name: "admin", PublicKeys: []string{lineA, lineB}}, "pw")
	session := func(c *gossh.Client) int {
		t.Helper()
		_, _, code := testExec(t, c, "whoami", "")
		return code
	}

	// Both keys offered: the client signs with the first one, A.
	c := e.mustDial(t, "admin", gossh.PublicKeys(keyA, keyB))
	e.acc.add(t, AdminInfo{Name: "admin", PublicKeys: []string{lineB}}, "pw")
	if code := session(c); code == 0 {
		t.Fatal("session served after the signing key was removed")
	}
	c.Close()
	e.events.waitFor(t, "login failed: public key not accepted")

	// The signing key still there: served.
	e.acc.add(t, AdminInfo{Name: "admin", PublicKeys: []string{lineA, lineB}}, "pw")
	c = e.mustDial(t, "admin", gossh.PublicKeys(keyA, keyB))
	defer c.Close()
	e.acc.add(t, AdminInfo{Name: "admin", PublicKeys: []string{lineA}}, "pw")
	if code := session(c); code != 0 {
		t.Fatalf("session refused with the signing key present: status %d", code)
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
	// Console.ReadLine prints its prompt on a line and reads standard input.
	if out, _, code := testExec(t, c, "ask", "y\r\n"); out != "Continue? (y/n) \nanswer=y\n" || code != 0 {
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
	want := "echo: one\necho: two\nContinue? (y/n) \nanswer=yes\necho: " + long + "\n"
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
