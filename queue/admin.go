package queue

import (
	"io"
	"sort"
)

// List returns the messages in the queue, dead ones included (flagged),
// in order of arrival.
func (q *Queue) List() ([]Message, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	out := make([]Message, 0, len(q.msgs))
	for _, m := range q.msgs {
		out = append(out, m.export())
	}
	q.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get returns one message.
func (q *Queue) Get(id string) (*Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	m := q.msgs[normID(id)]
	if m == nil {
		return nil, ErrNotFound
	}
	e := m.export()
	return &e, nil
}

// Open returns the stored message (headers and body as received) and its
// size. The reader reports ErrCorrupt at the end if the checksum does not
// match.
func (q *Queue) Open(id string) (io.ReadCloser, int64, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, 0, ErrClosed
	}
	m := q.msgs[normID(id)]
	if m == nil {
		q.mu.Unlock()
		return nil, 0, ErrNotFound
	}
	q.mu.Unlock()
	r, err := q.openMsg(m)
	if err != nil {
		return nil, 0, err
	}
	return r, r.sr.Size(), nil
}

// Retry makes the waiting recipients of a message ("": of every message)
// due now. Recipients that failed for good are not retried, and a dead
// message with nothing left to deliver gives ErrDead.
func (q *Queue) Retry(id string) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	var targets []*message
	if id == "" {
		for _, m := range q.msgs {
			targets = append(targets, m)
		}
		sort.Slice(targets, func(i, j int) bool { return targets[i].id < targets[j].id })
	} else {
		m := q.msgs[normID(id)]
		if m == nil {
			q.mu.Unlock()
			return ErrNotFound
		}
		if m.p.Dead && m.done() {
			q.mu.Unlock()
			return ErrDead
		}
		targets = []*message{m}
	}
	now := unixNano(q.now())
	var ws []*waiter
	var err error
	rec := newRecord(nil)
	flush := func() {
		if len(rec.ops) == 0 || err != nil {
			return
		}
		rec.seal()
		var w *waiter
		if w, err = q.jr.append(rec, false); err == nil {
			ws = append(ws, w)
		}
		rec = newRecord(nil)
	}
	for _, m := range targets {
		changed := false
		for i := range m.p.Rcpts {
			r := &m.p.Rcpts[i]
			if !r.final() && !m.busy[i] && r.Next > now {
				r.Next = now
				changed = true
			}
		}
		if changed {
			rec.put(m.id, m.value())
			q.plan(m, now)
			if len(rec.ops) >= 1000 {
				flush()
			}
		}
	}
	flush()
	q.mu.Unlock()
	q.Kick()
	for _, w := range ws {
		if werr := w.wait(); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// Delete removes a message from the queue. Its recipients that were still
// to be delivered are recorded in the history as "Deleted".
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	m := q.msgs[normID(id)]
	if m == nil {
		q.mu.Unlock()
		return ErrNotFound
	}
	now := q.now()
	var hist []HistoryRecord
	for _, r := range m.p.Rcpts {
		if r.final() {
			continue
		}
		hist = append(hist, HistoryRecord{Time: now, MsgID: m.id, SessionID: m.p.Env.SessionID, ClientIP: m.p.Env.ClientIP,
			From: m.p.Env.From, To: r.Addr, Disposition: DispDeleted, Status: "deleted from the queue by the administrator",
			Host: r.Host, TLS: r.TLS, Attempts: r.Attempts, Classifier: m.p.Env.Classifier(r.Addr), InboundTLS: m.p.Env.TLS})
	}
	rec := newRecord(nil)
	rec.del(m.id)
	rec.seal()
	w, err := q.jr.append(rec, false)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.remove(m)
	q.mu.Unlock()
	err = w.wait()
	q.history(hist)
	return err
}
