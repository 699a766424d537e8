package eventlog

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// This file holds the batching writer shared by every record type kept in
// log.db. Each record type lives in its own bucket with its own record
// bound; callers hand records to the writer through one buffered queue and
// never wait for the disk. Adding a record type means adding a bucket to
// the writer's configuration and a type that implements encoder.

// encoder is a record that can be stored. encode is called inside the batch
// transaction with the ID allocated for the record.
type encoder interface {
	encode(id uint64) ([]byte, error)
}

// entry is one element of the writer's queue: a record for a bucket, or a
// control request (flush or stop) when done is non-nil.
type entry struct {
	bucket string
	rec    encoder
	done   chan error // flush/stop: receives the outcome once all earlier entries are committed
	stop   bool       // stop after answering done
}

// writerConfig holds the writer's tunables; tests shrink them.
type writerConfig struct {
	queueSize  int           // queued records before Log starts dropping
	maxBatch   int           // records per transaction at most
	interval   time.Duration // a batch is committed at most this long after its first record
	historyMax int           // bound of the history bucket (0: the event bound)
}

func defaultWriterConfig() writerConfig {
	return writerConfig{queueSize: 16384, maxBatch: 512, interval: 200 * time.Millisecond}
}

// writer owns all writes to the database: one goroutine commits queued
// records in batches, one transaction per batch.
type writer struct {
	db     *bolt.DB
	cfg    writerConfig
	bounds map[string]int // bucket -> maximum records kept (<= 0: unbounded)

	queue chan entry
	kick  chan struct{} // wakes an idle writer to report drops
	done  chan struct{} // closed when the writer goroutine has returned

	closed  atomic.Bool
	dropped atomic.Uint64 // drops not yet reported
	total   atomic.Uint64 // all drops since open

	// dropNotice builds the record that reports n dropped records.
	dropNotice func(n uint64) entry

	mu  sync.Mutex
	err error // first commit error since the last flush
}

func newWriter(db *bolt.DB, cfg writerConfig, bounds map[string]int, dropNotice func(uint64) entry) (*writer, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for name := range bounds {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	w := &writer{
		db:         db,
		cfg:        cfg,
		bounds:     bounds,
		queue:      make(chan entry, cfg.queueSize),
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		dropNotice: dropNotice,
	}
	go w.run()
	return w, nil
}

// enqueue queues a record without blocking; when the queue is full (or the
// writer is closed) the record is dropped and counted.
func (w *writer) enqueue(bucket string, rec encoder) {
	if w.closed.Load() {
		w.drop()
		return
	}
	select {
	case w.queue <- entry{bucket: bucket, rec: rec}:
	default:
		w.drop()
	}
}

func (w *writer) drop() {
	w.dropped.Add(1)
	w.total.Add(1)
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// control queues a flush (or stop) request behind everything queued so far
// and waits until the writer has committed all of it.
func (w *writer) control(stop bool) error {
	req := entry{done: make(chan error, 1), stop: stop}
	select {
	case w.queue <- req:
	case <-w.done:
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-w.done:
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (w *writer) flush() error {
	if w.closed.Load() {
		return ErrClosed
	}
	return w.control(false)
}

// close stops the writer after committing everything queued before it.
// Records logged after close are dropped.
func (w *writer) close() error {
	if w.closed.Swap(true) {
		return ErrClosed
	}
	return w.control(true)
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]entry, 0, w.cfg.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		var ctl *entry

		// Wait for the first record, a control request or a drop to report.
		select {
		case e := <-w.queue:
			if e.done != nil {
				ctl = &e
			} else {
				batch = append(batch, e)
			}
		case <-w.kick:
		}

		// Collect until the batch is full, the interval has passed, or a
		// control request arrives.
		if ctl == nil {
			timer.Reset(w.cfg.interval)
		collect:
			for len(batch) < w.cfg.maxBatch {
				select {
				case e := <-w.queue:
					if e.done != nil {
						ctl = &e
						break collect
					}
					batch = append(batch, e)
				case <-timer.C:
					break collect
				}
			}
			timer.Stop()
		}

		w.commit(batch)

		if ctl != nil {
			w.mu.Lock()
			err := w.err
			w.err = nil
			w.mu.Unlock()
			ctl.done <- err
			if ctl.stop {
				return
			}
		}
	}
}

// commit writes batch, plus a notice for any unreported drops, in one
// transaction, pruning each touched bucket to its bound.
func (w *writer) commit(batch []entry) {
	records := uint64(len(batch))
	n := w.dropped.Swap(0)
	if n > 0 {
		batch = append(batch, w.dropNotice(n))
	}
	if len(batch) == 0 {
		return
	}
	err := w.db.Update(func(tx *bolt.Tx) error {
		touched := make(map[string]*bolt.Bucket, 1)
		for _, e := range batch {
			b := touched[e.bucket]
			if b == nil {
				if b = tx.Bucket([]byte(e.bucket)); b == nil {
					return errors.New("eventlog: unknown bucket " + e.bucket)
				}
				touched[e.bucket] = b
			}
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			val, err := e.rec.encode(id)
			if err != nil {
				return err
			}
			if err := b.Put(idKey(id), val); err != nil {
				return err
			}
		}
		for name, b := range touched {
			if err := prune(b, w.bounds[name]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The batch is lost; count it (and the drops its notice was
		// reporting) so the loss is reported once writing works again.
		w.dropped.Add(n + records)
		w.total.Add(records)
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
	}
}

// prune deletes the oldest records of b until at most max remain. Keys are
// consecutive IDs, since records are only ever removed from the old end, so
// the count is last-first+1.
func prune(b *bolt.Bucket, max int) error {
	if max <= 0 {
		return nil
	}
	c := b.Cursor()
	first, _ := c.First()
	last, _ := c.Last()
	if first == nil {
		return nil
	}
	n := binary.BigEndian.Uint64(last) - binary.BigEndian.Uint64(first) + 1
	for ; n > uint64(max); n-- {
		if k, _ := c.First(); k == nil {
			break
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func idKey(id uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, id)
	return k
}
