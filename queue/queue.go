// Package queue is mailgate's durable mail queue.
//
// A message is on disk, fsynced, before Enqueue returns, and so before the
// SMTP server answers 250. The queue then hands the message to the
// Deliverer, one Job per message and recipient domain, retries temporary
// failures on the configured schedule, sends delay warnings and bounces
// (RFC 3464 delivery status notifications) to the envelope sender, and
// keeps what it still holds listable for the administrator (List, Get,
// Open, Retry, Delete).
//
// # On disk
//
// Everything lives in <Dir>/queue/:
//
//	seg/00000001.seg   journal segments: append-only, rotated at 64 MiB
//	seg/00000002.msg   the body of one large message (> 512 KiB)
//	index.db           bbolt: the checkpointed state of every message
//
// The journal is the write-ahead log of the queue. Every change is one
// record appended to the current segment: a new message (its state and its
// body, so that a message costs one write), the new state of a message
// after a delivery attempt, an administrator's retry, a deletion. A record
// is framed with its length and CRC-32C checksums of its header and of its
// payload, so that a torn tail left by a crash is recognised and ignored.
// A record holds several operations when they must happen together (a
// recipient bounced and the bounce message generated for it).
//
// Group commit: callers write their records themselves (under a short
// lock, in journal order) and wait; one committer goroutine takes every
// record written so far, fdatasyncs the segment (and the segment directory
// when a segment is new) and releases all of them at once. While other
// Enqueue calls are still reading their bodies the committer waits for
// them, at most 1 ms, so that they share the fsync. A commit costs one
// fdatasync however many messages and delivery results it carries.
//
// The index (bbolt) is a checkpoint of the journal: about once a second
// one bbolt transaction stores the latest state of every message changed
// since the previous checkpoint and the journal position it covers. Open
// reads the index, replays the journal from that position (stopping at the
// first invalid record of each segment), writes a new checkpoint and
// starts a new segment. A segment is deleted once the checkpoint has moved
// past it and no message keeps its body there; an old segment that holds
// less than a quarter of its size in live bodies (a destination down for
// days) is compacted: those bodies are copied forward and it goes.
//
// # Delivery
//
// One scheduler goroutine keeps a heap of messages ordered by the time of
// their next due recipient and turns due recipients into Jobs; a fixed pool
// of workers runs them, with a limit per destination domain. The results
// of a Job are one journal record. A temporary failure is retried after
// min(RetryInterval, 5 minutes) the first time, then after RetryInterval;
// the last attempt is made when the message reaches MaxAge and, failing,
// bounces with 5.4.7. A delay warning is sent once per recipient after
// WarningAfter. Bounces of bounces are never sent: a message from the null
// sender that fails for good, or is still undelivered at DSNMaxAge, is kept
// as dead mail, and deleted DeadMailExpiry after its last attempt. The
// Schedule is chosen per destination domain, so that mail to protected
// domains and mail to others may follow different policies.
package queue

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Defaults for zero Options fields and a zero Schedule.
const (
	DefaultWorkers       = 32
	DefaultPerDomain     = 8
	DefaultMinFreeBytes  = 64 << 20
	DefaultRetryInterval = 15 * time.Minute
	DefaultMaxAge        = 120 * time.Hour
)

// Errors.
var (
	ErrTooBig   = errors.New("queue: message exceeds the maximum size")
	ErrClosed   = errors.New("queue: closed")
	ErrNotFound = errors.New("queue: no such message")
	ErrDead     = errors.New("queue: message is an undeliverable bounce, kept for inspection; it can only be deleted")
	ErrInUse    = errors.New("queue: in use by another process")
	ErrNoRcpt   = errors.New("queue: message has no recipients")
	ErrCorrupt  = errors.New("queue: stored message is corrupt (checksum mismatch)")
)

// DiskFullError is returned by Enqueue when the file system holding the
// queue has too little space left. errors.Is(err, syscall.ENOSPC) holds.
type DiskFullError struct {
	Free, Min int64 // bytes free and the configured minimum; 0 when unknown
	Err       error // the underlying error, syscall.ENOSPC when only the threshold was hit
}

func (e *DiskFullError) Error() string {
	if e.Min > 0 {
		return fmt.Sprintf("queue: disk full: %d bytes free, %d required", e.Free, e.Min)
	}
	return "queue: disk full: " + e.Err.Error()
}

// DiskFull reports true: the SMTP server answers 452 4.3.1.
func (e *DiskFullError) DiskFull() bool { return true }

// Unwrap returns the underlying error (syscall.ENOSPC).
func (e *DiskFullError) Unwrap() error { return e.Err }

// Schedule is the retry policy for the recipients of one destination
// domain, read at each decision.
type Schedule struct {
	RetryInterval time.Duration // between attempts (0: DefaultRetryInterval)
	WarningAfter  time.Duration // delay notification after this long queued; 0: none
	MaxAge        time.Duration // bounce after this long queued (0: DefaultMaxAge)
	// DSNMaxAge is how long a message from the null sender (a delivery
	// status notification) may stay queued; then it is kept as dead mail
	// (0: MaxAge; OneAttempt: it is attempted once).
	DSNMaxAge time.Duration
}

// OneAttempt as Schedule.DSNMaxAge attempts a notification only once.
const OneAttempt time.Duration = -1

// DSNSettings are the queue's delivery status notifications.
type DSNSettings struct {
	Off         bool   // none is sent: the outcome is only logged
	From        string // the From address ("": MAILER-DAEMON@hostname)
	DisplayName string // its display name ("": Mail Delivery System)
}

func (q *Queue) dsnSettings() DSNSettings {
	if q.o.DSN == nil {
		return DSNSettings{}
	}
	return q.o.DSN()
}

// HistoryRecord is the final outcome for one recipient.
type HistoryRecord struct {
	Time        time.Time
	MsgID       string
	SessionID   string
	ClientIP    netip.Addr
	From, To    string
	Disposition string // "Delivered", "Bounced", "Deleted", "Expired"
	Status      string // the reply or the reason
	Host        string // the next hop of the last attempt
	TLS         string // the TLS of the last attempt, "" for plain text
	Attempts    int
	Classifier  string // why the recipient was accepted (Envelope.Classifier)
	InboundTLS  string // the TLS of the session the message came in on
}

// Dispositions in HistoryRecord.
const (
	DispDelivered = "Delivered"
	DispBounced   = "Bounced"
	DispDeleted   = "Deleted"
	DispExpired   = "Expired"
)

// Recipient states.
const (
	StateQueued    = "queued"
	StateDeferred  = "deferred"
	StateDelivered = "delivered"
	StateBounced   = "bounced"
)

// Options configure a Queue.
type Options struct {
	Dir       string // data directory; the queue lives in Dir/queue/
	Deliverer Deliverer
	// Schedule returns the retry policy for the recipients of a
	// destination domain (lower case), read at each decision.
	Schedule func(domain string) Schedule
	Hostname func() string // Reporting-MTA and MAILER-DAEMON@host for DSNs
	// DSN, read at each notification, turns notifications off or names
	// their sender (nil: on, from MAILER-DAEMON@Hostname).
	DSN func() DSNSettings
	// DeadMailExpiry, read by the scheduler about once a minute, is how
	// long dead mail is kept after its last attempt before it is deleted
	// (nil or 0: until the administrator deletes it).
	DeadMailExpiry func() time.Duration
	History        func(HistoryRecord) // one record per recipient at its final outcome
	Event          func(level, msg string)
	Workers        int // concurrent delivery attempts (default 32)
	PerDomain      int // concurrent attempts per destination domain (default 8)
	Now            func() time.Time
	// MaxMessageBytes makes Enqueue refuse larger messages with ErrTooBig
	// (0: no limit).
	MaxMessageBytes int64
	// MinFreeBytes makes Enqueue refuse with a DiskFullError while the file
	// system has less free space (0: DefaultMinFreeBytes, < 0: no check).
	MinFreeBytes int64
}

// Stats are counters for tests, benchmarks and diagnostics.
type Stats struct {
	Enqueued    int64 // messages accepted by Enqueue
	Commits     int64 // group commits (journal fsync batches)
	Records     int64 // journal records committed
	Fsyncs      int64 // fdatasync/fsync calls on journal, body files and directories
	Checkpoints int64 // index (bbolt) transactions
	Attempts    int64 // Jobs handed to the Deliverer
	Segments    int   // segment and body files on disk
}

// Queue is the durable mail queue.
type Queue struct {
	o      Options
	dir    string // Dir/queue
	segDir string // Dir/queue/seg
	db     *bolt.DB

	jr   *journal
	ck   *checkpointer
	segs *registry
	ids  idGen
	disk diskCheck

	// life guards the closing flag against Enqueue calls in progress.
	life    sync.RWMutex
	closing bool

	// mu guards the in-memory state below.
	mu      sync.Mutex
	msgs    map[string]*message
	heap    msgHeap
	domains map[string]*domainQ
	ready   []*domainQ // domains with waiting jobs and a free slot, round robin
	work    *sync.Cond // signalled when ready gains a job or the queue stops
	running int        // jobs taken by workers and not yet recorded
	started bool
	stopped bool // workers must exit
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}
	wg     sync.WaitGroup // scheduler and workers

	stats struct {
		enqueued, commits, records, fsyncs, checkpoints, attempts atomic.Int64
	}
}

// Open opens (creating when needed) the queue in o.Dir/queue and recovers
// everything that was committed before the last stop or crash. It does not
// start deliveries; Start does.
func Open(o Options) (*Queue, error) {
	if o.Dir == "" {
		return nil, errors.New("queue: no data directory")
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.PerDomain <= 0 {
		o.PerDomain = DefaultPerDomain
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	q := &Queue{
		o:       o,
		dir:     filepath.Join(o.Dir, "queue"),
		msgs:    map[string]*message{},
		domains: map[string]*domainQ{},
		kick:    make(chan struct{}, 1),
	}
	q.segDir = filepath.Join(q.dir, "seg")
	q.work = sync.NewCond(&q.mu)
	q.ctx, q.cancel = context.WithCancel(context.Background())
	q.disk.path = q.dir
	q.disk.min.Store(o.MinFreeBytes)
	if err := os.MkdirAll(q.segDir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := syncDir(o.Dir); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	db, err := bolt.Open(filepath.Join(q.dir, "index.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, ErrInUse
		}
		return nil, fmt.Errorf("queue: index: %w", err)
	}
	q.db = db
	if err := syncDir(q.dir); err != nil { // index.db and seg/ themselves
		db.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	q.segs = newRegistry(q.segDir)
	if err := q.recover(); err != nil {
		q.segs.closeAll()
		db.Close()
		return nil, err
	}
	go q.jr.run()
	go q.ck.run()
	return q, nil
}

// Start starts the scheduler and the delivery workers. Messages that are
// due (all recovered ones whose next attempt has passed) are attempted at
// once. Without a Deliverer, Start does nothing.
func (q *Queue) Start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closed || q.o.Deliverer == nil {
		return
	}
	q.started = true
	q.wg.Add(1 + q.o.Workers)
	go q.scheduler()
	for i := 0; i < q.o.Workers; i++ {
		go q.worker()
	}
}

// Kick makes the scheduler look at the queue now (after a clock change in
// tests, or a configuration change).
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Close stops the workers (attempts in progress are cancelled through
// their context and their recipients stay queued, or finish and are
// recorded), waits for Enqueue calls in progress, writes a last checkpoint
// and closes the files. Closing again does nothing.
func (q *Queue) Close() error {
	q.life.Lock()
	if q.closing {
		q.life.Unlock()
		return nil
	}
	q.closing = true
	q.life.Unlock()

	q.mu.Lock()
	q.closed = true
	q.stopped = true
	q.work.Broadcast()
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()

	errs := []error{q.jr.close(), q.ck.close()}
	q.segs.closeAll()
	errs = append(errs, q.db.Close())
	return errors.Join(errs...)
}

// abandon closes the files without a final checkpoint, as a crash would
// leave them (for tests). The queue must not be used afterwards.
func (q *Queue) abandon() {
	q.mu.Lock()
	q.closed = true
	q.stopped = true
	q.work.Broadcast()
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
	q.jr.close()
	q.ck.stopNoCommit()
	q.segs.closeAll()
	q.db.Close()
}

// Stats returns the counters.
func (q *Queue) Stats() Stats {
	return Stats{
		Enqueued:    q.stats.enqueued.Load(),
		Commits:     q.stats.commits.Load(),
		Records:     q.stats.records.Load(),
		Fsyncs:      q.stats.fsyncs.Load(),
		Checkpoints: q.stats.checkpoints.Load(),
		Attempts:    q.stats.attempts.Load(),
		Segments:    q.segs.count(),
	}
}

// SetMinFreeBytes changes the free-space threshold of Enqueue (0: the
// default, < 0: no check).
func (q *Queue) SetMinFreeBytes(n int64) {
	if n == 0 {
		n = DefaultMinFreeBytes
	}
	q.disk.min.Store(n)
}

func (q *Queue) now() time.Time { return q.o.Now() }

// schedule is the retry policy for a message from sender to domain:
// for a message from the null sender MaxAge is its DSNMaxAge.
func (q *Queue) schedule(sender, domain string) Schedule {
	var s Schedule
	if q.o.Schedule != nil {
		s = q.o.Schedule(domain)
	}
	if s.RetryInterval <= 0 {
		s.RetryInterval = DefaultRetryInterval
	}
	if s.MaxAge <= 0 {
		s.MaxAge = DefaultMaxAge
	}
	if s.WarningAfter < 0 {
		s.WarningAfter = 0
	}
	if sender == "" {
		switch {
		case s.DSNMaxAge < 0:
			s.MaxAge = 0
		case s.DSNMaxAge > 0:
			s.MaxAge = s.DSNMaxAge
		}
	}
	return s
}

func (q *Queue) hostname() string {
	if q.o.Hostname != nil {
		if h := q.o.Hostname(); h != "" {
			return h
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

func (q *Queue) event(level, format string, args ...any) {
	if q.o.Event != nil {
		q.o.Event(level, fmt.Sprintf(format, args...))
	}
}

func (q *Queue) history(hs []HistoryRecord) {
	if q.o.History == nil {
		return
	}
	for _, h := range hs {
		q.o.History(h)
	}
}
