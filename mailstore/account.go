package mailstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

const (
	indexName = "index.db"
	msgDir    = "msg"
	// shardSize is the number of message files per directory.
	shardSize = 8192
)

// Account is one account's mail: its index and message files. Its methods
// are safe for concurrent use; every change goes through the account's
// committer, which commits concurrent changes together.
type Account struct {
	s      *Store
	name   string
	dir    string
	msgDir string
	db     *bolt.DB

	// files is held shared while a reader looks a message up and opens its
	// file, and exclusively while committed expunges unlink theirs: a
	// reader either opens the file before it is unlinked (and reads it to
	// the end, POSIX keeps it) or finds the message gone.
	files sync.RWMutex

	idMu     sync.Mutex
	nextID   uint64              // next message file ID
	inflight map[uint64]struct{} // file IDs written, not yet committed or removed
	shards   map[uint64]bool     // shard directories known to exist durably

	usage atomic.Int64 // committed bytes, for the cheap quota check before writing

	c committer

	subMu sync.Mutex
	subs  map[*Subscription]struct{}
}

func openAccount(s *Store, key string) (*Account, error) {
	dir := filepath.Join(s.dir, dirName(key))
	a := &Account{s: s, name: key, dir: dir, msgDir: filepath.Join(dir, msgDir),
		inflight: map[uint64]struct{}{}, shards: map[uint64]bool{}, subs: map[*Subscription]struct{}{}}
	_, statErr := os.Stat(filepath.Join(dir, indexName))
	created := os.IsNotExist(statErr)
	if err := os.MkdirAll(a.msgDir, 0o700); err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, indexName), 0o600, &bolt.Options{
		Timeout:        2 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrInUse, key)
		}
		return nil, fmt.Errorf("mailstore: open %s: %w", key, err)
	}
	a.db = db
	now := s.opts.Now()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		x := newIx(tx)
		if x.getU32(kUIDValidity) == 0 {
			// UIDVALIDITY values start at the creation time, so an
			// account deleted and created again does not reuse them.
			if err := x.putU32(kUIDValidity, uint32(now.Unix())); err != nil {
				return err
			}
			for _, d := range DefaultMailboxes {
				if x.mboxes.Get([]byte(d.Name)) != nil {
					continue
				}
				r, err := x.newMailbox(d.SpecialUse)
				if err != nil {
					return err
				}
				r.Subscribed = true
				if err := x.putMailbox(d.Name, r); err != nil {
					return err
				}
			}
		}
		// Forget delivery IDs older than the queue keeps messages.
		cut := now.Add(-s.opts.DeliveryIDKeep).UnixNano()
		c := x.delivers.Cursor()
		for k, v := c.First(); k != nil; {
			if int64(u64(v)) < cut {
				if err := c.Delete(); err != nil {
					return err
				}
				k, v = c.Seek(k)
				continue
			}
			k, v = c.Next()
		}
		a.nextID = max(x.getU64(kNextID), 1)
		a.usage.Store(x.usage().Bytes)
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("mailstore: init %s: %w", key, err)
	}
	if created {
		// The account's directories and index file are entries of their
		// parents: make them durable before anything is acknowledged.
		for _, d := range []string{dir, s.dir} {
			if err := s.syncDir(d); err != nil {
				db.Close()
				return nil, fmt.Errorf("mailstore: %w", err)
			}
		}
	}
	a.c.start(a)
	return a, nil
}

// Name returns the account's name (lower case).
func (a *Account) Name() string { return a.name }

func (a *Account) close() error {
	a.c.stop()
	a.subMu.Lock()
	for s := range a.subs {
		s.closeLocked(ErrClosed)
	}
	a.subs = nil
	a.subMu.Unlock()
	return a.db.Close()
}

// filePath returns the path of message file id and its directory.
func (a *Account) filePath(id uint64) (path, dir string) {
	dir = filepath.Join(a.msgDir, strconv.FormatUint(id/shardSize, 10))
	return filepath.Join(dir, strconv.FormatUint(id, 10)), dir
}

// newFile allocates a message file ID and creates its file. A file left
// under that name by a crash is removed first: it has no index entry, since
// every commit records a next ID above all IDs handed out before it.
func (a *Account) newFile() (uint64, *os.File, string, error) {
	a.idMu.Lock()
	id := a.nextID
	a.nextID++
	a.inflight[id] = struct{}{}
	shard := id / shardSize
	known := a.shards[shard]
	a.idMu.Unlock()
	path, dir := a.filePath(id)
	if !known {
		if err := os.Mkdir(dir, 0o700); err == nil {
			if err := a.s.syncDir(a.msgDir); err != nil {
				a.release(id)
				return 0, nil, "", err
			}
		} else if !os.IsExist(err) {
			a.release(id)
			return 0, nil, "", err
		}
		a.idMu.Lock()
		a.shards[shard] = true
		a.idMu.Unlock()
	}
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		a.release(id)
		return 0, nil, "", err
	}
	return id, f, dir, nil
}

// release ends the flight of a file ID (committed, or its file removed).
func (a *Account) release(id uint64) {
	a.idMu.Lock()
	delete(a.inflight, id)
	a.idMu.Unlock()
}

// reserved returns the highest file ID handed out plus one, for the index.
func (a *Account) reserved() uint64 {
	a.idMu.Lock()
	defer a.idMu.Unlock()
	return a.nextID
}

// txCtx collects what one operation did inside the index transaction.
type txCtx struct {
	now     time.Time
	changes []Change
	unlink  []uint64
	usage   int64 // change of the committed bytes
}

// op is one change waiting for the committer.
type op struct {
	dirs   []string   // directories to fsync before the index commit
	synced chan error // when not nil: the op's file sync, done by its caller
	apply  func(x *ix, c *txCtx) error
	err    error
	done   chan struct{}
}

// committer commits an account's changes in batches: one directory fsync
// per directory with new files and one index transaction for every change
// that is waiting when it starts, and for writers that announced a message
// file (begin) and finish it within the linger time. A writer submits its
// op once its file is written and syncs the file while the committer syncs
// the directory; the index transaction waits for both.
type committer struct {
	a        *Account
	mu       sync.Mutex
	pending  []*op
	writers  int    // Deliver/Append calls writing their file
	arrivals uint64 // ops submitted so far
	lingerTo uint64 // while lingering: the arrivals waited for
	stopping bool
	kick     chan struct{}
	arrived  chan struct{}
	stopped  chan struct{}
}

func (c *committer) start(a *Account) {
	c.a = a
	c.kick = make(chan struct{}, 1)
	c.arrived = make(chan struct{}, 1)
	c.stopped = make(chan struct{})
	go c.run()
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// begin announces a writer that will submit an op after writing its file.
func (c *committer) begin() {
	c.mu.Lock()
	c.writers++
	c.mu.Unlock()
}

// abort withdraws an announcement.
func (c *committer) abort() {
	c.mu.Lock()
	c.writers--
	if c.lingerTo != 0 {
		signal(c.arrived)
	}
	c.mu.Unlock()
}

// do submits o and waits for its commit.
func (c *committer) do(o *op) error {
	if err := c.submit(o, false); err != nil {
		return err
	}
	<-o.done
	return o.err
}

// submit queues o for the next commit; o.done is closed once it is
// committed or failed (o.err). announced says the caller called begin.
func (c *committer) submit(o *op, announced bool) error {
	o.done = make(chan struct{})
	c.mu.Lock()
	if announced {
		c.writers--
	}
	if c.stopping {
		c.mu.Unlock()
		return ErrClosed
	}
	c.pending = append(c.pending, o)
	c.arrivals++
	if c.lingerTo != 0 {
		signal(c.arrived)
	}
	c.mu.Unlock()
	signal(c.kick)
	return nil
}

func (c *committer) stop() {
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return
	}
	c.stopping = true
	c.mu.Unlock()
	signal(c.kick)
	<-c.stopped
}

func (c *committer) run() {
	defer close(c.stopped)
	linger := c.a.s.opts.Linger
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for range c.kick {
		for {
			c.mu.Lock()
			if len(c.pending) == 0 {
				stop := c.stopping
				c.mu.Unlock()
				if stop {
					return
				}
				break
			}
			if c.writers > 0 && linger > 0 && !c.stopping {
				c.lingerTo = c.arrivals + uint64(c.writers)
				deadline := time.Now().Add(linger)
				for c.writers > 0 && c.arrivals < c.lingerTo {
					d := time.Until(deadline)
					if d <= 0 {
						break
					}
					c.mu.Unlock()
					timer.Reset(d)
					select {
					case <-c.arrived:
					case <-timer.C:
					}
					timer.Stop()
					c.mu.Lock()
				}
				c.lingerTo = 0
			}
			batch := c.pending
			c.pending = nil
			c.mu.Unlock()
			c.a.commit(batch)
		}
	}
}

// commit makes a batch durable: the directories of its new files, then one
// index transaction; then it unlinks the files the batch freed, publishes
// the changes in commit order and wakes the callers.
func (a *Account) commit(batch []*op) {
	s := a.s
	var err error
	seen := map[string]bool{}
	for _, o := range batch {
		for _, d := range o.dirs {
			if !seen[d] {
				seen[d] = true
				if e := s.syncDir(d); e != nil && err == nil {
					err = e
				}
			}
		}
	}
	if err == nil && len(seen) > 0 {
		err = s.hook(stepDirSynced)
	}
	// Wait for the file syncs of the batch's writers: an op whose file is
	// not durable fails alone.
	for _, o := range batch {
		if o.synced != nil {
			if e := <-o.synced; e != nil {
				o.err = e
			}
		}
	}
	ctxs := make([]*txCtx, len(batch))
	if err == nil {
		now := s.opts.Now()
		err = a.db.Update(func(tx *bolt.Tx) error {
			x := newIx(tx)
			for i, o := range batch {
				if o.err != nil {
					continue
				}
				c := &txCtx{now: now}
				if e := o.apply(x, c); e != nil {
					var te *txError
					if errors.As(e, &te) {
						return e
					}
					o.err = e
					continue
				}
				ctxs[i] = c
			}
			if n := a.reserved(); n > x.getU64(kNextID) {
				if err := x.putU64(kNextID, n); err != nil {
					return err
				}
			}
			return s.hook(stepIndex)
		})
		s.stats.commits.Add(1)
	}
	if err != nil {
		for _, o := range batch {
			if o.err == nil {
				o.err = err
			}
			close(o.done)
		}
		return
	}
	s.hook(stepCommitted)
	s.stats.ops.Add(int64(len(batch)))
	var unlink []uint64
	var changes []Change
	for _, c := range ctxs {
		if c == nil {
			continue
		}
		unlink = append(unlink, c.unlink...)
		changes = append(changes, c.changes...)
		a.usage.Add(c.usage)
	}
	if len(unlink) > 0 {
		a.files.Lock()
		for _, id := range unlink {
			p, _ := a.filePath(id)
			os.Remove(p) // a failure leaves a file Check removes
		}
		a.files.Unlock()
	}
	if len(changes) > 0 {
		a.publish(changes)
	}
	for _, o := range batch {
		close(o.done)
	}
}

// update commits one change that writes no file.
func (a *Account) update(apply func(x *ix, c *txCtx) error) error {
	return a.c.do(&op{apply: apply})
}

// view runs fn in a read transaction of the index.
func (a *Account) view(fn func(x *ix) error) error {
	return a.db.View(func(tx *bolt.Tx) error { return fn(newIx(tx)) })
}
