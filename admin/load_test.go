package admin_test

import (
	"strings"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/store"
)

// A revision stored before the open-relay check existed still loads, with
// the rules that made it an open relay disabled in a new revision.
func TestStoredOpenRelayIsDisabledAtLoad(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lg, err := eventlog.Open(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	opt := admin.Options{DB: db, Log: lg, Dev: true, HashCost: 4}
	svc, err := admin.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := svc.Config()
	text := config.Render(c, true) + "config policy access-control receive\n    edit 4\n        set action relay\n    next\n" +
		"    edit 5\n        set sender-ip-mask 192.0.2.0/24\n        set action relay\n    next\nend\n"
	if _, err := db.Commit("admin", "before the check", text, time.Now()); err != nil {
		t.Fatal(err)
	}

	svc, err = admin.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	c, _ = svc.Config()
	if r := c.Policy.AccessControl.Receive; len(r) != 2 || r[0].Status || !r[1].Status {
		t.Fatalf("receive rules after load: %+v", r)
	}
	revs, _ := db.List()
	if len(revs) != 3 || !strings.Contains(revs[0].Comment, "receive rules [4] disabled: open relay") {
		t.Fatalf("revisions: %+v", revs)
	}
}
