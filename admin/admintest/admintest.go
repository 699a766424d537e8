// Package admintest opens a real administration layer for tests: a store
// and event log in a temporary data directory, the development factory
// profile, cheap password hashing and a clock the test can move.
package admintest

import (
	"sync"
	"testing"
	"time"

	"mailgate/admin"
	"mailgate/eventlog"
	"mailgate/store"
)

// Clock is a settable time source.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at the current time.
func NewClock() *Clock { return &Clock{t: time.Now()} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Open opens a service on dir (nil now: real time). The store and log are
// closed when the test ends, after cleanups registered later.
func Open(t testing.TB, dir string, now func() time.Time) (*admin.Service, *eventlog.Log) {
	t.Helper()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := eventlog.Open(dir, 10000)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close(); db.Close() })
	svc, err := admin.Open(admin.Options{DB: db, Log: lg, Dev: true, HashCost: 4, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return svc, lg
}
