// Package mailstore owns the mailboxes of server mode: per account, a bbolt
// index and one immutable file per message. It knows nothing of IMAP or
// POP3 libraries; the protocol layers build on its plain types.
//
// # Layout
//
// A Store is a directory with one subdirectory per account, named after the
// account (lower case; octets other than [a-z0-9@._+-] written as %XX):
//
//	<dir>/alice@example.com/index.db          the index (bbolt)
//	<dir>/alice@example.com/msg/<n>/<id>      message files, 8192 per directory
//
// A message file holds the message as stored, with CRLF line ends (bare LF
// is turned into CRLF on the way in), headers given to Deliver first; it is
// never rewritten. Bodies are never inside bbolt. The index holds the
// mailboxes (name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, SPECIAL-USE,
// subscription, counts), the messages (UID, flags, keywords, size, internal
// date, modseq), the envelope and MIME structure parsed at delivery (Parse,
// into Envelope and Part), the account's usage, reference counts of the
// message files (copies share a file) and the IDs of committed deliveries.
// A new account gets INBOX, Sent, Drafts, Trash and Junk, the last four
// with their SPECIAL-USE attributes.
//
// # Durability
//
// Deliver and Append return once the message is committed, in this order:
// the message file is written and fsynced, its directory is fsynced, then
// the index transaction (which bbolt fsyncs) commits. A crash before the
// commit leaves at most a file without an index entry, which Check removes;
// a delivery ID recorded in the same transaction makes a redelivery of the
// same message (by the queue, after a crash) a no-op.
//
// Every change of an account goes through its committer, which commits the
// changes waiting at that moment together (group commit): concurrent
// deliveries each fsync their own file, then share one directory fsync and
// one index transaction. Deliver and Append announce themselves before
// writing, and a commit waits up to Options.Linger for announced writers.
//
// # Reading and expunging
//
// Fetch returns index entries by UID range; OpenBody opens a message file.
// Expunge (and Delete, and a Move's source) unlink a message file only after
// the commit that removed its last index entry, and only while no reader is
// between looking a message up and opening it; an opened file stays
// readable to its end (POSIX semantics), so an expunge never breaks a read
// in progress.
//
// # Changes
//
// Subscribe returns a feed of an account's committed changes (new message,
// flags changed, expunged, mailbox created, renamed, deleted), queued in
// commit order before the call that made them returns; the IMAP layer
// builds IDLE on it.
//
// # Quotas
//
// The index keeps the account's usage (octets and messages; a copy counts
// again). Deliver, Append and Copy take a limit and fail with ErrOverQuota
// when the message would pass it; Recompute rebuilds usage and mailbox
// counts from the message entries, Check compares index and files.
//
// # Errors
//
// File system errors are wrapped, so errors.Is(err, syscall.ENOSPC) tells
// a full disk; the package's own conditions are the Err* values.
package mailstore
