package mailstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDurabilityOrder follows one delivery through the write path and
// checks at each step what is on disk: the file is complete when it and
// its directory are synced (the two syncs run at once), both are done
// before the index transaction, and the index shows the message only after
// the commit.
func TestDurabilityOrder(t *testing.T) {
	var a *Account
	var mu sync.Mutex
	var steps []string
	var stepErr error
	body := msgText("order", 500)
	inIndex := func() bool {
		msgs, err := a.Fetch(Inbox, AllUIDs, FetchOptions{})
		if err != nil {
			stepErr = err
		}
		return len(msgs) > 0
	}
	fileComplete := func() bool {
		p, _ := a.filePath(1)
		b, err := os.ReadFile(p)
		return err == nil && string(b) == body
	}
	s := openStore(t, t.TempDir(), Options{hook: func(step string) error {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, step)
		switch step {
		case stepFileSynced, stepDirSynced:
			if !fileComplete() || inIndex() {
				stepErr = fmt.Errorf("at %s: file complete %v, in index %v", step, fileComplete(), inIndex())
			}
		case stepIndex:
			// Inside the write transaction: readers still see the old index.
			if inIndex() {
				stepErr = fmt.Errorf("at %s: visible before the commit", step)
			}
		case stepCommitted:
			if !inIndex() {
				stepErr = fmt.Errorf("at %s: not in the index", step)
			}
		}
		return nil
	}})
	a = account(t, s, "alice@example.com")
	steps = nil
	_, err := a.Deliver(Delivery{ID: "d1", Body: strings.NewReader(body)})
	must(t, err)
	must(t, stepErr)
	mu.Lock()
	defer mu.Unlock()
	if len(steps) != 4 || !slices.Contains(steps[:2], stepFileSynced) || !slices.Contains(steps[:2], stepDirSynced) ||
		steps[2] != stepIndex || steps[3] != stepCommitted {
		t.Fatalf("steps %q, want file and directory synced, then index, then committed", steps)
	}
}

// TestFailureBetweenSteps fails the write path at each step in turn: the
// delivery is refused, leaves neither index entry nor file, and the same
// delivery ID goes through afterwards, once.
func TestFailureBetweenSteps(t *testing.T) {
	for _, at := range []string{stepFileSynced, stepDirSynced, stepIndex} {
		t.Run(at, func(t *testing.T) {
			var fail atomic.Bool
			injected := errors.New("injected failure at " + at)
			s := openStore(t, t.TempDir(), Options{hook: func(step string) error {
				if step == at && fail.Load() {
					return injected
				}
				return nil
			}})
			a := account(t, s, "alice@example.com")
			fail.Store(true)
			if _, err := a.Deliver(Delivery{ID: "d1", Body: strings.NewReader(msgText("f", 300))}); !errors.Is(err, injected) {
				t.Fatalf("deliver: %v", err)
			}
			if msgs, _ := a.Fetch(Inbox, AllUIDs, FetchOptions{}); len(msgs) != 0 {
				t.Fatalf("failed delivery in the index: %+v", msgs)
			}
			rep := checkClean(t, a)
			if rep.Files != 0 || len(rep.Removed) != 0 {
				t.Fatalf("failed delivery left a file: %+v", rep)
			}
			if u, _ := a.Usage(); u != (Usage{}) {
				t.Fatalf("usage %+v", u)
			}
			fail.Store(false)
			r, err := a.Deliver(Delivery{ID: "d1", Body: strings.NewReader(msgText("f", 300))})
			must(t, err)
			if r.Duplicate || r.UID != 1 {
				t.Fatalf("retry %+v", r)
			}
			r, err = a.Deliver(Delivery{ID: "d1", Body: strings.NewReader(msgText("f", 300))})
			must(t, err)
			if !r.Duplicate {
				t.Fatalf("second retry %+v", r)
			}
			if rep := checkClean(t, a); rep.Files != 1 {
				t.Fatalf("files %d", rep.Files)
			}
		})
	}
}

// TestGroupCommit delivers from many goroutines to one account: every
// delivery is committed, each fsyncs its own file, and the directory syncs
// and index commits are shared.
func TestGroupCommit(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	before := s.Stats()
	const n, workers = 400, 20
	var wg sync.WaitGroup
	var next atomic.Int32
	uids := make(chan uint32, n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				r, err := a.Deliver(Delivery{ID: fmt.Sprint("g", i), Body: strings.NewReader(msgText(fmt.Sprint("g", i), 1024))})
				if err != nil {
					t.Error(err)
					return
				}
				uids <- r.UID
			}
		}()
	}
	wg.Wait()
	close(uids)
	var got []uint32
	for u := range uids {
		got = append(got, u)
	}
	slices.Sort(got)
	for i, u := range got {
		if u != uint32(i+1) {
			t.Fatalf("UIDs %v...", got[:i+1])
		}
	}
	if len(got) != n {
		t.Fatalf("%d committed", len(got))
	}
	st := s.Stats()
	files, dirs, commits := st.FileSyncs-before.FileSyncs, st.DirSyncs-before.DirSyncs, st.Commits-before.Commits
	t.Logf("%d deliveries: %d file syncs, %d directory syncs, %d index commits", n, files, dirs, commits)
	if files != n {
		t.Errorf("%d file syncs, want one per message", files)
	}
	if commits >= n/2 || dirs >= n/2 {
		t.Errorf("no batching: %d commits, %d directory syncs for %d deliveries", commits, dirs, n)
	}
	// One directory sync per batch (all files are in one shard), and one
	// for the shard directory when it was made.
	if dirs > commits+1 {
		t.Errorf("%d directory syncs for %d commits", dirs, commits)
	}
	checkClean(t, a)
}

// TestChangeFeed checks that subscribers get every committed change in
// commit order (modseqs strictly increase), and before the call returns.
func TestChangeFeed(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	sub := a.Subscribe()
	defer sub.Close()
	r, err := a.Deliver(Delivery{Body: strings.NewReader(msgText("feed", 100))})
	must(t, err)
	ch, err := sub.Take() // queued before Deliver returned
	must(t, err)
	if len(ch) != 1 || ch[0].Kind != ChangeNew || ch[0].UID != r.UID || ch[0].Mailbox != Inbox || ch[0].Size != r.Size || ch[0].ModSeq != r.ModSeq {
		t.Fatalf("changes %+v", ch)
	}
	_, _, err = a.Store(Inbox, UIDs(1), FlagUpdate{Mode: StoreAdd, Flags: FlagDeleted | FlagSeen})
	must(t, err)
	_, err = a.Expunge(Inbox, nil)
	must(t, err)
	_, err = a.Create("X", "")
	must(t, err)
	must(t, a.Rename("X", "Y"))
	must(t, a.Delete("Y"))
	ch, err = sub.Take()
	must(t, err)
	var kinds []string
	for _, c := range ch {
		kinds = append(kinds, c.Kind.String())
	}
	if want := []string{"flags", "expunge", "create", "rename", "delete"}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %q, want %q", kinds, want)
	}
	if ch[0].Flags != FlagDeleted|FlagSeen || ch[1].UID != 1 || ch[3].OldName != "X" || ch[3].Mailbox != "Y" {
		t.Fatalf("changes %+v", ch)
	}

	// Concurrent writers: one subscriber sees every message change once,
	// in modseq order.
	sub2 := a.Subscribe()
	defer sub2.Close()
	var wg sync.WaitGroup
	const writers, each = 6, 30
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r, err := a.Append(Inbox, strings.NewReader(msgText("c", 200)), AppendOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				if _, _, err := a.Store(Inbox, UIDs(r.UID), FlagUpdate{Mode: StoreAdd, Flags: FlagSeen}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var got []Change
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) < 2*writers*each {
		c, err := sub2.Wait(ctx)
		if err != nil {
			t.Fatalf("after %d changes: %v", len(got), err)
		}
		got = append(got, c...)
	}
	<-done
	seen := map[uint32]string{}
	for i, c := range got {
		if i > 0 && c.ModSeq <= got[i-1].ModSeq {
			t.Fatalf("change %d: modseq %d after %d", i, c.ModSeq, got[i-1].ModSeq)
		}
		switch c.Kind {
		case ChangeNew:
			if seen[c.UID] != "" {
				t.Fatalf("uid %d new twice", c.UID)
			}
			seen[c.UID] = "new"
		case ChangeFlags:
			if seen[c.UID] != "new" {
				t.Fatalf("uid %d: flags before new", c.UID)
			}
			seen[c.UID] = "flags"
		}
	}
	if rest, _ := sub2.Take(); len(rest) != 0 {
		t.Fatalf("%d extra changes", len(rest))
	}
	sub2.Close()
	if _, err := sub2.Take(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed subscription: %v", err)
	}
}

func TestChangeFeedOverflow(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	sub := a.Subscribe()
	defer sub.Close()
	a.publish(make([]Change, maxPending))
	a.publish(make([]Change, 1))
	if _, err := sub.Take(); !errors.Is(err, ErrOverflow) {
		t.Fatalf("take after overflow: %v", err)
	}
}

// TestExpungeWhileReading expunges a message a reader has open: the file
// is unlinked after the commit and the reader still reads it whole.
func TestExpungeWhileReading(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	body := msgText("big", 300<<10)
	r, err := a.Append(Inbox, strings.NewReader(body), AppendOptions{Flags: FlagDeleted})
	must(t, err)
	f, m, err := a.OpenBody(Inbox, r.UID)
	must(t, err)
	head := make([]byte, 100)
	_, err = io.ReadFull(f, head)
	must(t, err)
	_, err = a.Expunge(Inbox, nil)
	must(t, err)
	p, _ := a.filePath(m.ID)
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("file of an expunged message still there: %v", err)
	}
	rest, err := io.ReadAll(f)
	must(t, err)
	f.Close()
	if string(head)+string(rest) != body {
		t.Fatal("the open file changed under its reader")
	}

	// Many readers against expunges: a read either finds the message gone
	// or reads it whole.
	const n = 60
	bodies := map[uint32]string{}
	for i := 0; i < n; i++ {
		b := msgText(fmt.Sprint("r", i), 20<<10)
		r, err := a.Append(Inbox, strings.NewReader(b), AppendOptions{})
		must(t, err)
		bodies[r.UID] = b
	}
	var wg sync.WaitGroup
	var whole, gone atomic.Int32
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for uid, b := range bodies {
				f, _, err := a.OpenBody(Inbox, uid)
				if errors.Is(err, ErrNotFound) {
					gone.Add(1)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(100 * time.Microsecond)
				got, err := io.ReadAll(f)
				f.Close()
				if err != nil || string(got) != b {
					t.Errorf("uid %d: read %d octets, %v", uid, len(got), err)
				}
				whole.Add(1)
			}
		}()
	}
	for uid := range bodies {
		if _, _, err := a.Store(Inbox, UIDs(uid), FlagUpdate{Mode: StoreAdd, Flags: FlagDeleted}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Expunge(Inbox, UIDs(uid)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	t.Logf("%d whole reads, %d found expunged", whole.Load(), gone.Load())
	rep := checkClean(t, a)
	if rep.Files != 0 {
		t.Fatalf("%d files left", rep.Files)
	}
}

// TestConcurrentStoreExpungeFetch runs appends, flag changes, expunges,
// copies, fetches and reads at once (meant for -race), then checks the
// index against the files.
func TestConcurrentStoreExpungeFetch(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	a := account(t, s, "alice@example.com")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	run := func(f func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := f(i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for w := 0; w < 2; w++ {
		run(func(i int) error {
			_, err := a.Append(Inbox, strings.NewReader(msgText(fmt.Sprint("x", i), 2000)), AppendOptions{})
			return err
		})
	}
	run(func(i int) error {
		_, _, err := a.Store(Inbox, UIDs(uint32(i%200+1)), FlagUpdate{Mode: StoreAdd, Flags: FlagDeleted})
		return err
	})
	run(func(i int) error {
		_, err := a.Expunge(Inbox, nil)
		return err
	})
	run(func(i int) error {
		_, err := a.Copy(Inbox, UIDSet{{uint32(i%30 + 1), uint32(i%30 + 3)}}, "Trash", 0)
		if err != nil {
			return err
		}
		if _, _, err := a.Store("Trash", AllUIDs, FlagUpdate{Mode: StoreAdd, Flags: FlagDeleted}); err != nil {
			return err
		}
		_, err = a.Expunge("Trash", nil)
		return err
	})
	run(func(i int) error {
		msgs, err := a.Fetch(Inbox, AllUIDs, FetchOptions{Envelope: i%2 == 0})
		if err != nil {
			return err
		}
		for _, m := range msgs {
			f, _, err := a.OpenBody(Inbox, m.UID)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return err
			}
			if int64(len(b)) != m.Size {
				return fmt.Errorf("uid %d: %d octets, index says %d", m.UID, len(b), m.Size)
			}
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	checkClean(t, a)
	u, _ := a.Usage()
	re, err := a.Recompute()
	must(t, err)
	if u != re {
		t.Fatalf("usage %+v, recomputed %+v", u, re)
	}
	t.Logf("usage at the end %+v, stats %+v", u, s.Stats())
}
