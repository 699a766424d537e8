package queue

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Index layout (bbolt):
//
//	bucket "msgs": message ID → value (body location and JSON state)
//	bucket "meta": "checkpoint" → journal position (segment u32, offset u64)
//	               "version"    → format version
var (
	bucketMsgs    = []byte("msgs")
	bucketMeta    = []byte("meta")
	keyCheckpoint = []byte("checkpoint")
	keyVersion    = []byte("version")
	formatVersion = []byte("1")
)

const (
	checkpointInterval = time.Second
	checkpointMaxOps   = 8192 // commit early beyond this many changed messages
)

// checkpointer writes committed journal operations to the index, in one
// bbolt transaction per interval, and deletes the files nothing needs any
// more.
type checkpointer struct {
	q        *Queue
	interval time.Duration

	commitMu sync.Mutex // one commit at a time, in order

	mu    sync.Mutex
	pend  map[string][]byte // latest value per message since the last commit, nil: removed
	pos   pos               // journal position after the operations in pend
	dirty bool
	ckpos pos // position of the last checkpoint written
	// What the index holds once the commit in progress (if any) is done:
	indb map[string]ref   // message ID → where its body is
	refs map[uint32]int   // file → messages whose body it holds
	live map[uint32]int64 // file → bytes of those bodies
	cand map[uint32]bool  // body files that may have lost their last reference

	compactAge atomic.Int64 // nanoseconds: a segment must be this old to be compacted

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newCheckpointer(q *Queue) *checkpointer {
	c := &checkpointer{
		q:        q,
		interval: checkpointInterval,
		pend:     map[string][]byte{},
		indb:     map[string]ref{},
		refs:     map[uint32]int{},
		live:     map[uint32]int64{},
		cand:     map[uint32]bool{},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.compactAge.Store(int64(compactAge))
	return c
}

// ref is where the index keeps a message's body.
type ref struct {
	seg uint32
	n   int64
}

func refOf(v []byte) ref {
	l, _ := decodeLoc(v)
	return ref{seg: l.seg, n: l.n}
}

// add takes the operations of a committed batch, in journal order.
func (c *checkpointer) add(batch []*waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range batch {
		for _, op := range w.ops {
			if op.val == nil {
				if _, ok := c.indb[op.id]; !ok {
					// Never reached the index: forget it altogether.
					if v := c.pend[op.id]; v != nil {
						c.cand[refOf(v).seg] = true
					}
					delete(c.pend, op.id)
					continue
				}
			}
			c.pend[op.id] = op.val
		}
	}
	c.pos = batch[len(batch)-1].end
	c.dirty = true
	if len(c.pend) >= checkpointMaxOps {
		signal(c.kick)
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.kick:
		case <-c.stop:
			return
		}
		if c.commit() == nil {
			c.compact()
		}
	}
}

// commit writes what changed since the last commit to the index.
func (c *checkpointer) commit() error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	batch, p := c.pend, c.pos
	c.pend, c.dirty = map[string][]byte{}, false
	for id, v := range batch {
		old, had := c.indb[id]
		if v == nil {
			if had {
				delete(c.indb, id)
				c.unref(old)
			}
			continue
		}
		r := refOf(v)
		if had && old == r {
			continue
		}
		if had {
			c.unref(old)
		}
		c.indb[id] = r
		c.ref(r)
	}
	c.mu.Unlock()

	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	err := c.q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		for _, id := range ids {
			var err error
			if v := batch[id]; v == nil {
				err = b.Delete([]byte(id))
			} else {
				err = b.Put([]byte(id), v)
			}
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyCheckpoint, p.encode())
	})
	if err != nil {
		c.q.event("error", "mail queue: index checkpoint failed: %v", err)
		c.mu.Lock()
		for id, v := range batch {
			if _, newer := c.pend[id]; !newer {
				c.pend[id] = v
			}
		}
		c.dirty = true
		c.mu.Unlock()
		return err
	}
	c.q.stats.checkpoints.Add(1)
	c.mu.Lock()
	c.ckpos = p
	c.mu.Unlock()
	c.gc(p)
	return nil
}

// ref and unref count references to files. c.mu is held.
func (c *checkpointer) ref(r ref) {
	c.refs[r.seg]++
	c.live[r.seg] += r.n
}

func (c *checkpointer) unref(r ref) {
	c.refs[r.seg]--
	c.live[r.seg] -= r.n
	if c.refs[r.seg] <= 0 {
		delete(c.refs, r.seg)
		delete(c.live, r.seg)
		c.cand[r.seg] = true
	}
}

// gc deletes journal segments before the checkpoint that hold no body any
// more, and body files that lost their last reference.
func (c *checkpointer) gc(p pos) {
	var del []uint32
	c.mu.Lock()
	for seq := range c.cand {
		if s := c.q.segs.get(seq); s != nil && s.ext == extBody && c.refs[seq] == 0 {
			del = append(del, seq)
		}
		delete(c.cand, seq)
	}
	for _, s := range c.q.segs.sorted(extSeg) {
		if s.seq >= p.seg {
			break
		}
		if c.refs[s.seq] == 0 {
			del = append(del, s.seq)
		}
	}
	c.mu.Unlock()
	for _, seq := range del {
		c.q.segs.remove(seq)
	}
}

// close stops the goroutine and writes the last checkpoint.
func (c *checkpointer) close() error {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	return c.commit()
}

func (c *checkpointer) stopNoCommit() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}
