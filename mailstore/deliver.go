package mailstore

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"mailgate/fsync"
)

// Deliver commits one message to the account's mailbox (INBOX by default).
// It returns once the message file, its directory and the index are on
// disk, in that order. A delivery ID already committed makes it a no-op
// that returns the first delivery (Duplicate set).
func (a *Account) Deliver(d Delivery) (Delivered, error) {
	if d.ID != "" {
		if r, ok, err := a.lookupDelivery(d.ID); err != nil || ok {
			return r, err
		}
	}
	mailbox := d.Mailbox
	if mailbox == "" {
		mailbox = Inbox
	}
	return a.add(mailbox, d.ID, d.Prepend, d.Body, AppendOptions{Flags: d.Flags, Date: d.Date, Quota: d.Quota})
}

// Append commits a message to a mailbox (IMAP APPEND), as Deliver does.
func (a *Account) Append(mailbox string, body io.Reader, o AppendOptions) (Delivered, error) {
	return a.add(mailbox, "", nil, body, o)
}

func (a *Account) lookupDelivery(id string) (Delivered, bool, error) {
	var r Delivered
	var ok bool
	err := a.view(func(x *ix) error {
		r, ok = x.deliveredAs(id)
		return nil
	})
	return r, ok, err
}

// deliveredAs returns the result of a committed delivery ID.
func (x *ix) deliveredAs(id string) (Delivered, bool) {
	mb, uid, ok := x.delivery(id)
	if !ok {
		return Delivered{}, false
	}
	r := Delivered{UID: uid, Duplicate: true}
	if name, rec := x.mailboxName(mb); rec != nil {
		r.Mailbox, r.UIDValidity = name, rec.UIDValidity
		if v := x.msgs.Get(msgKey(mb, uid)); v != nil {
			if m, err := decodeMsg(v); err == nil {
				r.ModSeq, r.Size = m.modseq, m.size
			}
		}
	}
	return r, true
}

func (a *Account) add(mailbox, deliveryID string, prepend []byte, body io.Reader, o AppendOptions) (Delivered, error) {
	mailbox, err := canonName(mailbox)
	if err != nil {
		return Delivered{}, err
	}
	kws, err := canonKeywords(o.Keywords)
	if err != nil {
		return Delivered{}, err
	}
	if o.Quota > 0 && a.usage.Load() >= o.Quota {
		return Delivered{}, ErrOverQuota
	}
	// Refuse a mailbox that does not exist before writing anything.
	if err := a.view(func(x *ix) error {
		_, err := x.mustMailbox(mailbox)
		return err
	}); err != nil {
		return Delivered{}, err
	}
	date := o.Date
	if date.IsZero() {
		date = a.s.opts.Now()
	}

	a.c.begin()
	id, f, dir, err := a.newFile()
	if err != nil {
		a.c.abort()
		return Delivered{}, fmt.Errorf("mailstore: %w", err)
	}
	path := f.Name()
	fail := func(err error) (Delivered, error) {
		f.Close()
		os.Remove(path)
		a.release(id)
		return Delivered{}, err
	}
	size, parsed, err := a.writeMessage(f, prepend, body)
	var pj []byte
	if err == nil {
		pj, err = json.Marshal(parsed)
	}
	if err != nil {
		a.c.abort()
		return fail(err)
	}

	var res Delivered
	o2 := &op{dirs: []string{dir}, apply: func(x *ix, c *txCtx) error {
		if deliveryID != "" {
			if r, ok := x.deliveredAs(deliveryID); ok {
				// Committed by a concurrent call: this file goes.
				res = r
				return nil
			}
		}
		mb, err := x.mustMailbox(mailbox)
		if err != nil {
			return err
		}
		if o.Quota > 0 && x.usage().Bytes+size > o.Quota {
			return ErrOverQuota
		}
		if mb.UIDNext == 0 {
			return fmt.Errorf("%w: mailbox %q has no UIDs left", ErrInvalid, mailbox)
		}
		modseq, err := x.nextModSeq()
		if err != nil {
			return err
		}
		uid := mb.UIDNext
		m := msgRec{id: id, modseq: modseq, size: size, date: date.UnixNano(), flags: o.Flags, keywords: kws}
		if err := x.putMsg(mb.ID, uid, &m); err != nil {
			return err
		}
		if err := x.putFile(id, 1, size); err != nil {
			return err
		}
		if err := txErr(x.parsed.Put(be64(id), pj)); err != nil {
			return err
		}
		if deliveryID != "" {
			if err := x.putDelivery(deliveryID, c.now, mb.ID, uid); err != nil {
				return err
			}
		}
		mb.UIDNext++
		mb.HighestModSeq = modseq
		mb.count(m.flags, size, 1)
		if err := x.putMailbox(mailbox, mb); err != nil {
			return err
		}
		if err := x.addUsage(size, 1); err != nil {
			return err
		}
		c.usage += size
		res = Delivered{Mailbox: mailbox, UIDValidity: mb.UIDValidity, UID: uid, ModSeq: modseq, Size: size}
		c.changes = append(c.changes, Change{Kind: ChangeNew, Mailbox: mailbox, MailboxID: mb.ID,
			UIDValidity: mb.UIDValidity, UID: uid, ModSeq: modseq, Flags: m.flags, Keywords: kws, Size: size})
		return nil
	}}
	// The committer syncs the directory while this call syncs the file;
	// the index commits once both are done.
	o2.synced = make(chan error, 1)
	if err := a.c.submit(o2, true); err != nil {
		return fail(err)
	}
	a.s.stats.fileSyncs.Add(1)
	err = fsync.Data(f)
	if err == nil {
		err = a.s.hook(stepFileSynced)
	}
	o2.synced <- err
	<-o2.done
	if o2.err != nil {
		return fail(o2.err)
	}
	f.Close() // committed, its data synced: an error here loses nothing
	if res.Duplicate {
		// The file of a delivery that turned out a duplicate goes.
		os.Remove(path)
	}
	a.release(id)
	return res, nil
}

// count adds n messages with these flags and size to the mailbox's counts
// (n is -1 for a removal).
func (r *mailboxRec) count(f Flags, size int64, n int) {
	r.Messages = uint32(int(r.Messages) + n)
	r.Size += int64(n) * size
	if f&FlagSeen == 0 {
		r.Unseen = uint32(int(r.Unseen) + n)
	}
	if f&FlagDeleted != 0 {
		r.Deleted = uint32(int(r.Deleted) + n)
	}
}

// writeMessage writes prepend and body to f with CRLF line ends, parsing
// the message as it goes. The data is not synced yet.
func (a *Account) writeMessage(f *os.File, prepend []byte, body io.Reader) (int64, *Parsed, error) {
	if body == nil {
		body = bytes.NewReader(nil)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	src := &errReader{r: newCRLFReader(io.MultiReader(bytes.NewReader(prepend), body))}
	cw := &countWriter{w: w}
	parsed := Parse(io.TeeReader(src, cw))
	if src.err != nil {
		return 0, nil, src.err
	}
	if err := w.Flush(); err != nil {
		return 0, nil, err
	}
	return cw.n, parsed, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// errReader keeps the first error other than EOF its reader returned.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// crlfReader turns bare LF line ends into CRLF.
type crlfReader struct {
	r      io.Reader
	in     []byte
	out    []byte // what is left to return, in buf
	buf    []byte
	prevCR bool
	err    error
}

func newCRLFReader(r io.Reader) *crlfReader { return &crlfReader{r: r, in: make([]byte, 32<<10)} }

func (c *crlfReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.r.Read(c.in)
		c.err = err
		out := c.buf[:0]
		for _, b := range c.in[:n] {
			if b == '\n' && !c.prevCR {
				out = append(out, '\r')
			}
			out = append(out, b)
			c.prevCR = b == '\r'
		}
		c.out, c.buf = out, out
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// canonName checks a mailbox name and returns its canonical form (INBOX in
// upper case, also as the head of its children's names).
func canonName(name string) (string, error) {
	bad := func() (string, error) { return "", fmt.Errorf("%w: mailbox name %q", ErrInvalid, name) }
	if name == "" || len(name) > 512 || strings.HasPrefix(name, Separator) || strings.HasSuffix(name, Separator) ||
		strings.Contains(name, Separator+Separator) || !validText(name) {
		return bad()
	}
	if strings.EqualFold(name, Inbox) {
		return Inbox, nil
	}
	if len(name) > len(Inbox) && strings.EqualFold(name[:len(Inbox)+1], Inbox+Separator) {
		return Inbox + name[len(Inbox):], nil
	}
	return name, nil
}

func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// canonKeywords checks keywords (IMAP atoms, not system flags) and drops
// duplicates (compared without regard to case), keeping the first spelling.
func canonKeywords(kws []string) ([]string, error) {
	var out []string
	for _, k := range kws {
		if k == "" || len(k) > 200 || strings.ContainsAny(k, "(){ %*\"\\]") {
			return nil, fmt.Errorf("%w: keyword %q", ErrInvalid, k)
		}
		for _, r := range k {
			if r <= 0x20 || r >= 0x7f {
				return nil, fmt.Errorf("%w: keyword %q", ErrInvalid, k)
			}
		}
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, k) }) {
			out = append(out, k)
		}
	}
	return out, nil
}
