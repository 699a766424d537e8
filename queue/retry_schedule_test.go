package queue

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"mailgate/queue/retry"
)

// TestScheduleFollowsRetryAttempts runs a recipient that always fails
// through the scheduler on the fake clock and checks that its attempts
// happen exactly when retry.Attempts (what the configuration check
// counts) says, and that it bounces after the last one.
func TestScheduleFollowsRetryAttempts(t *testing.T) {
	for _, sch := range []Schedule{
		{RetryInterval: 30 * time.Minute, MaxAge: time.Hour},
		{RetryInterval: 20 * time.Minute, MaxAge: time.Hour},
		{RetryInterval: 24 * time.Hour, MaxAge: time.Hour},
		{RetryInterval: 7 * time.Minute, MaxAge: 2 * time.Hour},
		{RetryInterval: 15 * time.Minute, MaxAge: 4 * time.Minute},
	} {
		t.Run(sch.RetryInterval.String()+"-"+sch.MaxAge.String(), func(t *testing.T) {
			e := newEnv(t, nil)
			e.sched = sch
			var mu sync.Mutex
			var seen []time.Time
			e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
				if j.From == "" { // the bounce
					return allResults(j, Result{Status: Delivered, Code: 250})
				}
				mu.Lock()
				seen = append(seen, e.clock.Now())
				mu.Unlock()
				return allResults(j, Result{Status: TempFail, Code: 451, Enhanced: "4.4.1", Text: "no answer"})
			})
			attempts := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
			t0 := e.clock.Now()
			id := e.enqueue("alice@local.test", []string{"bob@remote.example"}, msg("schedule", "x"))
			e.q.Start()
			for n := 1; ; n++ {
				waitFor(t, "an attempt", func() bool { return attempts() == n })
				e.settle()
				m, err := e.q.Get(id)
				if errors.Is(err, ErrNotFound) {
					break // bounced after this attempt
				}
				must(t, err)
				next := m.Recipients[0].NextAttempt
				if n > 1000 || next.IsZero() {
					t.Fatalf("attempt %d: recipient %+v", n, m.Recipients[0])
				}
				e.advance(next.Sub(e.clock.Now()))
			}
			var got []time.Duration
			for _, at := range seen {
				got = append(got, at.Sub(t0))
			}
			if want := slices.Collect(retry.Attempts(sch.RetryInterval, sch.MaxAge)); !slices.Equal(got, want) {
				t.Fatalf("attempts at %v, retry.Attempts says %v", got, want)
			}
			waitFor(t, "the expiry record", func() bool {
				h := e.rec.histories()
				return len(h) > 0 && h[0].Disposition == DispExpired && h[0].Attempts == len(got)
			})
		})
	}
}
