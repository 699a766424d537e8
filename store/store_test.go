package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// setKeep changes Keep for one test. Tests that use it must not be parallel.
func setKeep(t *testing.T, n int) {
	old := Keep
	Keep = n
	t.Cleanup(func() { Keep = old })
}

func TestOpenCreatesFilesWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	db := openTest(t, dir)
	if got, want := db.Path(), filepath.Join(dir, FileName); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o700 {
		t.Errorf("dir mode = %o, want 700", m)
	}
	st, err = os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("file mode = %o, want 600", m)
	}
}

func TestOpenTwiceInUse(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	start := time.Now()
	db2, err := Open(dir)
	elapsed := time.Since(start)
	if err == nil {
		db2.Close()
		t.Fatal("second Open succeeded, want in-use error")
	}
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("err = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "data directory in use by another mailgate process") {
		t.Errorf("error text %q lacks the in-use message", err)
	}
	if elapsed > lockTimeout+2*time.Second {
		t.Errorf("second Open took %v, want about %v", elapsed, lockTimeout)
	}
}

func TestOpenAfterCloseSucceeds(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	db2, err := Open(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	db2.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("reopen after Close took %v", d)
	}
}

func TestMeta(t *testing.T) {
	db := openTest(t, t.TempDir())
	v, err := db.Meta("hostkey")
	if err != nil || v != nil {
		t.Fatalf("Meta(absent) = %q, %v; want nil, nil", v, err)
	}
	if err := db.PutMeta("hostkey", []byte("k1")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutMeta("empty", nil); err != nil {
		t.Fatal(err)
	}
	v, err = db.Meta("hostkey")
	if err != nil || string(v) != "k1" {
		t.Fatalf("Meta = %q, %v; want k1", v, err)
	}
	v[0] = 'X' // the returned slice is the caller's own
	if v, _ := db.Meta("hostkey"); string(v) != "k1" {
		t.Fatalf("stored value changed through returned slice: %q", v)
	}
	if err := db.PutMeta("hostkey", []byte("k2")); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.Meta("hostkey"); string(v) != "k2" {
		t.Fatalf("after overwrite Meta = %q, want k2", v)
	}
	v, err = db.Meta("empty")
	if err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Meta(empty) = %#v, %v; want empty non-nil", v, err)
	}
	if err := db.DeleteMeta("hostkey"); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.Meta("hostkey"); v != nil {
		t.Fatalf("after delete Meta = %q, want nil", v)
	}
	if err := db.DeleteMeta("never"); err != nil {
		t.Fatalf("DeleteMeta(absent): %v", err)
	}
}

func TestMetaOrCreate(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	var calls atomic.Int32
	gen := func() ([]byte, error) {
		n := calls.Add(1)
		return []byte(fmt.Sprintf("serial-%d", n)), nil
	}

	var wg sync.WaitGroup
	results := make([][]byte, 20)
	errs := make([]error, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = db.MetaOrCreate("serial", gen)
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("gen called %d times, want 1", n)
	}
	for i := range results {
		if errs[i] != nil || string(results[i]) != "serial-1" {
			t.Fatalf("caller %d got %q, %v", i, results[i], errs[i])
		}
	}

	// A failing generator stores nothing.
	boom := errors.New("boom")
	if _, err := db.MetaOrCreate("other", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if v, _ := db.Meta("other"); v != nil {
		t.Fatalf("failed generator stored %q", v)
	}

	// The value survives a reopen and gen is not called again.
	db.Close()
	db2 := openTest(t, dir)
	v, err := db2.MetaOrCreate("serial", gen)
	if err != nil || string(v) != "serial-1" || calls.Load() != 1 {
		t.Fatalf("after reopen got %q, %v (gen calls %d)", v, err, calls.Load())
	}
}

func TestFirstBootHasNoRevision(t *testing.T) {
	db := openTest(t, t.TempDir())
	rev, err := db.Latest()
	if err != nil || rev != nil {
		t.Fatalf("Latest = %v, %v; want nil, nil", rev, err)
	}
	revs, err := db.List()
	if err != nil || len(revs) != 0 {
		t.Fatalf("List = %v, %v; want empty", revs, err)
	}
}

func TestCommitAndGet(t *testing.T) {
	db := openTest(t, t.TempDir())
	t0 := time.Date(2026, 11, 23, 13, 45, 1, 123456789, time.UTC)
	r1, err := db.Commit("admin", "initial", "a\nb\nc\n", t0)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID != 1 || r1.Admin != "admin" || r1.Comment != "initial" || r1.Text != "a\nb\nc\n" || !r1.Time.Equal(t0) {
		t.Fatalf("r1 = %+v", r1)
	}
	wantDiff1 := "--- revision 0\n+++ revision 1\n@@ -0,0 +1,3 @@\n+a\n+b\n+c\n"
	if r1.Diff != wantDiff1 {
		t.Errorf("first diff:\n%s\nwant:\n%s", r1.Diff, wantDiff1)
	}

	r2, err := db.Commit("bob", "", "a\nB\nc\nd\ne\nf\ng\n", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID != 2 {
		t.Fatalf("r2.ID = %d", r2.ID)
	}
	wantDiff2 := "--- revision 1\n+++ revision 2\n@@ -1,3 +1,7 @@\n a\n-b\n+B\n c\n+d\n+e\n+f\n+g\n"
	if r2.Diff != wantDiff2 {
		t.Errorf("second diff:\n%s\nwant:\n%s", r2.Diff, wantDiff2)
	}

	// Context 1 splits distant changes into separate hunks.
	r3, err := db.Commit("bob", "", "a\nB\nc\nd\nE\nf\nG\n", t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantDiff3 := "--- revision 2\n+++ revision 3\n@@ -4,4 +4,4 @@\n d\n-e\n+E\n f\n-g\n+G\n"
	if r3.Diff != wantDiff3 {
		t.Errorf("third diff:\n%s\nwant:\n%s", r3.Diff, wantDiff3)
	}
	r4, err := db.Commit("bob", "", "A\nB\nc\nd\nE\nf\nG\nh\n", t0.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantDiff4 := "--- revision 3\n+++ revision 4\n@@ -1,2 +1,2 @@\n-a\n+A\n B\n@@ -7 +7,2 @@\n G\n+h\n"
	if r4.Diff != wantDiff4 {
		t.Errorf("fourth diff:\n%s\nwant:\n%s", r4.Diff, wantDiff4)
	}

	got, err := db.Get(2)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 2 || got.Admin != "bob" || got.Text != r2.Text || got.Diff != r2.Diff || !got.Time.Equal(r2.Time) {
		t.Fatalf("Get(2) = %+v, want %+v", got, r2)
	}
	latest, err := db.Latest()
	if err != nil || latest == nil || latest.ID != 4 || latest.Text != r4.Text {
		t.Fatalf("Latest = %+v, %v", latest, err)
	}

	_, err = db.Get(99)
	if err == nil || err.Error() != "revision 99 not found" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(99) err = %v", err)
	}
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.ID != 99 {
		t.Fatalf("Get(99) err %T is not *NotFoundError{99}", err)
	}
	if _, err := db.Get(0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(0) err = %v", err)
	}
}

func TestCommitZeroTimeUsesNow(t *testing.T) {
	db := openTest(t, t.TempDir())
	before := time.Now()
	r, err := db.Commit("admin", "", "x\n", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Time.Before(before.Add(-time.Second)) || r.Time.After(time.Now().Add(time.Second)) {
		t.Fatalf("Time = %v, want about now", r.Time)
	}
}

func TestCommitUnchanged(t *testing.T) {
	db := openTest(t, t.TempDir())
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r1, err := db.Commit("admin", "one", "same\n", now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := db.Commit("other", "two", "same\n", now.Add(time.Hour))
	if !errors.Is(err, ErrUnchanged) {
		t.Fatalf("err = %v, want ErrUnchanged", err)
	}
	if r.ID != r1.ID || r.Admin != "admin" || r.Comment != "one" || r.Text != "same\n" || !r.Time.Equal(now) {
		t.Fatalf("unchanged commit returned %+v, want %+v", r, r1)
	}
	revs, _ := db.List()
	if len(revs) != 1 {
		t.Fatalf("List has %d revisions, want 1", len(revs))
	}
	// A real change after an unchanged one gets the next ID.
	r2, err := db.Commit("admin", "", "different\n", now)
	if err != nil || r2.ID != 2 {
		t.Fatalf("r2 = %+v, %v", r2, err)
	}
}

func TestEmptyTextRevision(t *testing.T) {
	db := openTest(t, t.TempDir())
	r, err := db.Commit("admin", "", "", time.Now())
	if err != nil || r.ID != 1 || r.Diff != "" {
		t.Fatalf("empty first commit = %+v, %v", r, err)
	}
	if _, err := db.Commit("admin", "", "", time.Now()); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second empty commit err = %v, want ErrUnchanged", err)
	}
	r, err = db.Commit("admin", "", "x", time.Now()) // no final newline
	if err != nil || r.Diff != "--- revision 1\n+++ revision 2\n@@ -0,0 +1 @@\n+x\n" {
		t.Fatalf("commit = %+v, %v", r, err)
	}
}

func TestListNewestFirstWithoutText(t *testing.T) {
	db := openTest(t, t.TempDir())
	for i := 1; i <= 5; i++ {
		if _, err := db.Commit("admin", fmt.Sprint("c", i), fmt.Sprintf("line %d\n", i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	revs, err := db.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 5 {
		t.Fatalf("len = %d", len(revs))
	}
	for i, r := range revs {
		wantID := uint64(5 - i)
		if r.ID != wantID || r.Comment != fmt.Sprint("c", wantID) {
			t.Errorf("revs[%d] = %+v, want ID %d", i, r, wantID)
		}
		if r.Text != "" {
			t.Errorf("revs[%d].Text = %q, want empty", i, r.Text)
		}
		if r.Diff == "" {
			t.Errorf("revs[%d].Diff is empty", i)
		}
	}
}

func TestPruneKeepsIDsMonotonic(t *testing.T) {
	setKeep(t, 5)
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 12; i++ {
		r, err := db.Commit("admin", "", fmt.Sprintf("v%d\n", i), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != uint64(i) {
			t.Fatalf("commit %d got ID %d", i, r.ID)
		}
	}
	revs, _ := db.List()
	if len(revs) != 5 || revs[0].ID != 12 || revs[4].ID != 8 {
		t.Fatalf("after pruning List IDs = %v", ids(revs))
	}
	if _, err := db.Get(7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(pruned) err = %v", err)
	}
	// The diff of the oldest kept revision still refers to its pruned parent.
	if r, _ := db.Get(8); !strings.HasPrefix(r.Diff, "--- revision 7\n+++ revision 8\n") {
		t.Fatalf("diff of revision 8 = %q", r.Diff)
	}
	db.Close()

	// IDs are never reused, across a reopen and a smaller Keep.
	Keep = 2
	db = openTest(t, dir)
	r, err := db.Commit("admin", "", "v13\n", time.Now())
	if err != nil || r.ID != 13 {
		t.Fatalf("after reopen commit = %+v, %v", r, err)
	}
	revs, _ = db.List()
	if got := ids(revs); len(got) != 2 || got[0] != 13 || got[1] != 12 {
		t.Fatalf("after Keep=2 List IDs = %v", got)
	}

	Keep = 0 // treated as 1
	if _, err := db.Commit("admin", "", "v14\n", time.Now()); err != nil {
		t.Fatal(err)
	}
	revs, _ = db.List()
	if got := ids(revs); len(got) != 1 || got[0] != 14 {
		t.Fatalf("after Keep=0 List IDs = %v", got)
	}
}

func TestDefaultKeep(t *testing.T) {
	if Keep != 50 {
		t.Fatalf("Keep = %d, want 50", Keep)
	}
	db := openTest(t, t.TempDir())
	for i := 1; i <= 60; i++ {
		if _, err := db.Commit("admin", "", fmt.Sprintf("v%d\n", i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	revs, _ := db.List()
	if len(revs) != 50 || revs[0].ID != 60 || revs[49].ID != 11 {
		t.Fatalf("List = %d revisions, IDs %v", len(revs), ids(revs))
	}
}

func TestReopenKeepsRevisions(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	text := "config system global\n    set hostname \"mg\"\nend\n"
	want, err := db.Commit("admin", "set hostname", text, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutMeta("identity", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir)
	got, err := db.Latest()
	if err != nil || got == nil {
		t.Fatalf("Latest = %v, %v", got, err)
	}
	if got.ID != want.ID || got.Text != text || got.Admin != "admin" || got.Comment != "set hostname" ||
		got.Diff != want.Diff || !got.Time.Equal(want.Time) {
		t.Fatalf("after reopen Latest = %+v, want %+v", got, want)
	}
	if v, _ := db.Meta("identity"); !bytes.Equal(v, []byte{1, 2, 3}) {
		t.Fatalf("after reopen Meta = %v", v)
	}
}

func TestConcurrentCommits(t *testing.T) {
	db := openTest(t, t.TempDir())
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := db.Commit("admin", "", fmt.Sprintf("g%d i%d\n", g, i), time.Now()); err != nil {
					t.Error(err)
				}
				if _, err := db.Latest(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	revs, _ := db.List()
	if len(revs) != 50 || revs[0].ID != 80 {
		t.Fatalf("List: %d revisions, newest %d", len(revs), revs[0].ID)
	}
	// Each revision's diff is against the one just before it.
	for _, r := range revs {
		prefix := fmt.Sprintf("--- revision %d\n+++ revision %d\n", r.ID-1, r.ID)
		if !strings.HasPrefix(r.Diff, prefix) {
			t.Fatalf("revision %d diff = %q", r.ID, r.Diff)
		}
	}
}

func ids(revs []Revision) []uint64 {
	out := make([]uint64, len(revs))
	for i, r := range revs {
		out[i] = r.ID
	}
	return out
}
