package webui

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/cert"
	"mailgate/cli"
	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/queue"
)

func TestLoginLogout(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()

	// Every page needs a session.
	for _, p := range []string{"/", "/status", "/config", "/config/backup", "/revisions", "/logs", "/queue", "/firmware", "/nope"} {
		if code, _ := b.get(p); code != 200 || b.url != "/login" {
			t.Fatalf("%s without a session: %d at %s", p, code, b.url)
		}
	}
	b.mustLogin("admin", testPassword)
	if !strings.Contains(b.last, "<title>Status - mailgate - mailgate</title>") {
		t.Fatalf("title:\n%s", b.last)
	}
	for _, want := range []string{"mailgate " + admin.Version, "gateway", "SHA256:test-host-key", "Factory certificate SHA-256"} {
		if !strings.Contains(b.last, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	fp, _ := cert.Fingerprint(e.svc.Identity().FactoryCertPEM)
	if !strings.Contains(b.last, fp) {
		t.Error("status page lacks the factory certificate fingerprint")
	}
	if !e.hasEvent("admin", "login") {
		t.Error("no login event")
	}

	// Logout ends the session on the server too.
	jarURL, _ := url.Parse(e.base)
	var token string
	for _, ck := range b.c.Jar.Cookies(jarURL) {
		if ck.Name == sessionCookie {
			token = ck.Value
		}
	}
	if len(token) != 43 {
		t.Fatalf("session token %q", token)
	}
	b.get("/status")
	if code, body := b.post("/logout", nil); code != 200 || b.url != "/login" || !strings.Contains(body, "You have logged out.") {
		t.Fatalf("logout: %d at %s", code, b.url)
	}
	if !e.hasEvent("admin", "logout") {
		t.Error("no logout event")
	}
	replay := e.browser()
	replay.c.Jar.SetCookies(jarURL, []*http.Cookie{{Name: sessionCookie, Value: token, Path: "/"}})
	if replay.get("/status"); replay.url != "/login" {
		t.Fatal("the session token still works after logout")
	}
}

func TestCookieAndHeaders(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest("GET", e.base+"/login", nil)
	resp, page := b.do(req)
	for k, want := range map[string]string{
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'self'",
	} {
		if got := resp.Header.Get(k); !strings.Contains(got, want) {
			t.Errorf("%s: %q", k, got)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "style=") {
		t.Error("the page has scripts or inline styles")
	}
	form := url.Values{"name": {"admin"}, "password": {testPassword}, "csrf": {formToken(page)}}
	req, _ = http.NewRequest("POST", e.base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = b.do(req)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/status" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var set string
	for _, c := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, sessionCookie+"=") {
			set = c
		}
	}
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	// TLS: the factory certificate, TLS 1.2 at least.
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", strings.TrimPrefix(e.base, "https://"), &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("TLS version %x accepted", v)
		}
	}
	c, err := tls.Dial("tcp", strings.TrimPrefix(e.base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := cert.DescribeCert(c.ConnectionState().PeerCertificates[0]).SHA256
	if want, _ := cert.Fingerprint(e.svc.Identity().FactoryCertPEM); got != want {
		t.Errorf("served certificate %s, want the factory one %s", got, want)
	}
}

func TestWrongPasswordAndThrottle(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	for i := 0; i < admin.LoginMaxFailures; i++ {
		name := "admin"
		if i == 0 {
			name = "nobody"
		}
		code, body := b.login(name, "wrong")
		if code != http.StatusUnauthorized || !strings.Contains(body, "Login failed.") {
			t.Fatalf("attempt %d: %d", i, code)
		}
		if strings.Contains(body, "unknown") || strings.Contains(body, "invalid password") {
			t.Fatal("the page tells why the login failed")
		}
	}
	if !e.hasEvent("nobody", "login failed: unknown user") || !e.hasEvent("admin", "login failed: invalid password") {
		t.Error("failures not logged with their reason")
	}
	if !e.hasEvent("admin", "login locked out") {
		t.Error("lockout not logged")
	}
	// Locked out: even the right password is refused.
	if code, body := b.login("admin", testPassword); code != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed logins") {
		t.Fatalf("locked out login: %d", code)
	}
	e.clock.Advance(admin.LoginLockout + time.Second)
	b.mustLogin("admin", testPassword)
}

func TestFailedLoginDelay(t *testing.T) {
	e := newEnv(t)
	e.srv.delay = 150 * time.Millisecond
	b := e.browser()
	b.get("/login")
	start := time.Now()
	b.post("/login", url.Values{"name": {"admin"}, "password": {"x"}})
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("failed login answered after %v", d)
	}
}

func TestTrustHost(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("remote", testPassword, "super_admin_prof", "192.0.2.0/24")
	e.addAdmin("local", testPassword, "super_admin_prof", "127.0.0.0/8")
	b := e.browser()
	if code, body := b.login("remote", testPassword); code != http.StatusUnauthorized || !strings.Contains(body, "Login failed.") {
		t.Fatalf("login from an untrusted host: %d at %s", code, b.url)
	}
	if !e.hasEvent("remote", "login failed: not a trusted host") {
		t.Error("not logged")
	}
	b.mustLogin("local", testPassword)
	// Narrowing the trusted hosts ends the session.
	e.svc.Update("test", "", func(c *config.Config) error {
		for i := range c.System.Admin {
			if c.System.Admin[i].Name == "local" {
				c.System.Admin[i].TrustedHosts = []string{"10.0.0.0/8"}
			}
		}
		return nil
	})
	if b.get("/status"); b.url != "/login" {
		t.Fatal("session survived the trusted host change")
	}
}

// system admin access without gui refuses the web UI login; status
// disable ends a session that is open.
func TestAdminAccessAndStatus(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("cli-only", testPassword, "super_admin_prof", "")
	e.addAdmin("ops", testPassword, "super_admin_prof", "")
	set := func(name string, fn func(*config.Admin)) {
		t.Helper()
		if err := e.svc.Update("test", "", func(c *config.Config) error {
			for i := range c.System.Admin {
				if c.System.Admin[i].Name == name {
					fn(&c.System.Admin[i])
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set("cli-only", func(a *config.Admin) { a.Access = []string{"cli"} })
	b := e.browser()
	if code, _ := b.login("cli-only", testPassword); code != http.StatusUnauthorized {
		t.Fatalf("web UI login without gui access: %d at %s", code, b.url)
	}
	if !e.hasEvent("cli-only", "login failed: no gui access") {
		t.Error("refusal not logged")
	}
	b.mustLogin("ops", testPassword)
	set("ops", func(a *config.Admin) { a.Status = false })
	if b.get("/status"); b.url != "/login" {
		t.Fatal("session survived status disable")
	}
	if !e.hasEvent("ops", "logout: account disabled") {
		t.Error("logout not logged")
	}
}

func TestForcedPasswordChange(t *testing.T) {
	e := newEnv(t) // the factory admin has the empty password
	b := e.browser()
	if code, _ := b.login("admin", "x"); code != http.StatusUnauthorized {
		t.Fatalf("empty password admin accepted a password: %d", code)
	}
	if code, _ := b.login("admin", ""); code != 200 || b.url != "/password" {
		t.Fatalf("first login: %d at %s", code, b.url)
	}
	if !strings.Contains(b.last, "You are forced to change your password") || strings.Contains(b.last, `href="/config"`) {
		t.Fatal("password page")
	}
	for _, p := range []string{"/status", "/config", "/queue"} {
		if b.get(p); b.url != "/password" {
			t.Fatalf("%s reachable before the password change (%s)", p, b.url)
		}
	}
	_, rev := e.svc.Config()
	if code, _ := b.post("/config", url.Values{"config": {"x"}, "rev": {strconv.FormatUint(rev, 10)}}); code != 200 || b.url != "/password" {
		t.Fatalf("apply before the password change: %d at %s", code, b.url)
	}
	for _, c := range []struct{ p1, p2, want string }{
		{"Abcdef#123", "Abcdef#124", "The passwords do not match."},
		{"", "", "The password must not be empty."},
		{"short", "short", "Password too short: at least 8 characters."},
		{"abcdefgh", "abcdefgh", "Password too weak"},
	} {
		b.get("/password")
		code, body := b.post("/password", url.Values{"new": {c.p1}, "confirm": {c.p2}})
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, c.want) {
			t.Fatalf("%q/%q: %d, want %q in:\n%s", c.p1, c.p2, code, c.want, body)
		}
	}
	code, body := b.post("/password", url.Values{"new": {testPassword}, "confirm": {testPassword}})
	if code != 200 || b.url != "/status" || !strings.Contains(body, "Your password has been changed.") {
		t.Fatalf("password change: %d at %s", code, b.url)
	}
	if !e.hasEvent("admin", "password changed at first login") {
		t.Error("not logged")
	}
	if b.get("/config"); b.url != "/config" {
		t.Fatal("config page not reachable after the change")
	}
	b.post("/logout", nil)
	if code, _ := b.login("admin", ""); code != http.StatusUnauthorized {
		t.Fatal("the empty password still works")
	}
	b.mustLogin("admin", testPassword)
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	// Login form without its token.
	b.get("/login")
	if code, _ := b.post("/login", url.Values{"name": {"admin"}, "password": {testPassword}, "csrf": {"forged"}}); code != http.StatusForbidden {
		t.Fatalf("login without the form token: %d", code)
	}
	b.mustLogin("admin", testPassword)
	b.get("/config")
	text := strings.Replace(textarea(b.last), `set hostname "mailgate"`, `set hostname "forged"`, 1)
	_, rev := e.svc.Config()
	form := url.Values{"config": {text}, "rev": {strconv.FormatUint(rev, 10)}}
	for _, tok := range []string{"", "forged", formToken(b.last) + "x"} {
		form.Set("csrf", tok)
		if code, _ := b.post("/config", form); code != http.StatusForbidden {
			t.Fatalf("token %q: %d", tok, code)
		}
	}
	if code, _ := b.post("/logout", url.Values{"csrf": {"forged"}}); code != http.StatusForbidden {
		t.Fatalf("logout without token: %d", code)
	}
	// A cross-site browser request is refused even with the token.
	form.Set("csrf", formToken(b.last))
	req, _ := http.NewRequest("POST", e.base+"/config", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := b.do(req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", resp.StatusCode)
	}
	if _, now := e.svc.Config(); now != rev {
		t.Fatal("a refused request committed")
	}
}

func TestConfigApply(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	b.mustLogin("admin", testPassword)
	b.get("/config")
	_, rev := e.svc.Config()
	orig := textarea(b.last)
	if c, _ := e.svc.Config(); orig != config.Render(c, true) {
		t.Fatal("the textarea is not show full-configuration")
	}
	apply := func(text string, base uint64) (int, string) {
		b.get("/config")
		return b.post("/config", url.Values{"config": {text}, "rev": {strconv.FormatUint(base, 10)}})
	}

	// Invalid: errors with their paths, the text kept, nothing committed.
	bad := strings.Replace(orig, `set default-certificate "Factory"`, `set default-certificate "nope"`, 1)
	code, body := apply(strings.ReplaceAll(bad, "\n", "\r\n"), rev)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "system global: system certificate local &#34;nope&#34; does not exist") {
		t.Fatalf("invalid configuration: %d\n%s", code, body)
	}
	if textarea(body) != bad {
		t.Error("the edited text was not kept")
	}
	code, body = apply(orig+"config system global\n    set no-such-thing 1\nend\n", rev)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "no-such-thing") {
		t.Fatalf("unparsable configuration: %d\n%s", code, body)
	}
	// A rule that makes an open relay: refused, naming the rule.
	code, body = apply(orig+"config policy access-control receive\n    edit 7\n        set action relay\n    next\nend\n", rev)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "policy access-control receive 7: open relay") {
		t.Fatalf("open relay: %d\n%s", code, body)
	}
	if _, now := e.svc.Config(); now != rev {
		t.Fatal("an invalid configuration was committed")
	}

	// Valid: a new revision with the comment "web UI".
	good := strings.Replace(orig, `set hostname "mailgate"`, `set hostname "mx1"`, 1)
	code, body = apply(good, rev)
	if code != 200 || b.url != "/config" || !strings.Contains(body, "Configuration applied as revision") {
		t.Fatalf("apply: %d at %s\n%s", code, b.url, body)
	}
	c, now := e.svc.Config()
	if now == rev || c.System.Global.Hostname != "mx1" {
		t.Fatalf("not applied: revision %d, hostname %s", now, c.System.Global.Hostname)
	}
	if r, _ := e.svc.Revision(now); r.Comment != "web UI" || r.Admin != "admin" {
		t.Fatalf("revision %+v", r)
	}
	if !strings.Contains(body, "<title>Configuration - mx1 - mailgate</title>") {
		t.Error("the title does not follow the hostname")
	}
	// A text based on an older revision is refused.
	if code, _ := apply(orig, rev); code != http.StatusConflict {
		t.Fatalf("stale apply: %d", code)
	}
	// The same text again changes nothing.
	if code, body := apply(good, now); code != 200 || !strings.Contains(body, "No changes") {
		t.Fatalf("unchanged apply: %d", code)
	}
}

type testConsole struct{ bytes.Buffer }

func (*testConsole) ReadLine(string) (string, error)     { return "", io.EOF }
func (*testConsole) ReadPassword(string) (string, error) { return "", io.EOF }
func (*testConsole) Interactive() bool                   { return false }

func TestBackupRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	b.mustLogin("admin", testPassword)
	req, _ := http.NewRequest("GET", e.base+"/config/backup", nil)
	resp, backup := b.do(req)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment; filename=\"mailgate-") {
		t.Fatalf("backup: %d %v", resp.StatusCode, resp.Header)
	}
	header, text, _ := strings.Cut(backup, "\n")
	if header != "#config-version=mailgate-"+admin.Version+":opmode=gateway:user=admin:format=3" {
		t.Fatalf("header %q", header)
	}
	// The same as `execute backup config` in the CLI.
	con := &testConsole{}
	if err := cli.NewSession(e.svc, "admin", false).Run("execute backup config", con); err != nil {
		t.Fatal(err)
	}
	if con.String() != backup {
		t.Fatalf("the CLI backup differs:\n%s\n---\n%s", con.String(), backup)
	}

	// Change things, then apply the backup: the configuration is back.
	e.svc.Update("test", "", func(c *config.Config) error {
		c.System.Global.Hostname = "changed"
		c.Domain = append(c.Domain, config.Domain{Name: "example.net", SMTPServer: "192.0.2.9"})
		return nil
	})
	b.get("/config")
	_, rev := e.svc.Config()
	code, _ := b.post("/config", url.Values{"config": {backup}, "rev": {strconv.FormatUint(rev, 10)}})
	if code != 200 {
		t.Fatalf("restore: %d\n%s", code, b.last)
	}
	if c, _ := e.svc.Config(); config.Render(c, true) != text {
		t.Fatal("the restored configuration differs from the backup")
	}
}

func TestRevisionRevert(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	_, old := e.svc.Config()
	e.svc.Update("admin", "", func(c *config.Config) error { c.System.Global.Hostname = "newer"; return nil })
	b := e.browser()
	b.mustLogin("admin", testPassword)
	code, body := b.get("/revisions")
	if code != 200 || !strings.Contains(body, "config system global") || !strings.Contains(body, "(current)") {
		t.Fatalf("revisions: %d\n%s", code, body)
	}
	_, cur := e.svc.Config()
	code, body = b.get(fmt.Sprintf("/revisions/%d", cur))
	if code != 200 || !strings.Contains(html.UnescapeString(body), `<span class="add">+    set hostname "newer"</span>`) {
		t.Fatalf("diff: %d\n%s", code, body)
	}
	if code, _ := b.get("/revisions/9999"); code != 404 {
		t.Fatalf("missing revision: %d", code)
	}
	path := fmt.Sprintf("/revisions/%d/revert", old)
	code, body = b.get(path)
	if code != 200 || !strings.Contains(body, fmt.Sprintf("replace the current configuration with revision %d", old)) {
		t.Fatalf("confirmation: %d", code)
	}
	// Without the confirmation nothing happens.
	if b.post(path, url.Values{"csrf": {formToken(body)}}); b.url != path {
		t.Fatalf("unconfirmed revert went to %s", b.url)
	}
	code, body = b.post(path, url.Values{"confirm": {"yes"}})
	if code != 200 || b.url != "/revisions" || !strings.Contains(body, fmt.Sprintf("revert to revision %d", old)) {
		t.Fatalf("revert: %d at %s", code, b.url)
	}
	if c, _ := e.svc.Config(); c.System.Global.Hostname != "mailgate" {
		t.Fatal("not reverted")
	}
	if !e.hasEvent("admin", fmt.Sprintf("reverted to revision %d", old)) {
		t.Error("revert not logged")
	}
}

func TestReadOnlyAdmin(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("viewer", testPassword, "read_only_prof", "")
	e.svc.SetQueue(newFakeQueue())
	b := e.browser()
	b.mustLogin("viewer", testPassword)
	if !strings.Contains(b.last, "viewer (read-only)") {
		t.Error("not shown as read-only")
	}
	code, body := b.get("/config")
	if code != 200 || !strings.Contains(body, "readonly>") || strings.Contains(body, ">Apply<") {
		t.Fatalf("config page of a read-only admin: %d", code)
	}
	if code, _ := b.get("/config/backup"); code != 200 {
		t.Fatalf("backup: %d", code)
	}
	_, rev := e.svc.Config()
	b.get("/config")
	tok := formToken(b.last)
	text := strings.Replace(textarea(b.last), `set hostname "mailgate"`, `set hostname "ro"`, 1)
	for path, form := range map[string]url.Values{
		"/config":                              {"config": {text}, "rev": {strconv.FormatUint(rev, 10)}},
		fmt.Sprintf("/revisions/%d/revert", 1): {"confirm": {"yes"}},
		"/queue/retry":                         {},
		"/queue/m1/retry":                      {},
		"/queue/m1/delete":                     {"confirm": {"yes"}},
	} {
		form.Set("csrf", tok)
		if code, body := b.post(path, form); code != http.StatusForbidden || !strings.Contains(body, "Permission denied") {
			t.Errorf("POST %s: %d", path, code)
		}
	}
	if code, _ := b.get("/revisions/1/revert"); code != http.StatusForbidden {
		t.Errorf("revert confirmation: %d", code)
	}
	if _, now := e.svc.Config(); now != rev {
		t.Fatal("a read-only admin committed")
	}
	q, _ := e.svc.Queue()
	if fq := q.(*fakeQueue); len(fq.retried) != 0 || len(fq.msgs) != 2 {
		t.Fatal("a read-only admin changed the queue")
	}
	if !e.hasEvent("viewer", "permission denied") {
		t.Error("refusals not logged")
	}
}

func TestLogs(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	e.svc.Event(eventlog.Error, "smtp", "", "", "first <b>record</b>")
	e.svc.Event(eventlog.Notice, "smtp", "", "", "second record")
	e.log.History(eventlog.History{MsgID: "abc123", From: "a@example.org", To: "b@example.net", Disposition: "Delivered", Classifier: "Access Control Relay", Status: "250 ok"})
	e.log.History(eventlog.History{MsgID: "def456", From: "c@example.org", To: "d@example.net", Disposition: "Bounced", Status: "550 no"})
	b := e.browser()
	b.mustLogin("admin", testPassword)
	code, body := b.get("/logs")
	if code != 200 || !strings.Contains(body, "first &lt;b&gt;record&lt;/b&gt;") {
		t.Fatalf("event log: %d\n%s", code, body)
	}
	if strings.Index(body, "second record") > strings.Index(body, "first &lt;b&gt;") {
		t.Error("not newest first")
	}
	if _, body = b.get("/logs?q=SECOND&n=10"); strings.Contains(body, "first &lt;b&gt;") || !strings.Contains(body, "1 record(s)") {
		t.Errorf("filter:\n%s", body)
	}
	if _, body = b.get("/logs?n=1"); !strings.Contains(body, "1 record(s)") {
		t.Error("count not applied")
	}
	if _, body = b.get("/logs?log=history"); !strings.Contains(body, "abc123") || !strings.Contains(body, "def456") || !strings.Contains(body, "History log") {
		t.Errorf("history log:\n%s", body)
	}
	if _, body = b.get("/logs?log=history&q=disposition%3Dbounced"); strings.Contains(body, "abc123") || !strings.Contains(body, "def456") {
		t.Errorf("history disposition filter:\n%s", body)
	}
}

// fakeQueue is an in-memory admin.MailQueue.
type fakeQueue struct {
	mu      sync.Mutex
	msgs    map[string]*queue.Message
	data    map[string]string
	retried []string
}

func newFakeQueue() *fakeQueue {
	now := time.Now()
	return &fakeQueue{
		msgs: map[string]*queue.Message{
			"m1": {ID: "m1", From: "alice@example.org", Size: 42, Received: now, Recipients: []queue.Recipient{
				{Addr: "bob@example.net", State: "deferred", Attempts: 3, FirstAttempt: now, LastAttempt: now, NextAttempt: now.Add(time.Hour), LastError: "451 4.7.1 <greylisted> try later"},
				{Addr: "carol@example.net", State: "delivered", Attempts: 1},
			}},
			"m2": {ID: "m2", Size: 10, Received: now, Dead: true, Recipients: []queue.Recipient{{Addr: "x@example.com", State: "bounced", Attempts: 5, LastError: "550 no such user"}}},
		},
		data: map[string]string{"m1": "Subject: hello <there>\r\n\r\nbody text\r\n", "m2": "Subject: bounce\r\n\r\nx\r\n"},
	}
}

var errNoMsg = errors.New("no such message")

func (q *fakeQueue) List() ([]queue.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []queue.Message
	for _, id := range []string{"m1", "m2"} {
		if m, ok := q.msgs[id]; ok {
			out = append(out, *m)
		}
	}
	return out, nil
}

func (q *fakeQueue) Get(id string) (*queue.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if m, ok := q.msgs[id]; ok {
		c := *m
		return &c, nil
	}
	return nil, errNoMsg
}

func (q *fakeQueue) Open(id string) (io.ReadCloser, int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d, ok := q.data[id]
	if !ok {
		return nil, 0, errNoMsg
	}
	return io.NopCloser(strings.NewReader(d)), int64(len(d)), nil
}

func (q *fakeQueue) Retry(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.msgs[id]; !ok && id != "" {
		return errNoMsg
	}
	q.retried = append(q.retried, id)
	return nil
}

func (q *fakeQueue) Delete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.msgs[id]; !ok {
		return errNoMsg
	}
	delete(q.msgs, id)
	delete(q.data, id)
	return nil
}

func TestQueue(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	b.mustLogin("admin", testPassword)
	if code, body := b.get("/queue"); code != 200 || !strings.Contains(body, "No mail queue: the mail services are not running.") {
		t.Fatalf("no queue: %d\n%s", code, body)
	}
	if code, _ := b.get("/queue/m1"); code != http.StatusServiceUnavailable {
		t.Fatalf("message without a queue: %d", code)
	}
	q := newFakeQueue()
	e.svc.SetQueue(q)
	code, body := b.get("/queue")
	for _, want := range []string{"2 message(s)", "bob@example.net", "deferred", "451 4.7.1 &lt;greylisted&gt; try later", "carol@example.net", "DEAD", "&lt;&gt;", "550 no such user"} {
		if !strings.Contains(body, want) {
			t.Errorf("queue page lacks %q", want)
		}
	}
	if code != 200 || !strings.Contains(body, "<td>3</td>") {
		t.Errorf("attempts not shown")
	}
	code, body = b.get("/queue/m1")
	if code != 200 || !strings.Contains(body, "Subject: hello &lt;there&gt;\nbody") && !strings.Contains(body, "Subject: hello &lt;there&gt;\n\nbody text") {
		t.Fatalf("view: %d\n%s", code, body)
	}
	req, _ := http.NewRequest("GET", e.base+"/queue/m1/download", nil)
	resp, raw := b.do(req)
	if resp.StatusCode != 200 || raw != q.data["m1"] || resp.Header.Get("Content-Type") != "message/rfc822" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="m1.eml"` {
		t.Fatalf("download: %d %v %q", resp.StatusCode, resp.Header, raw)
	}
	if code, _ := b.get("/queue/nope"); code != 404 {
		t.Fatalf("missing message: %d", code)
	}

	b.get("/queue")
	if code, body := b.post("/queue/m1/retry", nil); code != 200 || b.url != "/queue" || !strings.Contains(body, "scheduled for delivery") {
		t.Fatalf("retry: %d at %s", code, b.url)
	}
	if code, _ := b.post("/queue/retry", nil); code != 200 {
		t.Fatalf("retry all: %d", code)
	}
	if fmt.Sprint(q.retried) != "[m1 ]" {
		t.Fatalf("retried %q", q.retried)
	}
	code, body = b.get("/queue/m2/delete")
	if code != 200 || !strings.Contains(body, "delete message m2") {
		t.Fatalf("delete confirmation: %d", code)
	}
	if code, body := b.post("/queue/m2/delete", url.Values{"confirm": {"yes"}}); code != 200 || !strings.Contains(body, "Message m2 deleted.") {
		t.Fatalf("delete: %d", code)
	}
	if _, ok := q.msgs["m2"]; ok {
		t.Fatal("not deleted")
	}
	for _, msg := range []string{"retry requested for m1", "retry requested for all", "message m2 deleted from the queue", "message m1 downloaded"} {
		if !e.hasEvent("admin", msg) {
			t.Errorf("event %q missing", msg)
		}
	}
}

func TestSessionEnds(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	e.addAdmin("other", testPassword, "", "")
	b := e.browser()
	b.mustLogin("admin", testPassword)
	// Activity keeps the session; idleness ends it (admin-idle-timeout 5).
	for range 3 {
		e.clock.Advance(4 * time.Minute)
		if b.get("/status"); b.url != "/status" {
			t.Fatal("an active session ended")
		}
	}
	e.clock.Advance(6 * time.Minute)
	if _, body := b.get("/status"); b.url != "/login" || !strings.Contains(body, "Your session has ended") {
		t.Fatal("idle session still valid")
	}
	if !e.hasEvent("admin", "logout: idle timeout") {
		t.Error("idle timeout not logged")
	}
	// Another admin changing this admin's password ends the session.
	b.mustLogin("admin", testPassword)
	if err := e.svc.SetPassword("other", "admin", "An0ther#Secret"); err != nil {
		t.Fatal(err)
	}
	if b.get("/status"); b.url != "/login" {
		t.Fatal("session survived a password change")
	}
	b.mustLogin("admin", "An0ther#Secret")
	// Deleting the admin ends it too.
	err := e.svc.Update("other", "", func(c *config.Config) error {
		c.System.Admin = slices.DeleteFunc(c.System.Admin, func(a config.Admin) bool { return a.Name == "admin" })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.get("/status"); b.url != "/login" {
		t.Fatal("session survived the admin's removal")
	}
}

func TestCheckLogin(t *testing.T) {
	e := newEnv(t)
	ip := netipMust("192.0.2.7")
	acc, err := e.svc.CheckLogin("admin", "", ip, admin.ChannelGUI)
	if err != nil || !acc.MustChangePassword || acc.ReadOnly || acc.Name != "admin" {
		t.Fatalf("empty password: %+v %v", acc, err)
	}
	e.addAdmin("admin", testPassword, "", "")
	e.addAdmin("ro", testPassword, "read_only_prof", "192.0.2.0/24")
	if acc, err := e.svc.CheckLogin("ro", testPassword, ip, admin.ChannelGUI); err != nil || !acc.ReadOnly || acc.MustChangePassword {
		t.Fatalf("read-only: %+v %v", acc, err)
	}
	if _, err := e.svc.CheckLogin("ro", testPassword, netipMust("::ffff:198.51.100.1"), admin.ChannelGUI); err != admin.ErrLoginFailed {
		t.Fatalf("untrusted host: %v", err)
	}
	if _, err := e.svc.CheckLogin("admin", "", ip, admin.ChannelGUI); err != admin.ErrLoginFailed {
		t.Fatalf("empty password against a hash: %v", err)
	}
	for range admin.LoginMaxFailures - 1 {
		e.svc.CheckLogin("ghost", "x", ip, admin.ChannelGUI)
	}
	if !e.svc.LoginThrottled(ip) || e.svc.LoginThrottled(netipMust("192.0.2.8")) {
		t.Fatal("throttle")
	}
	if _, err := e.svc.CheckLogin("admin", testPassword, ip, admin.ChannelGUI); err != admin.ErrLoginThrottled {
		t.Fatalf("locked out: %v", err)
	}
	// The lockout doubles: 60 s, then 120 s.
	e.clock.Advance(admin.LoginLockout + time.Second)
	for range admin.LoginMaxFailures {
		e.svc.CheckLogin("ghost", "x", ip, admin.ChannelGUI)
	}
	e.clock.Advance(admin.LoginLockout + time.Second)
	if !e.svc.LoginThrottled(ip) {
		t.Fatal("second lockout not doubled")
	}
	e.clock.Advance(admin.LoginLockout)
	if _, err := e.svc.CheckLogin("admin", testPassword, ip, admin.ChannelGUI); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}

func TestTLSVersions(t *testing.T) {
	e := newEnv(t)
	addr := strings.TrimPrefix(e.base, "https://")
	dial := func(v uint16) error {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(tls.VersionTLS12); err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	// system global ssl-versions applies from the next handshake.
	if err := e.svc.Update("test", "", func(c *config.Config) error {
		c.System.Global.SSLVersions = []string{"tls1_3"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if dial(tls.VersionTLS12) == nil {
		t.Fatal("TLS 1.2 accepted with ssl-versions tls1_3")
	}
	if err := dial(tls.VersionTLS13); err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
}
