package webui

import (
	"crypto/tls"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/admin/admintest"
	"mailgate/config"
	"mailgate/eventlog"
)

const testPassword = "Str0ng#Secret1"

type testEnv struct {
	t     *testing.T
	svc   *admin.Service
	log   *eventlog.Log
	srv   *Server
	base  string // https://127.0.0.1:port
	clock *admintest.Clock
}

// newEnv opens a service on a temporary directory and serves the web UI
// on a real TLS listener on 127.0.0.1.
func newEnv(t *testing.T) *testEnv {
	t.Helper()
	clk := admintest.NewClock()
	svc, lg := admintest.Open(t, t.TempDir(), clk.Now)
	svc.HostKeyFingerprint = "SHA256:test-host-key"
	srv := New(Options{Service: svc, Now: clk.Now, FailedLoginDelay: -1})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &testEnv{t: t, svc: svc, log: lg, srv: srv, base: "https://" + l.Addr().String(), clock: clk}
}

// setPassword gives an administrator a password (adding the admin with
// the profile and trusted host when it does not exist).
func (e *testEnv) addAdmin(name, password, profile, trustedHost string) {
	e.t.Helper()
	h, err := config.HashPassword(password, e.svc.Env())
	if err != nil {
		e.t.Fatal(err)
	}
	err = e.svc.Update("test", "admin "+name, func(c *config.Config) error {
		for i := range c.System.Admin {
			if c.System.Admin[i].Name == name {
				c.System.Admin[i].Password = h
				return nil
			}
		}
		if profile == "" {
			profile = "super_admin_prof"
		}
		ad := config.Admin{Name: name, Status: true, Access: []string{"cli", "gui"}, Password: h, AccessProfile: profile, TrustedHosts: []string{trustedHost}}
		if trustedHost == "" {
			ad.TrustedHosts = []string{"0.0.0.0/0", "::/0"}
		}
		c.System.Admin = append(c.System.Admin, ad)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// browser is an HTTP client with a cookie jar that follows redirects.
type browser struct {
	e    *testEnv
	c    *http.Client
	last string // body of the last page
	url  string // final URL of the last request
}

func (e *testEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{
		Jar:       jar,
		Timeout:   20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	b.last, b.url = string(body), resp.Request.URL.Path
	return resp, b.last
}

func (b *browser) get(path string) (int, string) {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.base+path, nil)
	resp, body := b.do(req)
	return resp.StatusCode, body
}

// post submits a form; the form token of the last page is added unless
// form sets "csrf".
func (b *browser) post(path string, form url.Values) (int, string) {
	b.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if !form.Has("csrf") {
		form.Set("csrf", formToken(b.last))
	}
	req, _ := http.NewRequest("POST", b.e.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := b.do(req)
	return resp.StatusCode, body
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

func formToken(page string) string {
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// login logs in through the form and returns the final status and page.
func (b *browser) login(name, password string) (int, string) {
	b.e.t.Helper()
	b.get("/login")
	return b.post("/login", url.Values{"name": {name}, "password": {password}})
}

func (b *browser) mustLogin(name, password string) {
	b.e.t.Helper()
	code, body := b.login(name, password)
	if code != 200 || b.url != "/status" {
		b.e.t.Fatalf("login %s: %d at %s:\n%s", name, code, b.url, body)
	}
}

// events returns the event log messages (user, message) after a flush.
func (e *testEnv) events() []eventlog.Event {
	e.t.Helper()
	e.log.Flush()
	evs, err := e.log.Query(eventlog.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func (e *testEnv) hasEvent(user, msg string) bool {
	for _, ev := range e.events() {
		if ev.User == user && strings.Contains(ev.Message, msg) {
			return true
		}
	}
	return false
}

func textarea(page string) string {
	i := strings.Index(page, "<textarea")
	if i < 0 {
		return ""
	}
	page = page[i:]
	page = page[strings.Index(page, ">")+1:]
	page = strings.TrimPrefix(page, "\n")
	return html.UnescapeString(page[:strings.Index(page, "</textarea>")])
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
