package eventlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, dir string, max int) *Log {
	t.Helper()
	l, err := Open(dir, max)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func openCfg(t *testing.T, dir string, max int, cfg writerConfig) *Log {
	t.Helper()
	l, err := open(dir, max, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func query(t *testing.T, l *Log, f Filter) []Event {
	t.Helper()
	evs, err := l.Query(f)
	if err != nil {
		t.Fatalf("Query: %v", err)
	}
	return evs
}

func messages(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Message
	}
	return out
}

func levelPtr(l Level) *Level { return &l }

func TestLevelStringAndParse(t *testing.T) {
	want := []string{"emergency", "alert", "critical", "error", "warning", "notice", "information", "debug"}
	for i, name := range want {
		l := Level(i)
		if l.String() != name {
			t.Errorf("Level(%d).String() = %q, want %q", i, l.String(), name)
		}
		for _, s := range []string{name, strings.ToUpper(name), " " + name + " ", fmt.Sprint(i)} {
			got, err := ParseLevel(s)
			if err != nil || got != l {
				t.Errorf("ParseLevel(%q) = %v, %v; want %v", s, got, err, l)
			}
		}
		text, err := l.MarshalText()
		if err != nil || string(text) != name {
			t.Errorf("MarshalText(%v) = %q, %v", l, text, err)
		}
		var back Level
		if err := back.UnmarshalText(text); err != nil || back != l {
			t.Errorf("UnmarshalText(%q) = %v, %v", text, back, err)
		}
	}
	aliases := map[string]Level{"emerg": Emergency, "crit": Critical, "err": Error, "warn": Warning, "info": Information, "informational": Information}
	for s, l := range aliases {
		if got, err := ParseLevel(s); err != nil || got != l {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", s, got, err, l)
		}
	}
	for _, s := range []string{"", "loud", "8", "-1"} {
		if _, err := ParseLevel(s); err == nil {
			t.Errorf("ParseLevel(%q) succeeded", s)
		}
	}
	if s := Level(9).String(); s != "level(9)" {
		t.Errorf("Level(9).String() = %q", s)
	}
	if _, err := Level(9).MarshalText(); err == nil {
		t.Error("MarshalText(9) succeeded")
	}
	if Emergency >= Debug || Warning >= Notice {
		t.Error("levels are not ordered most severe first")
	}
}

func TestFormat(t *testing.T) {
	tm := time.Date(2026, 11, 23, 13, 45, 1, 999, time.UTC)
	cases := []struct {
		e    Event
		want string
	}{
		{Event{Time: tm, Level: Notice, Subsystem: "admin", User: "admin", Remote: "127.0.0.1:5555", Message: "login successful"},
			`2026-11-23 13:45:01 notice admin user=admin remote=127.0.0.1:5555 msg="login successful"`},
		{Event{Time: tm, Level: Error, Subsystem: "smtp", Message: `bad "HELO"` + "\n"},
			`2026-11-23 13:45:01 error smtp msg="bad \"HELO\"\n"`},
		{Event{Time: tm, Level: Information, Subsystem: "config", User: "bob"},
			`2026-11-23 13:45:01 information config user=bob msg=""`},
		{Event{Time: tm, Level: Debug, Remote: "[::1]:22", Message: "x"},
			`2026-11-23 13:45:01 debug - remote=[::1]:22 msg="x"`},
		{Event{Time: tm, Level: Warning, Subsystem: "admin", User: "a b", Message: "x"},
			`2026-11-23 13:45:01 warning admin user="a b" msg="x"`},
	}
	for _, c := range cases {
		if got := Format(c.e); got != c.want {
			t.Errorf("Format:\n got %s\nwant %s", got, c.want)
		}
	}
}

func TestOpenCreatesFilesWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	openTest(t, dir, 100)
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
	old := lockTimeout
	lockTimeout = 200 * time.Millisecond
	t.Cleanup(func() { lockTimeout = old })
	dir := t.TempDir()
	openTest(t, dir, 100)
	start := time.Now()
	l2, err := Open(dir, 100)
	if err == nil {
		l2.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "in use by another mailgate process") {
		t.Fatalf("err = %v, want ErrInUse", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

func TestLogFlushQuery(t *testing.T) {
	l := openTest(t, t.TempDir(), 1000)
	before := time.Now()
	l.Logf(Notice, "admin", "login %s from %s", "admin", "ssh")
	tm := time.Date(2026, 11, 23, 13, 45, 1, 0, time.UTC)
	l.Log(Event{ID: 77, Time: tm, Level: Warning, Subsystem: "smtp", User: "u", Remote: "192.0.2.1:25", Message: "m"})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	evs := query(t, l, Filter{})
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	e := evs[0]
	if e.ID != 1 || e.Level != Notice || e.Subsystem != "admin" || e.Message != "login admin from ssh" {
		t.Errorf("event 1 = %+v", e)
	}
	if e.Time.Before(before.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("event 1 Time = %v, want about now", e.Time)
	}
	e = evs[1]
	if e.ID != 2 || !e.Time.Equal(tm) || e.Level != Warning || e.Subsystem != "smtp" || e.User != "u" ||
		e.Remote != "192.0.2.1:25" || e.Message != "m" {
		t.Errorf("event 2 = %+v (caller's ID must be ignored)", e)
	}
}

func TestFlushWithoutRecords(t *testing.T) {
	l := openTest(t, t.TempDir(), 10)
	start := time.Now()
	for i := 0; i < 3; i++ {
		if err := l.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("empty flushes took %v", d)
	}
	if evs := query(t, l, Filter{}); len(evs) != 0 {
		t.Fatalf("got %d events", len(evs))
	}
}

func TestLogDoesNotWaitForBatch(t *testing.T) {
	// Records are committed by the batch interval even without Flush.
	l := openCfg(t, t.TempDir(), 100, writerConfig{queueSize: 100, maxBatch: 512, interval: 20 * time.Millisecond})
	l.Logf(Information, "system", "hello")
	deadline := time.Now().Add(3 * time.Second)
	for {
		if evs := query(t, l, Filter{}); len(evs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("record not committed without Flush")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBatchesAreBounded(t *testing.T) {
	// With maxBatch 3 and a long interval, full batches are committed at
	// once and the remainder waits for the interval (or a Flush).
	l := openCfg(t, t.TempDir(), 100, writerConfig{queueSize: 100, maxBatch: 3, interval: time.Hour})
	for i := 0; i < 7; i++ {
		l.Logf(Information, "system", "r%d", i)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(query(t, l, Filter{})) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("full batches not committed: %d events", len(query(t, l, Filter{})))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(query(t, l, Filter{})); n != 6 {
		t.Fatalf("%d events before the interval, want 6", n)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	evs := query(t, l, Filter{})
	if len(evs) != 7 {
		t.Fatalf("got %d events", len(evs))
	}
	for i, e := range evs {
		if e.Message != fmt.Sprintf("r%d", i) || e.ID != uint64(i+1) {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
}

func TestConcurrentWriters(t *testing.T) {
	const goroutines, perG = 100, 100
	l := openTest(t, t.TempDir(), goroutines*perG*2)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				l.Log(Event{Level: Information, Subsystem: "smtp", User: fmt.Sprint("g", g), Message: fmt.Sprint(i)})
			}
		}()
	}
	wg.Wait()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := l.Dropped(); n != 0 {
		t.Fatalf("%d records dropped", n)
	}
	evs := query(t, l, Filter{})
	if len(evs) != goroutines*perG {
		t.Fatalf("got %d events, want %d", len(evs), goroutines*perG)
	}
	next := map[string]int{}
	for i, e := range evs {
		if e.ID != uint64(i+1) {
			t.Fatalf("event %d has ID %d", i, e.ID)
		}
		// Each goroutine's records keep their order.
		if want := fmt.Sprint(next[e.User]); e.Message != want {
			t.Fatalf("%s: got record %s, want %s", e.User, e.Message, want)
		}
		next[e.User]++
	}
	if len(next) != goroutines {
		t.Fatalf("records from %d goroutines, want %d", len(next), goroutines)
	}
}

func TestLogFromManyGoroutinesWhileFlushing(t *testing.T) {
	// Every record logged before a Flush call started is committed when
	// that Flush returns, even with other goroutines logging meanwhile.
	l := openCfg(t, t.TempDir(), 0, writerConfig{queueSize: 4096, maxBatch: 64, interval: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				msg := fmt.Sprintf("g%d-%d", g, i)
				l.Logf(Information, "test", "%s", msg)
				if err := l.Flush(); err != nil {
					t.Error(err)
					return
				}
				evs, err := l.Query(Filter{Contains: msg})
				if err != nil || len(evs) != 1 {
					t.Errorf("%s: after Flush got %d events, %v", msg, len(evs), err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestPruningBound(t *testing.T) {
	dir := t.TempDir()
	l := openCfg(t, dir, 50, writerConfig{queueSize: 1000, maxBatch: 7, interval: time.Hour})
	for i := 1; i <= 333; i++ {
		l.Logf(Information, "system", "%d", i)
		if i%40 == 0 {
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			if n := len(query(t, l, Filter{})); n > 50 {
				t.Fatalf("after %d records %d are kept, bound 50", i, n)
			}
		}
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	evs := query(t, l, Filter{})
	if len(evs) != 50 || evs[0].ID != 284 || evs[49].ID != 333 || evs[49].Message != "333" {
		t.Fatalf("kept %d events, IDs %d..%d", len(evs), evs[0].ID, evs[len(evs)-1].ID)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// A smaller bound on reopen applies with the next batch; IDs continue.
	l = openTest(t, dir, 10)
	l.Logf(Information, "system", "after reopen")
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	evs = query(t, l, Filter{})
	if len(evs) != 10 || evs[9].ID != 334 || evs[0].ID != 325 {
		t.Fatalf("after reopen kept %d events, IDs %d..%d", len(evs), evs[0].ID, evs[len(evs)-1].ID)
	}
}

func TestUnbounded(t *testing.T) {
	l := openTest(t, t.TempDir(), 0)
	for i := 0; i < 200; i++ {
		l.Logf(Debug, "system", "%d", i)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(query(t, l, Filter{})); n != 200 {
		t.Fatalf("kept %d, want 200", n)
	}
}

func TestFilters(t *testing.T) {
	l := openTest(t, t.TempDir(), 1000)
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	type rec struct {
		min   int
		level Level
		sub   string
		msg   string
	}
	recs := []rec{
		{0, Information, "admin", "Login OK for admin"},
		{1, Warning, "admin", "login FAILED for root"},
		{2, Error, "smtp", "relay denied"},
		{3, Notice, "config", "hostname changed"},
		{4, Emergency, "system", "disk failure"},
		{5, Debug, "smtp", "connection from 192.0.2.7"},
		{6, Critical, "smtp", "queue full"},
		{7, Information, "admin", "logout admin"},
	}
	for _, r := range recs {
		l.Log(Event{Time: base.Add(time.Duration(r.min) * time.Minute), Level: r.level, Subsystem: r.sub, Message: r.msg})
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, []string{"Login OK for admin", "login FAILED for root", "relay denied", "hostname changed",
			"disk failure", "connection from 192.0.2.7", "queue full", "logout admin"}},
		{"since inclusive", Filter{Since: base.Add(6 * time.Minute)}, []string{"queue full", "logout admin"}},
		{"until exclusive", Filter{Until: base.Add(2 * time.Minute)}, []string{"Login OK for admin", "login FAILED for root"}},
		{"window", Filter{Since: base.Add(2 * time.Minute), Until: base.Add(4 * time.Minute)}, []string{"relay denied", "hostname changed"}},
		{"min warning", Filter{MinLevel: levelPtr(Warning)}, []string{"login FAILED for root", "relay denied", "disk failure", "queue full"}},
		{"min emergency", Filter{MinLevel: levelPtr(Emergency)}, []string{"disk failure"}},
		{"min debug", Filter{MinLevel: levelPtr(Debug)}, []string{"Login OK for admin", "login FAILED for root", "relay denied",
			"hostname changed", "disk failure", "connection from 192.0.2.7", "queue full", "logout admin"}},
		{"subsystem", Filter{Subsystem: "smtp"}, []string{"relay denied", "connection from 192.0.2.7", "queue full"}},
		{"contains any case", Filter{Contains: "LOGIN"}, []string{"Login OK for admin", "login FAILED for root"}},
		{"limit newest", Filter{Limit: 3}, []string{"connection from 192.0.2.7", "queue full", "logout admin"}},
		{"limit larger than matches", Filter{Subsystem: "config", Limit: 5}, []string{"hostname changed"}},
		{"combined", Filter{Subsystem: "smtp", MinLevel: levelPtr(Error), Limit: 1}, []string{"queue full"}},
		{"combined time and text", Filter{Since: base.Add(time.Minute), Contains: "admin"}, []string{"logout admin"}},
		{"none", Filter{Subsystem: "nope"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := messages(query(t, l, c.f))
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

// holdWriter blocks the log's writer goroutine by holding bbolt's write
// lock until the returned function is called.
func holdWriter(t *testing.T, l *Log) (release func()) {
	t.Helper()
	held := make(chan struct{})
	rel := make(chan struct{})
	go l.db.Update(func(*bolt.Tx) error {
		close(held)
		<-rel
		return nil
	})
	<-held
	var once sync.Once
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(release)
	return release
}

func TestDropWhenFull(t *testing.T) {
	l := openCfg(t, t.TempDir(), 1000, writerConfig{queueSize: 4, maxBatch: 2, interval: 10 * time.Millisecond})
	release := holdWriter(t, l)

	const total = 100
	start := time.Now()
	for i := 0; i < total; i++ {
		l.Logf(Information, "smtp", "record %d", i)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Log blocked for %v with a full queue", d)
	}
	dropped := l.Dropped()
	// The writer holds at most one batch (2) and the queue 4 more.
	if dropped < total-6 {
		t.Fatalf("Dropped = %d, want at least %d", dropped, total-6)
	}

	release()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	// The writer may have reported some drops before it blocked and the
	// rest after; together the notices account for every dropped record,
	// and the kept records keep their order.
	evs := query(t, l, Filter{})
	var kept, notices int
	var reported uint64
	last := -1
	for _, e := range evs {
		if e.Subsystem == "system" {
			notices++
			var n uint64
			if _, err := fmt.Sscanf(e.Message, "%d log records dropped", &n); err != nil {
				t.Fatalf("notice %q: %v", e.Message, err)
			}
			if e.Level != Warning {
				t.Errorf("notice level = %v, want warning", e.Level)
			}
			reported += n
			continue
		}
		var i int
		if _, err := fmt.Sscanf(e.Message, "record %d", &i); err != nil || i <= last {
			t.Fatalf("kept records out of order: %q", messages(evs))
		}
		last = i
		kept++
	}
	if notices < 1 || notices > 2 {
		t.Fatalf("%d drop notices: %q", notices, messages(evs))
	}
	if kept > 6 || uint64(kept)+reported != total || reported != dropped {
		t.Fatalf("kept %d + reported %d != %d (Dropped %d): %q", kept, reported, total, dropped, messages(evs))
	}

	// Once reported, drops are not reported again.
	l.Logf(Information, "smtp", "later")
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(query(t, l, Filter{Subsystem: "system"})); n != notices {
		t.Fatalf("%d drop notices after more logging, want %d", n, notices)
	}
}

func TestDropNoticeWithoutFurtherLogging(t *testing.T) {
	// Drops are reported even when nothing else is logged afterwards, both
	// after a full queue drains and when a drop finds the writer idle.
	l := openCfg(t, t.TempDir(), 1000, writerConfig{queueSize: 1, maxBatch: 1, interval: 10 * time.Millisecond})
	release := holdWriter(t, l)
	for i := 0; i < 10; i++ {
		l.Logf(Information, "smtp", "record %d", i)
	}
	release()
	waitReported(t, l)

	l.w.drop() // as if a record had been dropped just after the last batch
	waitReported(t, l)
	if l.Dropped() < 9 {
		t.Fatalf("Dropped = %d", l.Dropped())
	}
}

// waitReported waits, without Flush, until the drop notices account for
// every dropped record.
func waitReported(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var reported uint64
		for _, e := range query(t, l, Filter{Subsystem: "system"}) {
			var n uint64
			if _, err := fmt.Sscanf(e.Message, "%d log records dropped", &n); err != nil {
				t.Fatalf("notice %q: %v", e.Message, err)
			}
			reported += n
		}
		if reported == l.Dropped() && reported > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drops not reported (Dropped %d); events: %q", l.Dropped(), messages(query(t, l, Filter{})))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		l.Logf(Notice, "config", "change %d", i)
	}
	// Close flushes what is queued.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if err := l.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}
	l.Logf(Notice, "config", "after close") // must neither panic nor block

	l = openTest(t, dir, 1000)
	evs := query(t, l, Filter{})
	if len(evs) != 25 || evs[0].Message != "change 0" || evs[24].Message != "change 24" || evs[24].ID != 25 {
		t.Fatalf("after reopen: %d events %q", len(evs), messages(evs))
	}
	l.Logf(Notice, "config", "next")
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	evs = query(t, l, Filter{Limit: 1})
	if len(evs) != 1 || evs[0].ID != 26 || evs[0].Message != "next" {
		t.Fatalf("after reopen newest = %+v", evs)
	}
}

func TestCloseWhileLogging(t *testing.T) {
	l, err := Open(t.TempDir(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					l.Logf(Debug, "test", "spam")
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
}

func TestWriteErrorIsReported(t *testing.T) {
	// A record whose encoding fails loses its batch; Flush reports the
	// error and the loss is logged with the next batch.
	l := openCfg(t, t.TempDir(), 100, writerConfig{queueSize: 10, maxBatch: 10, interval: time.Hour})
	l.w.enqueue(bucketEvents, badRecord{})
	err := l.Flush()
	if err == nil || !strings.Contains(err.Error(), "cannot encode") {
		t.Fatalf("Flush = %v, want the encoding error", err)
	}
	if err := l.Flush(); err != nil {
		t.Fatalf("second Flush = %v, want nil", err)
	}
	l.Logf(Information, "smtp", "fine")
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	got := messages(query(t, l, Filter{}))
	if len(got) != 2 || got[0] != "1 log records dropped" || got[1] != "fine" {
		t.Fatalf("events = %q", got)
	}
}

type badRecord struct{}

func (badRecord) encode(uint64) ([]byte, error) { return nil, errors.New("cannot encode") }
