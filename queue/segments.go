package queue

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

const (
	extSeg  = ".seg" // journal segment
	extBody = ".msg" // the body of one large message
)

// segFile is a journal segment or a body file. Journal segments stay open;
// body files are opened while someone reads them.
type segFile struct {
	seq     uint32
	ext     string
	dir     string
	f       *os.File
	readers int
	removed bool
}

func (s *segFile) name() string { return fmt.Sprintf("%08d%s", s.seq, s.ext) }
func (s *segFile) path() string { return filepath.Join(s.dir, s.name()) }

// registry knows the files in the segment directory. Sequence numbers are
// shared by both kinds of file and never reused.
type registry struct {
	dir  string
	mu   sync.Mutex
	m    map[uint32]*segFile
	next uint32
}

func newRegistry(dir string) *registry {
	return &registry{dir: dir, m: map[uint32]*segFile{}, next: 1}
}

// load lists the files in the directory.
func (r *registry) load() error {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		ext := filepath.Ext(name)
		if ext != extSeg && ext != extBody {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, ext), 10, 32)
		if err != nil {
			continue
		}
		s := &segFile{seq: uint32(n), ext: ext, dir: r.dir}
		if ext == extSeg {
			if s.f, err = os.Open(s.path()); err != nil {
				return err
			}
		}
		r.m[s.seq] = s
		if s.seq >= r.next {
			r.next = s.seq + 1
		}
	}
	return nil
}

// create makes a new file of the given kind, open for writing.
func (r *registry) create(ext string) (*segFile, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &segFile{seq: r.next, ext: ext, dir: r.dir}
	r.next++
	f, err := os.OpenFile(s.path(), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	s.f = f
	if ext == extBody {
		s.readers = 1 // the writer's reference, released by the writer
	}
	r.m[s.seq] = s
	return s, nil
}

// sorted returns the files of a kind in sequence order.
func (r *registry) sorted(ext string) []*segFile {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*segFile
	for _, s := range r.m {
		if s.ext == ext {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (r *registry) get(seq uint32) *segFile {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[seq]
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// acquire returns the file holding seq, opened, for reading.
func (r *registry) acquire(seq uint32) (*segFile, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[seq]
	if s == nil {
		return nil, fmt.Errorf("queue: storage file %08d is missing", seq)
	}
	if s.f == nil {
		f, err := os.Open(s.path())
		if err != nil {
			return nil, err
		}
		s.f = f
	}
	s.readers++
	return s, nil
}

func (r *registry) release(s *segFile) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.readers--
	if s.readers == 0 && (s.removed || s.ext == extBody) && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// remove deletes a file; readers keep their open handle until they are done.
func (r *registry) remove(seq uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[seq]
	if s == nil {
		return
	}
	delete(r.m, seq)
	s.removed = true
	os.Remove(s.path())
	if s.readers == 0 && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

func (r *registry) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.m {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
}

// bodyReader reads a stored body and checks its CRC at the end.
type bodyReader struct {
	r    *registry
	s    *segFile
	sr   *io.SectionReader
	crc  uint32
	want uint32
	once sync.Once
}

func (q *Queue) openBody(l loc) (*bodyReader, error) {
	s, err := q.segs.acquire(l.seg)
	if err != nil {
		return nil, err
	}
	return &bodyReader{r: q.segs, s: s, sr: io.NewSectionReader(s.f, l.off, l.n), want: l.crc}, nil
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.sr.Read(p)
	b.crc = crc32.Update(b.crc, castagnoli, p[:n])
	if err == io.EOF && b.crc != b.want {
		err = ErrCorrupt
	}
	return n, err
}

func (b *bodyReader) Close() error {
	b.once.Do(func() { b.r.release(b.s) })
	return nil
}

// writeBodyFile stores a large body in a file of its own: the part already
// read, then the rest of r. The file and the directory are synced before it
// returns, so that a journal record may refer to it.
func (q *Queue) writeBodyFile(head []byte, r io.Reader, limit int64) (l loc, err error) {
	s, err := q.segs.create(extBody)
	if err != nil {
		return loc{}, diskErr(err)
	}
	defer func() {
		q.segs.release(s)
		if err != nil {
			q.segs.remove(s.seq)
		}
	}()
	cw := &crcWriter{w: s.f}
	if _, err := cw.Write(head); err != nil {
		return loc{}, diskErr(err)
	}
	var src io.Reader = r
	if limit > 0 {
		src = io.LimitReader(r, limit-int64(len(head))+1)
	}
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(cw, src, buf); err != nil {
		return loc{}, diskErr(err)
	}
	if limit > 0 && cw.n > limit {
		return loc{}, ErrTooBig
	}
	q.stats.fsyncs.Add(2)
	if err := fdatasync(s.f); err != nil {
		return loc{}, diskErr(err)
	}
	if err := syncDir(q.segDir); err != nil {
		return loc{}, diskErr(err)
	}
	return loc{seg: s.seq, off: 0, n: cw.n, crc: cw.crc}, nil
}

type crcWriter struct {
	w   io.Writer
	n   int64
	crc uint32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}
