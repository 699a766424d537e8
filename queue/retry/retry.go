// Package retry is the mail queue's retry schedule as pure functions, for
// the configuration check, which counts with Attempts what a `mailsetting
// queue` budget allows. It imports nothing of mailgate, so that both the
// queue and the configuration can import it. The queue's scheduler
// places retries with Next; queue.TestScheduleFollowsRetryAttempts checks
// on a fake clock that its attempts are exactly those Attempts lists.
package retry

import (
	"iter"
	"time"
)

// First bounds the wait after the first failed attempt of a recipient;
// later retries wait the configured retry interval.
const First = 5 * time.Minute

// Next returns when the attempt after a failed one is due. attempts is the
// number of attempts made so far (1 after the first), at is when the
// failed attempt ended and received when the message came in. The wait is
// interval (at most First after the first attempt), but never past the
// message's deadline received+maxAge: the queue makes one last attempt
// then, and a temporary failure at or past the deadline bounces.
func Next(received, at time.Time, attempts int, interval, maxAge time.Duration) time.Time {
	wait := interval
	if attempts == 1 && wait > First {
		wait = First
	}
	next := at.Add(wait)
	if limit := received.Add(maxAge); next.After(limit) {
		next = limit
	}
	return next
}

// Attempts yields when a recipient that never gets through is tried, as
// times since the message was received, when every attempt fails at once:
// the first on receipt, the retries by Next, the last at maxAge, after
// which the message bounces. interval must be positive (nothing is yielded
// otherwise).
func Attempts(interval, maxAge time.Duration) iter.Seq[time.Duration] {
	return func(yield func(time.Duration) bool) {
		if interval <= 0 {
			return
		}
		var t0 time.Time
		at := t0
		for n := 1; ; n++ {
			if !yield(at.Sub(t0)) || at.Sub(t0) >= maxAge {
				return
			}
			at = Next(t0, at, n, interval, maxAge)
		}
	}
}
