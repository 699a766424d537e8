package config

import (
	"strings"
	"testing"
	"time"
)

// A budget the queue's schedule gives fewer than 3 attempts is refused
// with the count and the attempt times. The ranges of queue-timeout (from 1h)
// and queue-retry cannot make one (see TestValidateRetryBudget), so
// this calls the check directly with a sub-hour deadline.
func TestRetryBudgetTooSmall(t *testing.T) {
	for _, f := range []string{"next-retry", "next-retry-any"} {
		msg := retryBudget(f, 15*time.Minute, 4*time.Minute)
		for _, want := range []string{"fallback " + f, "needs at least 3 delivery attempts", "allows only 2", "(at 0s, 4m0s after receipt)"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q lacks %q", f, msg, want)
			}
		}
	}
	if msg := retryBudget("next-retry", 15*time.Minute, 0); !strings.Contains(msg, "allows only 1 (at 0s after receipt)") {
		t.Errorf("no retry at all: %q", msg)
	}
	// Exactly three attempts (0, 5m, 10m) are enough.
	if msg := retryBudget("next-retry", 15*time.Minute, 10*time.Minute); msg != "" {
		t.Errorf("three attempts refused: %s", msg)
	}
	// Modes that do not alternate need no budget.
	for _, f := range []string{"none", "plain", ""} {
		if msg := retryBudget(f, 15*time.Minute, time.Minute); msg != "" {
			t.Errorf("fallback %q: %s", f, msg)
		}
	}
}
