package config_test

import (
	"strings"
	"testing"

	"mailgate/config"
)

// The factory has the mail-queue entry default; the only entries are
// default, incoming and outgoing; Queue picks the entry of a direction,
// else default.
func TestMailQueueEntries(t *testing.T) {
	c := config.Factory(factoryOpts(false))
	if q := c.System.Mailserver.MailQueue; len(q) != 1 || q[0] != (config.MailQueue{Name: "default", Timeout: 120, DSNTimeout: 5, Warning: 4, Retry: 15}) {
		t.Fatalf("factory mail-queue %+v", q)
	}
	e := config.NewEditor(c, testEnv())
	run(t, e, "config system mailserver\nconfig mail-queue")
	for _, bad := range []string{"edit other", "edit Default", "edit 1"} {
		if _, err := exec(e, bad); err == nil || !strings.Contains(err.Error(), "the entries are default, incoming, outgoing") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	run(t, e, "edit outgoing\nset queue-retry 60\nnext\nedit default\nset queue-retry 20\nnext\nend\nend")
	m := e.Work().System.Mailserver
	if q := m.Queue(false); q.Name != "outgoing" || q.Retry != 60 || q.Timeout != 120 {
		t.Errorf("outgoing: %+v", q)
	}
	if q := m.Queue(true); q.Name != "default" || q.Retry != 20 {
		t.Errorf("incoming without its entry: %+v", q)
	}
	if err := config.Validate(e.Work(), testEnv()); err != nil {
		t.Fatal(err)
	}
	// A rename to a name that is not an entry is refused as well.
	e = config.NewEditor(e.Work(), testEnv())
	run(t, e, "config system mailserver\nconfig mail-queue")
	if _, err := exec(e, "rename outgoing to elsewhere"); err == nil {
		t.Error("rename to elsewhere accepted")
	}
}

// The next-retry budget is checked for every mail-queue entry.
func TestMailQueueRetryBudget(t *testing.T) {
	c := config.Factory(factoryOpts(false))
	c.Mailsetting.StartTLS.Fallback = "next-retry"
	c.System.Mailserver.MailQueue = append(c.System.Mailserver.MailQueue, config.MailQueue{Name: "incoming", Timeout: 1, Retry: 1440, DSNTimeout: 5})
	if err := config.Validate(c, testEnv()); err != nil {
		t.Fatalf("3 attempts (0, 5m, 1h): %v", err)
	}
}
