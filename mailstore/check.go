package mailstore

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Usage returns the account's usage as the index keeps it.
func (a *Account) Usage() (Usage, error) {
	var u Usage
	err := a.view(func(x *ix) error {
		u = x.usage()
		return nil
	})
	return u, err
}

// Recompute rebuilds the account's usage and every mailbox's counts from
// the message entries, and returns the usage.
func (a *Account) Recompute() (Usage, error) {
	var u Usage
	err := a.update(func(x *ix, c *txCtx) error {
		u = Usage{}
		old := x.usage()
		type mb struct {
			name string
			r    *mailboxRec
		}
		var mbs []mb
		if err := x.mboxes.ForEach(func(k, v []byte) error {
			r := &mailboxRec{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("mailstore: mailbox %q: %w", k, err)
			}
			mbs = append(mbs, mb{string(k), r})
			return nil
		}); err != nil {
			return err
		}
		for _, m := range mbs {
			m.r.Messages, m.r.Unseen, m.r.Deleted, m.r.Size = 0, 0, 0, 0
			if err := x.eachMsg(m.r.ID, AllUIDs, func(uid uint32, msg msgRec) error {
				m.r.count(msg.flags, msg.size, 1)
				u.Bytes += msg.size
				u.Messages++
				return nil
			}); err != nil {
				return err
			}
			if err := x.putMailbox(m.name, m.r); err != nil {
				return err
			}
		}
		c.usage = u.Bytes - old.Bytes
		return x.setUsage(u)
	})
	return u, err
}

// Check compares the index with the message files. A file without an index
// entry is what a crash leaves between writing a message and committing it:
// it is removed and listed in Removed. An index entry whose file is missing
// is corruption, listed in Missing. Reference counts, sizes and usage that
// do not match the entries are listed in Problems (Recompute mends usage).
// Check may run while the account is in use.
func (a *Account) Check() (*CheckReport, error) {
	rep := &CheckReport{}
	type file struct {
		path string
		size int64
	}
	disk := map[uint64]file{}
	shards, err := os.ReadDir(a.msgDir)
	if err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	for _, sh := range shards {
		dir := filepath.Join(a.msgDir, sh.Name())
		if !sh.IsDir() {
			rep.Problems = append(rep.Problems, "unexpected file "+dir)
			continue
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("mailstore: %w", err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			id, err := strconv.ParseUint(e.Name(), 10, 64)
			if err != nil || strconv.FormatUint(id/shardSize, 10) != sh.Name() {
				rep.Problems = append(rep.Problems, "unexpected file "+p)
				continue
			}
			var size int64
			if info, err := e.Info(); err == nil {
				size = info.Size()
			}
			disk[id] = file{p, size}
		}
	}
	rep.Files = len(disk)

	// Files being written now are not leftovers: take their IDs before the
	// index is read, so that one committed meanwhile is seen in it.
	a.idMu.Lock()
	inflight := make(map[uint64]bool, len(a.inflight))
	for id := range a.inflight {
		inflight[id] = true
	}
	a.idMu.Unlock()

	var leftovers []string
	err = a.view(func(x *ix) error {
		refs := map[uint64]uint32{}
		var u Usage
		if err := x.mboxes.ForEach(func(k, v []byte) error {
			var r mailboxRec
			if err := json.Unmarshal(v, &r); err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("mailbox %q: %v", k, err))
				return nil
			}
			var n mailboxRec
			err := x.eachMsg(r.ID, AllUIDs, func(uid uint32, m msgRec) error {
				refs[m.id]++
				n.count(m.flags, m.size, 1)
				u.Bytes += m.size
				u.Messages++
				if uid >= r.UIDNext {
					rep.Problems = append(rep.Problems, fmt.Sprintf("mailbox %q: UID %d not below UIDNEXT %d", k, uid, r.UIDNext))
				}
				return nil
			})
			if err != nil {
				rep.Problems = append(rep.Problems, err.Error())
			}
			if n.Messages != r.Messages || n.Unseen != r.Unseen || n.Deleted != r.Deleted || n.Size != r.Size {
				rep.Problems = append(rep.Problems, fmt.Sprintf("mailbox %q: counts %d/%d/%d/%d, entries say %d/%d/%d/%d",
					k, r.Messages, r.Unseen, r.Deleted, r.Size, n.Messages, n.Unseen, n.Deleted, n.Size))
			}
			return nil
		}); err != nil {
			return err
		}
		if got := x.usage(); got != u {
			rep.Problems = append(rep.Problems, fmt.Sprintf("usage %d octets in %d messages, entries say %d in %d",
				got.Bytes, got.Messages, u.Bytes, u.Messages))
		}
		c := x.files.Cursor()
		indexed := map[uint64]bool{}
		for k, v := c.First(); k != nil; k, v = c.Next() {
			id := u64(k)
			indexed[id] = true
			if len(v) < 12 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("message file %d: damaged file record", id))
				continue
			}
			n, size := u32(v), int64(u64(v[4:]))
			f, ok := disk[id]
			if !ok {
				p, _ := a.filePath(id)
				rep.Missing = append(rep.Missing, p)
			} else if f.size != size {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d octets, index says %d", f.path, f.size, size))
			}
			if refs[id] != n {
				rep.Problems = append(rep.Problems, fmt.Sprintf("message file %d: %d references, %d entries", id, n, refs[id]))
			}
			delete(refs, id)
		}
		for id := range refs {
			rep.Problems = append(rep.Problems, fmt.Sprintf("message file %d: entries but no file record", id))
		}
		for id, f := range disk {
			if !indexed[id] && !inflight[id] {
				leftovers = append(leftovers, f.path)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range leftovers {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("removing %s: %v", p, err))
			continue
		}
		rep.Removed = append(rep.Removed, p)
	}
	return rep, nil
}
