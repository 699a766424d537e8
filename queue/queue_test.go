package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailgate/queue/retry"
)

func TestEnqueueDelivered(t *testing.T) {
	e := newEnv(t, nil)
	body := msg("hello", "Hi Bob.")
	id := e.enqueue("alice@local.test", []string{"bob@Remote.Example", "carol@other.example", "dave@remote.example"}, body)
	if len(id) != idLen {
		t.Fatalf("id %q", id)
	}
	m := e.get(id)
	if m.Size != int64(len(body)) || m.From != "alice@local.test" || len(m.Recipients) != 3 || m.Recipients[0].State != StateQueued {
		t.Fatalf("queued message: %+v", m)
	}
	if got := e.body(id); got != body {
		t.Fatalf("body %q", got)
	}
	if len(e.dlv.attempts()) != 0 {
		t.Fatal("delivered before Start")
	}
	e.q.Start()
	waitFor(t, "3 history records", func() bool { return len(e.rec.histories()) == 3 })
	e.settle()

	as := e.dlv.attempts()
	if len(as) != 2 {
		t.Fatalf("%d jobs, want 2 (one per domain)", len(as))
	}
	byDomain := map[string]attempt{}
	for _, a := range as {
		byDomain[a.job.Domain] = a
		if a.err != nil || string(a.body) != body {
			t.Fatalf("job body %q, %v", a.body, a.err)
		}
		if a.job.MsgID != id || a.job.From != "alice@local.test" || a.job.Attempt != 1 || a.job.Size != int64(len(body)) || a.job.PreferPlain {
			t.Fatalf("job %+v", a.job)
		}
	}
	if r := byDomain["remote.example"].job.Rcpts; !slices.Equal(r, []string{"bob@Remote.Example", "dave@remote.example"}) {
		t.Fatalf("remote.example rcpts %v", r)
	}
	if r := byDomain["other.example"].job.Rcpts; !slices.Equal(r, []string{"carol@other.example"}) {
		t.Fatalf("other.example rcpts %v", r)
	}
	for _, h := range e.rec.histories() {
		if h.Disposition != DispDelivered || h.MsgID != id || h.SessionID != "S1" || h.Attempts != 1 ||
			h.Host == "" || h.TLS == "" || !strings.HasPrefix(h.Status, "250 2.0.0") {
			t.Fatalf("history %+v", h)
		}
	}
	if _, err := e.q.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delivery: %v", err)
	}
	// Nothing comes back after a restart.
	e.reopen()
	if l, _ := e.q.List(); len(l) != 0 {
		t.Fatalf("after reopen: %+v", l)
	}
}

func TestIDsSortAndAreUnique(t *testing.T) {
	var g idGen
	now := time.Now()
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 10000; i++ {
		id := g.next(now.Add(time.Duration(i/3000) * time.Second))
		if seen[id] || id <= prev {
			t.Fatalf("id %q after %q", id, prev)
		}
		seen[id] = true
		prev = id
	}
	// A new generator that has seen an ID continues above it.
	var g2 idGen
	g2.observe(prev)
	if id := g2.next(now); id <= prev {
		t.Fatalf("after observe: %q <= %q", id, prev)
	}
	if normID(strings.ToLower(prev)) != prev {
		t.Fatal("normID")
	}
}

// Many concurrent Enqueue calls share commits, and every acknowledged
// message survives a crash.
func TestEnqueueConcurrentGroupCommit(t *testing.T) {
	e := newEnv(t, nil)
	const n = 200
	ids := make([]string, n)
	bodies := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			bodies[i] = msg(fmt.Sprintf("m%d", i), strings.Repeat(fmt.Sprintf("line %d\r\n", i), 50+i))
			id, err := e.q.Enqueue(Envelope{From: "a@local.test", Recipients: []string{"b@remote.example"}}, strings.NewReader(bodies[i]))
			if err != nil {
				errs <- err
				return
			}
			ids[i] = id
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := e.q.Stats()
	t.Logf("%d enqueues: %d commits, %d fsyncs", st.Enqueued, st.Commits, st.Fsyncs)
	if st.Enqueued != n || st.Commits >= n {
		t.Fatalf("stats %+v: commits must be fewer than enqueues", st)
	}
	e.crash()
	l, err := e.q.List()
	must(t, err)
	if len(l) != n {
		t.Fatalf("%d messages after crash, want %d", len(l), n)
	}
	for i, id := range ids {
		if got := e.body(id); got != bodies[i] {
			t.Fatalf("message %d: body differs", i)
		}
	}
}

func TestRetrySchedule(t *testing.T) {
	e := newEnv(t, nil)
	e.sched = Schedule{RetryInterval: 15 * time.Minute, MaxAge: 24 * time.Hour}
	var calls atomic.Int32
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		if calls.Add(1) <= 3 {
			return allResults(j, Result{Status: TempFail, Code: 451, Enhanced: "4.7.1", Text: "greylisted", Host: "mx.remote.example"})
		}
		return allResults(j, Result{Status: Delivered, Code: 250, Text: "ok", Host: "mx.remote.example"})
	})
	t0 := e.clock.Now()
	id := e.enqueue("alice@local.test", []string{"bob@remote.example"}, msg("retry", "x"))
	e.q.Start()
	waitFor(t, "attempt 1", func() bool { return calls.Load() == 1 })
	e.settle()
	r := e.get(id).Recipients[0]
	if r.State != StateDeferred || r.Attempts != 1 || !r.NextAttempt.Equal(t0.Add(retry.First)) || r.LastError != "451 4.7.1 greylisted" ||
		!r.FirstAttempt.Equal(t0) || !r.LastAttempt.Equal(t0) {
		t.Fatalf("after attempt 1: %+v", r)
	}
	e.advance(4 * time.Minute)
	time.Sleep(30 * time.Millisecond)
	if calls.Load() != 1 {
		t.Fatal("retried early")
	}
	e.advance(time.Minute) // t0+5m
	waitFor(t, "attempt 2", func() bool { return calls.Load() == 2 })
	e.settle()
	r = e.get(id).Recipients[0]
	if r.Attempts != 2 || !r.NextAttempt.Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("after attempt 2: %+v", r)
	}
	// The schedule survives a restart.
	e.reopen()
	r = e.get(id).Recipients[0]
	if r.State != StateDeferred || r.Attempts != 2 || !r.NextAttempt.Equal(t0.Add(20*time.Minute)) || !r.FirstAttempt.Equal(t0) {
		t.Fatalf("after reopen: %+v", r)
	}
	e.q.Start()
	e.advance(15 * time.Minute)
	waitFor(t, "attempt 3", func() bool { return calls.Load() == 3 })
	e.settle()
	if a := e.dlv.attempts(); a[len(a)-1].job.Attempt != 3 {
		t.Fatalf("Job.Attempt %d", a[len(a)-1].job.Attempt)
	}
	e.advance(15 * time.Minute)
	waitFor(t, "delivery", func() bool { return len(e.rec.histories()) == 1 })
	h := e.rec.histories()[0]
	if h.Disposition != DispDelivered || h.Attempts != 4 || h.To != "bob@remote.example" {
		t.Fatalf("history %+v", h)
	}
}

func TestExpiryBounces(t *testing.T) {
	e := newEnv(t, nil)
	e.sched = Schedule{RetryInterval: 20 * time.Minute, MaxAge: time.Hour}
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		if j.From == "" {
			return allResults(j, Result{Status: Delivered, Code: 250})
		}
		return allResults(j, Result{Status: TempFail, Code: 421, Enhanced: "4.4.2", Text: "connection dropped", Host: "mx.remote.example"})
	})
	t0 := e.clock.Now()
	id := e.enqueue("alice@local.test", []string{"bob@remote.example"}, msg("expire", "x"))
	e.q.Start()
	for _, step := range []time.Duration{0, 5 * time.Minute, 20 * time.Minute, 20 * time.Minute} {
		e.advance(step)
		waitFor(t, "an attempt", func() bool {
			m, err := e.q.Get(id)
			return err == nil && m.Recipients[0].LastAttempt.Equal(e.clock.Now())
		})
	}
	// t0+45m; the next attempt is capped at t0+1h and, failing, bounces.
	if r := e.get(id).Recipients[0]; !r.NextAttempt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("next attempt %v, want the expiry time", r.NextAttempt)
	}
	e.advance(15 * time.Minute)
	waitFor(t, "expiry and the bounce's delivery", func() bool { return len(e.rec.histories()) == 2 })
	hs := e.rec.histories()
	h := hs[0]
	if h.Disposition != DispExpired || h.MsgID != id || !strings.HasPrefix(h.Status, "5.4.7 Delivery time expired") ||
		!strings.Contains(h.Status, "421 4.4.2 connection dropped") || h.Attempts != 5 {
		t.Fatalf("history %+v", h)
	}
	if hs[1].From != "" || hs[1].To != "alice@local.test" || hs[1].Disposition != DispDelivered {
		t.Fatalf("bounce history %+v", hs[1])
	}
	dsn := lastDSN(t, e.dlv)
	r := dsn.rcpts[0]
	if dsn.action() != "failed" || r.Get("Status") != "5.4.7" || r.Get("Diagnostic-Code") != "smtp; 421 4.4.2 connection dropped" ||
		r.Get("Remote-Mta") != "dns; mx.remote.example" {
		t.Fatalf("DSN fields %v", r)
	}
	if _, err := e.q.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatal("expired message still queued")
	}
}

func TestDelayDSN(t *testing.T) {
	e := newEnv(t, nil)
	e.sched = Schedule{RetryInterval: 30 * time.Minute, WarningAfter: time.Hour, MaxAge: 5 * time.Hour}
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		if j.From == "" {
			return allResults(j, Result{Status: Delivered, Code: 250})
		}
		return allResults(j, Result{Status: TempFail, Code: 451, Enhanced: "4.7.1", Text: "greylisted, try later", Host: "mx.remote.example"})
	})
	t0 := e.clock.Now()
	id := e.enqueue("alice@local.test", []string{"bob@remote.example"}, msg("delay", "x"))
	e.q.Start()
	waitFor(t, "attempt 1", func() bool { return len(e.dlv.attempts()) == 1 })
	e.advance(5 * time.Minute)
	waitFor(t, "attempt 2", func() bool { return len(e.dlv.attempts()) == 2 })
	e.settle()
	if e.get(id).Recipients[0].Warned {
		t.Fatal("warned too early")
	}
	e.advance(30 * time.Minute)
	e.settle()
	e.advance(30 * time.Minute) // t0+65m: past WarningAfter
	waitFor(t, "the delay DSN", func() bool { return len(e.rec.histories()) == 1 })
	e.settle()
	if r := e.get(id).Recipients[0]; !r.Warned || r.State != StateDeferred {
		t.Fatalf("recipient %+v", r)
	}
	d := lastDSN(t, e.dlv)
	if d.job.From != "" || !slices.Equal(d.job.Rcpts, []string{"alice@local.test"}) {
		t.Fatalf("DSN envelope %+v", d.job)
	}
	if d.hdr.Get("From") != "Mail Delivery System <MAILER-DAEMON@mg.test>" || d.hdr.Get("To") != "<alice@local.test>" ||
		d.hdr.Get("Auto-Submitted") != "auto-replied" || !strings.Contains(d.hdr.Get("Subject"), "Delayed") ||
		d.hdr.Get("In-Reply-To") != "<delay@local.test>" {
		t.Fatalf("DSN header %v", d.hdr)
	}
	if d.status.Get("Reporting-Mta") != "dns; mg.test" || d.status.Get("Arrival-Date") != t0.Format(time.RFC1123Z) {
		t.Fatalf("per-message fields %v", d.status)
	}
	r := d.rcpts[0]
	want := map[string]string{
		"Final-Recipient":   "rfc822; bob@remote.example",
		"Action":            "delayed",
		"Status":            "4.7.1",
		"Remote-Mta":        "dns; mx.remote.example",
		"Diagnostic-Code":   "smtp; 451 4.7.1 greylisted, try later",
		"Last-Attempt-Date": t0.Add(65 * time.Minute).Format(time.RFC1123Z),
		"Will-Retry-Until":  t0.Add(5 * time.Hour).Format(time.RFC1123Z),
	}
	for k, v := range want {
		if r.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, r.Get(k), v)
		}
	}
	if !strings.Contains(d.headers, "Subject: delay") || strings.Contains(d.headers, "\r\n\r\n") {
		t.Fatalf("original headers %q", d.headers)
	}
	if !strings.Contains(d.text, "THIS IS A WARNING ONLY") {
		t.Fatalf("text part %q", d.text)
	}
	// One warning only.
	n := len(e.dlv.attempts())
	e.advance(30 * time.Minute)
	waitFor(t, "another attempt", func() bool { return len(e.dlv.attempts()) == n+1 })
	e.settle()
	if len(e.rec.histories()) != 1 {
		t.Fatalf("a second delay DSN: %+v", e.rec.histories())
	}
}

// nobodyUnknown is a next hop that refuses the recipients named nobody…
// (550 5.1.1) and takes the others.
func nobodyUnknown(_ context.Context, j *Job, _ []byte) []Result {
	var out []Result
	for _, r := range j.Rcpts {
		if strings.HasPrefix(r, "nobody") {
			out = append(out, Result{Rcpt: r, Status: PermFail, Code: 550, Enhanced: "5.1.1", Text: "<nobody@remote.example>: user unknown", Host: "mx.remote.example"})
		} else {
			out = append(out, Result{Rcpt: r, Status: Delivered, Code: 250, Enhanced: "2.0.0", Text: "ok", Host: "mx.remote.example"})
		}
	}
	return out
}

func TestBounceDSN(t *testing.T) {
	e := newEnv(t, nil)
	e.dlv.setFn(nobodyUnknown)
	t0 := e.clock.Now()
	id := e.enqueue("alice@local.test", []string{"bob@remote.example", "nobody@remote.example"}, msg("bounce", "x"))
	e.q.Start()
	waitFor(t, "3 history records", func() bool { return len(e.rec.histories()) == 3 })
	e.settle()
	disp := map[string]HistoryRecord{}
	for _, h := range e.rec.histories() {
		disp[h.To+" "+h.MsgID] = h
	}
	if h := disp["bob@remote.example "+id]; h.Disposition != DispDelivered {
		t.Fatalf("bob: %+v", h)
	}
	if h := disp["nobody@remote.example "+id]; h.Disposition != DispBounced || h.Status != "550 5.1.1 <nobody@remote.example>: user unknown" {
		t.Fatalf("nobody: %+v", h)
	}
	d := lastDSN(t, e.dlv)
	if h := disp["alice@local.test "+d.job.MsgID]; h.Disposition != DispDelivered || h.From != "" {
		t.Fatalf("the DSN's own history: %+v", h)
	}
	if d.hdr.Get("Subject") != "Undelivered Mail Returned to Sender" || d.hdr.Get("Auto-Submitted") != "auto-replied" ||
		d.hdr.Get("From") != "Mail Delivery System <MAILER-DAEMON@mg.test>" {
		t.Fatalf("DSN header %v", d.hdr)
	}
	if len(d.rcpts) != 1 {
		t.Fatalf("%d recipients in the DSN", len(d.rcpts))
	}
	r := d.rcpts[0]
	want := map[string]string{
		"Final-Recipient":   "rfc822; nobody@remote.example",
		"Action":            "failed",
		"Status":            "5.1.1",
		"Remote-Mta":        "dns; mx.remote.example",
		"Diagnostic-Code":   "smtp; 550 5.1.1 <nobody@remote.example>: user unknown",
		"Last-Attempt-Date": t0.Format(time.RFC1123Z),
	}
	for k, v := range want {
		if r.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, r.Get(k), v)
		}
	}
	if r.Get("Will-Retry-Until") != "" {
		t.Error("Will-Retry-Until in a failure report")
	}
	if !strings.Contains(d.headers, "Message-ID: <bounce@local.test>") || !strings.Contains(d.text, "nobody@remote.example") {
		t.Fatalf("DSN parts: %q / %q", d.headers, d.text)
	}
	if l, _ := e.q.List(); len(l) != 0 {
		t.Fatalf("queue not empty: %+v", l)
	}
}

// TestHistoryClassifierFromDelivery: a recipient that bounces because of
// the appliance's outbound TLS policy is recorded with the classifier the
// delivery gives ("TLS Enforcement"), not with the one it was received
// with; other outcomes keep the receive classifier.
func TestHistoryClassifierFromDelivery(t *testing.T) {
	e := newEnv(t, nil)
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		var out []Result
		for _, r := range j.Rcpts {
			switch {
			case strings.HasPrefix(r, "tls"):
				out = append(out, Result{Rcpt: r, Status: PermFail, Code: 550, Enhanced: "5.7.0", Text: "TLS required, but the session is not encrypted",
					Host: "mx.remote.example", Classifier: "TLS Enforcement"})
			case strings.HasPrefix(r, "nobody"):
				out = append(out, Result{Rcpt: r, Status: PermFail, Code: 550, Enhanced: "5.1.1", Text: "user unknown", Host: "mx.remote.example"})
			default:
				out = append(out, Result{Rcpt: r, Status: Delivered, Code: 250, Enhanced: "2.0.0", Text: "ok", Host: "mx.remote.example"})
			}
		}
		return out
	})
	rcpts := []string{"tls@remote.example", "nobody@remote.example", "bob@remote.example"}
	id, err := e.q.Enqueue(Envelope{From: "alice@local.test", Recipients: rcpts, SessionID: "S1", Received: e.clock.Now(),
		Classifiers: []string{"Protected Domain", "Protected Domain", "Protected Domain"}}, strings.NewReader(msg("classifier", "x")))
	must(t, err)
	e.q.Start()
	waitFor(t, "3 history records", func() bool { return len(e.rec.histories()) >= 3 })
	e.settle()
	want := map[string]string{"tls@remote.example": "TLS Enforcement", "nobody@remote.example": "Protected Domain", "bob@remote.example": "Protected Domain"}
	for _, h := range e.rec.histories() {
		if h.MsgID != id {
			continue // the DSN
		}
		if h.Classifier != want[h.To] {
			t.Errorf("%s (%s): classifier %q, want %q", h.To, h.Disposition, h.Classifier, want[h.To])
		}
		delete(want, h.To)
	}
	if len(want) != 0 {
		t.Fatalf("no history for %v", want)
	}
}

func TestNullSenderBounceGoesDead(t *testing.T) {
	e := newEnv(t, nil)
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		return allResults(j, Result{Status: PermFail, Code: 550, Enhanced: "5.1.1", Text: "no such user"})
	})
	id := e.enqueue("", []string{"gone@remote.example"}, msg("dsn", "a bounce"))
	e.q.Start()
	waitFor(t, "the bounce", func() bool { return len(e.rec.histories()) == 1 })
	e.settle()
	m := e.get(id)
	if !m.Dead || m.Recipients[0].State != StateBounced || m.Recipients[0].LastError != "550 5.1.1 no such user" {
		t.Fatalf("message %+v", m)
	}
	if n := len(e.dlv.attempts()); n != 1 {
		t.Fatalf("%d attempts: a DSN for a null-sender message?", n)
	}
	if err := e.q.Retry(id); !errors.Is(err, ErrDead) {
		t.Fatalf("Retry: %v", err)
	}
	must(t, e.q.Retry(""))
	e.advance(24 * time.Hour)
	time.Sleep(20 * time.Millisecond)
	e.settle()
	if n := len(e.dlv.attempts()); n != 1 {
		t.Fatal("dead mail retried")
	}
	if len(e.rec.eventsMatching("dead mail")) != 1 {
		t.Fatal("no event about dead mail")
	}
	e.reopen()
	if m := e.get(id); !m.Dead {
		t.Fatal("not dead after reopen")
	}
	if got := e.body(id); got != msg("dsn", "a bounce") {
		t.Fatal("dead body")
	}
	must(t, e.q.Delete(id))
	if l, _ := e.q.List(); len(l) != 0 {
		t.Fatal("not deleted")
	}
}

func TestPreferPlainAlternates(t *testing.T) {
	e := newEnv(t, nil)
	e.sched = Schedule{RetryInterval: 10 * time.Minute, MaxAge: 48 * time.Hour}
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		if j.PreferPlain {
			return allResults(j, Result{Status: TempFail, Code: 421, Text: "busy", Host: "mx.remote.example"})
		}
		return allResults(j, Result{Status: TempFail, Code: 0, Text: "TLS handshake failed", Host: "mx.remote.example", TLSHandshakeFailed: true})
	})
	id := e.enqueue("alice@local.test", []string{"bob@remote.example"}, msg("tls", "x"))
	e.q.Start()
	want := []bool{false, true, false, true}
	for i := range want {
		if i > 0 {
			e.advance(10 * time.Minute)
		}
		waitFor(t, fmt.Sprintf("attempt %d", i+1), func() bool { return len(e.dlv.attempts()) == i+1 })
		e.settle()
		if got := e.get(id).Recipients[0].PreferPlain; got != !want[i] {
			t.Fatalf("after attempt %d: PreferPlain %v", i+1, got)
		}
		if i == 2 {
			// Persisted: a restart keeps the next mode.
			e.reopen()
			if !e.get(id).Recipients[0].PreferPlain {
				t.Fatal("PreferPlain lost on reopen")
			}
			e.q.Start()
		}
	}
	var got []bool
	for _, a := range e.dlv.attempts() {
		got = append(got, a.job.PreferPlain)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("PreferPlain sequence %v, want %v", got, want)
	}
}

func TestAdminOperations(t *testing.T) {
	e := newEnv(t, nil)
	a := e.enqueue("a@local.test", []string{"x@remote.example"}, msg("a", "first"))
	e.clock.Advance(time.Second)
	b := e.enqueue("b@local.test", []string{"y@remote.example", "z@other.example"}, msg("b", "second"))
	c := e.enqueue("c@local.test", []string{"w@remote.example"}, msg("c", "third"))
	l, err := e.q.List()
	must(t, err)
	if len(l) != 3 || l[0].ID != a || l[1].ID != b || l[2].ID != c {
		t.Fatalf("List: %+v", l)
	}
	if l[1].Env.SessionID != "S1" || len(l[1].Recipients) != 2 || !l[1].Received.Equal(e.clock.Now()) {
		t.Fatalf("List entry %+v", l[1])
	}
	if got := e.body(strings.ToLower(b)); got != msg("b", "second") {
		t.Fatalf("Open: %q", got)
	}
	for _, err := range []error{e.q.Retry("NOSUCHID0000"), e.q.Delete("NOSUCHID0000")} {
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	}
	if _, _, err := e.q.Open("NOSUCHID0000"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	must(t, e.q.Delete(b))
	hs := e.rec.histories()
	if len(hs) != 2 || hs[0].Disposition != DispDeleted || hs[0].MsgID != b || hs[1].To != "z@other.example" {
		t.Fatalf("history %+v", hs)
	}
	if _, err := e.q.Get(b); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted message still there")
	}

	// Retry: a deferred message becomes due now.
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		return allResults(j, Result{Status: TempFail, Code: 451, Text: "later"})
	})
	e.q.Start()
	waitFor(t, "2 attempts", func() bool { return len(e.dlv.attempts()) == 2 })
	e.settle()
	if r := e.get(a).Recipients[0]; r.State != StateDeferred || !r.NextAttempt.After(e.clock.Now()) {
		t.Fatalf("deferred %+v", r)
	}
	must(t, e.q.Retry(a))
	waitFor(t, "the retry", func() bool { return len(e.dlv.attempts()) == 3 })
	e.settle()
	must(t, e.q.Retry(""))
	waitFor(t, "retry all", func() bool { return len(e.dlv.attempts()) == 5 })
	e.settle()
	if r := e.get(c).Recipients[0]; r.Attempts != 2 {
		t.Fatalf("c after retry all: %+v", r)
	}

	// Deletions survive a crash.
	must(t, e.q.Delete(a))
	e.crash()
	l, _ = e.q.List()
	if len(l) != 1 || l[0].ID != c {
		t.Fatalf("after crash: %+v", l)
	}
}

func TestTooBig(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxMessageBytes = 1000 })
	env := Envelope{From: "a@local.test", Recipients: []string{"b@remote.example"}}
	if _, err := e.q.Enqueue(env, strings.NewReader(strings.Repeat("x", 1001))); !errors.Is(err, ErrTooBig) {
		t.Fatalf("1001 bytes: %v", err)
	}
	if _, err := e.q.Enqueue(env, strings.NewReader(strings.Repeat("x", 1000))); err != nil {
		t.Fatalf("1000 bytes: %v", err)
	}
	// Large messages (stored in a file of their own) are checked too.
	e2 := newEnv(t, func(o *Options) { o.MaxMessageBytes = 2 << 20 })
	if _, err := e2.q.Enqueue(env, strings.NewReader(strings.Repeat("x", 2<<20+1))); !errors.Is(err, ErrTooBig) {
		t.Fatalf("2 MiB + 1: %v", err)
	}
	if f := segFiles(t, e2.dir, extBody); len(f) != 0 {
		t.Fatalf("left behind: %v", f)
	}
	if l, _ := e2.q.List(); len(l) != 0 {
		t.Fatal("a refused message is listed")
	}
	if _, err := e2.q.Enqueue(env, strings.NewReader(strings.Repeat("x", 2<<20))); err != nil {
		t.Fatalf("2 MiB: %v", err)
	}
}

func TestDiskFull(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MinFreeBytes = 1 << 62 })
	env := Envelope{From: "a@local.test", Recipients: []string{"b@remote.example"}}
	segs := segFiles(t, e.dir, extSeg)
	sizes := map[string]int64{}
	for _, s := range segs {
		sizes[s] = fileSize(t, s)
	}
	_, err := e.q.Enqueue(env, strings.NewReader(msg("full", "x")))
	var df interface{ DiskFull() bool }
	if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &df) || !df.DiskFull() {
		t.Fatalf("Enqueue on a full disk: %v", err)
	}
	// Nothing was written.
	if st := e.q.Stats(); st.Records != 0 || st.Enqueued != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, s := range segFiles(t, e.dir, extSeg) {
		if fileSize(t, s) != sizes[s] {
			t.Fatalf("%s grew", s)
		}
	}
	if l, _ := e.q.List(); len(l) != 0 {
		t.Fatal("listed")
	}
	// Room again: the queue accepts mail at once.
	e.q.SetMinFreeBytes(1 << 20)
	id, err := e.q.Enqueue(env, strings.NewReader(msg("ok", "x")))
	must(t, err)
	e.crash()
	if got := e.body(id); got != msg("ok", "x") {
		t.Fatal("body")
	}
}

func TestLargeMessage(t *testing.T) {
	e := newEnv(t, nil)
	big := msg("big", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 40000)) // ~2.5 MiB
	id := e.enqueue("alice@local.test", []string{"bob@remote.example"}, big)
	if f := segFiles(t, e.dir, extBody); len(f) != 1 {
		t.Fatalf("body files %v", f)
	}
	e.crash()
	if e.body(id) != big {
		t.Fatal("large body after crash")
	}
	e.q.Start()
	waitFor(t, "delivery", func() bool { return len(e.rec.histories()) == 1 })
	if a := e.dlv.attempts(); string(a[0].body) != big {
		t.Fatal("delivered body differs")
	}
	e.settle()
	must(t, e.q.ck.commit())
	if f := segFiles(t, e.dir, extBody); len(f) != 0 {
		t.Fatalf("body file not removed: %v", f)
	}
}

func TestSegmentsAreRemoved(t *testing.T) {
	e := newEnv(t, nil)
	e.q.jr.setSegMax(8 << 10)
	e.q.Start()
	var ids []string
	for i := 0; i < 100; i++ {
		ids = append(ids, e.enqueue("a@local.test", []string{"b@remote.example"}, msg(fmt.Sprint(i), strings.Repeat("y", 1000))))
	}
	waitFor(t, "100 deliveries", func() bool { return len(e.rec.histories()) == 100 })
	e.settle()
	if n := len(segFiles(t, e.dir, extSeg)); n < 10 {
		t.Fatalf("only %d segments: rotation?", n)
	}
	must(t, e.q.ck.commit())
	// A last record (the last delivery) may pin the current segment.
	if n := len(segFiles(t, e.dir, extSeg)); n > 2 {
		t.Fatalf("%d segments left", n)
	}
	// A queued message keeps its segment.
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		return allResults(j, Result{Status: TempFail, Code: 451, Text: "later"})
	})
	keep := e.enqueue("a@local.test", []string{"b@remote.example"}, msg("keep", "kept"))
	for i := 0; i < 30; i++ {
		e.enqueue("a@local.test", []string{"c@remote.example"}, msg(fmt.Sprint(i), strings.Repeat("z", 1000)))
	}
	e.settle()
	for i := 0; i < 3; i++ {
		must(t, e.q.Retry(""))
		e.settle()
		must(t, e.q.ck.commit())
	}
	e.crash()
	if e.body(keep) != msg("keep", "kept") {
		t.Fatal("kept message lost")
	}
	if l, _ := e.q.List(); len(l) != 31 {
		t.Fatalf("%d messages", len(l))
	}
}

func TestPerDomainLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Workers = 6; o.PerDomain = 2 })
	var mu sync.Mutex
	cur := map[string]int{}
	peak := map[string]int{}
	total, peakTotal := 0, 0
	release := make(chan struct{})
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		mu.Lock()
		cur[j.Domain]++
		total++
		peak[j.Domain] = max(peak[j.Domain], cur[j.Domain])
		peakTotal = max(peakTotal, total)
		mu.Unlock()
		<-release
		mu.Lock()
		cur[j.Domain]--
		total--
		mu.Unlock()
		return allResults(j, Result{Status: Delivered, Code: 250})
	})
	for i := 0; i < 10; i++ {
		e.enqueue("a@local.test", []string{"x@a.example"}, "m")
		e.enqueue("a@local.test", []string{"x@B.example"}, "m")
	}
	e.q.Start()
	waitFor(t, "4 attempts in flight", func() bool { mu.Lock(); defer mu.Unlock(); return total == 4 })
	time.Sleep(20 * time.Millisecond)
	// The other workers are free for other domains.
	e.enqueue("a@local.test", []string{"x@c.example"}, "m")
	waitFor(t, "5 attempts in flight", func() bool { mu.Lock(); defer mu.Unlock(); return total == 5 })
	close(release)
	waitFor(t, "21 deliveries", func() bool { return len(e.rec.histories()) == 21 })
	if peak["a.example"] != 2 || peak["b.example"] != 2 || peakTotal != 5 {
		t.Fatalf("peaks %v, total %d", peak, peakTotal)
	}
}

func TestCloseLeavesInFlightQueued(t *testing.T) {
	e := newEnv(t, nil)
	started := make(chan struct{}, 10)
	e.dlv.setFn(func(ctx context.Context, j *Job, _ []byte) []Result {
		started <- struct{}{}
		<-ctx.Done()
		return allResults(j, Result{Status: TempFail, Text: ctx.Err().Error()})
	})
	id := e.enqueue("a@local.test", []string{"b@remote.example"}, "m")
	e.q.Start()
	<-started
	e.reopen()
	r := e.get(id).Recipients[0]
	if r.State != StateQueued || r.Attempts != 0 || r.NextAttempt.After(e.clock.Now()) {
		t.Fatalf("after close: %+v", r)
	}
	e.dlv.setFn(nil)
	e.q.Start()
	waitFor(t, "delivery after restart", func() bool { return len(e.rec.histories()) == 1 })
}

func TestTornTailIgnored(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, e.enqueue("a@local.test", []string{"b@remote.example"}, msg(fmt.Sprint(i), "body")))
	}
	e.q.abandon()
	e.q = nil
	segs := segFiles(t, e.dir, extSeg)
	last := segs[len(segs)-1]
	starts := recordStarts(t, last)
	if len(starts) < 20 {
		t.Fatalf("%d records in %s", len(starts), last)
	}
	// The last record lost a byte in the middle, as an interrupted write
	// would leave it; then garbage follows.
	data, err := os.ReadFile(last)
	must(t, err)
	lastStart := starts[len(starts)-1]
	data[lastStart+int64(len(data[lastStart:]))/2] ^= 0xff
	data = append(data, []byte("garbage after the end\x00\x01")...)
	must(t, os.WriteFile(last, data, 0o600))
	e.open()
	l, _ := e.q.List()
	if len(l) != 19 {
		t.Fatalf("%d messages, want 19", len(l))
	}
	for i, id := range ids[:19] {
		if e.body(id) != msg(fmt.Sprint(i), "body") {
			t.Fatalf("message %d", i)
		}
	}
	if len(e.rec.eventsMatching("incomplete record")) != 1 {
		t.Fatalf("events %v", e.rec.events)
	}

	// A record cut short (header intact, payload missing) is ignored too.
	id := e.enqueue("a@local.test", []string{"b@remote.example"}, msg("x", "y"))
	e.q.abandon()
	e.q = nil
	segs = segFiles(t, e.dir, extSeg)
	last = segs[len(segs)-1]
	must(t, os.Truncate(last, fileSize(t, last)-7))
	e.open()
	if _, err := e.q.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatal("a cut record was used")
	}
	if l, _ := e.q.List(); len(l) != 19 {
		t.Fatalf("%d messages", len(l))
	}
	// And the queue goes on.
	id = e.enqueue("a@local.test", []string{"b@remote.example"}, msg("x", "y"))
	e.reopen()
	if e.body(id) != msg("x", "y") {
		t.Fatal("after recovery")
	}
}

// The current segment is filled with zeros ahead of its records; a clean
// stop cuts it back to its last record, and the zeros a killed process
// leaves behind are not taken for a torn record.
func TestPreallocatedSegmentTail(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.enqueue("a@local.test", []string{"b@remote.example"}, msg(fmt.Sprint(i), "body")))
	}
	segs := segFiles(t, e.dir, extSeg)
	last := segs[len(segs)-1]
	if size := fileSize(t, last); size < preallocChunk {
		t.Fatalf("segment of %d bytes in use, want at least %d", size, preallocChunk)
	}
	e.q.abandon()
	e.q = nil
	data, err := os.ReadFile(last)
	must(t, err)
	if n := len(recordStarts(t, last)); n != 5 {
		t.Fatalf("%d records after the stop, want 5", n)
	}
	// As kill -9 leaves it: zeros after the last record.
	must(t, os.WriteFile(last, append(data, make([]byte, preallocChunk)...), 0o600))
	e.open()
	for i, id := range ids {
		if e.body(id) != msg(fmt.Sprint(i), "body") {
			t.Fatalf("message %d", i)
		}
	}
	if ev := e.rec.eventsMatching("incomplete record"); len(ev) != 0 {
		t.Fatalf("events %v", ev)
	}
	// A torn record before the zeros is still reported.
	e = newEnv(t, nil)
	for i := 0; i < 5; i++ {
		e.enqueue("a@local.test", []string{"b@remote.example"}, msg(fmt.Sprint(i), "body"))
	}
	e.q.abandon()
	e.q = nil
	segs = segFiles(t, e.dir, extSeg)
	last = segs[len(segs)-1]
	data, err = os.ReadFile(last)
	must(t, err)
	data[len(data)-3] ^= 0xff
	must(t, os.WriteFile(last, append(data, make([]byte, preallocChunk)...), 0o600))
	e.open()
	if l, _ := e.q.List(); len(l) != 4 {
		t.Fatalf("%d messages, want 4", len(l))
	}
	if ev := e.rec.eventsMatching("incomplete record"); len(ev) != 1 {
		t.Fatalf("events %v", ev)
	}
}

func recordStarts(t *testing.T, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var starts []int64
	for off := int64(0); off+recHdrLen <= int64(len(data)); {
		starts = append(starts, off)
		off += recHdrLen + int64(le64(data[off+4:]))
	}
	return starts
}

func le64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func TestOpenTwiceRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, err := Open(e.options())
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v", err)
	}
}

func FuzzScanSegment(f *testing.F) {
	r := newRecord(nil)
	r.msg("AAAAAAAAAAAA", []byte(`{"env":{}}`), []byte("body"))
	r.put("BBBBBBBBBBBB", append(loc{}.append(nil), `{"rcpts":[]}`...))
	r.del("CCCCCCCCCCCC")
	r.seal()
	f.Add(r.b)
	f.Add(r.b[:len(r.b)-3])
	f.Add([]byte("MGQ1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := strings.NewReader(string(data))
		end, _ := scanSegment(rd, int64(len(data)), 1, 0, func(ops []replayOp) {
			for _, op := range ops {
				if op.kind != opDel && len(op.val) < locLen {
					t.Fatalf("short value")
				}
			}
		})
		if end < 0 || end > int64(len(data)) {
			t.Fatalf("end %d", end)
		}
	})
}

func BenchmarkEnqueue1KiB(b *testing.B) {
	benchmarkEnqueue(b, msg("bench", strings.Repeat("x", 1024-len(msg("bench", "")))))
}

// benchmarkEnqueue runs 10 concurrent Enqueue calls of body (10 SMTP
// sessions on 2 CPUs), each fsynced before it returns, and reports CPU,
// fsyncs and messages per commit and the latency of one call.
func benchmarkEnqueue(b *testing.B, body string) {
	q, err := Open(Options{Dir: b.TempDir(), Event: func(string, string) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	env := Envelope{From: "a@local.test", Recipients: []string{"b@remote.example"}}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(5) // 10 goroutines on 2 CPUs: 10 SMTP sessions
	var mu sync.Mutex
	var lat []time.Duration
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var r strings.Reader
		var mine []time.Duration
		for pb.Next() {
			r.Reset(body)
			t0 := time.Now()
			if _, err := q.Enqueue(env, &r); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	st := q.Stats()
	b.ReportMetric(float64(st.Fsyncs)/float64(st.Enqueued), "fsyncs/msg")
	b.ReportMetric(float64(st.Enqueued)/float64(st.Commits), "msgs/commit")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

func TestCompactionMovesLongQueuedMessages(t *testing.T) {
	e := newEnv(t, nil)
	e.q.jr.setSegMax(16 << 10)
	e.q.ck.compactAge.Store(0)
	e.dlv.setFn(func(_ context.Context, j *Job, _ []byte) []Result {
		if j.Domain == "down.example" {
			return allResults(j, Result{Status: TempFail, Code: 421, Text: "down"})
		}
		return allResults(j, Result{Status: Delivered, Code: 250})
	})
	e.q.Start()
	keep := map[string]string{}
	for i := 0; i < 200; i++ {
		rcpt := "x@up.example"
		if i%20 == 0 {
			rcpt = "y@down.example"
		}
		body := msg(fmt.Sprint(i), strings.Repeat("q", 1000))
		id := e.enqueue("a@local.test", []string{rcpt}, body)
		if i%20 == 0 {
			keep[id] = body
		}
	}
	waitFor(t, "190 deliveries", func() bool { return len(e.rec.histories()) == 190 })
	e.settle()
	must(t, e.q.ck.commit())
	before := len(segFiles(t, e.dir, extSeg))
	if before < 8 {
		t.Fatalf("%d segments", before)
	}
	e.q.ck.compact()
	must(t, e.q.ck.commit())
	e.q.ck.compact()
	must(t, e.q.ck.commit())
	after := len(segFiles(t, e.dir, extSeg))
	t.Logf("segments: %d before compaction, %d after", before, after)
	if after > 3 {
		t.Fatalf("%d segments left after compaction", after)
	}
	if len(e.rec.eventsMatching("compacted segment")) == 0 {
		t.Fatal("no compaction event")
	}
	// The moved messages keep their state and bodies, also across a crash.
	for id, body := range keep {
		if e.body(id) != body {
			t.Fatalf("%s: body", id)
		}
		if r := e.get(id).Recipients[0]; r.State != StateDeferred || r.Attempts != 1 {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	e.crash()
	if l, _ := e.q.List(); len(l) != len(keep) {
		t.Fatalf("%d messages after crash", len(l))
	}
	for id, body := range keep {
		if e.body(id) != body || e.get(id).Recipients[0].Attempts != 1 {
			t.Fatalf("%s after crash", id)
		}
	}
	// They are still delivered.
	e.dlv.setFn(nil)
	e.q.Start()
	must(t, e.q.Retry(""))
	waitFor(t, "the rest", func() bool { l, _ := e.q.List(); return len(l) == 0 })
}

// BenchmarkEnqueueAndDeliver1KiB measures the queue's share of a relay:
// 10 concurrent Enqueue calls while every message is also delivered (by a
// Deliverer that accepts at once) and its completion recorded.
func BenchmarkEnqueueAndDeliver1KiB(b *testing.B) {
	var delivered atomic.Int64
	dlv := funcDeliverer(func(_ context.Context, j *Job) []Result {
		r, err := j.Open()
		if err == nil {
			io.Copy(io.Discard, r)
			r.Close()
		}
		delivered.Add(1)
		return allResults(j, Result{Status: Delivered, Code: 250})
	})
	q, err := Open(Options{Dir: b.TempDir(), Deliverer: dlv, Event: func(string, string) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	q.Start()
	body := msg("bench", strings.Repeat("x", 1024-len(msg("bench", ""))))
	env := Envelope{From: "a@local.test", Recipients: []string{"b@remote.example"}}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(5)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Enqueue(env, strings.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for delivered.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	st := q.Stats()
	b.ReportMetric(float64(st.Fsyncs)/float64(st.Enqueued), "fsyncs/msg")
	b.ReportMetric(float64(st.Records)/float64(st.Commits), "records/commit")
}

// processCPU is the CPU time this process has used (fsync's kernel time
// included).
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The DSN settings (system mailserver dsn-status, dsn-sender-address,
// dsn-sender-displayname): the notification's From, and none at all when
// off, with an event saying so.
func TestDSNSettings(t *testing.T) {
	dsn := DSNSettings{From: "postmaster@example.com", DisplayName: "Example, Postmaster"}
	e := newEnv(t, func(o *Options) { o.DSN = func() DSNSettings { return dsn } })
	e.dlv.setFn(nobodyUnknown)
	e.enqueue("alice@local.test", []string{"nobody@remote.example"}, msg("dsn-from", "x"))
	e.q.Start()
	waitFor(t, "the bounce and its DSN", func() bool { return len(e.rec.histories()) == 2 })
	e.settle()
	if d := lastDSN(t, e.dlv); d.hdr.Get("From") != `"Example, Postmaster" <postmaster@example.com>` {
		t.Fatalf("DSN From %q", d.hdr.Get("From"))
	}

	dsn = DSNSettings{Off: true}
	e.enqueue("alice@local.test", []string{"nobody2@remote.example"}, msg("dsn-off", "x"))
	waitFor(t, "the second bounce", func() bool { return len(e.rec.histories()) == 3 })
	e.settle()
	if h := e.rec.histories()[2]; h.Disposition != DispBounced || h.To != "nobody2@remote.example" {
		t.Fatalf("history %+v", h)
	}
	if ev := e.rec.eventsMatching("dsn-status is disabled"); len(ev) != 1 {
		t.Fatalf("events %q", ev)
	}
	if l, _ := e.q.List(); len(l) != 0 {
		t.Fatalf("queue not empty: %+v", l)
	}
}
