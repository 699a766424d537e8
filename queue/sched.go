package queue

import (
	"container/heap"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"mailgate/queue/retry"
)

// maxSleep bounds the scheduler's sleep, so that a clock that jumps is
// noticed.
const maxSleep = 30 * time.Second

// purgeEvery is how often the scheduler looks for dead mail past
// Options.DeadMailExpiry.
const purgeEvery = time.Minute

// job is a Job waiting for or held by a worker.
type job struct {
	m       *message
	idx     []int // recipients, as indexes into m.p.Rcpts
	domain  string
	plain   bool
	attempt int
}

// domainQ holds the jobs for one destination domain.
type domainQ struct {
	name     string
	jobs     []*job
	inflight int
	ready    bool // in Queue.ready
}

// msgHeap orders messages by due time.
type msgHeap []*message

func (h msgHeap) Len() int { return len(h) }
func (h msgHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].id < h[j].id
}
func (h msgHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *msgHeap) Push(x any) {
	m := x.(*message)
	m.hidx = len(*h)
	*h = append(*h, m)
}
func (h *msgHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	m.hidx = -1
	return m
}

// setDue places m in the heap at due (0: out of it). q.mu is held.
func (q *Queue) setDue(m *message, due int64) {
	switch {
	case due == 0:
		if m.hidx >= 0 {
			heap.Remove(&q.heap, m.hidx)
		}
		m.due = 0
		return
	case m.hidx >= 0:
		m.due = due
		heap.Fix(&q.heap, m.hidx)
	default:
		m.due = due
		heap.Push(&q.heap, m)
	}
	if m.hidx == 0 {
		q.Kick()
	}
}

// plan makes jobs of the recipients of m that are due and idle, grouped
// by domain (and TLS mode), and puts m in the heap for the next one. q.mu
// is held.
func (q *Queue) plan(m *message, now int64) {
	if m.deleted {
		q.setDue(m, 0)
		return
	}
	var jobs []*job
	due := int64(0)
	for i := range m.p.Rcpts {
		r := &m.p.Rcpts[i]
		if r.final() || m.busy[i] {
			continue
		}
		if r.Next > now {
			if due == 0 || r.Next < due {
				due = r.Next
			}
			continue
		}
		d := domainOf(r.Addr)
		var j *job
		for _, c := range jobs {
			if c.domain == d && c.plain == r.Plain {
				j = c
				break
			}
		}
		if j == nil {
			j = &job{m: m, domain: d, plain: r.Plain}
			jobs = append(jobs, j)
		}
		j.idx = append(j.idx, i)
		j.attempt = max(j.attempt, r.Attempts+1)
		m.busy[i] = true
	}
	for _, j := range jobs {
		q.push(j)
	}
	q.setDue(m, due)
}

func (q *Queue) push(j *job) {
	d := q.domains[j.domain]
	if d == nil {
		d = &domainQ{name: j.domain}
		q.domains[j.domain] = d
	}
	d.jobs = append(d.jobs, j)
	if !d.ready && d.inflight < q.o.PerDomain {
		d.ready = true
		q.ready = append(q.ready, d)
	}
	if d.ready {
		q.work.Signal()
	}
}

// nextJob takes the next job a worker may run. q.mu is held.
func (q *Queue) nextJob() *job {
	for len(q.ready) > 0 {
		d := q.ready[0]
		q.ready[0] = nil
		q.ready = q.ready[1:]
		d.ready = false
		for len(d.jobs) > 0 {
			j := d.jobs[0]
			d.jobs[0] = nil
			d.jobs = d.jobs[1:]
			if j.m.deleted {
				continue
			}
			d.inflight++
			q.running++
			if len(d.jobs) > 0 && d.inflight < q.o.PerDomain {
				d.ready = true
				q.ready = append(q.ready, d)
				q.work.Signal() // another worker may take the next one
			}
			return j
		}
		if d.inflight == 0 {
			delete(q.domains, d.name)
		}
	}
	return nil
}

// jobDone frees the domain slot of a finished job. q.mu is held.
func (q *Queue) jobDone(j *job) {
	d := q.domains[j.domain]
	if d == nil {
		return
	}
	d.inflight--
	switch {
	case len(d.jobs) > 0 && !d.ready:
		d.ready = true
		q.ready = append(q.ready, d)
		q.work.Signal()
	case len(d.jobs) == 0 && d.inflight == 0:
		delete(q.domains, d.name)
	}
}

// remove forgets m. q.mu is held.
func (q *Queue) remove(m *message) {
	m.deleted = true
	q.setDue(m, 0)
	delete(q.msgs, m.id)
}

// scheduler turns due messages into jobs.
func (q *Queue) scheduler() {
	defer q.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var purged time.Time // when dead mail was last looked at
	for {
		q.mu.Lock()
		if q.stopped {
			q.mu.Unlock()
			return
		}
		now := unixNano(q.now())
		for len(q.heap) > 0 && q.heap[0].due <= now {
			m := heap.Pop(&q.heap).(*message)
			m.due = 0
			q.plan(m, now)
		}
		wait := maxSleep
		if len(q.heap) > 0 {
			wait = min(wait, time.Duration(q.heap[0].due-now))
		}
		q.mu.Unlock()
		if n := q.now(); n.Sub(purged) >= purgeEvery || n.Before(purged) {
			purged = n
			q.purgeDead(n)
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-q.kick:
		case <-q.ctx.Done():
			return
		}
		timer.Stop()
	}
}

// worker runs jobs.
func (q *Queue) worker() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		var j *job
		for {
			if q.stopped {
				q.mu.Unlock()
				return
			}
			if j = q.nextJob(); j != nil {
				break
			}
			q.work.Wait()
		}
		jb := q.jobFor(j)
		q.mu.Unlock()
		q.stats.attempts.Add(1)
		q.finish(j, jb, q.deliver(jb))
		q.mu.Lock()
		q.running--
		q.mu.Unlock()
	}
}

func (q *Queue) jobFor(j *job) *Job {
	m := j.m
	jb := &Job{
		MsgID:       m.id,
		From:        m.p.Env.From,
		Domain:      j.domain,
		Size:        m.loc.n,
		Attempt:     j.attempt,
		PreferPlain: j.plain,
		ClientIP:    m.p.Env.ClientIP,
		Helo:        m.p.Env.Helo,
		Server:      m.p.Env.Server,
	}
	for _, i := range j.idx {
		jb.Rcpts = append(jb.Rcpts, m.p.Rcpts[i].Addr)
	}
	jb.Open = func() (io.ReadCloser, error) { return q.openMsg(m) }
	return jb
}

// deliver calls the Deliverer; a panic is a temporary failure.
func (q *Queue) deliver(jb *Job) (res []Result) {
	defer func() {
		if p := recover(); p != nil {
			q.event("error", "mail queue: delivery of %s to %s panicked: %v\n%s", jb.MsgID, jb.Domain, p, debug.Stack())
			res = nil
			for _, r := range jb.Rcpts {
				res = append(res, Result{Rcpt: r, Status: TempFail, Code: 451, Enhanced: "4.3.0", Text: "internal error in delivery"})
			}
		}
	}()
	return q.o.Deliverer.Deliver(q.ctx, jb)
}

// finish records the results of a job: new recipient states, history,
// delivery status notifications, all in one journal record.
func (q *Queue) finish(j *job, jb *Job, results []Result) {
	now := q.now()
	nowN := unixNano(now)
	m := j.m
	sender := m.p.Env.From // never changes
	sch := q.schedule(sender, j.domain)
	cancelled := q.ctx.Err() != nil

	received := fromNano(m.p.Received) // never changes either
	age := now.Sub(received)

	// A DSN may follow: read what it needs before taking the lock.
	byAddr := make(map[string]*Result, len(results))
	late := age >= sch.MaxAge || (sch.WarningAfter > 0 && age >= sch.WarningAfter)
	notify := len(results) < len(jb.Rcpts) && late
	for i := range results {
		r := &results[i]
		k := strings.ToLower(r.Rcpt)
		if _, dup := byAddr[k]; !dup {
			byAddr[k] = r
		}
		switch {
		case r.Status == PermFail:
			notify = true
		case r.Status == TempFail && late:
			notify = true
		}
	}
	var hdrs []byte
	var host string
	dsn := q.dsnSettings()
	if notify && sender != "" && !dsn.Off {
		hdrs = q.readHeaders(m)
		host = q.hostname()
	}

	q.mu.Lock()
	q.jobDone(j)
	if m.deleted {
		for _, i := range j.idx {
			m.busy[i] = false
		}
		q.mu.Unlock()
		return
	}
	var hist []HistoryRecord
	var failed, delayed []dsnRcpt
	changed := false
	for _, i := range j.idx {
		m.busy[i] = false
		rc := &m.p.Rcpts[i]
		res, ok := byAddr[strings.ToLower(rc.Addr)]
		if !ok {
			res = &Result{Rcpt: rc.Addr, Status: TempFail, Code: 451, Enhanced: "4.3.0", Text: "no result from delivery"}
		}
		if cancelled && res.Status == TempFail {
			continue // stopped: not an attempt, the recipient stays as it was
		}
		changed = true
		rc.Attempts++
		rc.Last = nowN
		if rc.First == 0 {
			rc.First = nowN
		}
		rc.Code, rc.Enh, rc.Text, rc.Host, rc.TLS = res.Code, res.Enhanced, oneLine(res.Text), oneLine(res.Host), res.TLS
		rc.Err = formatReply(res.Code, res.Enhanced, res.Text)
		if j.plain {
			rc.Plain = false
		} else if res.TLSHandshakeFailed {
			rc.Plain = true
		}
		h := HistoryRecord{Time: now, MsgID: m.id, SessionID: m.p.Env.SessionID, ClientIP: m.p.Env.ClientIP,
			From: sender, To: rc.Addr, Status: rc.Err, Host: rc.Host, TLS: rc.TLS, Attempts: rc.Attempts,
			Classifier: m.p.Env.Classifier(rc.Addr), InboundTLS: m.p.Env.TLS}
		if res.Classifier != "" && res.Status != Delivered {
			h.Classifier = res.Classifier
		}
		switch res.Status {
		case Delivered:
			rc.State, rc.Next = StateDelivered, 0
			h.Disposition = DispDelivered
			hist = append(hist, h)
		case PermFail:
			rc.State, rc.Next = StateBounced, 0
			h.Disposition = DispBounced
			hist = append(hist, h)
			failed = append(failed, dsnFor(rc, statusFor('5', res.Enhanced), now))
		default:
			if age >= sch.MaxAge {
				last := rc.Err
				rc.State, rc.Next = StateBounced, 0
				rc.Err = "5.4.7 Delivery time expired"
				if last != "" {
					rc.Err += "; last error: " + last
				}
				h.Disposition, h.Status = DispExpired, rc.Err
				hist = append(hist, h)
				d := dsnFor(rc, "5.4.7", now)
				d.reason = "delivery time expired after " + humanDuration(age)
				if last != "" {
					d.reason += "; last error: " + last
				}
				failed = append(failed, d)
				break
			}
			rc.State = StateDeferred
			rc.Next = unixNano(retry.Next(received, now, rc.Attempts, sch.RetryInterval, sch.MaxAge))
			if sch.WarningAfter > 0 && !rc.Warned && age >= sch.WarningAfter {
				rc.Warned = true
				if sender != "" {
					d := dsnFor(rc, statusFor('4', res.Enhanced), now)
					d.until = received.Add(sch.MaxAge)
					delayed = append(delayed, d)
				}
			}
		}
	}
	if !changed {
		if !q.stopped {
			q.plan(m, nowN)
		}
		q.mu.Unlock()
		return
	}
	var events []string
	if len(failed) > 0 && sender == "" && !m.p.Dead {
		m.p.Dead = true
		events = append(events, fmt.Sprintf("mail queue: message %s is an undeliverable bounce; kept as dead mail", m.id))
	}
	rec := newRecord(nil)
	var dsns []*pmsg
	var dsnIDs []string
	for _, n := range []struct {
		action string
		rcpts  []dsnRcpt
	}{{"failed", failed}, {"delayed", delayed}} {
		if len(n.rcpts) == 0 || sender == "" {
			continue
		}
		if dsn.Off {
			events = append(events, fmt.Sprintf("mail queue: message %s: no delivery status notification (%s, %d recipient(s)) for <%s>: dsn-status is disabled",
				m.id, n.action, len(n.rcpts), sender))
			continue
		}
		id := q.ids.next(now)
		body := buildDSN(dsnInput{id: id, host: host, from: dsn.From, fromName: dsn.DisplayName, orig: m, action: n.action, rcpts: n.rcpts, headers: hdrs, now: now})
		p := &pmsg{Env: Envelope{From: "", Recipients: []string{sender}, Received: now}, Received: nowN,
			Rcpts: []prcpt{{Addr: sender, State: StateQueued, Next: nowN}}}
		meta, err := encodeMeta(p)
		if err != nil {
			continue
		}
		rec.msg(id, meta, body)
		dsns, dsnIDs = append(dsns, p), append(dsnIDs, id)
		events = append(events, fmt.Sprintf("mail queue: message %s: delivery status notification %s (%s, %d recipient(s)) queued for <%s>",
			m.id, id, n.action, len(n.rcpts), sender))
	}
	if m.done() && !m.p.Dead {
		rec.del(m.id)
		q.remove(m)
	} else {
		rec.put(m.id, m.value())
		if !q.stopped {
			q.plan(m, nowN)
		} else {
			q.setDue(m, 0)
		}
	}
	rec.seal()
	w, err := q.jr.append(rec, false)
	q.mu.Unlock()
	if err == nil {
		err = w.wait()
	}
	if err != nil {
		q.event("error", "mail queue: message %s: recording the delivery results failed: %v", m.id, err)
	}
	q.history(hist)
	for _, e := range events {
		q.event("information", "%s", e)
	}
	if err == nil {
		for i, p := range dsns {
			q.add(newMessage(dsnIDs[i], w.locs[i], p))
		}
	}
}

// purgeDead deletes the dead mail whose last attempt is DeadMailExpiry or
// more before now, durably (one journal record per 1000 messages), with
// an event for each.
func (q *Queue) purgeDead(now time.Time) {
	if q.o.DeadMailExpiry == nil {
		return
	}
	keep := q.o.DeadMailExpiry()
	if keep <= 0 {
		return
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	var old []*message
	for _, m := range q.msgs {
		if m.p.Dead && m.done() && now.Sub(m.lastAttempt()) >= keep {
			old = append(old, m)
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].id < old[j].id })
	var ws []*waiter
	var events []string
	var err error
	for len(old) > 0 && err == nil {
		batch := old[:min(len(old), 1000)]
		old = old[len(batch):]
		rec := newRecord(nil)
		for _, m := range batch {
			rec.del(m.id)
		}
		rec.seal()
		var w *waiter
		if w, err = q.jr.append(rec, false); err != nil {
			break
		}
		ws = append(ws, w)
		for _, m := range batch {
			q.remove(m)
			rcpts := make([]string, len(m.p.Rcpts))
			for i, r := range m.p.Rcpts {
				rcpts[i] = "<" + r.Addr + ">"
			}
			events = append(events, fmt.Sprintf("mail queue: dead mail %s to %s deleted: kept %s since its last attempt (deadmail-expiry)",
				m.id, strings.Join(rcpts, ", "), humanDuration(now.Sub(m.lastAttempt()))))
		}
	}
	q.mu.Unlock()
	for _, w := range ws {
		if werr := w.wait(); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		q.event("error", "mail queue: deleting expired dead mail failed: %v", err)
		return
	}
	for _, e := range events {
		q.event("information", "%s", e)
	}
}
