package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const helperEnv = "MAILGATE_QUEUE_CRASH_HELPER"

type funcDeliverer func(ctx context.Context, j *Job) []Result

func (f funcDeliverer) Deliver(ctx context.Context, j *Job) []Result { return f(ctx, j) }

// TestHelperProcess is the child of TestCrashRecovery: it enqueues and
// delivers as fast as it can until it is killed. It prints
//
//	E <id> <sum>   after Enqueue returned (the message is acknowledged)
//	D <id> <sum>   when a delivery is accepted by the (fake) next hop
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	var outMu sync.Mutex
	out := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...) + "\n"
		outMu.Lock()
		os.Stdout.WriteString(line) // one write per line: atomic on a pipe
		outMu.Unlock()
	}
	dlv := funcDeliverer(func(ctx context.Context, j *Job) []Result {
		r, err := j.Open()
		if err != nil {
			out("X open %s: %v", j.MsgID, err)
			return allResults(j, Result{Status: TempFail, Text: err.Error()})
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			out("X read %s: %v", j.MsgID, err)
			return allResults(j, Result{Status: TempFail, Text: err.Error()})
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		if rand.IntN(10) == 0 {
			return allResults(j, Result{Status: TempFail, Code: 451, Text: "try again"})
		}
		out("D %s %s", j.MsgID, sum(b))
		return allResults(j, Result{Status: Delivered, Code: 250, Text: "ok"})
	})
	q, err := Open(Options{Dir: dir, Deliverer: dlv, Workers: 8, PerDomain: 8, Hostname: func() string { return "mg.test" }})
	if err != nil {
		out("X open: %v", err)
		os.Exit(1)
	}
	q.Start()
	out("READY")
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; ; i++ {
				n := 200 + rand.IntN(3000)
				if rand.IntN(60) == 0 {
					n = inlineMax + rand.IntN(200<<10) // a body file
				}
				body := make([]byte, n)
				for k := range body {
					body[k] = 'a' + byte(rand.IntN(26))
				}
				rcpt := fmt.Sprintf("u%d@d%d.example", i, rand.IntN(4))
				id, err := q.Enqueue(Envelope{From: "s@local.test", Recipients: []string{rcpt}}, bytes.NewReader(body))
				if err != nil {
					out("X enqueue: %v", err)
					continue
				}
				out("E %s %s", id, sum(body))
			}
		}()
	}
	select {}
}

// TestCrashRecovery kills a queue with SIGKILL at random moments, several
// times, then checks that every acknowledged message is still there with
// its body intact (or was delivered), and counts duplicate deliveries.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	enqueued := map[string]string{} // id → body sum
	delivered := map[string]int{}   // id → deliveries
	const rounds = 6
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		sc := bufio.NewScanner(stdout)
		running := make(chan struct{}) // closed at the first acknowledged message
		done := make(chan []string)
		go func() {
			var lines []string
			once := sync.Once{}
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "E ") {
					once.Do(func() { close(running) })
				}
				lines = append(lines, sc.Text())
			}
			once.Do(func() { close(running) })
			done <- lines
		}()
		started := time.Now()
		select {
		case <-running:
			t.Logf("round %d: first message acknowledged %v after start", round, time.Since(started).Round(time.Millisecond))
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: the helper did not start: %s", round, stderr.String())
		}
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		must(t, cmd.Process.Kill())
		lines := <-done
		cmd.Wait()
		e, d := 0, 0
		for _, l := range lines {
			f := strings.Fields(l)
			switch {
			case len(f) == 3 && f[0] == "E":
				enqueued[f[1]] = f[2]
				e++
			case len(f) == 3 && f[0] == "D":
				delivered[f[1]]++
				d++
				if want, ok := enqueued[f[1]]; ok && want != f[2] {
					t.Fatalf("message %s delivered with a different body", f[1])
				}
			case strings.HasPrefix(l, "X"):
				t.Fatalf("round %d: helper: %s", round, l)
			}
		}
		t.Logf("round %d: %d enqueued, %d delivered before the kill", round, e, d)
		if e == 0 {
			t.Fatalf("round %d: nothing enqueued: %s", round, stderr.String())
		}
	}

	// Recover. Every acknowledged message that was not delivered is there,
	// intact.
	rec := &recorder{}
	var mu sync.Mutex
	dlv := funcDeliverer(func(ctx context.Context, j *Job) []Result {
		r, err := j.Open()
		if err != nil {
			return allResults(j, Result{Status: TempFail, Text: err.Error()})
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Errorf("reading %s: %v", j.MsgID, err)
		}
		mu.Lock()
		delivered[j.MsgID]++
		if want, ok := enqueued[j.MsgID]; ok && want != sum(b) {
			t.Errorf("message %s: body differs after recovery", j.MsgID)
		}
		mu.Unlock()
		return allResults(j, Result{Status: Delivered, Code: 250})
	})
	q, err := Open(Options{Dir: dir, Deliverer: dlv, Event: rec.event, Hostname: func() string { return "mg.test" },
		Now: func() time.Time { return time.Now().Add(time.Hour) }}) // retries are due
	must(t, err)
	defer q.Close()
	msgs, err := q.List()
	must(t, err)
	queued := map[string]bool{}
	for _, m := range msgs {
		queued[m.ID] = true
	}
	for id, s := range enqueued {
		if !queued[id] {
			if delivered[id] == 0 {
				t.Errorf("message %s was acknowledged, never delivered, and is lost", id)
			}
			continue
		}
		r, _, err := q.Open(id)
		must(t, err)
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || sum(b) != s {
			t.Errorf("message %s: body damaged (%v)", id, err)
		}
	}
	for _, ev := range rec.eventsMatching("incomplete record") {
		t.Logf("recovery: %s", ev)
	}
	q.Start()
	waitFor(t, "the queue to drain", func() bool {
		l, _ := q.List()
		return len(l) == 0
	})
	dups := 0
	for id := range enqueued {
		mu.Lock()
		n := delivered[id]
		mu.Unlock()
		if n == 0 {
			t.Errorf("message %s never delivered", id)
		}
		dups += max(n-1, 0)
	}
	t.Logf("%d messages acknowledged over %d kills; %d duplicate deliveries; %d were still queued at the last kill",
		len(enqueued), rounds, dups, len(msgs))
	// A duplicate needs a delivery in flight at the moment of the kill.
	if dups > rounds*16 {
		t.Errorf("%d duplicate deliveries", dups)
	}
}
