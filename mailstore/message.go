package mailstore

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Fetch returns the index entries of a mailbox's messages whose UIDs are in
// set, in UID order.
func (a *Account) Fetch(mailbox string, set UIDSet, o FetchOptions) ([]Message, error) {
	mailbox, err := canonName(mailbox)
	if err != nil {
		return nil, err
	}
	var l []Message
	err = a.view(func(x *ix) error {
		r, err := x.mustMailbox(mailbox)
		if err != nil {
			return err
		}
		return x.eachMsg(r.ID, set, func(uid uint32, m msgRec) error {
			msg := m.message(uid)
			if o.Envelope || o.Structure {
				p, err := x.getParsed(m.id)
				if err != nil {
					return err
				}
				if p == nil {
					p = &Parsed{}
				}
				if o.Envelope {
					msg.Envelope = &p.Envelope
				}
				if o.Structure {
					msg.Structure = &p.Structure
				}
			}
			l = append(l, msg)
			return nil
		})
	})
	return l, err
}

// Body is an open message file.
type Body interface {
	io.ReadSeekCloser
	io.ReaderAt
}

// OpenBody opens a message's file for reading. The file stays readable to
// its end even when the message is expunged meanwhile; close it when done.
func (a *Account) OpenBody(mailbox string, uid uint32) (Body, Message, error) {
	mailbox, err := canonName(mailbox)
	if err != nil {
		return nil, Message{}, err
	}
	a.files.RLock()
	defer a.files.RUnlock()
	var msg Message
	found := false
	err = a.view(func(x *ix) error {
		r, err := x.mustMailbox(mailbox)
		if err != nil {
			return err
		}
		v := x.msgs.Get(msgKey(r.ID, uid))
		if v == nil {
			return nil
		}
		m, err := decodeMsg(v)
		if err != nil {
			return err
		}
		msg, found = m.message(uid), true
		return nil
	})
	if err != nil {
		return nil, Message{}, err
	}
	if !found {
		return nil, Message{}, fmt.Errorf("%w: %s UID %d", ErrNotFound, mailbox, uid)
	}
	p, _ := a.filePath(msg.ID)
	f, err := os.Open(p)
	if err != nil {
		return nil, Message{}, fmt.Errorf("mailstore: message %s UID %d: %w", mailbox, uid, err)
	}
	return f, msg, nil
}

// Store changes the flags of the messages in set and returns those that
// changed, with their new modseq, and (with UnchangedSince) the UIDs left
// alone because they changed since.
func (a *Account) Store(mailbox string, set UIDSet, u FlagUpdate) (changed []Message, failed []uint32, err error) {
	mailbox, err = canonName(mailbox)
	if err != nil {
		return nil, nil, err
	}
	kws, err := canonKeywords(u.Keywords)
	if err != nil {
		return nil, nil, err
	}
	err = a.update(func(x *ix, c *txCtx) error {
		changed, failed = nil, nil
		r, err := x.mustMailbox(mailbox)
		if err != nil {
			return err
		}
		type upd struct {
			uid uint32
			old msgRec
			m   msgRec
		}
		var ups []upd
		if err := x.eachMsg(r.ID, set, func(uid uint32, m msgRec) error {
			if u.UnchangedSince != 0 && m.modseq > u.UnchangedSince {
				failed = append(failed, uid)
				return nil
			}
			n := m
			switch u.Mode {
			case StoreAdd:
				n.flags |= u.Flags
				n.keywords = addKeywords(m.keywords, kws)
			case StoreRemove:
				n.flags &^= u.Flags
				n.keywords = removeKeywords(m.keywords, kws)
			case StoreReplace:
				n.flags = u.Flags
				n.keywords = kws
			}
			if n.flags != m.flags || !sameKeywords(n.keywords, m.keywords) {
				ups = append(ups, upd{uid, m, n})
			}
			return nil
		}); err != nil {
			return err
		}
		for i := range ups {
			modseq, err := x.nextModSeq()
			if err != nil {
				return err
			}
			up := &ups[i]
			up.m.modseq = modseq
			if err := x.putMsg(r.ID, up.uid, &up.m); err != nil {
				return err
			}
			r.count(up.old.flags, up.old.size, -1)
			r.count(up.m.flags, up.m.size, 1)
			r.HighestModSeq = modseq
			changed = append(changed, up.m.message(up.uid))
			c.changes = append(c.changes, Change{Kind: ChangeFlags, Mailbox: mailbox, MailboxID: r.ID, UIDValidity: r.UIDValidity,
				UID: up.uid, ModSeq: modseq, Flags: up.m.flags, Keywords: up.m.keywords})
		}
		if len(ups) > 0 {
			return x.putMailbox(mailbox, r)
		}
		return nil
	})
	return changed, failed, err
}

func addKeywords(have, add []string) []string {
	out := slices.Clone(have)
	for _, k := range add {
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, k) }) {
			out = append(out, k)
		}
	}
	return out
}

func removeKeywords(have, rm []string) []string {
	var out []string
	for _, k := range have {
		if !slices.ContainsFunc(rm, func(o string) bool { return strings.EqualFold(o, k) }) {
			out = append(out, k)
		}
	}
	return out
}

func sameKeywords(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, k := range a {
		if !slices.ContainsFunc(b, func(o string) bool { return strings.EqualFold(o, k) }) {
			return false
		}
	}
	return true
}

// Copy copies the messages in set to the mailbox dst with new UIDs (the
// copies share the source's file: nothing is written but the index). quota
// (octets, 0 for none) counts the copies' sizes again.
func (a *Account) Copy(src string, set UIDSet, dst string, quota int64) (CopyResult, error) {
	return a.copyMove(src, set, dst, quota, false)
}

// Move moves the messages in set to dst: new UIDs there, expunged from
// src, in one commit (IMAP MOVE).
func (a *Account) Move(src string, set UIDSet, dst string) (CopyResult, error) {
	return a.copyMove(src, set, dst, 0, true)
}

func (a *Account) copyMove(src string, set UIDSet, dst string, quota int64, move bool) (CopyResult, error) {
	src, err := canonName(src)
	if err != nil {
		return CopyResult{}, err
	}
	dst, err = canonName(dst)
	if err != nil {
		return CopyResult{}, err
	}
	var res CopyResult
	err = a.update(func(x *ix, c *txCtx) error {
		res = CopyResult{}
		sr, err := x.mustMailbox(src)
		if err != nil {
			return err
		}
		dr, err := x.mustMailbox(dst)
		if err != nil {
			return err
		}
		if src == dst {
			dr = sr
		}
		type entry struct {
			uid uint32
			m   msgRec
		}
		var all []entry
		var bytes int64
		if err := x.eachMsg(sr.ID, set, func(uid uint32, m msgRec) error {
			all = append(all, entry{uid, m})
			bytes += m.size
			return nil
		}); err != nil {
			return err
		}
		if !move && quota > 0 && x.usage().Bytes+bytes > quota {
			return ErrOverQuota
		}
		if uint64(dr.UIDNext)+uint64(len(all)) > uint64(^uint32(0)) {
			return fmt.Errorf("%w: mailbox %q has no UIDs left", ErrInvalid, dst)
		}
		res.UIDValidity = dr.UIDValidity
		for _, e := range all {
			modseq, err := x.nextModSeq()
			if err != nil {
				return err
			}
			if move {
				if err := txErr(x.msgs.Delete(msgKey(sr.ID, e.uid))); err != nil {
					return err
				}
				sr.count(e.m.flags, e.m.size, -1)
				sr.HighestModSeq = modseq
				c.changes = append(c.changes, Change{Kind: ChangeExpunge, Mailbox: src, MailboxID: sr.ID,
					UIDValidity: sr.UIDValidity, UID: e.uid, ModSeq: modseq})
			} else {
				refs, size, _ := x.fileRefs(e.m.id)
				if err := x.putFile(e.m.id, refs+1, size); err != nil {
					return err
				}
			}
			uid := dr.UIDNext
			dr.UIDNext++
			n := e.m
			n.modseq = modseq
			if err := x.putMsg(dr.ID, uid, &n); err != nil {
				return err
			}
			dr.count(n.flags, n.size, 1)
			dr.HighestModSeq = modseq
			res.Source = append(res.Source, e.uid)
			res.Dest = append(res.Dest, uid)
			c.changes = append(c.changes, Change{Kind: ChangeNew, Mailbox: dst, MailboxID: dr.ID, UIDValidity: dr.UIDValidity,
				UID: uid, ModSeq: modseq, Flags: n.flags, Keywords: n.keywords, Size: n.size})
		}
		if len(all) == 0 {
			return nil
		}
		if !move {
			if err := x.addUsage(bytes, int64(len(all))); err != nil {
				return err
			}
			c.usage += bytes
		}
		if err := x.putMailbox(src, sr); err != nil {
			return err
		}
		if src != dst {
			return x.putMailbox(dst, dr)
		}
		return nil
	})
	return res, err
}

// Expunge removes the messages of a mailbox that have \Deleted and whose
// UIDs are in set (every one with \Deleted when set is nil), and returns
// their UIDs. A message file goes once no mailbox refers to it, unlinked
// after the commit.
func (a *Account) Expunge(mailbox string, set UIDSet) ([]uint32, error) {
	mailbox, err := canonName(mailbox)
	if err != nil {
		return nil, err
	}
	if set == nil {
		set = AllUIDs
	}
	var gone []uint32
	err = a.update(func(x *ix, c *txCtx) error {
		gone = nil
		r, err := x.mustMailbox(mailbox)
		if err != nil {
			return err
		}
		type entry struct {
			uid uint32
			m   msgRec
		}
		var all []entry
		if err := x.eachMsg(r.ID, set, func(uid uint32, m msgRec) error {
			if m.flags&FlagDeleted != 0 {
				all = append(all, entry{uid, m})
			}
			return nil
		}); err != nil {
			return err
		}
		if len(all) == 0 {
			return nil
		}
		var bytes int64
		for _, e := range all {
			modseq, err := x.nextModSeq()
			if err != nil {
				return err
			}
			if err := txErr(x.msgs.Delete(msgKey(r.ID, e.uid))); err != nil {
				return err
			}
			unlink, err := x.unref(e.m.id)
			if err != nil {
				return err
			}
			if unlink {
				c.unlink = append(c.unlink, e.m.id)
			}
			r.count(e.m.flags, e.m.size, -1)
			r.HighestModSeq = modseq
			bytes += e.m.size
			gone = append(gone, e.uid)
			c.changes = append(c.changes, Change{Kind: ChangeExpunge, Mailbox: mailbox, MailboxID: r.ID,
				UIDValidity: r.UIDValidity, UID: e.uid, ModSeq: modseq})
		}
		if err := x.addUsage(-bytes, -int64(len(all))); err != nil {
			return err
		}
		c.usage -= bytes
		return x.putMailbox(mailbox, r)
	})
	return gone, err
}
