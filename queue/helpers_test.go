package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// attempt is a Job as a fake Deliverer saw it.
type attempt struct {
	job  Job
	body []byte
	err  error // reading the body
}

// fakeDeliverer records jobs and answers with fn (Delivered when nil).
type fakeDeliverer struct {
	mu   sync.Mutex
	fn   func(ctx context.Context, j *Job, body []byte) []Result
	seen []attempt
	ch   chan attempt // when set, every attempt is also sent here
}

func (d *fakeDeliverer) Deliver(ctx context.Context, j *Job) []Result {
	var a attempt
	a.job = *j
	r, err := j.Open()
	if err == nil {
		a.body, a.err = io.ReadAll(r)
		r.Close()
	} else {
		a.err = err
	}
	d.mu.Lock()
	d.seen = append(d.seen, a)
	fn, ch := d.fn, d.ch
	d.mu.Unlock()
	if ch != nil {
		ch <- a
	}
	if fn != nil {
		return fn(ctx, j, a.body)
	}
	return allResults(j, Result{Status: Delivered, Code: 250, Enhanced: "2.0.0", Text: "Ok: queued", Host: "mx." + j.Domain, TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256"})
}

func (d *fakeDeliverer) attempts() []attempt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]attempt(nil), d.seen...)
}

func (d *fakeDeliverer) setFn(fn func(ctx context.Context, j *Job, body []byte) []Result) {
	d.mu.Lock()
	d.fn = fn
	d.mu.Unlock()
}

func allResults(j *Job, r Result) []Result {
	var out []Result
	for _, rc := range j.Rcpts {
		r.Rcpt = rc
		out = append(out, r)
	}
	return out
}

// recorder collects history records and events.
type recorder struct {
	mu     sync.Mutex
	hist   []HistoryRecord
	events []string
}

func (r *recorder) history(h HistoryRecord) {
	r.mu.Lock()
	r.hist = append(r.hist, h)
	r.mu.Unlock()
}

func (r *recorder) event(level, msg string) {
	r.mu.Lock()
	r.events = append(r.events, level+": "+msg)
	r.mu.Unlock()
}

func (r *recorder) histories() []HistoryRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]HistoryRecord(nil), r.hist...)
}

func (r *recorder) eventsMatching(s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if strings.Contains(e, s) {
			out = append(out, e)
		}
	}
	return out
}

// env is a queue under test with its fakes.
type env struct {
	t     *testing.T
	dir   string
	clock *clock
	dlv   *fakeDeliverer
	rec   *recorder
	sched Schedule
	opt   func(*Options)
	q     *Queue
}

func newEnv(t *testing.T, opt func(*Options)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: newClock(), dlv: &fakeDeliverer{}, rec: &recorder{},
		sched: Schedule{RetryInterval: 15 * time.Minute, WarningAfter: 4 * time.Hour, MaxAge: 120 * time.Hour}, opt: opt}
	e.open()
	t.Cleanup(func() {
		if e.q != nil {
			e.q.Close()
		}
	})
	return e
}

func (e *env) options() Options {
	o := Options{
		Dir:       e.dir,
		Deliverer: e.dlv,
		Schedule:  func(string) Schedule { return e.sched },
		Hostname:  func() string { return "mg.test" },
		History:   e.rec.history,
		Event:     e.rec.event,
		Workers:   4,
		PerDomain: 2,
		Now:       e.clock.Now,
	}
	if e.opt != nil {
		e.opt(&o)
	}
	return o
}

func (e *env) open() *Queue {
	e.t.Helper()
	q, err := Open(e.options())
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.q = q
	return q
}

// reopen closes the queue cleanly and opens it again.
func (e *env) reopen() *Queue {
	e.t.Helper()
	if err := e.q.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	e.q = nil
	return e.open()
}

// crash drops the queue without its final checkpoint and opens it again.
func (e *env) crash() *Queue {
	e.t.Helper()
	e.q.abandon()
	e.q = nil
	return e.open()
}

func (e *env) enqueue(from string, rcpts []string, body string) string {
	e.t.Helper()
	id, err := e.q.Enqueue(Envelope{From: from, Recipients: rcpts, SessionID: "S1", Received: e.clock.Now()}, strings.NewReader(body))
	if err != nil {
		e.t.Fatalf("Enqueue: %v", err)
	}
	return id
}

func (e *env) get(id string) *Message {
	e.t.Helper()
	m, err := e.q.Get(id)
	if err != nil {
		e.t.Fatalf("Get %s: %v", id, err)
	}
	return m
}

func (e *env) body(id string) string {
	e.t.Helper()
	r, n, err := e.q.Open(id)
	if err != nil {
		e.t.Fatalf("Open %s: %v", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		e.t.Fatalf("reading %s: %v", id, err)
	}
	if int64(len(b)) != n {
		e.t.Fatalf("Open %s: size %d, read %d", id, n, len(b))
	}
	return string(b)
}

// advance moves the fake clock and wakes the scheduler.
func (e *env) advance(d time.Duration) {
	e.clock.Advance(d)
	e.q.Kick()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle waits until no job is waiting or running.
func (e *env) settle() {
	e.t.Helper()
	waitFor(e.t, "an idle queue", func() bool {
		e.q.mu.Lock()
		defer e.q.mu.Unlock()
		return e.q.running == 0 && len(e.q.ready) == 0
	})
}

func msg(subject, body string) string {
	return "From: alice@local.test\r\nTo: bob@remote.example\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@local.test>\r\n\r\n" + body + "\r\n"
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func segFiles(t *testing.T, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "queue", "seg", "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
