package mailstore

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Mailboxes lists the account's mailboxes, sorted by name (INBOX first).
func (a *Account) Mailboxes() ([]Mailbox, error) {
	var l []Mailbox
	err := a.view(func(x *ix) error {
		return x.mboxes.ForEach(func(k, v []byte) error {
			var r mailboxRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("mailstore: mailbox %q: %w", k, err)
			}
			l = append(l, r.mailbox(string(k)))
			return nil
		})
	})
	sort.SliceStable(l, func(i, j int) bool {
		if (l[i].Name == Inbox) != (l[j].Name == Inbox) {
			return l[i].Name == Inbox
		}
		return l[i].Name < l[j].Name
	})
	return l, err
}

// Status returns a mailbox's state.
func (a *Account) Status(name string) (Mailbox, error) {
	name, err := canonName(name)
	if err != nil {
		return Mailbox{}, err
	}
	var m Mailbox
	err = a.view(func(x *ix) error {
		r, err := x.mustMailbox(name)
		if err == nil {
			m = r.mailbox(name)
		}
		return err
	})
	return m, err
}

// Create makes a mailbox with a new UIDVALIDITY. specialUse is "" or one
// of the Special* attributes.
func (a *Account) Create(name, specialUse string) (Mailbox, error) {
	name, err := canonName(name)
	if err != nil {
		return Mailbox{}, err
	}
	switch specialUse {
	case "", SpecialSent, SpecialDrafts, SpecialTrash, SpecialJunk, `\All`, `\Archive`, `\Flagged`:
	default:
		return Mailbox{}, fmt.Errorf("%w: special-use %q", ErrInvalid, specialUse)
	}
	var m Mailbox
	err = a.update(func(x *ix, c *txCtx) error {
		if x.mboxes.Get([]byte(name)) != nil {
			return fmt.Errorf("%w: %q", ErrMailboxExists, name)
		}
		r, err := x.newMailbox(specialUse)
		if err != nil {
			return err
		}
		if err := x.putMailbox(name, r); err != nil {
			return err
		}
		m = r.mailbox(name)
		c.changes = append(c.changes, Change{Kind: ChangeMailboxCreate, Mailbox: name, MailboxID: r.ID, UIDValidity: r.UIDValidity})
		return nil
	})
	return m, err
}

// Delete removes a mailbox and its messages. INBOX cannot be deleted. The
// mailboxes below it stay.
func (a *Account) Delete(name string) error {
	name, err := canonName(name)
	if err != nil {
		return err
	}
	if name == Inbox {
		return fmt.Errorf("%w: INBOX cannot be deleted", ErrInvalid)
	}
	return a.update(func(x *ix, c *txCtx) error {
		r, err := x.mustMailbox(name)
		if err != nil {
			return err
		}
		type entry struct {
			uid uint32
			m   msgRec
		}
		var all []entry
		if err := x.eachMsg(r.ID, AllUIDs, func(uid uint32, m msgRec) error {
			all = append(all, entry{uid, m})
			return nil
		}); err != nil {
			return err
		}
		var bytes int64
		for _, e := range all {
			if err := txErr(x.msgs.Delete(msgKey(r.ID, e.uid))); err != nil {
				return err
			}
			gone, err := x.unref(e.m.id)
			if err != nil {
				return err
			}
			if gone {
				c.unlink = append(c.unlink, e.m.id)
			}
			bytes += e.m.size
		}
		if err := x.addUsage(-bytes, -int64(len(all))); err != nil {
			return err
		}
		c.usage -= bytes
		if err := txErr(x.mboxes.Delete([]byte(name))); err != nil {
			return err
		}
		c.changes = append(c.changes, Change{Kind: ChangeMailboxDelete, Mailbox: name, MailboxID: r.ID, UIDValidity: r.UIDValidity})
		return nil
	})
}

// Rename gives a mailbox, and the mailboxes below it, a new name; their
// messages and UIDs stay. Renaming INBOX moves its messages to a new
// mailbox of that name and leaves an empty INBOX (with a new UIDVALIDITY),
// as IMAP has it; the mailboxes below INBOX stay where they are.
func (a *Account) Rename(from, to string) error {
	from, err := canonName(from)
	if err != nil {
		return err
	}
	to, err = canonName(to)
	if err != nil {
		return err
	}
	if from == to {
		return fmt.Errorf("%w: %q", ErrMailboxExists, to)
	}
	if from != Inbox && strings.HasPrefix(to, from+Separator) {
		return fmt.Errorf("%w: %q cannot move below itself", ErrInvalid, from)
	}
	return a.update(func(x *ix, c *txCtx) error {
		r, err := x.mustMailbox(from)
		if err != nil {
			return err
		}
		type mv struct {
			from, to string
			r        *mailboxRec
		}
		moves := []mv{{from, to, r}}
		if from != Inbox {
			cur := x.mboxes.Cursor()
			prefix := []byte(from + Separator)
			for k, v := cur.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, v = cur.Next() {
				cr := &mailboxRec{}
				if err := json.Unmarshal(v, cr); err != nil {
					return fmt.Errorf("mailstore: mailbox %q: %w", k, err)
				}
				moves = append(moves, mv{string(k), to + string(k[len(from):]), cr})
			}
		}
		for _, m := range moves {
			if x.mboxes.Get([]byte(m.to)) != nil {
				return fmt.Errorf("%w: %q", ErrMailboxExists, m.to)
			}
		}
		for _, m := range moves {
			if err := txErr(x.mboxes.Delete([]byte(m.from))); err != nil {
				return err
			}
			if err := x.putMailbox(m.to, m.r); err != nil {
				return err
			}
			c.changes = append(c.changes, Change{Kind: ChangeMailboxRename, Mailbox: m.to, OldName: m.from,
				MailboxID: m.r.ID, UIDValidity: m.r.UIDValidity})
		}
		if from == Inbox {
			nr, err := x.newMailbox("")
			if err != nil {
				return err
			}
			nr.Subscribed = r.Subscribed
			if err := x.putMailbox(Inbox, nr); err != nil {
				return err
			}
			c.changes = append(c.changes, Change{Kind: ChangeMailboxCreate, Mailbox: Inbox, MailboxID: nr.ID, UIDValidity: nr.UIDValidity})
		}
		return nil
	})
}

// SetSubscribed sets whether a mailbox is subscribed.
func (a *Account) SetSubscribed(name string, on bool) error {
	name, err := canonName(name)
	if err != nil {
		return err
	}
	return a.update(func(x *ix, c *txCtx) error {
		r, err := x.mustMailbox(name)
		if err != nil || r.Subscribed == on {
			return err
		}
		r.Subscribed = on
		return x.putMailbox(name, r)
	})
}
