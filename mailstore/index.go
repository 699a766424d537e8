package mailstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The index of an account, one bbolt file. Keys are big endian so that
// cursors walk in numeric order. Values read from bbolt are decoded (copied)
// before the transaction ends.
//
//	meta        "nextid" u64 | "uidvalidity" u32 | "mailboxid" u32 | "modseq" u64 | "usage" i64 bytes, i64 messages
//	mailboxes   name → JSON mailboxRec
//	messages    mailbox ID u32 | UID u32 → msgRec (binary)
//	files       file ID u64 → references u32 | size u64
//	parsed      file ID u64 → JSON Parsed
//	deliveries  delivery ID → time i64 (unix ns) | mailbox ID u32 | UID u32
var (
	bMeta       = []byte("meta")
	bMailboxes  = []byte("mailboxes")
	bMessages   = []byte("messages")
	bFiles      = []byte("files")
	bParsed     = []byte("parsed")
	bDeliveries = []byte("deliveries")

	kNextID      = []byte("nextid")
	kUIDValidity = []byte("uidvalidity")
	kMailboxID   = []byte("mailboxid")
	kModSeq      = []byte("modseq")
	kUsage       = []byte("usage")
)

var allBuckets = [][]byte{bMeta, bMailboxes, bMessages, bFiles, bParsed, bDeliveries}

// txError is an error of the index transaction itself: the whole batch
// fails with it. Every other error an operation returns leaves the
// transaction as the operation found it.
type txError struct{ err error }

func (e *txError) Error() string { return e.err.Error() }
func (e *txError) Unwrap() error { return e.err }

func txErr(err error) error {
	if err == nil {
		return nil
	}
	var te *txError
	if errors.As(err, &te) {
		return err
	}
	return &txError{err}
}

// ix is an index transaction with its buckets.
type ix struct {
	tx                                          *bolt.Tx
	meta, mboxes, msgs, files, parsed, delivers *bolt.Bucket
}

func newIx(tx *bolt.Tx) *ix {
	return &ix{tx: tx, meta: tx.Bucket(bMeta), mboxes: tx.Bucket(bMailboxes), msgs: tx.Bucket(bMessages),
		files: tx.Bucket(bFiles), parsed: tx.Bucket(bParsed), delivers: tx.Bucket(bDeliveries)}
}

func u64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func msgKey(mb, uid uint32) []byte {
	k := binary.BigEndian.AppendUint32(make([]byte, 0, 8), mb)
	return binary.BigEndian.AppendUint32(k, uid)
}

func (x *ix) getU64(k []byte) uint64 { return u64(x.meta.Get(k)) }
func (x *ix) getU32(k []byte) uint32 { return u32(x.meta.Get(k)) }
func (x *ix) putU64(k []byte, v uint64) error {
	return txErr(x.meta.Put(k, be64(v)))
}
func (x *ix) putU32(k []byte, v uint32) error {
	return txErr(x.meta.Put(k, be32(v)))
}

// nextModSeq returns the account's next modification sequence.
func (x *ix) nextModSeq() (uint64, error) {
	v := x.getU64(kModSeq) + 1
	return v, x.putU64(kModSeq, v)
}

func (x *ix) usage() Usage {
	b := x.meta.Get(kUsage)
	if len(b) < 16 {
		return Usage{}
	}
	return Usage{Bytes: int64(u64(b)), Messages: int64(u64(b[8:]))}
}

func (x *ix) addUsage(bytes, msgs int64) error {
	u := x.usage()
	u.Bytes += bytes
	u.Messages += msgs
	return x.setUsage(u)
}

func (x *ix) setUsage(u Usage) error {
	b := binary.BigEndian.AppendUint64(nil, uint64(u.Bytes))
	b = binary.BigEndian.AppendUint64(b, uint64(u.Messages))
	return txErr(x.meta.Put(kUsage, b))
}

// mailboxRec is a mailbox as stored.
type mailboxRec struct {
	ID            uint32 `json:"id"`
	UIDValidity   uint32 `json:"uidValidity"`
	UIDNext       uint32 `json:"uidNext"`
	HighestModSeq uint64 `json:"highestModSeq"`
	SpecialUse    string `json:"specialUse,omitempty"`
	Subscribed    bool   `json:"subscribed,omitempty"`
	Messages      uint32 `json:"messages"`
	Unseen        uint32 `json:"unseen"`
	Deleted       uint32 `json:"deleted"`
	Size          int64  `json:"size"`
}

func (r *mailboxRec) mailbox(name string) Mailbox {
	return Mailbox{Name: name, ID: r.ID, UIDValidity: r.UIDValidity, UIDNext: r.UIDNext,
		HighestModSeq: r.HighestModSeq, SpecialUse: r.SpecialUse, Subscribed: r.Subscribed,
		Messages: r.Messages, Unseen: r.Unseen, Deleted: r.Deleted, Size: r.Size}
}

// mailbox returns the mailbox called name, nil when there is none.
func (x *ix) mailbox(name string) (*mailboxRec, error) {
	v := x.mboxes.Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	r := &mailboxRec{}
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("mailstore: mailbox %q: %w", name, err)
	}
	return r, nil
}

// mustMailbox is mailbox, with ErrNoMailbox when there is none.
func (x *ix) mustMailbox(name string) (*mailboxRec, error) {
	r, err := x.mailbox(name)
	if err == nil && r == nil {
		err = fmt.Errorf("%w: %q", ErrNoMailbox, name)
	}
	return r, err
}

func (x *ix) putMailbox(name string, r *mailboxRec) error {
	b, err := json.Marshal(r)
	if err != nil {
		return txErr(err)
	}
	return txErr(x.mboxes.Put([]byte(name), b))
}

// mailboxName returns the name of the mailbox with that ID.
func (x *ix) mailboxName(id uint32) (string, *mailboxRec) {
	c := x.mboxes.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var r mailboxRec
		if json.Unmarshal(v, &r) == nil && r.ID == id {
			return string(k), &r
		}
	}
	return "", nil
}

// newMailbox makes the record of a new mailbox, with a new ID and
// UIDVALIDITY.
func (x *ix) newMailbox(specialUse string) (*mailboxRec, error) {
	id := x.getU32(kMailboxID) + 1
	uv := x.getU32(kUIDValidity) + 1
	if err := x.putU32(kMailboxID, id); err != nil {
		return nil, err
	}
	if err := x.putU32(kUIDValidity, uv); err != nil {
		return nil, err
	}
	return &mailboxRec{ID: id, UIDValidity: uv, UIDNext: 1, SpecialUse: specialUse}, nil
}

// msgRec is a message's index entry as stored:
//
//	version u8 (1) | file ID u64 | modseq u64 | size u64 | date i64 (unix ns) | flags u8 |
//	keyword count u16 | each: length u16, keyword
type msgRec struct {
	id       uint64
	modseq   uint64
	size     int64
	date     int64
	flags    Flags
	keywords []string
}

func (m *msgRec) encode() []byte {
	b := make([]byte, 0, 36+8*len(m.keywords))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, m.id)
	b = binary.BigEndian.AppendUint64(b, m.modseq)
	b = binary.BigEndian.AppendUint64(b, uint64(m.size))
	b = binary.BigEndian.AppendUint64(b, uint64(m.date))
	b = append(b, byte(m.flags))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.keywords)))
	for _, k := range m.keywords {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
		b = append(b, k...)
	}
	return b
}

var errBadRecord = errors.New("mailstore: damaged message record")

func decodeMsg(b []byte) (msgRec, error) {
	var m msgRec
	if len(b) < 36 || b[0] != 1 {
		return m, errBadRecord
	}
	m.id = binary.BigEndian.Uint64(b[1:])
	m.modseq = binary.BigEndian.Uint64(b[9:])
	m.size = int64(binary.BigEndian.Uint64(b[17:]))
	m.date = int64(binary.BigEndian.Uint64(b[25:]))
	m.flags = Flags(b[33])
	n := int(binary.BigEndian.Uint16(b[34:]))
	b = b[36:]
	for i := 0; i < n; i++ {
		if len(b) < 2 {
			return m, errBadRecord
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l {
			return m, errBadRecord
		}
		m.keywords = append(m.keywords, string(b[2:2+l]))
		b = b[2+l:]
	}
	return m, nil
}

func (m *msgRec) message(uid uint32) Message {
	return Message{UID: uid, ID: m.id, ModSeq: m.modseq, Flags: m.flags, Keywords: m.keywords,
		Size: m.size, Date: time.Unix(0, m.date)}
}

func (x *ix) putMsg(mb, uid uint32, m *msgRec) error {
	return txErr(x.msgs.Put(msgKey(mb, uid), m.encode()))
}

// eachMsg calls fn for the messages of mailbox mb whose UIDs are in set, in
// UID order. fn's error stops the walk and is returned.
func (x *ix) eachMsg(mb uint32, set UIDSet, fn func(uid uint32, m msgRec) error) error {
	lo, hi := set.bounds()
	if lo > hi {
		return nil
	}
	c := x.msgs.Cursor()
	for k, v := c.Seek(msgKey(mb, lo)); k != nil && u32(k) == mb; k, v = c.Next() {
		uid := u32(k[4:])
		if uid > hi {
			break
		}
		if !set.Contains(uid) {
			continue
		}
		m, err := decodeMsg(v)
		if err != nil {
			return fmt.Errorf("%w (mailbox %d, uid %d)", err, mb, uid)
		}
		if err := fn(uid, m); err != nil {
			return err
		}
	}
	return nil
}

// fileRefs returns the references to a message file and its size.
func (x *ix) fileRefs(id uint64) (uint32, int64, bool) {
	v := x.files.Get(be64(id))
	if len(v) < 12 {
		return 0, 0, false
	}
	return u32(v), int64(u64(v[4:])), true
}

func (x *ix) putFile(id uint64, refs uint32, size int64) error {
	v := binary.BigEndian.AppendUint32(nil, refs)
	v = binary.BigEndian.AppendUint64(v, uint64(size))
	return txErr(x.files.Put(be64(id), v))
}

// unref drops one reference to a message file; at none, the file's entries
// go and its ID is returned for unlinking after the commit.
func (x *ix) unref(id uint64) (unlink bool, err error) {
	refs, size, ok := x.fileRefs(id)
	if !ok || refs <= 1 {
		if err := x.files.Delete(be64(id)); err != nil {
			return false, txErr(err)
		}
		if err := x.parsed.Delete(be64(id)); err != nil {
			return false, txErr(err)
		}
		return true, nil
	}
	return false, x.putFile(id, refs-1, size)
}

func (x *ix) getParsed(id uint64) (*Parsed, error) {
	v := x.parsed.Get(be64(id))
	if v == nil {
		return nil, nil
	}
	p := &Parsed{}
	if err := json.Unmarshal(v, p); err != nil {
		return nil, fmt.Errorf("mailstore: parsed data of message %d: %w", id, err)
	}
	return p, nil
}

// delivery returns what a delivery ID was committed as.
func (x *ix) delivery(id string) (mb, uid uint32, ok bool) {
	v := x.delivers.Get([]byte(id))
	if len(v) < 16 {
		return 0, 0, false
	}
	return u32(v[8:]), u32(v[12:]), true
}

func (x *ix) putDelivery(id string, at time.Time, mb, uid uint32) error {
	v := binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano()))
	v = binary.BigEndian.AppendUint32(v, mb)
	v = binary.BigEndian.AppendUint32(v, uid)
	return txErr(x.delivers.Put([]byte(id), v))
}
