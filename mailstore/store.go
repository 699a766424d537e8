package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"mailgate/fsync"
)

// Options configure a Store.
type Options struct {
	// Linger is how long a commit waits for Deliver and Append calls that
	// are writing their message file, so that they share its directory
	// sync and index transaction. 0 takes the default (1 ms); < 0 none.
	Linger time.Duration
	// DeliveryIDKeep is how long a delivery ID is remembered (30 days
	// when 0): longer than the queue keeps a message.
	DeliveryIDKeep time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	// hook, when set (tests), is called at each step of the write path
	// (see the step constants); an error fails the operation there.
	hook func(step string) error
}

// Steps of the write path, in their order, for Options.hook.
const (
	stepFileSynced = "file-synced" // a message file is written and fsynced
	stepDirSynced  = "dir-synced"  // the batch's directories are fsynced
	stepIndex      = "index"       // inside the index transaction, before its commit
	stepCommitted  = "committed"   // the index transaction is committed
)

// Store is the mail store under one directory. Its methods are safe for
// concurrent use.
type Store struct {
	dir  string
	opts Options

	mu       sync.Mutex
	accounts map[string]*Account
	closed   bool

	stats stats
}

// stats count the store's work (Stats).
type stats struct {
	fileSyncs atomic.Int64
	dirSyncs  atomic.Int64
	commits   atomic.Int64
	ops       atomic.Int64
}

// Stats are counters of the work done since Open.
type Stats struct {
	FileSyncs int64 // fdatasync of message files
	DirSyncs  int64 // fsync of directories
	Commits   int64 // index transactions
	Ops       int64 // operations committed (a batch commits several)
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		FileSyncs: s.stats.fileSyncs.Load(),
		DirSyncs:  s.stats.dirSyncs.Load(),
		Commits:   s.stats.commits.Load(),
		Ops:       s.stats.ops.Load(),
	}
}

// Open opens the store under dir, creating the directory (mode 0700) when
// it is missing. Accounts are opened when first used.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Linger == 0 {
		opts.Linger = time.Millisecond
	}
	if opts.DeliveryIDKeep == 0 {
		opts.DeliveryIDKeep = 30 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	return &Store{dir: dir, opts: opts, accounts: map[string]*Account{}}, nil
}

// Close closes every open account, after their pending commits.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	accts := s.accounts
	s.accounts = nil
	s.mu.Unlock()
	var first error
	for _, a := range accts {
		if err := a.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Account returns the account, opening it, and creating it with the
// default mailboxes when it does not exist. Names are compared without
// regard to case ("Alice@Example.com" is "alice@example.com").
func (s *Store) Account(name string) (*Account, error) {
	key, err := accountKey(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if a := s.accounts[key]; a != nil {
		return a, nil
	}
	a, err := openAccount(s, key)
	if err != nil {
		return nil, err
	}
	s.accounts[key] = a
	return a, nil
}

// DeleteAccount removes an account and all its mail. Calls on an Account
// value obtained before fail with ErrClosed.
func (s *Store) DeleteAccount(name string) error {
	key, err := accountKey(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if a := s.accounts[key]; a != nil {
		delete(s.accounts, key)
		if err := a.close(); err != nil {
			return fmt.Errorf("mailstore: %w", err)
		}
	}
	dir := filepath.Join(s.dir, dirName(key))
	// The index goes first: a crash in the middle leaves no half account
	// that opens as one.
	if err := os.Remove(filepath.Join(dir, indexName)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("mailstore: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("mailstore: %w", err)
	}
	return s.syncDir(s.dir)
}

// Exists reports whether the account has a directory in the store.
func (s *Store) Exists(name string) bool {
	key, err := accountKey(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(s.dir, dirName(key), indexName))
	return err == nil
}

// Accounts lists the accounts in the store, sorted.
func (s *Store) Accounts() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if n, ok := accountFromDir(e.Name()); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Deliver commits one message to an account's mailbox (INBOX by default),
// creating the account when needed. It returns once the message file, its
// directory and the index are on disk, in that order.
func (s *Store) Deliver(account string, d Delivery) (Delivered, error) {
	a, err := s.Account(account)
	if err != nil {
		return Delivered{}, err
	}
	return a.Deliver(d)
}

// accountKey is the canonical form of an account name: lower case, valid
// UTF-8 without control characters or slashes, at most 254 octets.
func accountKey(name string) (string, error) {
	key := strings.ToLower(strings.TrimSpace(name))
	if key == "" || len(key) > 254 || !utf8.ValidString(key) || strings.ContainsAny(key, "/\\") {
		return "", fmt.Errorf("%w: account name %q", ErrInvalid, name)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: account name %q", ErrInvalid, name)
		}
	}
	return key, nil
}

// dirName is the directory of an account: its name with every octet
// outside [a-z0-9@._+-] written as %XX, and a leading dot escaped, so any
// name is one safe path element and the mapping is reversible.
func dirName(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		safe := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("@._+-", c) >= 0
		if !safe || (i == 0 && c == '.') {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// accountFromDir reverses dirName.
func accountFromDir(d string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(d); i++ {
		if d[i] != '%' {
			b.WriteByte(d[i])
			continue
		}
		if i+2 >= len(d) {
			return "", false
		}
		var c byte
		if _, err := fmt.Sscanf(d[i+1:i+3], "%02X", &c); err != nil {
			return "", false
		}
		b.WriteByte(c)
		i += 2
	}
	key, err := accountKey(b.String())
	if err != nil || dirName(key) != d {
		return "", false
	}
	return key, true
}

// syncDir fsyncs a directory, counted.
func (s *Store) syncDir(dir string) error {
	s.stats.dirSyncs.Add(1)
	return fsync.Dir(dir)
}

func (s *Store) hook(step string) error {
	if s.opts.hook == nil {
		return nil
	}
	return s.opts.hook(step)
}
