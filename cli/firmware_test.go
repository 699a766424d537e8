package cli

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"mailgate/admin/admintest"
	"mailgate/eventlog"
	"mailgate/firmware/firmwaretest"
)

// execute restore image downloads an upgrade file over HTTP(S), installs
// it after the question and reboots; a bad URL, an appliance not on its
// image, a failed download and a "no" install nothing.
func TestExecuteRestoreImage(t *testing.T) {
	root := make([]byte, 300000)
	rand.Read(root)
	file := append(firmwaretest.Header(t, "9.9.9-url", "amd64", root), root...)
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		if r.URL.Path != "/mailgate-amd64.upgrade" {
			http.NotFound(w, r)
			return
		}
		w.Write(file)
	}))
	defer srv.Close()
	good := srv.URL + "/mailgate-amd64.upgrade"

	svc, lg := admintest.Open(t, t.TempDir(), nil)
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	if out := run(t, s, con, "execute restore image "+good); !strings.Contains(out, "does not run from the mailgate image") {
		t.Fatalf("not on the image:\n%s", out)
	}
	fw := &firmwaretest.Fake{Arch: "amd64"}
	svc.Firmware = fw
	rebooted := make(chan struct{}, 1)
	svc.Reboot = func() { rebooted <- struct{}{} }

	if out := run(t, s, con, "execute restore image ftp://example.com/x.upgrade"); !strings.Contains(out, "value parse error before 'ftp://example.com/x.upgrade'") {
		t.Fatalf("ftp URL:\n%s", out)
	}
	con.in = []string{"n"}
	run(t, s, con, "execute restore image "+good)
	con.in = []string{"y"}
	if out := run(t, s, con, "execute restore image "+srv.URL+"/missing.upgrade"); !strings.Contains(out, "download: 404 Not Found") {
		t.Fatalf("404:\n%s", out)
	}
	if n := fw.Calls(); n != 0 || gets.Load() != 1 {
		t.Fatalf("%d installs, %d downloads before the good one", n, gets.Load())
	}

	con.in = []string{"y"}
	out := mustRun(t, s, con, "execute restore image "+good)
	if !strings.Contains(out, "Checksum verified.") || !strings.Contains(out, "Firmware 9.9.9-url installed. The system is rebooting.") {
		t.Fatalf("install:\n%s", out)
	}
	if _, got := fw.Last(); string(got) != string(root) {
		t.Fatal("the installed root is not the downloaded one")
	}
	<-rebooted
	lg.Flush()
	evs, _ := lg.Query(eventlog.Filter{Contains: "installed from"})
	if len(evs) != 1 || evs[0].Message != "firmware 9.9.9-url installed from "+good+"; rebooting to try it" || evs[0].User != "admin" {
		t.Fatalf("events %+v", evs)
	}
}
