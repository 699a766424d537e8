package retry

import (
	"slices"
	"testing"
	"time"
)

func TestAttempts(t *testing.T) {
	m := time.Minute
	for _, tc := range []struct {
		interval, maxAge time.Duration
		want             []time.Duration
	}{
		// First retry after 5 minutes, then every interval, the last at queue-timeout.
		{30 * m, time.Hour, []time.Duration{0, 5 * m, 35 * m, 60 * m}},
		{20 * m, time.Hour, []time.Duration{0, 5 * m, 25 * m, 45 * m, 60 * m}},
		{1440 * m, time.Hour, []time.Duration{0, 5 * m, 60 * m}},
		{2 * m, 7 * m, []time.Duration{0, 2 * m, 4 * m, 6 * m, 7 * m}},
		// A deadline before the first retry is due: two attempts.
		{15 * m, 4 * m, []time.Duration{0, 4 * m}},
		{15 * m, 0, []time.Duration{0}},
		{0, time.Hour, nil},
	} {
		if got := slices.Collect(Attempts(tc.interval, tc.maxAge)); !slices.Equal(got, tc.want) {
			t.Errorf("Attempts(%v, %v) = %v, want %v", tc.interval, tc.maxAge, got, tc.want)
		}
	}
	// Stopping early.
	n := 0
	for range Attempts(time.Minute, 720*time.Hour) {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("stopped after %d", n)
	}
}

func TestNext(t *testing.T) {
	r := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		at       time.Duration
		attempts int
		want     time.Duration
	}{
		{0, 1, 5 * time.Minute},                // first retry bounded by First
		{5 * time.Minute, 2, 35 * time.Minute}, // then the interval
		{50 * time.Minute, 3, time.Hour},       // never past the deadline
	} {
		if got := Next(r, r.Add(tc.at), tc.attempts, 30*time.Minute, time.Hour); !got.Equal(r.Add(tc.want)) {
			t.Errorf("Next(at +%v, %d) = +%v, want +%v", tc.at, tc.attempts, got.Sub(r), tc.want)
		}
	}
	// An interval shorter than First is used as is for the first retry.
	if got := Next(r, r, 1, 2*time.Minute, time.Hour); !got.Equal(r.Add(2 * time.Minute)) {
		t.Errorf("short interval: +%v", got.Sub(r))
	}
}
