package queue

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mailgate/fsync"
)

// syncDir makes the entries of a directory durable.
func syncDir(dir string) error { return fsync.Dir(dir) }

// fdatasync makes a file's data durable.
func fdatasync(f *os.File) error { return fsync.Data(f) }

// diskCheck answers "is there room for another message" cheaply: the file
// system is asked at most every 100 ms.
type diskCheck struct {
	path string
	min  atomic.Int64 // threshold in bytes, < 0: no check

	mu      sync.Mutex
	checked time.Time
	free    int64
	err     error
}

const diskCheckEvery = 100 * time.Millisecond

// room returns a DiskFullError when less than the threshold is free.
func (d *diskCheck) room() error {
	min := d.min.Load()
	if min < 0 {
		return nil
	}
	d.mu.Lock()
	if now := time.Now(); d.checked.IsZero() || now.Sub(d.checked) >= diskCheckEvery {
		d.free, d.err = freeBytes(d.path)
		d.checked = now
	}
	free, err := d.free, d.err
	d.mu.Unlock()
	if err != nil {
		return nil // unknown: let the writes tell
	}
	if free < min {
		return &DiskFullError{Free: free, Min: min, Err: syscall.ENOSPC}
	}
	return nil
}
