package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// recover loads the index, replays the journal after its checkpoint,
// writes a new checkpoint, removes the files nothing refers to and builds
// the in-memory state. It runs in Open, before any other goroutine.
func (q *Queue) recover() error {
	var ck pos
	vals := map[string][]byte{}
	err := q.db.Update(func(tx *bolt.Tx) error {
		mb, err := tx.CreateBucketIfNotExists(bucketMsgs)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, formatVersion); err != nil {
				return err
			}
		case !bytes.Equal(v, formatVersion):
			return fmt.Errorf("unsupported index format %q", v)
		}
		ck = decodePos(meta.Get(keyCheckpoint))
		return mb.ForEach(func(k, v []byte) error {
			vals[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("queue: index: %w", err)
	}
	if err := q.segs.load(); err != nil {
		return fmt.Errorf("queue: %w", err)
	}

	// Replay the journal.
	changed := map[string]bool{}
	replayed := 0
	for _, s := range q.segs.sorted(extSeg) {
		if s.seq < ck.seg {
			continue
		}
		start := int64(0)
		if s.seq == ck.seg {
			start = ck.off
		}
		st, err := s.f.Stat()
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		end, err := scanSegment(s.f, st.Size(), s.seq, start, func(ops []replayOp) {
			replayed++
			for _, op := range ops {
				changed[op.id] = true
				if op.kind == opDel {
					delete(vals, op.id)
				} else {
					vals[op.id] = op.val
				}
			}
		})
		switch {
		case errors.Is(err, errTorn) && zeroFrom(s.f, end, st.Size()):
			// The preallocated rest of a segment that was in use when the
			// process ended: no record was cut short.
		case errors.Is(err, errTorn):
			q.event("warning", "mail queue: segment %s: ignored %d bytes from offset %d (an incomplete record from an interrupted write)",
				s.name(), st.Size()-end, end)
		case err != nil:
			return fmt.Errorf("queue: reading %s: %w", s.name(), err)
		}
	}

	// New writes go to a new segment; the checkpoint moves there.
	q.jr = newJournal(q)
	q.ck = newCheckpointer(q)
	q.jr.mu.Lock()
	err = q.jr.rotate()
	q.jr.mu.Unlock()
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := syncDir(q.segDir); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	newck := pos{seg: q.jr.cur.seq}
	err = q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		for id := range changed {
			var err error
			if v, ok := vals[id]; ok {
				err = b.Put([]byte(id), v)
			} else {
				err = b.Delete([]byte(id))
			}
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyCheckpoint, newck.encode())
	})
	if err != nil {
		return fmt.Errorf("queue: index: %w", err)
	}
	q.stats.checkpoints.Add(1)

	// In-memory state.
	now := q.now()
	nowN := unixNano(now)
	pending, dead := 0, 0
	for id, v := range vals {
		l, p, err := decodeValue(v)
		if err != nil {
			// Keep its body for inspection: the file stays referenced.
			q.event("error", "mail queue: message %s: unreadable state, ignored: %v", id, err)
			if l, err := decodeLoc(v); err == nil {
				q.ck.indb[id] = ref{seg: l.seg, n: l.n}
				q.ck.ref(ref{seg: l.seg, n: l.n})
			}
			continue
		}
		m := newMessage(id, l, p)
		if q.segs.get(l.seg) == nil {
			q.event("error", "mail queue: message %s: its stored body (file %08d) is missing; kept as dead mail", id, l.seg)
			m.p.Dead = true
			for i := range m.p.Rcpts {
				if r := &m.p.Rcpts[i]; !r.final() {
					r.State, r.Next, r.Err = StateBounced, 0, "stored message body is missing"
				}
			}
		}
		q.msgs[id] = m
		r := ref{seg: l.seg, n: l.n}
		q.ck.indb[id] = r
		q.ck.ref(r)
		q.ids.observe(id)
		if m.p.Dead {
			dead++
		}
		for _, r := range m.p.Rcpts {
			if !r.final() {
				pending++
			}
		}
	}
	for _, m := range q.msgs {
		q.plan(m, nowN)
	}
	for _, s := range q.segs.sorted(extBody) {
		if q.ck.refs[s.seq] == 0 {
			q.ck.cand[s.seq] = true
		}
	}
	q.ck.ckpos = newck
	q.ck.gc(newck)
	if len(q.msgs) > 0 || replayed > 0 {
		q.event("information", "mail queue: recovered %d message(s), %d recipient(s) to deliver, %d dead; %d journal record(s) replayed",
			len(q.msgs), pending, dead, replayed)
	}
	return nil
}

// zeroFrom reports whether r holds only zero bytes from off to size.
func zeroFrom(r io.ReaderAt, off, size int64) bool {
	buf := make([]byte, 64<<10)
	for off < size {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for _, c := range buf[:n] {
			if c != 0 {
				return false
			}
		}
		off += int64(n)
		if err != nil && off < size {
			return false
		}
	}
	return true
}
