package mailstore

import (
	"errors"
	"io"
	"strings"
	"time"
)

var (
	// ErrOverQuota is returned by Deliver, Append and Copy when the
	// account's usage would pass the quota given to the call.
	ErrOverQuota = errors.New("mailstore: over quota")
	// ErrNoMailbox is matched by the error of an operation on a mailbox
	// that does not exist.
	ErrNoMailbox = errors.New("mailstore: no such mailbox")
	// ErrMailboxExists is returned by Create and Rename when the new name
	// is taken.
	ErrMailboxExists = errors.New("mailstore: mailbox exists")
	// ErrNotFound is returned by OpenBody for a UID that is not (or no
	// longer) in the mailbox.
	ErrNotFound = errors.New("mailstore: message not found")
	// ErrInvalid is matched by the error of a call with an invalid
	// argument (a mailbox or account name, a keyword).
	ErrInvalid = errors.New("mailstore: invalid argument")
	// ErrClosed is returned by calls on a closed store.
	ErrClosed = errors.New("mailstore: closed")
	// ErrInUse is returned when another process holds an account's index.
	ErrInUse = errors.New("mailstore: account in use by another process")
)

// Flags are the IMAP system flags of a message (\Recent is a session's
// notion and not stored).
type Flags uint8

// The system flags.
const (
	FlagSeen Flags = 1 << iota
	FlagAnswered
	FlagFlagged
	FlagDeleted
	FlagDraft
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{FlagSeen, `\Seen`}, {FlagAnswered, `\Answered`}, {FlagFlagged, `\Flagged`},
	{FlagDeleted, `\Deleted`}, {FlagDraft, `\Draft`},
}

// Strings returns the flags' IMAP names, in a fixed order.
func (f Flags) Strings() []string {
	var l []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			l = append(l, n.name)
		}
	}
	return l
}

// ParseFlag returns the system flag an IMAP name stands for (compared
// without regard to case), false for a keyword.
func ParseFlag(s string) (Flags, bool) {
	for _, n := range flagNames {
		if strings.EqualFold(s, n.name) {
			return n.f, true
		}
	}
	return 0, false
}

// Special-use attributes (RFC 6154) of the default mailboxes.
const (
	SpecialSent   = `\Sent`
	SpecialDrafts = `\Drafts`
	SpecialTrash  = `\Trash`
	SpecialJunk   = `\Junk`
)

// Inbox is the name of the mailbox deliveries go to. Its name is matched
// without regard to case; every other name is matched exactly.
const Inbox = "INBOX"

// Separator is the hierarchy delimiter of mailbox names.
const Separator = "/"

// DefaultMailboxes are created with every account.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{Inbox, ""}, {"Sent", SpecialSent}, {"Drafts", SpecialDrafts}, {"Trash", SpecialTrash}, {"Junk", SpecialJunk},
}

// Mailbox is a mailbox's state as committed.
type Mailbox struct {
	Name          string
	ID            uint32 // internal, never reused within the account
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	SpecialUse    string // `\Sent`, ... or ""
	Subscribed    bool
	Messages      uint32 // count
	Unseen        uint32 // without \Seen
	Deleted       uint32 // with \Deleted
	Size          int64  // octets of its messages
}

// Message is a message's index entry.
type Message struct {
	UID      uint32
	ID       uint64 // the message file; copies share it
	ModSeq   uint64
	Flags    Flags
	Keywords []string
	Size     int64     // octets of the stored file (CRLF line ends)
	Date     time.Time // internal date
	// Envelope and Structure are filled when FetchOptions asks for them.
	Envelope  *Envelope
	Structure *Part
}

// UIDRange is the UIDs from Start to Stop, both included; Stop 0 is no
// upper bound (IMAP's "*").
type UIDRange struct{ Start, Stop uint32 }

// UIDSet is a set of UID ranges.
type UIDSet []UIDRange

// AllUIDs is every message of a mailbox.
var AllUIDs = UIDSet{{1, 0}}

// Contains reports whether uid is in the set.
func (s UIDSet) Contains(uid uint32) bool {
	for _, r := range s {
		if uid >= r.Start && (r.Stop == 0 || uid <= r.Stop) {
			return true
		}
	}
	return false
}

// UIDs returns a set of the given UIDs, one range each.
func UIDs(uids ...uint32) UIDSet {
	s := make(UIDSet, len(uids))
	for i, u := range uids {
		s[i] = UIDRange{u, u}
	}
	return s
}

// bounds returns the smallest and largest UID the set can contain.
func (s UIDSet) bounds() (lo, hi uint32) {
	lo, hi = ^uint32(0), 0
	for _, r := range s {
		lo = min(lo, r.Start)
		if r.Stop == 0 {
			hi = ^uint32(0)
		} else {
			hi = max(hi, r.Stop)
		}
	}
	return lo, hi
}

// Delivery is one message for Deliver.
type Delivery struct {
	// ID identifies the delivery (the queue's message ID and recipient):
	// a second Deliver with an ID already committed does nothing and
	// returns the first one's result with Duplicate set. Empty: no check.
	ID string
	// Prepend is written before the body (Return-Path, Delivered-To,
	// Received), so the stored size is exact.
	Prepend []byte
	Body    io.Reader
	// Mailbox is where it goes, INBOX when empty.
	Mailbox string
	Flags   Flags
	// Quota is the account's limit in octets, 0 for none.
	Quota int64
	// Date is the internal date, now when zero.
	Date time.Time
}

// Delivered is the result of a committed Deliver or Append.
type Delivered struct {
	Mailbox     string
	UIDValidity uint32
	UID         uint32
	ModSeq      uint64
	Size        int64
	Duplicate   bool // the delivery ID was already committed: nothing was written
}

// AppendOptions are Append's optional values.
type AppendOptions struct {
	Flags    Flags
	Keywords []string
	Date     time.Time // internal date, now when zero
	Quota    int64     // octets, 0 for none
}

// StoreMode is how Store changes the flags.
type StoreMode int

// Store modes (IMAP's +FLAGS, -FLAGS, FLAGS).
const (
	StoreAdd StoreMode = iota
	StoreRemove
	StoreReplace
)

// FlagUpdate is a Store request.
type FlagUpdate struct {
	Mode     StoreMode
	Flags    Flags
	Keywords []string
	// UnchangedSince, when not 0, leaves alone the messages whose modseq
	// is higher (CONDSTORE); Store reports them in its second result.
	UnchangedSince uint64
}

// CopyResult maps the source UIDs of a Copy or Move to their new UIDs in
// the target (UIDPLUS's COPYUID), in the same order.
type CopyResult struct {
	UIDValidity uint32 // of the target
	Source      []uint32
	Dest        []uint32
}

// FetchOptions choose what Fetch reads beyond the index entry.
type FetchOptions struct {
	Envelope  bool
	Structure bool
}

// Usage is an account's storage as the index counts it.
type Usage struct {
	Bytes    int64 // sum of the sizes of every message entry (a copy counts again)
	Messages int64
}

// ChangeKind says what a Change is.
type ChangeKind int

// Change kinds.
const (
	ChangeNew ChangeKind = iota + 1
	ChangeFlags
	ChangeExpunge
	ChangeMailboxCreate
	ChangeMailboxRename
	ChangeMailboxDelete
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeNew:
		return "new"
	case ChangeFlags:
		return "flags"
	case ChangeExpunge:
		return "expunge"
	case ChangeMailboxCreate:
		return "create"
	case ChangeMailboxRename:
		return "rename"
	case ChangeMailboxDelete:
		return "delete"
	}
	return "?"
}

// Change is one committed change of an account, as its subscribers see it.
type Change struct {
	Kind        ChangeKind
	Mailbox     string // the (new) name
	MailboxID   uint32
	UIDValidity uint32
	UID         uint32 // of new, flags, expunge
	ModSeq      uint64
	Flags       Flags    // of new and flags
	Keywords    []string // of new and flags
	Size        int64    // of new
	OldName     string   // of rename
}

// CheckReport is what Check found.
type CheckReport struct {
	Files    int      // message files on disk
	Removed  []string // files without an index entry (left by a crash), removed
	Missing  []string // index entries whose file is missing: corruption
	Problems []string // other inconsistencies (counts, sizes, references)
}

// Clean reports whether nothing was found missing or inconsistent.
func (r *CheckReport) Clean() bool { return len(r.Missing) == 0 && len(r.Problems) == 0 }
