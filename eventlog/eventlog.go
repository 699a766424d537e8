// Package eventlog owns the appliance's local logs, kept in their own bbolt
// file <dir>/log.db, apart from the configuration database.
//
// Today it holds the event log: administrator logins and actions,
// configuration changes, system and SMTP service events. The per-message
// history log will be another bucket in the same file, written through the
// same batching writer.
//
// Logging never waits for the disk. Log and Logf put the record on a
// buffered queue; a single writer goroutine commits queued records in
// batches (up to 512 records, at most 200 ms after the first one, one bbolt
// transaction and one fsync per batch) and prunes the oldest records beyond
// the configured bound in the same transaction. When the queue is full,
// records are dropped and counted, and the count is itself logged as an
// event ("N log records dropped") with the next batch. Flush waits for
// everything queued so far to be on disk.
package eventlog

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the log database inside the data directory.
const FileName = "log.db"

// lockTimeout bounds the wait for the file lock held by another process.
var lockTimeout = 2 * time.Second

// ErrInUse is returned by Open when another process holds the log database.
var ErrInUse = errors.New("data directory in use by another mailgate process")

// ErrClosed is returned by Flush and Close on a closed Log.
var ErrClosed = errors.New("eventlog: log is closed")

const bucketEvents = "events"

// Level is an event's severity, from Emergency (most severe, 0) to Debug
// (least severe, 7), as in syslog.
type Level int

// The levels, most severe first.
const (
	Emergency Level = iota
	Alert
	Critical
	Error
	Warning
	Notice
	Information
	Debug
)

var levelNames = [...]string{
	Emergency:   "emergency",
	Alert:       "alert",
	Critical:    "critical",
	Error:       "error",
	Warning:     "warning",
	Notice:      "notice",
	Information: "information",
	Debug:       "debug",
}

// levelAliases are the other spellings ParseLevel accepts.
var levelAliases = map[string]Level{
	"emerg":         Emergency,
	"crit":          Critical,
	"err":           Error,
	"warn":          Warning,
	"info":          Information,
	"informational": Information,
}

// String returns the level's name, e.g. "warning".
func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Valid reports whether l is one of the eight levels.
func (l Level) Valid() bool { return l >= Emergency && l <= Debug }

// ParseLevel parses a level name as returned by String, case-insensitively.
// It also accepts the syslog abbreviations (emerg, crit, err, warn, info),
// "informational", and the numbers 0 to 7.
func ParseLevel(s string) (Level, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for l, n := range levelNames {
		if n == name {
			return Level(l), nil
		}
	}
	if l, ok := levelAliases[name]; ok {
		return l, nil
	}
	if n, err := strconv.Atoi(name); err == nil && Level(n).Valid() {
		return Level(n), nil
	}
	return 0, fmt.Errorf("eventlog: unknown log level %q", s)
}

// MarshalText encodes the level as its name.
func (l Level) MarshalText() ([]byte, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("eventlog: invalid log level %d", int(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText decodes a level with ParseLevel.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Event is one event log record.
type Event struct {
	ID        uint64    // assigned when the record is committed; 1, 2, 3, ...
	Time      time.Time // filled with the current time by Log when zero
	Level     Level
	Subsystem string // "admin", "system", "config", "smtp", ...
	User      string // administrator or account involved, if any
	Remote    string // remote address involved, if any
	Message   string
}

// eventRecord is the stored form of an Event; the ID is the key.
type eventRecord struct {
	Time      int64  `json:"t"` // Unix nanoseconds
	Level     int    `json:"l"`
	Subsystem string `json:"s,omitempty"`
	User      string `json:"u,omitempty"`
	Remote    string `json:"r,omitempty"`
	Message   string `json:"m"`
}

// queuedEvent is an Event waiting in the writer's queue.
type queuedEvent Event

func (e *queuedEvent) encode(uint64) ([]byte, error) {
	return json.Marshal(eventRecord{
		Time:      e.Time.UnixNano(),
		Level:     int(e.Level),
		Subsystem: e.Subsystem,
		User:      e.User,
		Remote:    e.Remote,
		Message:   e.Message,
	})
}

func decodeEvent(k, v []byte) (Event, error) {
	if len(k) != 8 {
		return Event{}, fmt.Errorf("eventlog: bad event key %x", k)
	}
	id := binary.BigEndian.Uint64(k)
	var r eventRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Event{}, fmt.Errorf("eventlog: event %d: %w", id, err)
	}
	return Event{
		ID:        id,
		Time:      time.Unix(0, r.Time),
		Level:     Level(r.Level),
		Subsystem: r.Subsystem,
		User:      r.User,
		Remote:    r.Remote,
		Message:   r.Message,
	}, nil
}

// Log is an open log database. Its methods are safe for concurrent use.
type Log struct {
	db *bolt.DB
	w  *writer
}

// Open opens (creating if needed) the log database in dir, keeping at most
// maxRecords events (the oldest are pruned once the count exceeds it;
// maxRecords <= 0 means no bound). The directory is created with mode 0700
// and the file with mode 0600. If another process holds the file, Open
// gives up after two seconds with an error matching ErrInUse.
func Open(dir string, maxRecords int) (*Log, error) {
	return open(dir, maxRecords, defaultWriterConfig())
}

// OpenBounded is Open with separate bounds for the event log and the
// history log.
func OpenBounded(dir string, maxEvents, maxHistory int) (*Log, error) {
	cfg := defaultWriterConfig()
	cfg.historyMax = maxHistory
	return open(dir, maxEvents, cfg)
}

func open(dir string, maxRecords int, cfg writerConfig) (*Log, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("eventlog: %s: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("eventlog: open %s: %w", path, err)
	}
	if cfg.historyMax == 0 {
		cfg.historyMax = maxRecords
	}
	bounds := map[string]int{bucketEvents: maxRecords, bucketHistory: cfg.historyMax}
	w, err := newWriter(db, cfg, bounds, dropNotice)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("eventlog: init %s: %w", path, err)
	}
	return &Log{db: db, w: w}, nil
}

// dropNotice is the event that reports n dropped records.
func dropNotice(n uint64) entry {
	return entry{bucket: bucketEvents, rec: &queuedEvent{
		Time:      time.Now(),
		Level:     Warning,
		Subsystem: "system",
		Message:   fmt.Sprintf("%d log records dropped", n),
	}}
}

// Log queues e for writing and returns at once; it never blocks on the
// disk. A zero Time is set to the current time; the ID is assigned when
// the record is committed. If the queue is full, or the Log is closed, the
// record is dropped and counted (see Dropped).
func (l *Log) Log(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.ID = 0
	q := queuedEvent(e)
	l.w.enqueue(bucketEvents, &q)
}

// Logf logs an event whose message is fmt.Sprintf(format, args...).
func (l *Log) Logf(level Level, subsystem, format string, args ...any) {
	l.Log(Event{Level: level, Subsystem: subsystem, Message: fmt.Sprintf(format, args...)})
}

// Flush waits until every record queued before the call is committed. It
// returns the first write error since the previous Flush, if any.
func (l *Log) Flush() error { return l.w.flush() }

// Close flushes the queue, stops the writer and closes the database.
// Records logged after Close are dropped.
func (l *Log) Close() error {
	err := l.w.close()
	if err == ErrClosed {
		return err
	}
	if cerr := l.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Dropped returns how many records have been dropped since Open because
// the queue was full, the Log was closed, or a write failed.
func (l *Log) Dropped() uint64 { return l.w.total.Load() }

// Filter selects events for Query. Zero fields select everything.
type Filter struct {
	Since     time.Time // events at or after Since
	Until     time.Time // events before Until
	MinLevel  *Level    // least severe level included (Warning: emergency..warning); nil = all
	Subsystem string    // exact subsystem
	Contains  string    // case-insensitive substring of the message
	Limit     int       // only the newest Limit matching events; 0 = all
}

func (f *Filter) match(e *Event, contains string) bool {
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	if f.MinLevel != nil && e.Level > *f.MinLevel {
		return false
	}
	if f.Subsystem != "" && e.Subsystem != f.Subsystem {
		return false
	}
	if contains != "" && !strings.Contains(strings.ToLower(e.Message), contains) {
		return false
	}
	return true
}

// Query returns the committed events matching f, oldest first. With a
// Limit, they are the newest Limit matching events. Records still queued
// are not seen; call Flush first when that matters.
func (l *Log) Query(f Filter) ([]Event, error) {
	contains := strings.ToLower(f.Contains)
	var out []Event
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketEvents)).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			e, err := decodeEvent(k, v)
			if err != nil {
				return err
			}
			if !f.match(&e, contains) {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Format renders e as one line, for example
//
//	2026-11-23 13:45:01 notice admin user=admin remote=127.0.0.1:5555 msg="login successful"
//
// The time is shown in e.Time's location; user= and remote= are left out
// when empty (and quoted if they contain spaces, quotes or unprintable
// characters), an empty subsystem is shown as "-", and the message is
// quoted with strconv.Quote.
func Format(e Event) string {
	var b strings.Builder
	b.WriteString(e.Time.Format("2006-01-02 15:04:05"))
	b.WriteByte(' ')
	b.WriteString(e.Level.String())
	b.WriteByte(' ')
	if e.Subsystem == "" {
		b.WriteByte('-')
	} else {
		b.WriteString(e.Subsystem)
	}
	if e.User != "" {
		b.WriteString(" user=")
		b.WriteString(fieldValue(e.User))
	}
	if e.Remote != "" {
		b.WriteString(" remote=")
		b.WriteString(fieldValue(e.Remote))
	}
	b.WriteString(" msg=")
	b.WriteString(strconv.Quote(e.Message))
	return b.String()
}

// fieldValue returns v as is when it is a plain token, else quoted, so a
// formatted line always splits unambiguously into fields.
func fieldValue(v string) string {
	for _, r := range v {
		if r <= ' ' || r == '"' || r == '=' || r == '\\' || !strconv.IsPrint(r) {
			return strconv.Quote(v)
		}
	}
	return v
}
