package admin_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/admin/admintest"
	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/store"
)

// openStore opens a store and an event log in a new directory, closed at
// the end of the test, and the options of a service on them: the test
// can write revisions behind the service's back and open it again.
func openStore(t *testing.T) (*store.DB, admin.Options) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	lg, err := eventlog.Open(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return db, admin.Options{DB: db, Log: lg, Dev: true, HashCost: 4}
}

// A revision stored before the open-relay check existed still loads, with
// the rules that made it an open relay disabled in a new revision.
func TestStoredOpenRelayIsDisabledAtLoad(t *testing.T) {
	db, opt := openStore(t)
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

// Revisions stored by the first release (format 1 names) load, show and
// revert in the current names.
func TestFormat1RevisionsReadInNewNames(t *testing.T) {
	db, opt := openStore(t)
	svc, err := admin.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := svc.Config()
	// What the first release stored: no format mark, its own names.
	for _, m := range []string{"config-format-2-from", "config-format-3-from"} {
		if err := db.DeleteMeta(m); err != nil {
			t.Fatal(err)
		}
	}
	base := config.Render(c, true)
	// The factory admin entry as the first release printed it.
	const factoryHosts = "        set trusted-hosts 0.0.0.0/0 ::/0\n"
	if !strings.Contains(base, factoryHosts) {
		t.Fatalf("factory admin entry:\n%s", base)
	}
	base = strings.Replace(base, factoryHosts, "        set trusthost1 0.0.0.0/0\n        set trusthost2 ::/0\n", 1)
	old := strings.Replace(base, "        set trusthost1 0.0.0.0/0\n", "        set trusthost1 192.0.2.0/24\n        unset trusthost2\n        set trusthost3 2001:db8::/32\n", 1) +
		"config mailsetting queue\n    set retry-interval 7\nend\n"
	rev2, err := db.Commit("admin", "old names", old, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Commit("admin", "old names again", base+"config mailsetting relayserver\n    edit \"r\"\n        set server \"relay.example.net\"\n    next\nend\n"+
		"config policy access-control receive\n    edit 1\n        set authenticated yes\n        set action relay\n    next\nend\n", time.Now()); err != nil {
		t.Fatal(err)
	}

	svc, err = admin.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	c, _ = svc.Config()
	if len(c.Mailsetting.RelayServer) != 1 || c.Mailsetting.RelayServer[0].Server != "relay.example.net" ||
		c.Policy.AccessControl.Receive[0].Authenticated != "authenticated" ||
		strings.Join(c.System.Admin[0].TrustedHosts, " ") != "0.0.0.0/0 ::/0" {
		t.Fatalf("latest old revision not read in the new names: %+v %+v %q", c.Mailsetting.RelayServer, c.Policy.AccessControl.Receive, c.System.Admin[0].TrustedHosts)
	}
	r, err := svc.Revision(rev2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Text, "    config mail-queue\n        edit \"default\"\n            set queue-retry 7\n") || strings.Contains(r.Text, "retry-interval") ||
		!strings.Contains(r.Text, "set trusted-hosts 192.0.2.0/24 ::/0 2001:db8::/32\n") || strings.Contains(r.Text, "trusthost") {
		t.Fatalf("revision %d text:\n%s", rev2.ID, r.Text)
	}
	if err := svc.Revert("admin", rev2.ID); err != nil {
		t.Fatal(err)
	}
	if c, _ = svc.Config(); c.System.Mailserver.Queue(false).Retry != 7 || len(c.Mailsetting.RelayServer) != 0 ||
		strings.Join(c.System.Admin[0].TrustedHosts, " ") != "192.0.2.0/24 ::/0 2001:db8::/32" {
		t.Fatalf("revert: queue-retry %d, relays %d, trusted-hosts %q", c.System.Mailserver.Queue(false).Retry, len(c.Mailsetting.RelayServer), c.System.Admin[0].TrustedHosts)
	}
	// New revisions are in the new names and read as they are.
	latest, _ := db.Latest()
	if !strings.Contains(latest.Text, "config system mailserver") || strings.Contains(latest.Text, "mailsetting queue") {
		t.Fatalf("new revision text:\n%s", latest.Text)
	}
}

// Revisions stored in format 2 (queue-* directly in system mailserver)
// load, show and revert with the schedule in mail-queue default; those
// stored since are read as they are.
func TestFormat2RevisionsReadInNewNames(t *testing.T) {
	db, opt := openStore(t)
	svc, err := admin.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := svc.Config()
	// What the previous version stored: format 2 from the start.
	if err := db.DeleteMeta("config-format-3-from"); err != nil {
		t.Fatal(err)
	}
	const queue = "    config mail-queue\n        edit \"default\"\n            set queue-timeout 120\n            set queue-dsn-timeout 5\n" +
		"            set queue-warning 4\n            set queue-retry 15\n        next\n    end\n"
	cur := config.Render(c, true)
	if !strings.Contains(cur, queue) {
		t.Fatalf("factory mail-queue:\n%s", cur)
	}
	v2 := func(retry int) string {
		return strings.Replace(cur, queue, "", 1) + "config system mailserver\n    set queue-retry " + strconv.Itoa(retry) + "\n    set queue-timeout 48\nend\n"
	}
	old, err := db.Commit("admin", "format 2", v2(9), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Commit("admin", "format 2 again", v2(11), time.Now()); err != nil {
		t.Fatal(err)
	}

	svc, err = admin.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	c, _ = svc.Config()
	if q := c.System.Mailserver.MailQueue; len(q) != 1 || q[0].Retry != 11 || q[0].Timeout != 48 {
		t.Fatalf("latest format 2 revision: mail-queue %+v", q)
	}
	r, err := svc.Revision(old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Text, "    config mail-queue\n        edit \"default\"\n            set queue-retry 9\n            set queue-timeout 48\n") {
		t.Fatalf("revision %d text:\n%s", old.ID, r.Text)
	}
	if err := svc.Revert("admin", old.ID); err != nil {
		t.Fatal(err)
	}
	if c, _ = svc.Config(); c.System.Mailserver.Queue(true).Retry != 9 {
		t.Fatalf("revert: %+v", c.System.Mailserver.MailQueue)
	}
	latest, _ := db.Latest()
	if !strings.Contains(latest.Text, "            set queue-retry 9\n") {
		t.Fatalf("new revision text:\n%s", latest.Text)
	}
	// Opened again, the new revision is read as it is.
	if svc, err = admin.Open(opt); err != nil {
		t.Fatal(err)
	}
	if c, _ = svc.Config(); c.System.Mailserver.Queue(false).Retry != 9 {
		t.Fatalf("reopened: %+v", c.System.Mailserver.MailQueue)
	}
}

// The login throttle follows admin-lockout-threshold and
// admin-lockout-duration; their factory values are LoginMaxFailures and
// LoginLockout.
func TestLockoutFollowsConfiguration(t *testing.T) {
	clk := admintest.NewClock()
	svc, _ := admintest.Open(t, t.TempDir(), clk.Now)
	c, _ := svc.Config()
	if g := c.System.Global; g.AdminLockoutThreshold != admin.LoginMaxFailures || time.Duration(g.AdminLockoutDuration)*time.Minute != admin.LoginLockout {
		t.Fatalf("factory lockout %d / %d min", g.AdminLockoutThreshold, g.AdminLockoutDuration)
	}
	if err := svc.Update("admin", "lockout", func(c *config.Config) error {
		c.System.Global.AdminLockoutThreshold, c.System.Global.AdminLockoutDuration = 2, 30
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.9")
	for i := range 2 {
		if svc.LoginThrottled(ip) {
			t.Fatalf("locked after %d failures", i)
		}
		svc.CheckLogin("admin", "wrong", ip, admin.ChannelCLI)
	}
	if !svc.LoginThrottled(ip) {
		t.Fatal("not locked after 2 failures")
	}
	clk.Advance(29 * time.Minute)
	if !svc.LoginThrottled(ip) {
		t.Fatal("lockout shorter than 30 minutes")
	}
	clk.Advance(time.Minute + time.Second)
	if svc.LoginThrottled(ip) {
		t.Fatal("still locked after 30 minutes")
	}
}

// system admin status and access: a disabled administrator cannot log in
// at all, and each channel (cli, gui) only when access lists it.
func TestAdminStatusAndAccess(t *testing.T) {
	svc, lg := admintest.Open(t, t.TempDir(), nil)
	ip := netip.MustParseAddr("192.0.2.9")
	const pw = "Right#Passw0rd"
	h, err := config.HashPassword(pw, svc.Env())
	if err != nil {
		t.Fatal(err)
	}
	set := func(status bool, access ...string) {
		t.Helper()
		if err := svc.Update("admin", "test", func(c *config.Config) error {
			c.System.Admin[0].Password, c.System.Admin[0].Status, c.System.Admin[0].Access = h, status, access
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		svc.ClearLoginFailures(ip)
	}
	set(true, "cli", "gui")
	for _, ch := range []string{admin.ChannelCLI, admin.ChannelGUI} {
		if _, err := svc.CheckLogin("admin", pw, ip, ch); err != nil {
			t.Fatalf("%s login: %v", ch, err)
		}
	}
	set(true, "gui")
	if _, err := svc.CheckLogin("admin", pw, ip, admin.ChannelCLI); err != admin.ErrLoginFailed {
		t.Fatalf("cli login without cli access: %v", err)
	}
	if _, err := svc.CheckLogin("admin", pw, ip, admin.ChannelGUI); err != nil {
		t.Fatalf("gui login: %v", err)
	}
	set(false, "cli", "gui")
	if _, err := svc.CheckLogin("admin", pw, ip, admin.ChannelGUI); err != admin.ErrLoginFailed {
		t.Fatalf("disabled administrator: %v", err)
	}
	lg.Flush()
	for _, want := range []string{"login failed: no cli access", "login failed: account disabled"} {
		evs, err := lg.Query(eventlog.Filter{Subsystem: "admin", Contains: want})
		if err != nil || len(evs) == 0 {
			t.Errorf("no event %q (%v)", want, err)
		}
	}
}
