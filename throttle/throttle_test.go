package throttle

import (
	"testing"
	"time"
)

func TestLockout(t *testing.T) {
	var l Lockout[string]
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if d := l.Fail("a", now, 4, time.Minute); d != 0 {
			t.Fatalf("failure %d locked out for %v", i+1, d)
		}
	}
	if d := l.Fail("a", now, 4, time.Minute); d != time.Minute || !l.Locked("a", now) || l.Locked("b", now) {
		t.Fatalf("fourth failure: %v, locked %v", d, l.Locked("a", now))
	}
	if l.Locked("a", now.Add(time.Minute)) {
		t.Fatal("still locked after the lockout")
	}
	// The next lockout doubles; failures outside the window do not count.
	now = now.Add(time.Minute)
	l.Fail("a", now, 4, time.Minute)
	now = now.Add(Window)
	for i := 0; i < 3; i++ {
		l.Fail("a", now, 4, time.Minute)
	}
	if d := l.Fail("a", now, 4, time.Minute); d != 2*time.Minute {
		t.Fatalf("second lockout %v, want 2m", d)
	}
	// Success clears the count but not the level; a quiet period does.
	now = now.Add(2 * time.Minute)
	l.Fail("a", now, 4, time.Minute)
	l.Success("a")
	for i := 0; i < 3; i++ {
		l.Fail("a", now, 4, time.Minute)
	}
	if l.Locked("a", now) {
		t.Fatal("locked after 3 failures following a success")
	}
	if d := l.Fail("a", now, 4, time.Minute); d != 4*time.Minute {
		t.Fatalf("third lockout %v, want 4m", d)
	}
	now = now.Add(4*time.Minute + MaxLockout + time.Second)
	for i := 0; i < 3; i++ {
		l.Fail("a", now, 4, time.Minute)
	}
	if d := l.Fail("a", now, 4, time.Minute); d != time.Minute {
		t.Fatalf("after a quiet period %v, want 1m", d)
	}
}
