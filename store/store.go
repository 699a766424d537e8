// Package store owns the appliance's configuration database, the bbolt file
// <dir>/config.db.
//
// The configuration itself is rendered text (FortiOS-style "config ... end"
// blocks produced elsewhere); this package keeps it as a history of
// versioned revisions, each with the administrator, a comment, the full text
// and a unified diff against the revision before it. It also keeps a few
// small device values ("meta"), such as the device identity and the SSH host
// key, that must survive restarts but are not part of the configuration.
//
// Every change is a single bbolt transaction, so a process killed at any
// moment restarts with the last committed revision, never a half-applied
// one. The file is locked while open: a second process opening the same
// directory fails after a short wait with ErrInUse.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the database file inside the data directory.
const FileName = "config.db"

// Keep is the number of revisions kept. When a commit takes the count past
// Keep, the oldest revisions are deleted in the same transaction. Values
// below 1 are treated as 1: the latest revision is always kept.
var Keep = 50

// lockTimeout bounds the wait for the file lock held by another process.
var lockTimeout = 2 * time.Second

var (
	// ErrInUse is returned by Open when another process holds the database.
	ErrInUse = errors.New("data directory in use by another mailgate process")

	// ErrUnchanged is returned by Commit, together with the latest revision,
	// when the text is identical to that revision's text. No revision is
	// created in that case.
	ErrUnchanged = errors.New("configuration unchanged")

	// ErrNotFound is matched (errors.Is) by the error Get returns for a
	// revision that does not exist or was pruned.
	ErrNotFound = errors.New("not found")
)

var (
	bucketMeta      = []byte("meta")
	bucketRevisions = []byte("revisions")
)

// DB is an open configuration database. Its methods are safe for concurrent
// use.
type DB struct {
	bolt *bolt.DB
	path string
}

// Revision is one committed configuration.
type Revision struct {
	ID      uint64    // 1, 2, 3, ...; monotonic, never reused
	Time    time.Time // commit time, in the local time zone
	Admin   string    // administrator who made the change
	Comment string
	Text    string // the full configuration text (empty in List)
	Diff    string // unified diff against the previous revision's text
}

// NotFoundError reports a revision that does not exist (or was pruned).
type NotFoundError struct{ ID uint64 }

func (e *NotFoundError) Error() string { return fmt.Sprintf("revision %d not found", e.ID) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// Open opens (creating if needed) the database in dir. The directory is
// created with mode 0700 and the file with mode 0600. If another process
// holds the database, Open gives up after two seconds with an error that
// matches ErrInUse.
func Open(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("store: %s: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketRevisions} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	return &DB{bolt: b, path: path}, nil
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Close closes the database and releases the file lock.
func (db *DB) Close() error { return db.bolt.Close() }

// Meta returns the value stored under key, or nil, nil when there is none.
func (db *DB) Meta(key string) ([]byte, error) {
	var val []byte
	err := db.bolt.View(func(tx *bolt.Tx) error {
		val = clone(tx.Bucket(bucketMeta).Get([]byte(key)))
		return nil
	})
	return val, err
}

// PutMeta stores val under key, replacing any previous value.
func (db *DB) PutMeta(key string, val []byte) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(key), nonNil(val))
	})
}

// DeleteMeta removes key; removing an absent key is not an error.
func (db *DB) DeleteMeta(key string) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete([]byte(key))
	})
}

// MetaOrCreate returns the value stored under key. When there is none, it
// calls gen and stores its result, in the same write transaction, so the
// value is generated at most once even with concurrent callers; later calls
// return the stored value. If gen fails nothing is stored and its error is
// returned. gen runs inside the transaction and must not use db.
func (db *DB) MetaOrCreate(key string, gen func() ([]byte, error)) ([]byte, error) {
	if val, err := db.Meta(key); err != nil || val != nil {
		return val, err
	}
	var val []byte
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if v := b.Get([]byte(key)); v != nil {
			val = clone(v)
			return nil
		}
		v, err := gen()
		if err != nil {
			return err
		}
		val = clone(nonNil(v))
		return b.Put([]byte(key), val)
	})
	if err != nil {
		return nil, err
	}
	return val, nil
}

// Commit stores text as a new revision and returns it. In one transaction it
// allocates the next ID, records the unified diff against the previous
// revision's text and prunes revisions beyond Keep.
//
// If text is identical to the latest revision's text, Commit creates
// nothing and returns that latest revision together with ErrUnchanged.
// A zero now means time.Now().
func (db *DB) Commit(admin, comment, text string, now time.Time) (Revision, error) {
	if now.IsZero() {
		now = time.Now()
	}
	rev := Revision{
		Time:    time.Unix(0, now.UnixNano()),
		Admin:   admin,
		Comment: comment,
		Text:    text,
	}
	var latest *Revision
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevisions)
		var prevID uint64
		prevText := ""
		if k, v := b.Cursor().Last(); k != nil {
			prev, err := decodeRevision(k, v)
			if err != nil {
				return err
			}
			if prev.Text == text {
				latest = prev
				return ErrUnchanged
			}
			prevID, prevText = prev.ID, prev.Text
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		rev.ID = id
		rev.Diff, err = unifiedDiff(prevText, text, prevID, id)
		if err != nil {
			return err
		}
		val, err := encodeRevision(&rev)
		if err != nil {
			return err
		}
		if err := b.Put(idKey(id), val); err != nil {
			return err
		}
		return prune(b, max(Keep, 1))
	})
	if errors.Is(err, ErrUnchanged) {
		return *latest, ErrUnchanged
	}
	if err != nil {
		return Revision{}, fmt.Errorf("store: commit: %w", err)
	}
	return rev, nil
}

// prune deletes the oldest revisions until at most keep remain.
func prune(b *bolt.Bucket, keep int) error {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	for ; n > keep; n-- {
		if k, _ := c.First(); k == nil {
			break
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Latest returns the newest revision, or nil, nil when nothing has been
// committed yet (first boot).
func (db *DB) Latest() (*Revision, error) {
	var rev *Revision
	err := db.bolt.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketRevisions).Cursor().Last()
		if k == nil {
			return nil
		}
		var err error
		rev, err = decodeRevision(k, v)
		return err
	})
	return rev, err
}

// Get returns revision id. A missing or pruned revision gives a
// *NotFoundError ("revision N not found"), which matches ErrNotFound.
func (db *DB) Get(id uint64) (*Revision, error) {
	var rev *Revision
	err := db.bolt.View(func(tx *bolt.Tx) error {
		k := idKey(id)
		v := tx.Bucket(bucketRevisions).Get(k)
		if v == nil {
			return &NotFoundError{ID: id}
		}
		var err error
		rev, err = decodeRevision(k, v)
		return err
	})
	return rev, err
}

// List returns the kept revisions, newest first, with Text left empty
// (Diff is kept).
func (db *DB) List() ([]Revision, error) {
	var revs []Revision
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRevisions).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			rev, err := decodeRevision(k, v)
			if err != nil {
				return err
			}
			rev.Text = ""
			revs = append(revs, *rev)
		}
		return nil
	})
	return revs, err
}

// record is the stored form of a revision; the ID is the key.
type record struct {
	Time    int64  `json:"time"` // Unix nanoseconds
	Admin   string `json:"admin"`
	Comment string `json:"comment,omitempty"`
	Text    string `json:"text"`
	Diff    string `json:"diff"`
}

func encodeRevision(r *Revision) ([]byte, error) {
	return json.Marshal(record{
		Time:    r.Time.UnixNano(),
		Admin:   r.Admin,
		Comment: r.Comment,
		Text:    r.Text,
		Diff:    r.Diff,
	})
}

func decodeRevision(k, v []byte) (*Revision, error) {
	if len(k) != 8 {
		return nil, fmt.Errorf("store: bad revision key %x", k)
	}
	id := binary.BigEndian.Uint64(k)
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("store: revision %d: %w", id, err)
	}
	return &Revision{
		ID:      id,
		Time:    time.Unix(0, rec.Time),
		Admin:   rec.Admin,
		Comment: rec.Comment,
		Text:    rec.Text,
		Diff:    rec.Diff,
	}, nil
}

// unifiedDiff returns the unified diff (context 1) from a to b, labelled
// "revision fromID" / "revision toID". Identical texts give "".
func unifiedDiff(a, b string, fromID, toID uint64) (string, error) {
	al, bl := splitLines(a), splitLines(b)
	if equalLines(al, bl) {
		return "", nil
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        al,
		B:        bl,
		FromFile: fmt.Sprintf("revision %d", fromID),
		ToFile:   fmt.Sprintf("revision %d", toID),
		Context:  1,
	})
}

// splitLines splits s into lines that each end in "\n". Unlike
// difflib.SplitLines it adds no empty line after a final newline, and the
// empty text has no lines.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] += "\n"
	}
	return lines
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func idKey(id uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, id)
	return k
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
