package queue

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Enqueue and dequeue on the relay's hot path, beside BenchmarkEnqueue1KiB
// and BenchmarkEnqueueAndDeliver1KiB.

// BenchmarkEnqueue100KiB: 10 concurrent Enqueue calls of 100 KiB messages
// (stored inline in the journal, fsynced before returning).
func BenchmarkEnqueue100KiB(b *testing.B) {
	benchmarkEnqueue(b, msg("bench", strings.Repeat(strings.Repeat("x", 76)+"\r\n", 100<<10/78)))
}

// BenchmarkDequeue1KiB measures the way out of the queue alone: b.N
// messages for one domain are queued first (not timed); then the workers
// start and the clock runs until every message was handed to the
// Deliverer, its body read, and its result recorded in the journal.
func BenchmarkDequeue1KiB(b *testing.B) {
	var recorded atomic.Int64
	dlv := funcDeliverer(func(_ context.Context, j *Job) []Result {
		r, err := j.Open()
		if err == nil {
			io.Copy(io.Discard, r)
			r.Close()
		}
		return allResults(j, Result{Status: Delivered, Code: 250, Text: "Ok"})
	})
	q, err := Open(Options{Dir: b.TempDir(), Deliverer: dlv, Event: func(string, string) {},
		History: func(HistoryRecord) { recorded.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	body := msg("bench", strings.Repeat("x", 1024-len(msg("bench", ""))))
	env := Envelope{From: "a@local.test", Recipients: []string{"b@remote.example"}}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 16 { // concurrent, to share fsyncs: setup only
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := q.Enqueue(env, strings.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	commits := q.Stats().Commits
	b.ResetTimer()
	q.Start()
	for recorded.Load() < int64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	st := q.Stats()
	if c := st.Commits - commits; c > 0 {
		b.ReportMetric(float64(b.N)/float64(c), "results/commit")
	}
}
