package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"syscall"
	"time"
)

// Journal records.
//
//	header (20 bytes, little endian):
//	  magic "MGQ1" | payload length u64 | payload CRC-32C u32 | header CRC-32C u32 (of the first 16 bytes)
//	payload: operations, each
//	  'M' idLen u8 id metaLen u32 meta(JSON) bodyLen u64 body bodyCRC u32   new message, body inline
//	  'X' idLen u8 id metaLen u32 meta(JSON) loc(24)                        new message, body in a .msg file
//	  'U' idLen u8 id valLen u32 value(loc+JSON)                           message state
//	  'D' idLen u8 id                                                      message removed
//
// A record is valid when both CRCs match; its operations apply together.
const (
	recMagic  = 0x3151474d // "MGQ1"
	recHdrLen = 20

	opMsg = 'M'
	opExt = 'X'
	opPut = 'U'
	opDel = 'D'

	defaultSegMax = 64 << 20  // journal segment rotation size
	inlineMax     = 512 << 10 // larger bodies get a file of their own
	lingerMax     = time.Millisecond

	// preallocChunk is how far ahead of the records the current segment
	// is filled with zeros. Records then overwrite blocks that exist, so
	// that fdatasync writes data only; an append that grows the file also
	// commits the file system's journal (on ext4 about a third more CPU
	// and latency per sync). The zeros are written to disk too, so this
	// pays only when many commits share a chunk: small messages. The
	// journal preallocates while the last preallocChunk bytes of records
	// took at least preallocMinCommits commits.
	preallocChunk      = 1 << 20
	preallocMinCommits = 32
)

// zeros is what segments are preallocated with.
var zeros [64 << 10]byte

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pos is a position in the journal.
type pos struct {
	seg uint32
	off int64
}

func (p pos) encode() []byte {
	b := binary.LittleEndian.AppendUint32(nil, p.seg)
	return binary.LittleEndian.AppendUint64(b, uint64(p.off))
}

func decodePos(b []byte) pos {
	if len(b) < 12 {
		return pos{}
	}
	return pos{seg: binary.LittleEndian.Uint32(b), off: int64(binary.LittleEndian.Uint64(b[4:]))}
}

// ckOp is one operation as the index sees it: the new value of a message,
// nil when it is removed.
type ckOp struct {
	id  string
	val []byte
}

// record is a journal record being built.
type record struct {
	b   []byte
	ops []ckOp
	fix []bodyFix // inline bodies, located once the record is placed
}

type bodyFix struct {
	op   int
	at   int // offset of the body in b
	n    int64
	crc  uint32
	meta []byte
}

func newRecord(buf []byte) *record {
	r := &record{b: buf[:0]}
	r.b = append(r.b, make([]byte, recHdrLen)...)
	return r
}

func (r *record) opHead(kind byte, id string) {
	if len(id) > 255 {
		panic("queue: id too long")
	}
	r.b = append(r.b, kind, byte(len(id)))
	r.b = append(r.b, id...)
}

func (r *record) put(id string, val []byte) {
	r.opHead(opPut, id)
	r.b = binary.LittleEndian.AppendUint32(r.b, uint32(len(val)))
	r.b = append(r.b, val...)
	r.ops = append(r.ops, ckOp{id: id, val: val})
}

func (r *record) del(id string) {
	r.opHead(opDel, id)
	r.ops = append(r.ops, ckOp{id: id})
}

func (r *record) ext(id string, meta []byte, l loc) []byte {
	r.opHead(opExt, id)
	r.b = binary.LittleEndian.AppendUint32(r.b, uint32(len(meta)))
	r.b = append(r.b, meta...)
	r.b = l.append(r.b)
	val := append(l.append(make([]byte, 0, locLen+len(meta))), meta...)
	r.ops = append(r.ops, ckOp{id: id, val: val})
	return val
}

// msgStart begins an inline message; the body is appended to r.b by the
// caller, then msgEnd completes the operation. It returns the offset of the
// body in r.b.
func (r *record) msgStart(id string, meta []byte) int {
	r.opHead(opMsg, id)
	r.b = binary.LittleEndian.AppendUint32(r.b, uint32(len(meta)))
	r.b = append(r.b, meta...)
	r.b = append(r.b, 0, 0, 0, 0, 0, 0, 0, 0)
	return len(r.b)
}

func (r *record) msgEnd(id string, meta []byte, at int) {
	body := r.b[at:]
	n := int64(len(body))
	crc := crc32.Checksum(body, castagnoli)
	binary.LittleEndian.PutUint64(r.b[at-8:], uint64(n))
	r.b = binary.LittleEndian.AppendUint32(r.b, crc)
	r.fix = append(r.fix, bodyFix{op: len(r.ops), at: at, n: n, crc: crc, meta: meta})
	r.ops = append(r.ops, ckOp{id: id})
}

func (r *record) msg(id string, meta, body []byte) {
	at := r.msgStart(id, meta)
	r.b = append(r.b, body...)
	r.msgEnd(id, meta, at)
}

// seal writes the header.
func (r *record) seal() {
	payload := r.b[recHdrLen:]
	binary.LittleEndian.PutUint32(r.b[0:], recMagic)
	binary.LittleEndian.PutUint64(r.b[4:], uint64(len(payload)))
	binary.LittleEndian.PutUint32(r.b[12:], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(r.b[16:], crc32.Checksum(r.b[:16], castagnoli))
}

// place fills in the locations of inline bodies once the record's place
// in the journal is known.
func (r *record) place(seg uint32, off int64) []loc {
	var locs []loc
	for _, f := range r.fix {
		l := loc{seg: seg, off: off + int64(f.at), n: f.n, crc: f.crc}
		r.ops[f.op].val = append(l.append(make([]byte, 0, locLen+len(f.meta))), f.meta...)
		locs = append(locs, l)
	}
	return locs
}

// waiter is a record written to the journal and waiting for its commit.
type waiter struct {
	ops  []ckOp
	locs []loc // of the inline bodies, in order
	end  pos
	done chan error
}

func (w *waiter) wait() error { return <-w.done }

// journal appends records to the current segment; its committer goroutine
// makes them durable in groups.
type journal struct {
	q      *Queue
	segMax int64
	linger time.Duration

	mu          sync.Mutex
	cur         *segFile
	off         int64
	prealloc    int64      // cur holds zeros written by us from off up to here
	noPrealloc  bool       // preallocating cur failed (disk full): plain appends
	usePrealloc bool       // the recent records were small enough
	window      int64      // offset where the current measure of commits began
	commits     int        // commits since window
	curDirty    bool       // cur has unsynced records
	broken      bool       // a write or sync failed: rotate before the next write
	dirty       []*segFile // rotated segments with unsynced records
	dirDirty    bool       // a segment was created since the last directory sync
	pending     []*waiter  // written, not yet committed, in journal order
	spare       []*waiter  // recycled slice for pending
	writing     int        // Enqueue calls preparing a record
	appends     uint64     // records written so far
	lingerTo    uint64     // while lingering: the appends count waited for
	stopping    bool
	kick        chan struct{}
	arrived     chan struct{}
	stopCh      chan struct{}
	done        chan struct{}
}

func newJournal(q *Queue) *journal {
	return &journal{
		usePrealloc: true,
		q:           q,
		segMax:      defaultSegMax,
		linger:      lingerMax,
		kick:        make(chan struct{}, 1),
		arrived:     make(chan struct{}, 1),
		stopCh:      make(chan struct{}),
		done:        make(chan struct{}),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// begin announces an Enqueue that is about to write a record; the
// committer waits a little for announced records.
func (j *journal) begin() {
	j.mu.Lock()
	j.writing++
	j.mu.Unlock()
}

// abort withdraws an announcement that will not be followed by a record.
func (j *journal) abort() {
	j.mu.Lock()
	j.writing--
	if j.lingerTo != 0 {
		signal(j.arrived)
	}
	j.mu.Unlock()
}

// rotate starts a new segment. j.mu is held.
func (j *journal) rotate() error {
	s, err := j.q.segs.create(extSeg)
	if err != nil {
		return err
	}
	if j.cur != nil {
		j.trimPrealloc()
		if j.curDirty {
			j.dirty = append(j.dirty, j.cur)
		}
	}
	j.cur, j.off, j.curDirty, j.broken, j.dirDirty = s, 0, false, false, true
	j.prealloc, j.noPrealloc, j.window = 0, false, 0
	return nil
}

// preallocate makes sure that cur holds zeros up to at least end, a chunk
// ahead. A failure (disk full) is not one of the record's: it is written
// as a plain append, and the segment is not preallocated any further. j.mu
// is held.
func (j *journal) preallocate(end int64) {
	if j.noPrealloc || end <= j.prealloc {
		return
	}
	from := max(j.prealloc, j.off)
	to := end + preallocChunk
	for off := from; off < to; {
		n := int(min(int64(len(zeros)), to-off))
		if _, err := j.cur.f.WriteAt(zeros[:n], off); err != nil {
			j.noPrealloc = true
			j.trimPrealloc()
			return
		}
		off += int64(n)
		j.prealloc = off
	}
	j.curDirty = true
}

// trimPrealloc cuts cur back to its last record. j.mu is held.
func (j *journal) trimPrealloc() {
	if j.prealloc > j.off {
		if j.cur.f.Truncate(j.off) == nil {
			j.curDirty = true
		}
	}
	j.prealloc = j.off
}

// append writes a sealed record and returns its waiter. announced tells
// that the caller called begin.
func (j *journal) append(r *record, announced bool) (*waiter, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if announced {
		j.writing--
		if j.lingerTo != 0 {
			signal(j.arrived)
		}
	}
	if j.stopping {
		return nil, ErrClosed
	}
	if j.cur == nil || j.broken || j.off >= j.segMax {
		if err := j.rotate(); err != nil {
			j.broken = true
			return nil, diskErr(err)
		}
	}
	if end := j.off + int64(len(r.b)); end > j.prealloc {
		if j.off-j.window >= preallocChunk {
			j.usePrealloc = j.commits >= preallocMinCommits
			j.window, j.commits = j.off, 0
		}
		if j.usePrealloc {
			j.preallocate(end)
		}
	}
	if _, err := j.cur.f.WriteAt(r.b, j.off); err != nil {
		// Take back what may have been written; rotate when that fails.
		if terr := j.cur.f.Truncate(j.off); terr != nil {
			j.broken = true
		}
		j.prealloc = j.off
		return nil, diskErr(err)
	}
	w := &waiter{done: make(chan error, 1)}
	w.locs = r.place(j.cur.seq, j.off)
	w.ops = r.ops
	j.off += int64(len(r.b))
	w.end = pos{seg: j.cur.seq, off: j.off}
	j.curDirty = true
	j.pending = append(j.pending, w)
	j.appends++
	signal(j.kick)
	if j.lingerTo != 0 {
		signal(j.arrived)
	}
	return w, nil
}

// write seals r, appends it and waits for its commit.
func (j *journal) write(r *record) (*waiter, error) {
	r.seal()
	w, err := j.append(r, false)
	if err != nil {
		return nil, err
	}
	return w, w.wait()
}

// run is the committer.
func (j *journal) run() {
	defer close(j.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-j.kick:
		case <-j.stopCh:
		}
		for {
			j.mu.Lock()
			if len(j.pending) == 0 {
				stop := j.stopping
				j.mu.Unlock()
				if stop {
					return
				}
				break
			}
			// Give Enqueue calls that are preparing a record a moment to
			// join this commit.
			if j.writing > 0 && j.linger > 0 && !j.stopping {
				j.lingerTo = j.appends + uint64(j.writing)
				deadline := time.Now().Add(j.linger)
				for j.writing > 0 && j.appends < j.lingerTo {
					d := time.Until(deadline)
					if d <= 0 {
						break
					}
					j.mu.Unlock()
					timer.Reset(d)
					select {
					case <-j.arrived:
					case <-timer.C:
					}
					timer.Stop()
					j.mu.Lock()
				}
				j.lingerTo = 0
			}
			batch := j.pending
			j.pending = j.spare[:0]
			files := j.dirty
			j.dirty = nil
			if j.curDirty {
				files = append(files, j.cur)
				j.curDirty = false
			}
			dir := j.dirDirty
			j.dirDirty = false
			j.mu.Unlock()

			err := j.sync(files, dir)
			if err != nil {
				j.mu.Lock()
				j.broken = true
				if dir {
					j.dirDirty = true
				}
				j.mu.Unlock()
				j.q.event("error", "mail queue: journal sync failed: %v", err)
				err = diskErr(err)
			} else {
				j.q.ck.add(batch)
				j.q.stats.commits.Add(1)
				j.q.stats.records.Add(int64(len(batch)))
			}
			for i, w := range batch {
				w.done <- err
				batch[i] = nil
			}
			j.mu.Lock()
			j.spare = batch[:0]
			j.commits++
			j.mu.Unlock()
		}
	}
}

func (j *journal) sync(files []*segFile, dir bool) error {
	var errs []error
	for _, s := range files {
		j.q.stats.fsyncs.Add(1)
		if err := fdatasync(s.f); err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", s.name(), err))
		}
	}
	if dir {
		j.q.stats.fsyncs.Add(1)
		if err := syncDir(j.q.segDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// close commits what is pending and stops the committer.
func (j *journal) close() error {
	j.mu.Lock()
	if j.stopping {
		j.mu.Unlock()
		return nil
	}
	j.stopping = true
	j.mu.Unlock()
	close(j.stopCh)
	<-j.done
	// The committer has synced every record: leave the segment ending at
	// its last one.
	j.mu.Lock()
	if j.cur != nil && j.prealloc > j.off {
		j.trimPrealloc()
		if fdatasync(j.cur.f) == nil {
			j.curDirty = false
		}
	}
	j.mu.Unlock()
	return nil
}

// diskErr turns ENOSPC and EDQUOT into a DiskFullError.
func diskErr(err error) error {
	var df *DiskFullError
	if err == nil || errors.As(err, &df) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &DiskFullError{Err: err}
	}
	return err
}

// replayOp is an operation read back from the journal.
type replayOp struct {
	kind byte
	id   string
	val  []byte // for M, X and U: location and JSON state
}

// scanSegment reads the records of segment seq from offset off and calls
// fn with the operations of each valid record. It stops at the end of the
// file or at the first invalid record (a torn tail) and returns the offset
// where it stopped.
func scanSegment(r io.ReaderAt, size int64, seq uint32, off int64, fn func([]replayOp)) (int64, error) {
	var hdr [recHdrLen]byte
	for off < size {
		if size-off < recHdrLen {
			return off, errTorn
		}
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return off, err
		}
		if binary.LittleEndian.Uint32(hdr[0:]) != recMagic ||
			binary.LittleEndian.Uint32(hdr[16:]) != crc32.Checksum(hdr[:16], castagnoli) {
			return off, errTorn
		}
		n := binary.LittleEndian.Uint64(hdr[4:])
		if n > uint64(size-off-recHdrLen) {
			return off, errTorn
		}
		ops, err := parseRecord(r, seq, off, int64(n), binary.LittleEndian.Uint32(hdr[12:]))
		if err != nil {
			if errors.Is(err, errTorn) {
				return off, errTorn
			}
			return off, err
		}
		fn(ops)
		off += recHdrLen + int64(n)
	}
	return off, nil
}

var errTorn = errors.New("invalid record")

// crcReader computes the CRC-32C of what it reads.
type crcReader struct {
	r   io.Reader
	crc uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

func parseRecord(r io.ReaderAt, seq uint32, start, n int64, want uint32) ([]replayOp, error) {
	cr := &crcReader{r: io.NewSectionReader(r, start+recHdrLen, n)}
	bufSize := 64 << 10
	if n < int64(bufSize) {
		bufSize = max(int(n), 16)
	}
	br := bufio.NewReaderSize(cr, bufSize)
	var ops []replayOp
	read := int64(0) // payload bytes consumed
	full := func(b []byte) error {
		k, err := io.ReadFull(br, b)
		read += int64(k)
		if err != nil {
			return errTorn
		}
		return nil
	}
	u32 := func() (uint32, error) {
		var b [4]byte
		err := full(b[:])
		return binary.LittleEndian.Uint32(b[:]), err
	}
	for read < n {
		var h [2]byte
		if err := full(h[:]); err != nil {
			return nil, err
		}
		idb := make([]byte, h[1])
		if err := full(idb); err != nil {
			return nil, err
		}
		op := replayOp{kind: h[0], id: string(idb)}
		switch op.kind {
		case opDel:
		case opPut, opMsg, opExt:
			ml, err := u32()
			if err != nil {
				return nil, err
			}
			if int64(ml) > n-read {
				return nil, errTorn
			}
			meta := make([]byte, ml)
			if err := full(meta); err != nil {
				return nil, err
			}
			switch op.kind {
			case opPut:
				op.val = meta
			case opExt:
				lb := make([]byte, locLen)
				if err := full(lb); err != nil {
					return nil, err
				}
				op.val = append(lb, meta...)
			case opMsg:
				var lb [8]byte
				if err := full(lb[:]); err != nil {
					return nil, err
				}
				bl := int64(binary.LittleEndian.Uint64(lb[:]))
				if bl < 0 || bl > n-read-4 {
					return nil, errTorn
				}
				bodyOff := start + recHdrLen + read
				k, err := io.CopyN(io.Discard, br, bl)
				read += k
				if err != nil {
					return nil, errTorn
				}
				crc, err := u32()
				if err != nil {
					return nil, err
				}
				l := loc{seg: seq, off: bodyOff, n: bl, crc: crc}
				op.val = append(l.append(make([]byte, 0, locLen+len(meta))), meta...)
			}
		default:
			return nil, errTorn
		}
		ops = append(ops, op)
	}
	if read != n || cr.crc != want {
		return nil, errTorn
	}
	return ops, nil
}

// setSegMax changes the rotation size (for tests).
func (j *journal) setSegMax(n int64) {
	j.mu.Lock()
	j.segMax = n
	j.mu.Unlock()
}
