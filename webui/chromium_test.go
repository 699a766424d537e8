package webui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/config"
)

// chromium returns the headless browser used by the end-to-end test; it
// is a test dependency (Debian package chromium), so its absence fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed (apt-get install -y chromium); the end-to-end web UI test needs it")
	return ""
}

func chromiumArgs(profile string, extra ...string) []string {
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--ignore-certificate-errors", "--window-size=1200,900"}, extra...)
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// TestChromium renders the login page in headless Chromium (screenshot
// and DOM), then logs in through the real form over the DevTools
// protocol: the browser's own cookie, SameSite and cross-origin handling
// must let the login and the form token through.
func TestChromium(t *testing.T) {
	bin := chromium(t)
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	e.svc.Update("test", "", func(c *config.Config) error { c.System.Global.Hostname = "mx-e2e"; return nil })
	fw := newFakeFirmware()
	e.svc.Firmware = fw
	rebooted := make(chan struct{}, 1)
	e.svc.Reboot = func() { rebooted <- struct{}{} }
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	shot := filepath.Join(dir, "login.png")
	cmd := exec.CommandContext(ctx, bin, chromiumArgs(filepath.Join(dir, "p1"), "--screenshot="+shot, e.base+"/login")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, pngMagic) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	saveArtifact(t, "login.png", png)

	cmd = exec.CommandContext(ctx, bin, chromiumArgs(filepath.Join(dir, "p2"), "--dump-dom", e.base+"/login")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"<title>Log in - mx-e2e - mailgate</title>", `<form method="post" action="/login"`, `name="csrf"`, `type="password"`} {
		if !strings.Contains(string(dom), want) {
			t.Errorf("login page DOM lacks %s:\n%s", want, dom)
		}
	}

	// A real login in the browser.
	b := startCDP(ctx, t, bin, filepath.Join(dir, "p3"))
	sid := b.page(e.base + "/login")
	b.eval(sid, fmt.Sprintf(`document.getElementById("name").value = "admin";
		document.getElementById("password").value = %q;
		document.querySelector("form.box").submit(); true`, testPassword))
	b.waitLoad(sid)
	if path := b.eval(sid, "location.pathname"); path != `"/status"` {
		t.Fatalf("after the login the browser is at %s:\n%s", path, b.text(sid))
	}
	if text := b.text(sid); !strings.Contains(text, "Factory certificate SHA-256") || !strings.Contains(text, "mx-e2e") {
		t.Fatalf("status page:\n%s", text)
	}
	if c := b.eval(sid, "document.cookie"); c != `""` {
		t.Errorf("the session cookie is readable by scripts: %s", c)
	}
	saveArtifact(t, "status.png", b.screenshot(sid))
	// The configuration page and its form token work in the browser too:
	// apply a changed hostname.
	b.navigate(sid, e.base+"/config")
	saveArtifact(t, "config.png", b.screenshot(sid))
	b.eval(sid, `const ta = document.querySelector("textarea");
		ta.value = ta.value.replace('set hostname "mx-e2e"', 'set hostname "mx-browser"');
		document.querySelector("form.config").submit(); true`)
	b.waitLoad(sid)
	if text := b.text(sid); !strings.Contains(text, "Configuration applied as revision") {
		t.Fatalf("apply in the browser:\n%s", text)
	}
	if c, _ := e.svc.Config(); c.System.Global.Hostname != "mx-browser" {
		t.Fatalf("hostname %q after the browser's apply", c.System.Global.Hostname)
	}
	b.navigate(sid, e.base+"/logs")
	saveArtifact(t, "logs.png", b.screenshot(sid))

	// The firmware page shows the version and the partitions, and its
	// upload form streams a file the browser picked into Install (the
	// browser sends the form token before the file).
	b.navigate(sid, e.base+"/firmware")
	if text := b.text(sid); !strings.Contains(text, "mailgate "+admin.Version) || !strings.Contains(text, fw.Status()) {
		t.Fatalf("firmware page:\n%s", text)
	}
	if got := b.eval(sid, `document.querySelectorAll('form.firmware[enctype="multipart/form-data"] input[type=file][name=image]').length`); got != "1" {
		t.Fatalf("firmware upload form: %s", got)
	}
	saveArtifact(t, "firmware.png", b.screenshot(sid))
	header, payload := upgradeFile(t, "v3.1.4", 200<<10)
	upgrade := filepath.Join(dir, "mailgate-amd64.upgrade")
	if err := os.WriteFile(upgrade, append(header, payload...), 0o644); err != nil {
		t.Fatal(err)
	}
	var doc struct{ Root struct{ NodeID int } }
	json.Unmarshal(b.call(sid, "DOM.getDocument", map[string]any{}), &doc)
	var input struct{ NodeID int }
	json.Unmarshal(b.call(sid, "DOM.querySelector", map[string]any{"nodeId": doc.Root.NodeID, "selector": "#image"}), &input)
	b.call(sid, "DOM.setFileInputFiles", map[string]any{"nodeId": input.NodeID, "files": []string{upgrade}})
	b.eval(sid, `document.querySelector('input[name=confirm]').checked = true;
		document.querySelector("form.firmware").requestSubmit(); true`)
	b.waitLoad(sid)
	if text := b.text(sid); !strings.Contains(text, "Firmware v3.1.4 installed. The system is rebooting.") {
		t.Fatalf("upload in the browser:\n%s", text)
	}
	saveArtifact(t, "firmware-installed.png", b.screenshot(sid))
	_, got := fw.Last()
	if !bytes.Equal(got, payload) {
		t.Fatalf("Install received %d bytes, want the %d of the file", len(got), len(payload))
	}
	select {
	case <-rebooted:
	case <-time.After(5 * time.Second):
		t.Fatal("no reboot after the upgrade in the browser")
	}
	b.close()
}

// saveArtifact keeps a screenshot in $WEBUI_ARTIFACTS when set.
func saveArtifact(t *testing.T, name string, data []byte) {
	if !bytes.HasPrefix(data, pngMagic) {
		t.Errorf("%s is not a PNG", name)
	}
	if dir := os.Getenv("WEBUI_ARTIFACTS"); dir != "" {
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
}

// cdpBrowser speaks the DevTools protocol over --remote-debugging-pipe:
// JSON messages ending in NUL, the browser reading fd 3 and writing fd 4.
type cdpBrowser struct {
	t      *testing.T
	cmd    *exec.Cmd
	w      *os.File
	r      *bufio.Reader
	id     int
	events []cdpMessage
}

type cdpMessage struct {
	ID        int             `json:"id"`
	Method    string          `json:"method"`
	SessionID string          `json:"sessionId"`
	Result    json.RawMessage `json:"result"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func startCDP(ctx context.Context, t *testing.T, bin, profile string) *cdpBrowser {
	t.Helper()
	toChrome, ourW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ourR, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, chromiumArgs(profile, "--remote-debugging-pipe", "about:blank")...)
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	fromChrome.Close()
	b := &cdpBrowser{t: t, cmd: cmd, w: ourW, r: bufio.NewReader(ourR)}
	t.Cleanup(func() {
		ourW.Close()
		cmd.Process.Kill()
		cmd.Wait()
		ourR.Close()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", stderr.String())
		}
	})
	return b
}

func (b *cdpBrowser) read() cdpMessage {
	b.t.Helper()
	raw, err := b.r.ReadBytes(0)
	if err != nil {
		b.t.Fatalf("devtools pipe: %v", err)
	}
	var m cdpMessage
	if err := json.Unmarshal(raw[:len(raw)-1], &m); err != nil {
		b.t.Fatalf("devtools message %q: %v", raw, err)
	}
	return m
}

func (b *cdpBrowser) call(session, method string, params any) json.RawMessage {
	b.t.Helper()
	b.id++
	msg := map[string]any{"id": b.id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	raw, _ := json.Marshal(msg)
	if _, err := b.w.Write(append(raw, 0)); err != nil {
		b.t.Fatalf("devtools %s: %v", method, err)
	}
	for {
		m := b.read()
		if m.ID == 0 {
			b.events = append(b.events, m)
			continue
		}
		if m.ID != b.id {
			continue
		}
		if m.Error != nil {
			b.t.Fatalf("devtools %s: %s", method, m.Error.Message)
		}
		return m.Result
	}
}

// waitLoad waits for the next load event of the session's page.
func (b *cdpBrowser) waitLoad(session string) {
	b.t.Helper()
	for {
		for i, m := range b.events {
			if m.Method == "Page.loadEventFired" && m.SessionID == session {
				b.events = b.events[i+1:]
				return
			}
		}
		b.events = nil
		m := b.read()
		if m.ID == 0 {
			b.events = append(b.events, m)
		}
	}
}

// page opens a tab on url and returns its session.
func (b *cdpBrowser) page(url string) string {
	b.t.Helper()
	var target struct{ TargetID string }
	json.Unmarshal(b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}), &target)
	var att struct{ SessionID string }
	json.Unmarshal(b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}), &att)
	b.call(att.SessionID, "Page.enable", map[string]any{})
	b.navigate(att.SessionID, url)
	return att.SessionID
}

func (b *cdpBrowser) navigate(session, url string) {
	b.t.Helper()
	b.events = nil
	b.call(session, "Page.navigate", map[string]any{"url": url})
	b.waitLoad(session)
}

// eval returns the JSON value of a JavaScript expression in the page.
func (b *cdpBrowser) eval(session, expr string) string {
	b.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	json.Unmarshal(b.call(session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}), &res)
	if res.ExceptionDetails != nil {
		b.t.Fatalf("evaluating %q: %s", expr, res.ExceptionDetails.Text)
	}
	return string(res.Result.Value)
}

// text is the page's visible text.
func (b *cdpBrowser) text(session string) string {
	var s string
	json.Unmarshal([]byte(b.eval(session, "document.body.innerText")), &s)
	return s
}

func (b *cdpBrowser) screenshot(session string) []byte {
	b.t.Helper()
	var res struct{ Data string }
	json.Unmarshal(b.call(session, "Page.captureScreenshot", map[string]any{"format": "png"}), &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	return png
}

func (b *cdpBrowser) close() {
	b.call("", "Browser.close", map[string]any{})
}

// TestChromiumBanners shows both login banners in the browser: the text
// as text (markup and all) with its line breaks, and the post-login
// banner accepted through its form.
func TestChromiumBanners(t *testing.T) {
	bin := chromium(t)
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	e.setGlobal(func(g *config.Global) {
		g.PreLoginBanner, g.PreLoginBannerMessage = []string{"admin"}, testBannerText
		g.PostLoginBanner, g.PostLoginBannerMessage = []string{"admin"}, "Changes are audited.\nSecond line."
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := startCDP(ctx, t, bin, filepath.Join(t.TempDir(), "p"))
	sid := b.page(e.base + "/login")
	var text string
	json.Unmarshal([]byte(b.eval(sid, `document.querySelector(".banner").innerText`)), &text)
	if text != testBannerText {
		t.Fatalf("login page banner %q, want %q", text, testBannerText)
	}
	if n := b.eval(sid, `document.querySelectorAll("main script, main b").length`); n != "0" {
		t.Fatalf("the banner's markup became %s elements", n)
	}
	if h := b.eval(sid, `document.querySelector(".banner").getBoundingClientRect().height > 2.5 * parseFloat(getComputedStyle(document.querySelector(".banner")).lineHeight)`); h != "true" {
		t.Error("the banner's lines are not shown on lines of their own")
	}
	saveArtifact(t, "login-banner.png", b.screenshot(sid))
	b.eval(sid, fmt.Sprintf(`document.getElementById("name").value = "admin";
		document.getElementById("password").value = %q;
		document.querySelector("form.box").submit(); true`, testPassword))
	b.waitLoad(sid)
	if path := b.eval(sid, "location.pathname"); path != `"/banner"` {
		t.Fatalf("after the login the browser is at %s:\n%s", path, b.text(sid))
	}
	json.Unmarshal([]byte(b.eval(sid, `document.querySelector(".banner").innerText`)), &text)
	if text != "Changes are audited.\nSecond line." {
		t.Fatalf("post-login banner %q", text)
	}
	saveArtifact(t, "post-login-banner.png", b.screenshot(sid))
	// Declining logs out; the next login shows the banner again.
	b.eval(sid, `document.querySelector('button[form=decline]').click(); true`)
	b.waitLoad(sid)
	if path := b.eval(sid, "location.pathname"); path != `"/login"` || !strings.Contains(b.text(sid), "You have logged out.") {
		t.Fatalf("after declining the browser is at %s:\n%s", path, b.text(sid))
	}
	b.eval(sid, fmt.Sprintf(`document.getElementById("name").value = "admin";
		document.getElementById("password").value = %q;
		document.querySelector("form.box").submit(); true`, testPassword))
	b.waitLoad(sid)
	if path := b.eval(sid, "location.pathname"); path != `"/banner"` {
		t.Fatalf("after the second login the browser is at %s", path)
	}
	b.eval(sid, `document.querySelector('form[action="/banner"] button[type=submit]:not([form])').click(); true`)
	b.waitLoad(sid)
	if path := b.eval(sid, "location.pathname"); path != `"/status"` {
		t.Fatalf("after accepting the browser is at %s:\n%s", path, b.text(sid))
	}
	b.close()
}
