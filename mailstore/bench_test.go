package mailstore

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
)

// The benchmarks run on the file system of the test's temporary directory
// with every fsync: the figures to compare with Dovecot's (make bench).

func benchDeliver(b *testing.B, size, goroutines int) {
	s := openStore(b, b.TempDir(), Options{})
	a := account(b, s, "alice@example.com")
	body := []byte(msgText("bench", size))
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	before := s.Stats()
	run := func() {
		for {
			i := n.Add(1)
			if i > int64(b.N) {
				return
			}
			if _, err := a.Deliver(Delivery{ID: fmt.Sprint(i), Body: bytes.NewReader(body)}); err != nil {
				b.Error(err)
				return
			}
		}
	}
	done := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		go func() { run(); done <- struct{}{} }()
	}
	for g := 0; g < goroutines; g++ {
		<-done
	}
	b.StopTimer()
	st := s.Stats()
	if c := st.Commits - before.Commits; c > 0 {
		b.ReportMetric(float64(st.Ops-before.Ops)/float64(c), "ops/commit")
	}
}

func BenchmarkDeliver1K(b *testing.B) {
	for _, g := range []int{1, 10} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) { benchDeliver(b, 1<<10, g) })
	}
}

func BenchmarkAppend100K(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	a := account(b, s, "alice@example.com")
	body := []byte(msgText("bench", 100<<10))
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Append(Inbox, bytes.NewReader(body), AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFetchFlags(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	a := account(b, s, "alice@example.com")
	body := []byte(msgText("bench", 1<<10))
	for i := 0; i < 2000; i++ {
		if _, err := a.Append(Inbox, bytes.NewReader(body), AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msgs, err := a.Fetch(Inbox, AllUIDs, FetchOptions{})
		if err != nil || len(msgs) != 2000 {
			b.Fatal(len(msgs), err)
		}
	}
}

func BenchmarkParse100K(b *testing.B) {
	body := []byte(msgText("bench", 100<<10))
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		Parse(bytes.NewReader(body))
	}
}
