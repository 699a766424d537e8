package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Each destination domain follows its own schedule: the recipient at the
// domain with the short queue-timeout bounces while the other one is
// still retried.
func TestScheduleIsPerDomain(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Schedule = func(domain string) Schedule {
			if domain == "short.example" {
				return Schedule{RetryInterval: 10 * time.Minute, MaxAge: time.Hour}
			}
			return Schedule{RetryInterval: 30 * time.Minute, MaxAge: 48 * time.Hour}
		}
	})
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		if j.From == "" {
			return allResults(j, Result{Status: Delivered, Code: 250})
		}
		return allResults(j, Result{Status: TempFail, Code: 451, Enhanced: "4.4.1", Text: "no answer"})
	})
	id := e.enqueue("alice@local.test", []string{"a@short.example", "b@long.example"}, msg("per-domain", "x"))
	e.q.Start()
	waitFor(t, "two first attempts", func() bool { return len(e.dlv.attempts()) == 2 })
	e.settle()
	for i := 0; i < 20; i++ {
		e.advance(10 * time.Minute)
		time.Sleep(5 * time.Millisecond)
		e.settle()
	}
	m := e.get(id)
	if r := m.Recipients[0]; r.State != StateBounced || r.LastError == "" {
		t.Fatalf("short.example after 200 minutes: %+v", r)
	}
	if r := m.Recipients[1]; r.State != StateDeferred {
		t.Fatalf("long.example after 200 minutes: %+v", r)
	}
	// 30 minutes apart (the first retry after 5), not every 10.
	if r := m.Recipients[1]; r.Attempts != 8 {
		t.Fatalf("long.example: %d attempts in 200 minutes", r.Attempts)
	}
}

// A message from the null sender is kept as dead mail once it is
// DSNMaxAge old, long before MaxAge; with OneAttempt after its first
// failure.
func TestDSNMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dsnAge   time.Duration
		attempts int // until it is dead
	}{
		{"two hours", 2 * time.Hour, 6}, // 0, 5m, 35m, 65m, 95m, 120m with a 30 minute interval
		{"one attempt", OneAttempt, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.sched = Schedule{RetryInterval: 30 * time.Minute, MaxAge: 120 * time.Hour, DSNMaxAge: tc.dsnAge}
			e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
				return allResults(j, Result{Status: TempFail, Code: 451, Enhanced: "4.4.1", Text: "no answer"})
			})
			id := e.enqueue("", []string{"postmaster@remote.example"}, msg("dsn", "a bounce"))
			norm := e.enqueue("alice@local.test", []string{"bob@remote.example"}, msg("normal", "x"))
			e.q.Start()
			for i := 0; i < 30 && !e.get(id).Dead; i++ {
				waitFor(t, "attempts", func() bool { return e.get(id).Recipients[0].Attempts > 0 })
				e.settle()
				e.advance(5 * time.Minute)
				time.Sleep(5 * time.Millisecond)
				e.settle()
			}
			m := e.get(id)
			if !m.Dead || m.Recipients[0].State != StateBounced || m.Recipients[0].Attempts != tc.attempts {
				t.Fatalf("null-sender message: dead %v, %+v", m.Dead, m.Recipients[0])
			}
			if len(e.rec.eventsMatching("kept as dead mail")) != 1 {
				t.Fatal("no dead mail event")
			}
			if r := e.get(norm).Recipients[0]; r.State != StateDeferred {
				t.Fatalf("the message with a sender follows MaxAge: %+v", r)
			}
		})
	}
}

// Dead mail is deleted DeadMailExpiry after its last attempt, durably and
// with an event; younger dead mail and mail still queued stay.
func TestDeadMailExpiry(t *testing.T) {
	expiry := 7 * 24 * time.Hour
	e := newEnv(t, func(o *Options) { o.DeadMailExpiry = func() time.Duration { return expiry } })
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		if j.Domain == "slow.example" {
			return allResults(j, Result{Status: TempFail, Code: 451, Text: "later"})
		}
		return allResults(j, Result{Status: PermFail, Code: 550, Enhanced: "5.1.1", Text: "no such user"})
	})
	e.sched.MaxAge = 30 * 24 * time.Hour
	e.q.Start()
	old := e.enqueue("", []string{"gone@remote.example"}, msg("old", "a bounce"))
	waitFor(t, "dead mail", func() bool { return e.get(old).Dead })
	e.settle()
	e.advance(3 * 24 * time.Hour)
	young := e.enqueue("", []string{"gone2@remote.example"}, msg("young", "a bounce"))
	waitFor(t, "dead mail", func() bool { return e.get(young).Dead })
	queued := e.enqueue("alice@local.test", []string{"bob@slow.example"}, msg("queued", "x"))
	e.settle()

	e.advance(expiry - 3*24*time.Hour - time.Minute)
	time.Sleep(20 * time.Millisecond)
	e.settle()
	if _, err := e.q.Get(old); err != nil {
		t.Fatalf("dead mail deleted a minute early: %v", err)
	}
	e.advance(2 * time.Minute)
	waitFor(t, "the purge", func() bool { _, err := e.q.Get(old); return errors.Is(err, ErrNotFound) })
	// The event follows the journal's commit of the deletion.
	waitFor(t, "the purge's event", func() bool { return len(e.rec.eventsMatching("deleted")) > 0 })
	if ev := e.rec.eventsMatching("dead mail " + old + " to <gone@remote.example> deleted"); len(ev) != 1 {
		t.Fatalf("events: %q", e.rec.eventsMatching("deleted"))
	}
	e.get(young)
	e.get(queued)

	e.reopen()
	if _, err := e.q.Get(old); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged dead mail back after reopen: %v", err)
	}
	e.get(young)
	e.get(queued)

	// 0 keeps dead mail.
	expiry = 0
	e.q.Start()
	e.advance(365 * 24 * time.Hour)
	time.Sleep(20 * time.Millisecond)
	e.settle()
	e.get(young)
}
