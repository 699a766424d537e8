package cli

import (
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"mailgate/config"
)

// bracketedPasteOn precedes the first prompt of an interactive session.
const bracketedPasteOn = "\x1b[?2004h"

// testBanners is a settable ServerConfig.Banners.
type testBanners struct {
	mu        sync.Mutex
	pre, post string
	calls     int
}

func (b *testBanners) get() (string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	return b.pre, b.post
}

func (b *testBanners) set(pre, post string) {
	b.mu.Lock()
	b.pre, b.post = pre, post
	b.mu.Unlock()
}

// dialBanner logs in and returns the client with the banners the server
// sent before authentication.
func (e *testEnv) dialBanner(t *testing.T, user string, auth ...gossh.AuthMethod) (*gossh.Client, []string) {
	t.Helper()
	var banners []string
	cc := e.clientConfig(user, auth)
	cc.BannerCallback = func(msg string) error {
		banners = append(banners, msg)
		return nil
	}
	c, err := gossh.Dial("tcp", e.addr, cc)
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, banners
}

func TestSSHPreLoginBanner(t *testing.T) {
	b := &testBanners{}
	e := testStart(t, func(c *ServerConfig) { c.Banners = b.get })
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	key, line := testKey(t)
	e.acc.add(t, AdminInfo{Name: "keyed", PublicKeys: []string{line}}, "other-password")

	// Off: no banner message at all.
	if _, got := e.dialBanner(t, "admin", gossh.Password("admin-password")); len(got) != 0 {
		t.Fatalf("banner while off: %q", got)
	}
	// On: read afresh for the next connection, with a final line break;
	// the control characters are dropped.
	b.set("Authorised use only.\nAll access is logged.\x1b[2J\x07", "")
	want := "Authorised use only.\nAll access is logged.[2J\n"
	if _, got := e.dialBanner(t, "admin", gossh.Password("admin-password")); len(got) != 1 || got[0] != want {
		t.Fatalf("banner %q, want %q", got, want)
	}
	// Sent before authentication, whatever the method and its outcome.
	if _, got := e.dialBanner(t, "keyed", gossh.PublicKeys(key)); len(got) != 1 || got[0] != want {
		t.Fatalf("public-key login: banner %q", got)
	}
	var seen []string
	_, err := gossh.Dial("tcp", e.addr, &gossh.ClientConfig{
		User:            "admin",
		Auth:            []gossh.AuthMethod{gossh.Password("wrong")},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		BannerCallback:  func(msg string) error { seen = append(seen, msg); return nil },
		Timeout:         5 * time.Second,
	})
	if err == nil || len(seen) != 1 || seen[0] != want {
		t.Fatalf("failed login: %v, banner %q", err, seen)
	}
	// A blank text is no banner.
	b.set(" \n\t", "")
	if _, got := e.dialBanner(t, "admin", gossh.Password("admin-password")); len(got) != 0 {
		t.Fatalf("blank banner sent: %q", got)
	}
}

func TestSSHPostLoginBanner(t *testing.T) {
	b := &testBanners{post: "Welcome to mg1.\nChanges are audited."}
	e := testStart(t, func(c *ServerConfig) { c.Banners = b.get })
	e.acc.add(t, AdminInfo{Name: "admin"}, "admin-password")
	c, pre := e.dialBanner(t, "admin", gossh.Password("admin-password"))
	if len(pre) != 0 {
		t.Fatalf("post-login banner sent before login: %q", pre)
	}

	// Interactive: the banner, then the first prompt.
	p := testOpenPTY(t, c, "")
	got := strings.ReplaceAll(p.expect("t # "), bracketedPasteOn, "")
	if got != "Welcome to mg1.\r\nChanges are audited.\r\nt # " {
		t.Fatalf("start of the session: %q", got)
	}
	p.send("exit\r")
	if code := p.wait(); code != 0 {
		t.Fatalf("status %d", code)
	}

	// A command, with or without PTY, prints only its output.
	if out, errOut, code := testExec(t, c, "show full-configuration", ""); out != "echo: show full-configuration\n" || errOut != "" || code != 0 {
		t.Fatalf("exec: out %q err %q status %d", out, errOut, code)
	}
	if out, _, code := testExec(t, c, "", "whoami\n"); out != "user=admin ro=false interactive=false\n" || code != 0 {
		t.Fatalf("piped: out %q status %d", out, code)
	}
	p = testOpenPTY(t, c, "whoami")
	p.expect("user=admin")
	if code := p.wait(); code != 0 || strings.Contains(p.all(), "Welcome") {
		t.Fatalf("PTY command: status %d, output %q", code, p.all())
	}

	// Read afresh for each session: off now.
	b.set("", "")
	p = testOpenPTY(t, c, "")
	if got := strings.ReplaceAll(p.expect("t # "), bracketedPasteOn, ""); got != "t # " {
		t.Fatalf("banner while off: %q", got)
	}
	p.send("exit\r")
	p.wait()
}

// After the first-boot password change, before the first prompt.
func TestSSHPostLoginBannerAfterPasswordChange(t *testing.T) {
	b := &testBanners{post: "Welcome."}
	e := testStart(t, func(c *ServerConfig) { c.Banners = b.get })
	e.acc.add(t, AdminInfo{Name: "admin"}, "")
	p := testOpenPTY(t, e.mustDial(t, "admin", gossh.Password("")), "")
	first := p.expect("New password: ")
	if strings.Contains(first, "Welcome") {
		t.Fatalf("banner before the password change: %q", first)
	}
	p.send("longpassword1\r")
	p.expect("Confirm password: ")
	p.send("longpassword1\r")
	if got := strings.ReplaceAll(p.expect("t # "), bracketedPasteOn, ""); !strings.HasSuffix(got, "\nWelcome.\r\nt # ") {
		t.Fatalf("after the password change: %q", got)
	}
	p.send("exit\r")
	p.wait()
}

// ServiceBanners reads the committed system global.
func TestServiceBanners(t *testing.T) {
	svc, _, _ := openSSHService(t)
	banners := ServiceBanners(svc)
	if pre, post := banners(); pre != "" || post != "" {
		t.Fatalf("factory: %q %q", pre, post)
	}
	set := func(fn func(g *config.Global)) {
		t.Helper()
		if err := svc.Update("test", "banners", func(c *config.Config) error { fn(&c.System.Global); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set(func(g *config.Global) {
		g.PreLoginBannerMessage, g.PostLoginBannerMessage = "Before.", "After."
	})
	if pre, post := banners(); pre != "" || post != "" {
		t.Fatalf("texts without banners: %q %q", pre, post)
	}
	set(func(g *config.Global) { g.PreLoginBanner = []string{"admin"} })
	if pre, post := banners(); pre != "Before." || post != "" {
		t.Fatalf("pre-login only: %q %q", pre, post)
	}
	set(func(g *config.Global) { g.PreLoginBanner, g.PostLoginBanner = nil, []string{"admin"} })
	if pre, post := banners(); pre != "" || post != "After." {
		t.Fatalf("post-login only: %q %q", pre, post)
	}
}
