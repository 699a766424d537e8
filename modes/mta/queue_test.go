package mta

import (
	"testing"
	"time"

	"mailgate/config"
	"mailgate/config/configtest"
	"mailgate/queue"
)

// The queue's schedule for a destination follows system mailserver
// mail-queue: incoming for protected domains, outgoing for the others,
// default where that entry is absent; queue-dsn-timeout 0 is one attempt.
func TestScheduleFollowsMailQueue(t *testing.T) {
	c := configtest.Apply(t, config.Factory(config.FactoryOptions{}), `config domain
edit example.com
set smtp-server 192.0.2.25
next
end
config system mailserver
config mail-queue
edit default
set queue-timeout 72
set queue-dsn-timeout 2
set queue-warning 6
set queue-retry 20
next
edit incoming
set queue-timeout 24
set queue-dsn-timeout 0
set queue-warning 0
set queue-retry 5
next
end
set deadmail-expiry 7
end
`)
	h := time.Hour
	for _, tc := range []struct {
		domain string
		want   queue.Schedule
	}{
		{"example.com", queue.Schedule{RetryInterval: 5 * time.Minute, MaxAge: 24 * h, DSNMaxAge: queue.OneAttempt}},
		{"EXAMPLE.com.", queue.Schedule{RetryInterval: 5 * time.Minute, MaxAge: 24 * h, DSNMaxAge: queue.OneAttempt}},
		{"other.example", queue.Schedule{RetryInterval: 20 * time.Minute, WarningAfter: 6 * h, MaxAge: 72 * h, DSNMaxAge: 48 * h}},
	} {
		if got := schedule(c, tc.domain); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.domain, got, tc.want)
		}
	}
	c = configtest.Apply(t, c, "config system mailserver\nconfig mail-queue\nedit outgoing\nset queue-retry 60\nnext\nend\nend\n")
	if got := schedule(c, "other.example"); got.RetryInterval != time.Hour || got.MaxAge != 120*h || got.DSNMaxAge != 5*24*h {
		t.Errorf("outgoing entry with factory values but queue-retry: %+v", got)
	}
}
