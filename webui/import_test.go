package webui

import (
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The configuration page recognises a FortiMail backup: it shows the
// import's report with Import and Cancel, and only Import commits.
func TestImportFortiMailBackup(t *testing.T) {
	e := newEnv(t)
	e.addAdmin("admin", testPassword, "", "")
	b := e.browser()
	b.mustLogin("admin", testPassword)
	raw, err := os.ReadFile("../config/fortimail/testdata/backup.conf")
	if err != nil {
		t.Fatal(err)
	}
	backup := string(raw)
	before, rev := e.svc.Config()
	fp := e.svc.FactoryFingerprint()

	b.get("/config")
	code, body := b.post("/config", url.Values{"config": {strings.ReplaceAll(backup, "\n", "\r\n")}, "rev": {strconv.FormatUint(rev, 10)}})
	if code != 200 {
		t.Fatalf("report page: %d\n%s", code, body)
	}
	for _, want := range []string{
		"<h1>Import a FortiMail backup</h1>", "FortiMail backup FEVM64-7.04-FW-build0310-230929: ",
		"<h2>Not supported (skipped)</h2>", "config antispam settings", "<h2>Unknown values (skipped)</h2>",
		"<h2>Set again (secrets a backup cannot carry over)</h2>", "<h2>Dropped entries</h2>",
		`name="import" value="yes"`, `<button type="submit" class="danger">Import</button>`, `<a href="/config">Cancel</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("report page lacks %q", want)
		}
	}
	if strings.Count(body, "AK1b3Bz") != 1 || !strings.Contains(textarea(body), "AK1b3Bz") {
		t.Error("an encrypted value is shown outside the submitted text")
	}
	if textarea(body) != backup {
		t.Fatal("the confirmation form does not carry the backup")
	}
	if _, now := e.svc.Config(); now != rev {
		t.Fatal("the report page committed")
	}

	// Import without the form token is refused.
	form := url.Values{"config": {textarea(body)}, "rev": {strconv.FormatUint(rev, 10)}, "import": {"yes"}}
	bad := url.Values{"csrf": {"wrong"}}
	for k, v := range form {
		bad[k] = v
	}
	if code, _ := b.post("/config", bad); code == 200 {
		t.Fatal("import without the form token accepted")
	}
	if _, now := e.svc.Config(); now != rev {
		t.Fatal("committed without the form token")
	}

	// Import, from the confirmation page.
	b.post("/config", url.Values{"config": {strings.ReplaceAll(backup, "\n", "\r\n")}, "rev": {strconv.FormatUint(rev, 10)}})
	code, body = b.post("/config", form)
	if code != 200 || b.url != "/config" || !strings.Contains(body, "Configuration imported from the FortiMail backup as revision") {
		t.Fatalf("import: %d at %s\n%s", code, b.url, body)
	}
	c, now := e.svc.Config()
	if now == rev || len(c.Domain) != 1 || c.Domain[0].Name != "example.com" {
		t.Fatalf("not imported: revision %d, domains %+v", now, c.Domain)
	}
	if r, _ := e.svc.Revision(now); r.Comment != "configuration imported from a FortiMail backup" || r.Admin != "admin" {
		t.Fatalf("revision %+v", r)
	}
	if !reflect.DeepEqual(c.System.Admin, before.System.Admin) || e.svc.FactoryFingerprint() != fp {
		t.Fatal("the administrators or the Factory certificate changed")
	}
	e.browser().mustLogin("admin", testPassword)

	// A backup that does not validate: the reasons, no Import button.
	b.get("/config")
	_, rev = e.svc.Config()
	open := "#config-version=FEVM64-7.04-FW-build0310-230929\nconfig policy access-control receive\n    edit 1\n        set action relay\n    next\nend\n"
	code, body = b.post("/config", url.Values{"config": {open}, "rev": {strconv.FormatUint(rev, 10)}, "import": {"yes"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "not valid; nothing was changed") || !strings.Contains(body, "open relay") || strings.Contains(body, ">Import</button>") {
		t.Fatalf("invalid import: %d\n%s", code, body)
	}
	if _, now := e.svc.Config(); now != rev {
		t.Fatal("an invalid import was committed")
	}
}
