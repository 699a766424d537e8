package server

import (
	"strings"
	"testing"
	"time"

	"mailgate/admin/admintest"
	"mailgate/config/configtest"
	"mailgate/eventlog"
	"mailgate/mailstore"
	"mailgate/modes/mta"
	"mailgate/postfixtest"
)

// startMode starts server mode in process with the configuration script
// applied to the factory configuration.
func startMode(t *testing.T, script string) *Mode {
	t.Helper()
	svc, _ := admintest.Open(t, t.TempDir(), nil)
	cur, _ := svc.Config()
	c := configtest.Apply(t, cur.Clone(), "config system global\nset operation-mode server\nend\n"+script)
	if err := svc.Replace("admin", "test setup", c); err != nil {
		t.Fatal(err)
	}
	m, err := Start(Options{Options: mta.Options{DataDir: t.TempDir(), Service: svc, ListenHost: "127.0.0.1",
		SMTPPort: postfixtest.Port(t), SMTPSPort: postfixtest.Port(t), MSAPort: postfixtest.Port(t)},
		POP3Port: postfixtest.Port(t), POP3SPort: postfixtest.Port(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The email retention of a resource profile deletes, in every folder of
// its users, the messages received more than that many days ago; users of
// other profiles keep theirs, and the deletion is logged.
func TestEmailRetention(t *testing.T) {
	m := startMode(t, `config profile resource
edit month
set email-retention 30
next
edit keep
next
end
config domain
edit example.com
config user mail
edit alice
set password Alice-Mailbox-1
set resource-profile month
next
edit bob
set password Bob-Mailbox-1
set resource-profile keep
next
end
next
end
`)
	now := time.Now()
	add := func(account, box, subject string, age time.Duration) {
		t.Helper()
		a, err := m.Store().Account(account)
		if err != nil {
			t.Fatal(err)
		}
		body := "Subject: " + subject + "\r\n\r\nbody\r\n"
		if _, err := a.Append(box, strings.NewReader(body), mailstore.AppendOptions{Date: now.Add(-age)}); err != nil {
			t.Fatal(err)
		}
	}
	const day = 24 * time.Hour
	add("alice@example.com", "INBOX", "old", 40*day)
	add("alice@example.com", "INBOX", "new", 2*day)
	add("alice@example.com", "Sent", "old sent", 31*day)
	add("alice@example.com", "Sent", "recent sent", 29*day)
	add("bob@example.com", "INBOX", "bob old", 400*day)

	if _, err := m.sweepRetention(m.cfg(), now); err != nil {
		t.Fatal(err)
	}
	count := func(account, box string) int {
		t.Helper()
		a, _ := m.Store().Account(account)
		msgs, err := a.Fetch(box, mailstore.AllUIDs, mailstore.FetchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range msgs {
			if now.Sub(msg.Date) > 30*day && account == "alice@example.com" {
				t.Errorf("%s %s keeps a message of %s", account, box, msg.Date)
			}
		}
		return len(msgs)
	}
	if n := count("alice@example.com", "INBOX"); n != 1 {
		t.Errorf("alice INBOX has %d messages, want 1", n)
	}
	if n := count("alice@example.com", "Sent"); n != 1 {
		t.Errorf("alice Sent has %d messages, want 1", n)
	}
	if n := count("bob@example.com", "INBOX"); n != 1 {
		t.Errorf("bob (no retention) has %d messages, want 1", n)
	}
	a, _ := m.Store().Account("alice@example.com")
	if u, err := a.Usage(); err != nil || u.Messages != 2 {
		t.Errorf("alice's usage after the sweep: %+v %v", u, err)
	}
	m.svc.Log().Flush()
	ev, err := m.svc.Log().Query(eventlog.Filter{Subsystem: "mailbox", Contains: "of alice@example.com older than 30 days"})
	if err != nil || len(ev) == 0 {
		t.Errorf("the deletion is not in the event log: %v %v", ev, err)
	}
}
