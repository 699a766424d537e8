package queue

import (
	"io"
	"os"
	"sort"
	"time"
)

// Compaction. A message that stays queued (a destination that is down for
// days) keeps the journal segment holding its body, and with it everything
// else in the segment. When an old segment holds less than a quarter of
// its size in live bodies, the checkpointer copies those bodies, with the
// messages' current state, to the current segment (one record per batch),
// and the old segment goes at the next checkpoint. Copying at most a third
// of what is reclaimed bounds the extra writes.
const (
	compactAge         = time.Minute // a segment must be this old (last write)
	compactMaxFraction = 4           // live bytes < size/4
	compactBatchBytes  = 4 << 20     // bodies per record
	compactRoundBytes  = 64 << 20    // bodies moved per checkpoint at most
)

// compact relocates the live bodies of the segments that qualify, up to
// compactRoundBytes per call.
func (c *checkpointer) compact() {
	moved := int64(0)
	for _, cd := range c.compactCandidates() {
		if moved >= compactRoundBytes {
			return
		}
		var ids []string
		c.mu.Lock()
		for id, r := range c.indb {
			if r.seg == cd {
				ids = append(ids, id)
			}
		}
		c.mu.Unlock()
		n, size, err := c.q.relocate(cd, ids)
		if err != nil {
			c.q.event("error", "mail queue: compacting segment %08d: %v", cd, err)
			return
		}
		moved += size
		if n > 0 {
			c.q.event("information", "mail queue: compacted segment %08d: %d message(s), %d bytes moved", cd, n, size)
		}
	}
}

// compactCandidates returns the old segments that are mostly dead.
func (c *checkpointer) compactCandidates() []uint32 {
	type cand struct {
		s    *segFile
		live int64
	}
	var cands []cand
	segs := c.q.segs.sorted(extSeg)
	c.mu.Lock()
	ck := c.ckpos
	for _, s := range segs {
		if s.seq >= ck.seg {
			break
		}
		if c.refs[s.seq] > 0 {
			cands = append(cands, cand{s, c.live[s.seq]})
		}
	}
	c.mu.Unlock()
	var out []uint32
	for _, cd := range cands {
		st, err := os.Stat(cd.s.path())
		if err != nil || cd.live*compactMaxFraction > st.Size() || time.Since(st.ModTime()) < time.Duration(c.compactAge.Load()) {
			continue
		}
		out = append(out, cd.s.seq)
	}
	return out
}

// relocate copies the bodies of the given messages, if they are still in
// segment seq, to the current segment.
func (q *Queue) relocate(seq uint32, ids []string) (moved int, bytes int64, err error) {
	sort.Strings(ids)
	type item struct {
		id   string
		l    loc
		body []byte
	}
	for len(ids) > 0 {
		var items []item
		size := 0
		for len(ids) > 0 && size < compactBatchBytes {
			id := ids[0]
			ids = ids[1:]
			q.mu.Lock()
			m := q.msgs[id]
			ok := m != nil && m.loc.seg == seq
			var l loc
			if ok {
				l = m.loc
			}
			q.mu.Unlock()
			if !ok {
				continue
			}
			r, err := q.openBody(l)
			if err != nil {
				return moved, bytes, err
			}
			b, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				q.event("error", "mail queue: message %s: %v; left in place", id, err)
				continue
			}
			items = append(items, item{id, l, b})
			size += len(b)
		}
		if len(items) == 0 {
			continue
		}
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return moved, bytes, ErrClosed
		}
		rec := newRecord(nil)
		var ms []*message
		for _, it := range items {
			m := q.msgs[it.id]
			if m == nil || m.loc != it.l {
				continue
			}
			meta, err := encodeMeta(&m.p)
			if err != nil {
				continue
			}
			rec.msg(m.id, meta, it.body)
			ms = append(ms, m)
			bytes += it.l.n
		}
		if len(ms) == 0 {
			q.mu.Unlock()
			continue
		}
		rec.seal()
		w, err := q.jr.append(rec, false)
		if err != nil {
			q.mu.Unlock()
			return moved, bytes, err
		}
		for i, m := range ms {
			m.loc = w.locs[i]
		}
		q.mu.Unlock()
		if err := w.wait(); err != nil {
			return moved, bytes, err
		}
		moved += len(ms)
	}
	return moved, bytes, nil
}

// openMsg opens the body of m where it is now (compaction moves bodies).
func (q *Queue) openMsg(m *message) (*bodyReader, error) {
	for i := 0; ; i++ {
		q.mu.Lock()
		l := m.loc
		q.mu.Unlock()
		r, err := q.openBody(l)
		if err == nil || i == 1 {
			return r, err
		}
	}
}
