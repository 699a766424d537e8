package queue

import (
	"encoding/json"
	"io"
	"sync"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// Enqueue stores a message: when it returns nil the message is on disk
// (fsynced) and will be delivered. Larger messages than MaxMessageBytes are
// refused with ErrTooBig; when the disk is (nearly) full the error is a
// DiskFullError, for which errors.Is(err, syscall.ENOSPC) holds. A refused
// message leaves nothing behind.
func (q *Queue) Enqueue(env Envelope, msg io.Reader) (string, error) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closing {
		return "", ErrClosed
	}
	if len(env.Recipients) == 0 {
		return "", ErrNoRcpt
	}
	if err := q.disk.room(); err != nil {
		return "", err
	}
	now := q.now()
	id := q.ids.next(now)
	p := &pmsg{Env: env, Received: unixNano(now), Rcpts: make([]prcpt, len(env.Recipients))}
	p.Env.Recipients = append([]string(nil), env.Recipients...)
	for i, r := range env.Recipients {
		p.Rcpts[i] = prcpt{Addr: r, State: StateQueued, Next: p.Received}
	}
	meta, err := json.Marshal(p)
	if err != nil {
		return "", err
	}

	q.jr.begin()
	announced := true
	defer func() {
		if announced {
			q.jr.abort()
		}
	}()
	bp := bufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 2*inlineMax {
			bufPool.Put(bp)
		}
	}()
	r := newRecord(*bp)
	at := r.msgStart(id, meta)
	limit := int64(inlineMax)
	maxSize := q.o.MaxMessageBytes
	if maxSize > 0 && maxSize < limit {
		limit = maxSize
	}
	eof, err := readUpTo(r, msg, at, limit)
	*bp = r.b[:0]
	if err != nil {
		return "", err
	}
	size := int64(len(r.b) - at)
	var w *waiter
	var l loc
	switch {
	case eof && size <= limit:
		r.msgEnd(id, meta, at)
		r.seal()
		announced = false
		if w, err = q.jr.append(r, true); err != nil {
			return "", err
		}
		*bp = r.b[:0]
	case maxSize > 0 && size > maxSize:
		return "", ErrTooBig
	default:
		// A large message: the body goes to a file of its own. Commits
		// do not wait for it meanwhile.
		q.jr.abort()
		announced = false
		if l, err = q.writeBodyFile(r.b[at:], msg, maxSize); err != nil {
			return "", err
		}
		r = newRecord(r.b[:0])
		r.ext(id, meta, l)
		r.seal()
		if w, err = q.jr.append(r, false); err != nil {
			q.segs.remove(l.seg)
			return "", err
		}
		*bp = r.b[:0]
	}
	if err := w.wait(); err != nil {
		return "", err
	}
	if len(w.locs) > 0 {
		l = w.locs[0]
	}
	q.stats.enqueued.Add(1)
	q.add(newMessage(id, l, p))
	return id, nil
}

// readUpTo appends the body to r.b until EOF or until more than limit
// bytes were read. It reports whether EOF was reached.
func readUpTo(r *record, src io.Reader, at int, limit int64) (bool, error) {
	for {
		if int64(len(r.b)-at) > limit {
			return false, nil
		}
		if cap(r.b)-len(r.b) < 4096 {
			nb := make([]byte, len(r.b), 2*cap(r.b)+8192)
			copy(nb, r.b)
			r.b = nb
		}
		room := cap(r.b) - len(r.b)
		if over := limit + 1 - int64(len(r.b)-at); int64(room) > over {
			room = int(over)
		}
		n, err := src.Read(r.b[len(r.b) : len(r.b)+room])
		r.b = r.b[:len(r.b)+n]
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// add makes a committed new message known and schedules it.
func (q *Queue) add(m *message) {
	q.mu.Lock()
	q.msgs[m.id] = m
	q.plan(m, unixNano(q.now()))
	q.mu.Unlock()
}
