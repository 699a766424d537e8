package webui

import (
	"html"
	"net/url"
	"strings"
	"testing"

	"mailgate/config"
)

// A banner text with markup, an entity and line breaks.
const (
	testBannerText    = "Authorised use only <b>\"staff\"</b> & contractors.\n<script>alert(1)</script>\nAll access is logged."
	testBannerEscaped = "Authorised use only &lt;b&gt;&#34;staff&#34;&lt;/b&gt; &amp; contractors.\n&lt;script&gt;alert(1)&lt;/script&gt;\nAll access is logged."
)

func (e *testEnv) setGlobal(fn func(g *config.Global)) {
	e.t.Helper()
	if err := e.svc.Update("test", "system global", func(c *config.Config) error { fn(&c.System.Global); return nil }); err != nil {
		e.t.Fatal(err)
	}
}

// bannerOf returns the escaped text of the page's banner, or "".
func bannerOf(page string) (string, bool) {
	const open = `<div class="banner" role="note">`
	i := strings.Index(page, open)
	if i < 0 {
		return "", false
	}
	rest := page[i+len(open):]
	return rest[:strings.Index(rest, "</div>")], true
}

func TestPreLoginBanner(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	if _, page := b.get("/login"); strings.Contains(page, `class="banner"`) {
		t.Fatalf("banner while off:\n%s", page)
	}
	// The text alone does not show it.
	e.setGlobal(func(g *config.Global) { g.PreLoginBannerMessage = testBannerText })
	if _, page := b.get("/login"); strings.Contains(page, "Authorised use only") {
		t.Fatalf("banner shown while pre-login-banner is unset:\n%s", page)
	}
	e.setGlobal(func(g *config.Global) { g.PreLoginBanner = []string{"admin"} })
	code, page := b.get("/login")
	got, ok := bannerOf(page)
	if code != 200 || !ok || got != testBannerEscaped {
		t.Fatalf("login page: %d, banner %q, want %q:\n%s", code, got, testBannerEscaped, page)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "<b>") {
		t.Fatalf("the banner's markup reached the page:\n%s", page)
	}
	if html.UnescapeString(got) != testBannerText {
		t.Fatalf("banner text changed: %q", html.UnescapeString(got))
	}
	// Also after a failed login; the login itself is unchanged.
	if code, page = b.post("/login", url.Values{"name": {"admin"}, "password": {"wrong"}}); code != 401 || !strings.Contains(page, testBannerEscaped) {
		t.Fatalf("failed login: %d:\n%s", code, page)
	}
	b.mustLogin("admin", testPassword)
	if strings.Contains(b.last, "Authorised use only") {
		t.Fatal("pre-login banner shown after login")
	}
}

func TestPostLoginBanner(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	e.addAdmin("viewer", testPassword, "read_only_prof", "")
	e.setGlobal(func(g *config.Global) {
		g.PostLoginBanner, g.PostLoginBannerMessage = []string{"admin"}, testBannerText
	})
	b := e.browser()
	if _, page := b.get("/login"); strings.Contains(page, "Authorised use only") {
		t.Fatal("post-login banner shown on the login page")
	}
	code, page := b.login("admin", testPassword)
	got, ok := bannerOf(page)
	if code != 200 || b.url != "/banner" || !ok || got != testBannerEscaped {
		t.Fatalf("after login: %d at %s, banner %q:\n%s", code, b.url, got, page)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, `href="/config"`) {
		t.Fatalf("banner page has markup of the text or the navigation:\n%s", page)
	}
	if !strings.Contains(page, `action="/banner"`) || !strings.Contains(page, `action="/logout"`) {
		t.Fatalf("banner page lacks accept or decline:\n%s", page)
	}
	// Nothing else is reachable before it is accepted.
	for _, p := range []string{"/status", "/config", "/logs", "/"} {
		if b.get(p); b.url != "/banner" {
			t.Fatalf("%s before accepting: at %s", p, b.url)
		}
	}
	if code, _ = b.post("/config", url.Values{"config": {"x"}}); b.url != "/banner" {
		t.Fatalf("POST /config before accepting: %d at %s", code, b.url)
	}
	// The form token is checked.
	b.get("/banner")
	if code, _ = b.post("/banner", url.Values{"csrf": {"forged"}}); code != 403 {
		t.Fatalf("accept with a forged token: %d", code)
	}
	b.get("/banner")
	if code, page = b.post("/banner", nil); code != 200 || b.url != "/status" || strings.Contains(page, "Authorised use only") {
		t.Fatalf("accept: %d at %s", code, b.url)
	}
	if !e.hasEvent("admin", "post-login banner accepted") {
		t.Error("no event for the accepted banner")
	}
	if b.get("/config"); b.url != "/config" {
		t.Fatalf("after accepting: at %s", b.url)
	}
	if b.get("/banner"); b.url != "/status" {
		t.Fatalf("/banner once accepted: at %s", b.url)
	}

	// A read-only administrator accepts it too; declining logs out.
	v := e.browser()
	if v.login("viewer", testPassword); v.url != "/banner" {
		t.Fatalf("viewer: at %s", v.url)
	}
	if _, page = v.post("/banner", nil); v.url != "/status" {
		t.Fatalf("viewer accept: at %s:\n%s", v.url, page)
	}
	d := e.browser()
	d.login("admin", testPassword)
	if _, page = d.post("/logout", nil); d.url != "/login" || !strings.Contains(page, "You have logged out.") {
		t.Fatalf("decline: at %s", d.url)
	}
	if d.get("/status"); d.url != "/login" {
		t.Fatalf("after declining: at %s", d.url)
	}

	// Turned off meanwhile: the pending banner no longer holds anyone up.
	o := e.browser()
	o.login("admin", testPassword)
	e.setGlobal(func(g *config.Global) { g.PostLoginBanner = nil })
	if o.get("/status"); o.url != "/status" {
		t.Fatalf("banner turned off: at %s", o.url)
	}
	e.browser().mustLogin("admin", testPassword)
}

// The first-boot password change comes first, then the banner.
func TestPostLoginBannerAfterPasswordChange(t *testing.T) {
	e := newEnv(t)
	e.setGlobal(func(g *config.Global) {
		g.PostLoginBanner, g.PostLoginBannerMessage = []string{"admin"}, "Welcome."
	})
	b := e.browser()
	if b.login("admin", ""); b.url != "/password" {
		t.Fatalf("first login: at %s", b.url)
	}
	if b.get("/banner"); b.url != "/password" {
		t.Fatalf("banner before the password change: at %s", b.url)
	}
	code, page := b.post("/password", url.Values{"new": {testPassword}, "confirm": {testPassword}})
	if got, _ := bannerOf(page); code != 200 || b.url != "/banner" || got != "Welcome." || !strings.Contains(page, "Your password has been changed.") {
		t.Fatalf("after the password change: %d at %s:\n%s", code, b.url, page)
	}
	if b.post("/banner", nil); b.url != "/status" {
		t.Fatalf("accept: at %s", b.url)
	}
}
