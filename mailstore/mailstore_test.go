package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func account(t testing.TB, s *Store, name string) *Account {
	t.Helper()
	a, err := s.Account(name)
	must(t, err)
	return a
}

func msgText(subject string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Sender <s@example.org>\r\nTo: alice@example.com\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n", subject, strings.ReplaceAll(subject, " ", "."))
	for b.Len() < n {
		b.WriteString("line of body text\r\n")
	}
	return b.String()
}

func readBody(t testing.TB, a *Account, mailbox string, uid uint32) string {
	t.Helper()
	f, _, err := a.OpenBody(mailbox, uid)
	must(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	must(t, err)
	return string(b)
}

func checkClean(t testing.TB, a *Account) *CheckReport {
	t.Helper()
	rep, err := a.Check()
	must(t, err)
	if !rep.Clean() {
		t.Fatalf("check: missing %v, problems %v", rep.Missing, rep.Problems)
	}
	return rep
}

func TestDefaultMailboxes(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "Alice@Example.com")
	if a.Name() != "alice@example.com" {
		t.Fatalf("name %q", a.Name())
	}
	mbs, err := a.Mailboxes()
	must(t, err)
	var got []string
	uvs := map[uint32]bool{}
	for _, m := range mbs {
		got = append(got, m.Name+" "+m.SpecialUse)
		if m.UIDNext != 1 || !m.Subscribed || uvs[m.UIDValidity] || m.UIDValidity == 0 {
			t.Errorf("mailbox %+v", m)
		}
		uvs[m.UIDValidity] = true
	}
	want := []string{"INBOX ", `Drafts \Drafts`, `Junk \Junk`, `Sent \Sent`, `Trash \Trash`}
	if !slices.Equal(got, want) {
		t.Fatalf("mailboxes %q, want %q", got, want)
	}
	if !s.Exists("alice@example.com") || s.Exists("bob@example.com") {
		t.Fatal("Exists")
	}
	names, err := s.Accounts()
	must(t, err)
	if !slices.Equal(names, []string{"alice@example.com"}) {
		t.Fatalf("accounts %q", names)
	}
}

func TestDeleteAccount(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	_, err := s.Deliver("bob@example.com", Delivery{Body: strings.NewReader(msgText("b", 100))})
	must(t, err)
	a := account(t, s, "bob@example.com")
	must(t, s.DeleteAccount("Bob@Example.com"))
	if s.Exists("bob@example.com") {
		t.Fatal("deleted account exists")
	}
	if _, err := a.Append(Inbox, strings.NewReader("x"), AppendOptions{}); err == nil {
		t.Fatal("append to a deleted account's old handle")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
	// A new account of the same name starts empty.
	b := account(t, s, "bob@example.com")
	st, _ := b.Status(Inbox)
	if st.Messages != 0 || st.UIDNext != 1 {
		t.Fatalf("new account %+v", st)
	}
}

func TestAccountDirNames(t *testing.T) {
	for _, name := range []string{"alice@example.com", "a.b+c_d-e@x.y", ".hidden@x", "..", "späti@ü.de", "a b%c@d", "UPPER@X"} {
		key, err := accountKey(name)
		must(t, err)
		d := dirName(key)
		if strings.ContainsAny(d, "/\\ ") || d == "." || d == ".." || strings.HasPrefix(d, ".") {
			t.Errorf("%q: unsafe directory %q", name, d)
		}
		back, ok := accountFromDir(d)
		if !ok || back != key {
			t.Errorf("%q: %q reads back as %q %v", name, d, back, ok)
		}
	}
	for _, bad := range []string{"", "a/b", `a\b`, "a\x00b", "a\nb", strings.Repeat("x", 300)} {
		if _, err := accountKey(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDeliverAndRead(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	body := "From: Bob <bob@example.org>\nTo: Alice <alice@example.com>, carol@example.net\nSubject: =?utf-8?q?caf=C3=A9?=\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 -0700\nMessage-ID: <m1@example.org>\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain; charset=utf-8\n\nhello\nworld\n" +
		"--XX\nContent-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment; filename=a.pdf\nContent-Transfer-Encoding: base64\n\nAAAA\n--XX--\n"
	prepend := "Return-Path: <bob@example.org>\r\nDelivered-To: alice@example.com\r\n"
	r, err := s.Deliver("alice@example.com", Delivery{ID: "q1/alice", Prepend: []byte(prepend), Body: strings.NewReader(body)})
	must(t, err)
	want := prepend + strings.ReplaceAll(body, "\n", "\r\n")
	if r.Mailbox != Inbox || r.UID != 1 || r.Duplicate || r.Size != int64(len(want)) || r.ModSeq == 0 {
		t.Fatalf("delivered %+v", r)
	}
	a := account(t, s, "alice@example.com")
	if got := readBody(t, a, "inbox", 1); got != want {
		t.Fatalf("stored\n%q\nwant\n%q", got, want)
	}
	msgs, err := a.Fetch(Inbox, AllUIDs, FetchOptions{Envelope: true, Structure: true})
	must(t, err)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.UID != 1 || m.Size != int64(len(want)) || m.Flags != 0 || m.Date.IsZero() {
		t.Fatalf("message %+v", m)
	}
	e := m.Envelope
	if e.Subject != "café" || e.MessageID != "m1@example.org" || len(e.To) != 2 || e.To[1] != (Address{Mailbox: "carol", Host: "example.net"}) ||
		len(e.From) != 1 || e.From[0] != (Address{Name: "Bob", Mailbox: "bob", Host: "example.org"}) ||
		!slices.Equal(e.Sender, e.From) || !slices.Equal(e.ReplyTo, e.From) || e.Date.Unix() != 1136239445 {
		t.Fatalf("envelope %+v", e)
	}
	st := m.Structure
	if st.Type != "multipart" || st.Subtype != "mixed" || len(st.Children) != 2 {
		t.Fatalf("structure %+v", st)
	}
	p0, p1 := st.Children[0], st.Children[1]
	if p0.Type != "text" || p0.Subtype != "plain" || p0.Params["charset"] != "utf-8" || p0.Size != int64(len("hello\r\nworld")) || p0.Lines != 1 {
		t.Fatalf("part 1 %+v", p0)
	}
	if p1.Type != "application" || p1.Subtype != "pdf" || p1.Encoding != "base64" || p1.Disposition != "attachment" ||
		p1.DispositionParams["filename"] != "a.pdf" || p1.Size != int64(len("AAAA")) {
		t.Fatalf("part 2 %+v", p1)
	}
	st2, _ := a.Status(Inbox)
	if st2.Messages != 1 || st2.Unseen != 1 || st2.UIDNext != 2 || st2.Size != r.Size || st2.HighestModSeq != r.ModSeq {
		t.Fatalf("status %+v", st2)
	}
	u, _ := a.Usage()
	if u != (Usage{Bytes: r.Size, Messages: 1}) {
		t.Fatalf("usage %+v", u)
	}
	if _, err := a.Append("Nowhere", strings.NewReader("x"), AppendOptions{}); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("append to a missing mailbox: %v", err)
	}
	checkClean(t, a)
}

func TestRedeliveryIsNoop(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	d := func() Delivery {
		return Delivery{ID: "Q123/alice@example.com", Body: strings.NewReader(msgText("once", 300))}
	}
	first, err := s.Deliver("alice@example.com", d())
	must(t, err)
	again, err := s.Deliver("alice@example.com", d())
	must(t, err)
	if !again.Duplicate || again.UID != first.UID || again.UIDValidity != first.UIDValidity || again.Mailbox != Inbox || again.Size != first.Size {
		t.Fatalf("redelivery %+v, first %+v", again, first)
	}
	// Concurrent redeliveries of one ID: one message.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Deliver("alice@example.com", Delivery{ID: "Q124/alice@example.com", Body: strings.NewReader("Subject: x\r\n\r\nx\r\n")}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	must(t, s.Close())
	s = openStore(t, dir, Options{})
	again, err = s.Deliver("alice@example.com", d())
	must(t, err)
	if !again.Duplicate || again.UID != first.UID {
		t.Fatalf("after reopen: %+v", again)
	}
	a := account(t, s, "alice@example.com")
	msgs, _ := a.Fetch(Inbox, AllUIDs, FetchOptions{})
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	rep := checkClean(t, a)
	if rep.Files != 2 || len(rep.Removed) != 0 {
		t.Fatalf("check %+v", rep)
	}
}

func TestForgetsOldDeliveryIDs(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	s := openStore(t, dir, Options{Now: func() time.Time { return now }})
	_, err := s.Deliver("a@x", Delivery{ID: "old", Body: strings.NewReader("x\r\n")})
	must(t, err)
	s.Close()
	s = openStore(t, dir, Options{Now: func() time.Time { return now.Add(31 * 24 * time.Hour) }})
	r, err := s.Deliver("a@x", Delivery{ID: "old", Body: strings.NewReader("x\r\n")})
	must(t, err)
	if r.Duplicate || r.UID != 2 {
		t.Fatalf("an ID past DeliveryIDKeep still known: %+v", r)
	}
}

func TestFlagsCopyMoveExpunge(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	var sizes int64
	for i := 1; i <= 5; i++ {
		r, err := a.Append(Inbox, strings.NewReader(msgText(fmt.Sprint("m", i), 200*i)), AppendOptions{Keywords: []string{"$Label1"}})
		must(t, err)
		if r.UID != uint32(i) {
			t.Fatalf("uid %d, want %d", r.UID, i)
		}
		sizes += r.Size
	}
	before, _ := a.Status(Inbox)
	changed, _, err := a.Store(Inbox, UIDSet{{2, 3}}, FlagUpdate{Mode: StoreAdd, Flags: FlagSeen | FlagFlagged, Keywords: []string{"Work", "$label1"}})
	must(t, err)
	if len(changed) != 2 || changed[0].UID != 2 || changed[0].Flags != FlagSeen|FlagFlagged ||
		!slices.Equal(changed[0].Keywords, []string{"$Label1", "Work"}) || changed[0].ModSeq <= before.HighestModSeq || changed[1].ModSeq <= changed[0].ModSeq {
		t.Fatalf("store: %+v", changed)
	}
	// Storing what is already there changes nothing and bumps nothing.
	again, _, err := a.Store(Inbox, UIDs(2), FlagUpdate{Mode: StoreAdd, Flags: FlagSeen})
	must(t, err)
	if len(again) != 0 {
		t.Fatalf("no-op store reported %+v", again)
	}
	// UNCHANGEDSINCE.
	_, failed, err := a.Store(Inbox, UIDs(2, 4), FlagUpdate{Mode: StoreRemove, Flags: FlagSeen, UnchangedSince: before.HighestModSeq})
	must(t, err)
	if !slices.Equal(failed, []uint32{2}) {
		t.Fatalf("unchangedsince: failed %v", failed)
	}
	st, _ := a.Status(Inbox)
	if st.Unseen != 3 || st.HighestModSeq != changed[1].ModSeq {
		t.Fatalf("status after store %+v", st)
	}

	cr, err := a.Copy(Inbox, UIDSet{{2, 4}}, "Trash", 0)
	must(t, err)
	trash, _ := a.Status("Trash")
	if !slices.Equal(cr.Source, []uint32{2, 3, 4}) || !slices.Equal(cr.Dest, []uint32{1, 2, 3}) || cr.UIDValidity != trash.UIDValidity || trash.Messages != 3 || trash.Unseen != 1 {
		t.Fatalf("copy %+v, trash %+v", cr, trash)
	}
	cm, _ := a.Fetch("Trash", UIDs(1), FetchOptions{Envelope: true})
	if cm[0].Flags != FlagSeen|FlagFlagged || cm[0].Envelope.Subject != "m2" {
		t.Fatalf("copied message %+v", cm[0])
	}
	if readBody(t, a, "Trash", 1) != readBody(t, a, Inbox, 2) {
		t.Fatal("copy has a different body")
	}
	u, _ := a.Usage()
	if u.Messages != 8 {
		t.Fatalf("usage after copy %+v", u)
	}

	mv, err := a.Move(Inbox, UIDs(5, 1), "Junk")
	must(t, err)
	if !slices.Equal(mv.Source, []uint32{1, 5}) || !slices.Equal(mv.Dest, []uint32{1, 2}) {
		t.Fatalf("move %+v", mv)
	}
	in, _ := a.Fetch(Inbox, AllUIDs, FetchOptions{})
	if len(in) != 3 || in[0].UID != 2 {
		t.Fatalf("inbox after move: %+v", in)
	}

	// Expunge takes only \Deleted messages, and frees a shared file only
	// with its last reference.
	gone, err := a.Expunge(Inbox, nil)
	must(t, err)
	if len(gone) != 0 {
		t.Fatalf("expunged without \\Deleted: %v", gone)
	}
	_, _, err = a.Store(Inbox, AllUIDs, FlagUpdate{Mode: StoreAdd, Flags: FlagDeleted})
	must(t, err)
	gone, err = a.Expunge(Inbox, UIDs(2, 3))
	must(t, err)
	if !slices.Equal(gone, []uint32{2, 3}) {
		t.Fatalf("expunged %v", gone)
	}
	if readBody(t, a, "Trash", 1) == "" {
		t.Fatal("the copy lost its file")
	}
	if _, _, err := a.OpenBody(Inbox, 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expunged message opens: %v", err)
	}
	gone, err = a.Expunge(Inbox, nil)
	must(t, err)
	if !slices.Equal(gone, []uint32{4}) {
		t.Fatalf("expunged %v", gone)
	}
	st, _ = a.Status(Inbox)
	if st.Messages != 0 || st.Size != 0 || st.Unseen != 0 || st.Deleted != 0 || st.UIDNext != 6 {
		t.Fatalf("inbox %+v", st)
	}
	rep := checkClean(t, a)
	if rep.Files != 5 { // 2, 3, 4 (in Trash), 1, 5 (in Junk)
		t.Fatalf("files %d", rep.Files)
	}
	u, _ = a.Usage()
	re, err := a.Recompute()
	must(t, err)
	if u != re || u.Messages != 5 {
		t.Fatalf("usage %+v, recomputed %+v", u, re)
	}
	if _, _, err := a.Store(Inbox, AllUIDs, FlagUpdate{Keywords: []string{"bad word"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("keyword with a space: %v", err)
	}
}

func TestMailboxOperations(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	w, err := a.Create("Work", "")
	must(t, err)
	_, err = a.Create("Work/2026", "")
	must(t, err)
	if _, err := a.Create("Work", ""); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("create twice: %v", err)
	}
	for _, bad := range []string{"", "/x", "x/", "a//b", "a\x01"} {
		if _, err := a.Create(bad, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("create %q: %v", bad, err)
		}
	}
	_, err = a.Append("Work/2026", strings.NewReader(msgText("x", 100)), AppendOptions{})
	must(t, err)
	must(t, a.Rename("Work", "Archive/Work"))
	st, err := a.Status("Archive/Work/2026")
	must(t, err)
	if st.Messages != 1 {
		t.Fatalf("renamed child %+v", st)
	}
	aw, _ := a.Status("Archive/Work")
	if aw.UIDValidity != w.UIDValidity {
		t.Fatal("rename changed UIDVALIDITY")
	}
	if _, err := a.Status("Work"); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("old name: %v", err)
	}
	if err := a.Rename("Sent", "Trash"); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("rename onto an existing mailbox: %v", err)
	}

	// Renaming INBOX moves its messages and leaves a new, empty INBOX.
	_, err = a.Append("inbox", strings.NewReader(msgText("in", 100)), AppendOptions{})
	must(t, err)
	old, _ := a.Status(Inbox)
	must(t, a.Rename("INBOX", "Old"))
	o, _ := a.Status("Old")
	n, _ := a.Status(Inbox)
	if o.Messages != 1 || o.UIDValidity != old.UIDValidity || n.Messages != 0 || n.UIDValidity == old.UIDValidity || n.UIDNext != 1 {
		t.Fatalf("rename INBOX: old %+v new %+v", o, n)
	}

	// INBOX may go below itself: its children stay where they are.
	must(t, a.Rename(Inbox, "INBOX/2025"))
	if st, err := a.Status("INBOX/2025"); err != nil || st.Messages != 0 {
		t.Fatalf("INBOX/2025: %+v %v", st, err)
	}
	if err := a.Rename("Archive", "Archive/Below"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("rename below itself: %v", err)
	}

	must(t, a.SetSubscribed("Old", false))
	o, _ = a.Status("Old")
	if o.Subscribed {
		t.Fatal("still subscribed")
	}

	// Delete takes the messages; a new mailbox of the same name has a new
	// UIDVALIDITY.
	must(t, a.Delete("Old"))
	if err := a.Delete(Inbox); !errors.Is(err, ErrInvalid) {
		t.Fatalf("delete INBOX: %v", err)
	}
	again, err := a.Create("Old", SpecialJunk)
	must(t, err)
	if again.UIDValidity == o.UIDValidity || again.SpecialUse != SpecialJunk {
		t.Fatalf("recreated %+v", again)
	}
	u, _ := a.Usage()
	if u.Messages != 1 {
		t.Fatalf("usage %+v", u)
	}
	rep := checkClean(t, a)
	if rep.Files != 1 {
		t.Fatalf("files %d", rep.Files)
	}
}

func TestQuota(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	body := msgText("q", 1000)
	r, err := s.Deliver("alice@example.com", Delivery{Body: strings.NewReader(body), Quota: 2500})
	must(t, err)
	size := r.Size
	_, err = s.Deliver("alice@example.com", Delivery{Body: strings.NewReader(body), Quota: 2500})
	must(t, err)
	// The third passes the limit: refused, nothing left behind.
	if _, err := s.Deliver("alice@example.com", Delivery{Body: strings.NewReader(body), Quota: 2500}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("deliver over quota: %v", err)
	}
	if _, err := a.Append("Sent", strings.NewReader(body), AppendOptions{Quota: 2500}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("append over quota: %v", err)
	}
	if _, err := a.Copy(Inbox, AllUIDs, "Trash", 2500); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("copy over quota: %v", err)
	}
	// A move frees nothing and takes nothing: allowed.
	if _, err := a.Move(Inbox, UIDs(1), "Trash"); err != nil {
		t.Fatalf("move at quota: %v", err)
	}
	u, _ := a.Usage()
	if u != (Usage{Bytes: 2 * size, Messages: 2}) {
		t.Fatalf("usage %+v", u)
	}
	rep := checkClean(t, a)
	if rep.Files != 2 || len(rep.Removed) != 0 {
		t.Fatalf("check %+v", rep)
	}
	// With room again, it fits.
	_, _, err = a.Store("Trash", AllUIDs, FlagUpdate{Mode: StoreAdd, Flags: FlagDeleted})
	must(t, err)
	_, err = a.Expunge("Trash", nil)
	must(t, err)
	_, err = a.Append("Sent", strings.NewReader(body), AppendOptions{Quota: 2500})
	must(t, err)
	// No limit, no check.
	_, err = a.Append("Sent", strings.NewReader(body), AppendOptions{})
	must(t, err)

	// Recompute mends a usage record that went wrong.
	must(t, a.update(func(x *ix, c *txCtx) error { return x.setUsage(Usage{Bytes: 1, Messages: 99}) }))
	rep, err = a.Check()
	must(t, err)
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "usage") {
		t.Fatalf("check of a wrong usage: %+v", rep)
	}
	re, err := a.Recompute()
	must(t, err)
	if re != (Usage{Bytes: 3 * size, Messages: 3}) {
		t.Fatalf("recomputed %+v", re)
	}
	checkClean(t, a)
}

// TestQuotaConcurrent delivers from many goroutines against one limit:
// exactly as many as fit are committed.
func TestQuotaConcurrent(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	body := msgText("q", 1000)
	r, err := a.Append("Drafts", strings.NewReader(body), AppendOptions{})
	must(t, err)
	quota := 10*r.Size + r.Size/2 // ten fit
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, over := 0, 0
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Deliver(Delivery{Body: strings.NewReader(body), Quota: quota})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrOverQuota):
				over++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 9 || over != 11 {
		t.Fatalf("%d committed, %d over quota; want 9 and 11", ok, over)
	}
	if u, _ := a.Usage(); u.Bytes != 10*r.Size || u.Bytes > quota {
		t.Fatalf("usage %+v, quota %d", u, quota)
	}
	if rep := checkClean(t, a); rep.Files != 10 || len(rep.Removed) != 0 {
		t.Fatalf("check %+v", rep)
	}
}

// TestShards delivers across a shard boundary: the files go into two
// directories, both synced, and Check reads both.
func TestShards(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	a := account(t, s, "alice@example.com")
	a.idMu.Lock()
	a.nextID = shardSize - 2
	a.idMu.Unlock()
	before := s.Stats()
	for i := 0; i < 4; i++ {
		_, err := a.Append(Inbox, strings.NewReader(msgText(fmt.Sprint("s", i), 100)), AppendOptions{})
		must(t, err)
	}
	if st := s.Stats(); st.DirSyncs-before.DirSyncs != 4+2 { // one per append, one per new shard
		t.Fatalf("%d directory syncs", st.DirSyncs-before.DirSyncs)
	}
	ents, err := os.ReadDir(filepath.Join(a.msgDir))
	must(t, err)
	if len(ents) != 2 || ents[0].Name() != "0" || ents[1].Name() != "1" {
		t.Fatalf("shards %v", ents)
	}
	if rep := checkClean(t, a); rep.Files != 4 {
		t.Fatalf("check %+v", rep)
	}
	// The next ID survives a reopen.
	must(t, s.Close())
	s = openStore(t, dir, Options{})
	a = account(t, s, "alice@example.com")
	r, err := a.Append(Inbox, strings.NewReader(msgText("after", 100)), AppendOptions{})
	must(t, err)
	m, _ := a.Fetch(Inbox, UIDs(r.UID), FetchOptions{})
	if m[0].ID != shardSize+2 {
		t.Fatalf("file ID %d after reopen", m[0].ID)
	}
	checkClean(t, a)
}

func TestCheck(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	for i := 0; i < 3; i++ {
		_, err := a.Append(Inbox, strings.NewReader(msgText("c", 100)), AppendOptions{})
		must(t, err)
	}
	msgs, _ := a.Fetch(Inbox, AllUIDs, FetchOptions{})
	// A leftover, as a crash leaves it, and a missing file.
	left, _ := a.filePath(9999)
	must(t, os.MkdirAll(filepath.Dir(left), 0o700))
	must(t, os.WriteFile(left, []byte("partial"), 0o600))
	lost, _ := a.filePath(msgs[1].ID)
	must(t, os.Remove(lost))
	rep, err := a.Check()
	must(t, err)
	if !slices.Equal(rep.Removed, []string{left}) || !slices.Equal(rep.Missing, []string{lost}) || rep.Clean() {
		t.Fatalf("check %+v", rep)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatal("leftover not removed")
	}
}

func TestDeliverBodyError(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	boom := errors.New("connection lost")
	_, err := a.Deliver(Delivery{Body: io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial"), &failReader{boom})})
	if !errors.Is(err, boom) {
		t.Fatalf("deliver: %v", err)
	}
	rep := checkClean(t, a)
	if rep.Files != 0 || len(rep.Removed) != 0 {
		t.Fatalf("a failed delivery left %+v", rep)
	}
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

func TestCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\n":     "a\r\nb\r\n",
		"a\r\nb\r\n": "a\r\nb\r\n",
		"\n\n":       "\r\n\r\n",
		"a\rb":       "a\rb",
		"":           "",
	} {
		got, err := io.ReadAll(newCRLFReader(io.MultiReader(strings.NewReader(in[:len(in)/2]), strings.NewReader(in[len(in)/2:]))))
		must(t, err)
		if string(got) != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
	big := bytes.Repeat([]byte("x\n"), 100000)
	got, _ := io.ReadAll(newCRLFReader(bytes.NewReader(big)))
	if !bytes.Equal(got, bytes.Repeat([]byte("x\r\n"), 100000)) {
		t.Fatal("large input")
	}
}
