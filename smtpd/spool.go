package smtpd

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// spoolMemory is how much of a message is kept in memory before it moves to
// a temporary file.
const spoolMemory = 1 << 20

// spool holds a message while it is received and checked.
type spool struct {
	dir string
	mem *bytes.Buffer
	f   *os.File
}

// spoolBufs keep the memory of small messages for the next ones.
var spoolBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// spoolKeep is the largest buffer kept for reuse.
const spoolKeep = 64 << 10

func newSpool(dir string) *spool {
	return &spool{dir: dir, mem: spoolBufs.Get().(*bytes.Buffer)}
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.mem.Len()+len(p) > spoolMemory {
		f, err := os.CreateTemp(s.dir, "smtpd-*.eml")
		if err != nil {
			return 0, err
		}
		s.f = f
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			return 0, err
		}
		s.mem = new(bytes.Buffer) // the large one is not kept
	}
	if s.f != nil {
		return s.f.Write(p)
	}
	return s.mem.Write(p)
}

// Reader returns the message from its start.
func (s *spool) Reader() (io.Reader, error) {
	if s.f == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return s.f, nil
}

// Close removes the temporary file, if any, and gives the memory back:
// the spool must not be used after, nor what Reader returned.
func (s *spool) Close() error {
	if m := s.mem; m != nil {
		s.mem = nil
		if m.Cap() <= spoolKeep {
			m.Reset()
			spoolBufs.Put(m)
		}
	}
	if s.f == nil {
		return nil
	}
	name := s.f.Name()
	err := s.f.Close()
	os.Remove(name)
	s.f = nil
	return err
}

// spoolError is a failure to store the message being received, as opposed
// to one reading it from the client.
type spoolError struct{ err error }

func (e *spoolError) Error() string { return "spool: " + e.err.Error() }
func (e *spoolError) Unwrap() error { return e.err }
