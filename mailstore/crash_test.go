package mailstore

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	helperEnv     = "MAILGATE_MAILSTORE_CRASH_HELPER"
	helperStepEnv = "MAILGATE_MAILSTORE_CRASH_STEP"
)

// crashBody is the message of delivery id: its Message-ID names it.
func crashBody(id string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: s@example.org\r\nSubject: %s\r\nMessage-ID: <%s@crash.test>\r\n\r\n", id, id)
	for b.Len() < n {
		b.WriteString("0123456789abcdefghijklmnopqrstuvwxyz\r\n")
	}
	return b.String()
}

// TestHelperProcess is the child of the crash tests. With a step in
// helperStepEnv it delivers once, then kills itself at that step of the
// second delivery. Otherwise it delivers, appends and expunges until it is
// killed, printing
//
//	D <account> <delivery id>   after Deliver returned (to INBOX)
//	A <account> <message id>    after Append returned (to Sent)
//	E <uid>                     after an Expunge of c@x returned
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for the crash tests")
	}
	var outMu sync.Mutex
	out := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...) + "\n"
		outMu.Lock()
		os.Stdout.WriteString(line) // one write per line
		outMu.Unlock()
	}
	opts := Options{}
	if step := os.Getenv(helperStepEnv); step != "" {
		var armed bool
		opts.hook = func(s string) error {
			if armed && s == step {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Hour)
			}
			return nil
		}
		st, err := Open(dir, opts)
		if err != nil {
			out("X open: %v", err)
			os.Exit(1)
		}
		if _, err := st.Deliver("a@x", Delivery{ID: "first", Body: strings.NewReader(crashBody("first", 500))}); err != nil {
			out("X %v", err)
			os.Exit(1)
		}
		armed = true
		st.Deliver("a@x", Delivery{ID: "crash", Body: strings.NewReader(crashBody("crash", 500))})
		out("X survived the step")
		os.Exit(1)
	}
	st, err := Open(dir, opts)
	if err != nil {
		out("X open: %v", err)
		os.Exit(1)
	}
	round := os.Getenv("MAILGATE_MAILSTORE_CRASH_ROUND")
	out("READY")
	for g := 0; g < 6; g++ {
		go func() {
			for i := 0; ; i++ {
				acct := "a@x"
				if g%3 == 2 {
					acct = "b@x"
				}
				id := fmt.Sprintf("r%s-g%d-%d", round, g, i)
				if _, err := st.Deliver(acct, Delivery{ID: id, Body: strings.NewReader(crashBody(id, 200+rand.IntN(3000)))}); err != nil {
					out("X deliver: %v", err)
					return
				}
				out("D %s %s", acct, id)
			}
		}()
	}
	go func() {
		a, err := st.Account("a@x")
		if err != nil {
			out("X %v", err)
			return
		}
		for i := 0; ; i++ {
			id := fmt.Sprintf("r%s-app-%d", round, i)
			if _, err := a.Append("Sent", strings.NewReader(crashBody(id, 500+rand.IntN(20000))), AppendOptions{Flags: FlagSeen}); err != nil {
				out("X append: %v", err)
				return
			}
			out("A a@x %s", id)
		}
	}()
	go func() {
		a, err := st.Account("c@x")
		if err != nil {
			out("X %v", err)
			return
		}
		for i := 0; ; i++ {
			r, err := a.Append(Inbox, strings.NewReader(crashBody("c", 1000)), AppendOptions{Flags: FlagDeleted})
			if err == nil {
				_, err = a.Expunge(Inbox, UIDs(r.UID))
			}
			if err != nil {
				out("X churn: %v", err)
				return
			}
			out("E %d", r.UID)
		}
	}()
	time.Sleep(20 * time.Second) // bounded, should the parent not kill us
	os.Exit(0)
}

func startHelper(t *testing.T, dir string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+dir), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	return cmd, bufio.NewScanner(stdout)
}

// TestCrashRecovery kills a delivering child with SIGKILL at random
// moments. After each kill the store reopens, every delivery acknowledged
// to the parent is there exactly once with its body intact, expunges that
// returned stay done, a redelivery of an acknowledged ID is a no-op, and
// Check finds no corruption (it only removes leftovers).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	acked := map[string]string{}    // delivery ID → account
	appended := map[string]string{} // message ID → account
	expunged := map[uint32]bool{}
	const rounds = 5
	for round := 0; round < rounds; round++ {
		cmd, sc := startHelper(t, dir, fmt.Sprint("MAILGATE_MAILSTORE_CRASH_ROUND=", round))
		lines := make(chan string, 1024)
		go func() {
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(20 * time.Second)
		var kill <-chan time.Time
		n := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				f := strings.Fields(l)
				switch {
				case l == "READY":
				case len(f) == 3 && f[0] == "A":
					appended[f[2]] = f[1]
				case len(f) == 3 && f[0] == "D":
					acked[f[2]] = f[1]
					n++
					if kill == nil {
						kill = time.After(time.Duration(100+rand.IntN(500)) * time.Millisecond)
					}
				case len(f) == 2 && f[0] == "E":
					var uid uint32
					fmt.Sscan(f[1], &uid)
					expunged[uid] = true
				default:
					cmd.Process.Kill()
					t.Fatalf("round %d: helper: %s", round, l)
				}
			case <-kill:
				must(t, cmd.Process.Signal(syscall.SIGKILL))
				kill = nil
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("round %d: the helper did not start or was not killed", round)
			}
		}
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: helper not killed: %v", round, cmd.ProcessState)
		}
		if n == 0 {
			t.Fatalf("round %d: nothing delivered", round)
		}
		removed := verifyCrash(t, dir, acked, appended, expunged)
		t.Logf("round %d: %d deliveries acknowledged (%d in all, and %d appends), %d leftovers removed",
			round, n, len(acked), len(appended), removed)
	}
}

// verifyCrash reopens the store and checks it against what the child
// acknowledged; it returns the number of leftover files Check removed.
func verifyCrash(t *testing.T, dir string, acked, appended map[string]string, expunged map[uint32]bool) int {
	t.Helper()
	s, err := Open(dir, Options{})
	must(t, err)
	defer s.Close()
	removed := 0
	for _, name := range []string{"a@x", "b@x", "c@x"} {
		if !s.Exists(name) {
			continue
		}
		a := account(t, s, name)
		rep := checkClean(t, a)
		removed += len(rep.Removed)
		for _, mc := range []struct {
			mailbox string
			acked   map[string]string
		}{{Inbox, acked}, {"Sent", appended}} {
			msgs, err := a.Fetch(mc.mailbox, AllUIDs, FetchOptions{Envelope: true})
			must(t, err)
			count := map[string]int{}
			for _, m := range msgs {
				id := strings.TrimSuffix(m.Envelope.MessageID, "@crash.test")
				count[id]++
				if name == "c@x" && expunged[m.UID] {
					t.Fatalf("c@x: UID %d expunged before the kill, back after it", m.UID)
				}
				if name != "c@x" {
					if got := readBody(t, a, mc.mailbox, m.UID); !strings.HasPrefix(got, crashBody(id, 0)) || int64(len(got)) != m.Size {
						t.Fatalf("%s %s UID %d: damaged body", name, mc.mailbox, m.UID)
					}
				}
			}
			for id, acct := range mc.acked {
				if acct == name && count[id] != 1 {
					t.Fatalf("%s: %s acknowledged, present %d times in %s", name, id, count[id], mc.mailbox)
				}
			}
			for id, c := range count {
				if c > 1 && name != "c@x" {
					t.Fatalf("%s: %s present %d times in %s", name, id, c, mc.mailbox)
				}
			}
		}
		u, _ := a.Usage()
		re, err := a.Recompute()
		must(t, err)
		if u != re {
			t.Fatalf("%s: usage %+v, recomputed %+v", name, u, re)
		}
	}
	// A redelivery of acknowledged IDs is a no-op.
	k := 0
	for id, acct := range acked {
		if k++; k > 20 {
			break
		}
		r, err := s.Deliver(acct, Delivery{ID: id, Body: strings.NewReader(crashBody(id, 100))})
		must(t, err)
		if !r.Duplicate {
			t.Fatalf("redelivery of %s stored again", id)
		}
	}
	return removed
}

// TestCrashAtEachStep kills the child at each step of a delivery's write
// path. Before the index commit the delivery is lost as a whole (Check
// removes its file, a redelivery stores it once); after it, the delivery
// is there and a redelivery is a no-op.
func TestCrashAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	for _, step := range []string{stepFileSynced, stepDirSynced, stepIndex, stepCommitted} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			cmd, sc := startHelper(t, dir, helperStepEnv+"="+step)
			for sc.Scan() {
				t.Errorf("helper: %s", sc.Text())
			}
			cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				t.Fatalf("helper not killed: %v", cmd.ProcessState)
			}
			s := openStore(t, dir, Options{})
			a := account(t, s, "a@x")
			rep := checkClean(t, a)
			committed := step == stepCommitted
			msgs, _ := a.Fetch(Inbox, AllUIDs, FetchOptions{Envelope: true})
			if wantN := map[bool]int{false: 1, true: 2}[committed]; len(msgs) != wantN {
				t.Fatalf("%d messages, want %d", len(msgs), wantN)
			}
			if wantRemoved := map[bool]int{false: 1, true: 0}[committed]; len(rep.Removed) != wantRemoved {
				t.Fatalf("check removed %v", rep.Removed)
			}
			r, err := a.Deliver(Delivery{ID: "crash", Body: strings.NewReader(crashBody("crash", 500))})
			must(t, err)
			if r.Duplicate != committed || r.UID != 2 {
				t.Fatalf("redelivery %+v", r)
			}
			if rep := checkClean(t, a); rep.Files != 2 || len(rep.Removed) != 0 {
				t.Fatalf("after redelivery %+v", rep)
			}
		})
	}
}
