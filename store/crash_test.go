package store

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	helperEnv    = "MAILGATE_STORE_CRASH_HELPER"
	helperDirEnv = "MAILGATE_STORE_CRASH_DIR"
)

// crashText is the configuration text committed as revision seq. It is a
// pure function of seq, varies in size (up to tens of kilobytes, so commits
// span several pages), shares most lines with its neighbours, and ends with
// a checksum of everything before it.
func crashText(seq uint64) string {
	r := rand.New(rand.NewPCG(seq, 0x6d61696c67617465))
	var b strings.Builder
	fmt.Fprintf(&b, "config system global\n    set sequence %d\nend\n", seq)
	n := 20 + r.IntN(600)
	for i := 0; i < n; i++ {
		if r.IntN(10) == 0 {
			fmt.Fprintf(&b, "    set policy-%d \"changed in %d: %x\"\n", i, seq, r.Uint64())
		} else {
			fmt.Fprintf(&b, "    set policy-%d \"stable value number %d\"\n", i, i)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	fmt.Fprintf(&b, "# sha256 %x\n", sum)
	return b.String()
}

// checkCrashText verifies that text is intact and returns its sequence.
func checkCrashText(text string) (uint64, error) {
	i := strings.LastIndex(text, "# sha256 ")
	if i < 0 {
		return 0, fmt.Errorf("no checksum line")
	}
	body, tail := text[:i], text[i:]
	if want := fmt.Sprintf("# sha256 %x\n", sha256.Sum256([]byte(body))); tail != want {
		return 0, fmt.Errorf("checksum mismatch")
	}
	var seq uint64
	if _, err := fmt.Sscanf(body, "config system global\n    set sequence %d\n", &seq); err != nil {
		return 0, fmt.Errorf("no sequence: %v", err)
	}
	return seq, nil
}

// TestHelperProcess is not a real test: run as a child by
// TestCrashRecovery, it commits revisions in a loop until killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestCrashRecovery")
	}
	db, err := Open(os.Getenv(helperDirEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper open:", err)
		os.Exit(2)
	}
	latest, err := db.Latest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper latest:", err)
		os.Exit(2)
	}
	var seq uint64
	if latest != nil {
		seq = latest.ID
	}
	fmt.Println("ready")
	// Bounded in case the parent dies without killing us.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		seq++
		if _, err := db.Commit("crash", strconv.FormatUint(seq, 10), crashText(seq), time.Now()); err != nil {
			fmt.Fprintln(os.Stderr, "helper commit:", err)
			os.Exit(2)
		}
	}
	os.Exit(0)
}

// TestCrashRecovery kills a committing child process with SIGKILL at random
// moments and checks after each kill that the database reopens with a
// complete latest revision whose text is exactly what that ID was committed
// with.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var lastID uint64
	const rounds = 6
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=1", helperDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child did not start: %q %v; stderr: %s", round, line, err, stderr.String())
		}
		time.Sleep(time.Duration(20+rng.IntN(180)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child was not killed (%v); stderr: %s", round, err, stderr.String())
		}

		db, err := Open(dir)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		latest, err := db.Latest()
		if err != nil {
			t.Fatalf("round %d: Latest: %v", round, err)
		}
		if latest == nil {
			if lastID != 0 {
				t.Fatalf("round %d: revisions lost (had %d)", round, lastID)
			}
			db.Close()
			continue
		}
		if latest.ID < lastID {
			t.Fatalf("round %d: latest ID went back from %d to %d", round, lastID, latest.ID)
		}
		lastID = latest.ID
		verifyCrashRevision(t, latest)

		revs, err := db.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(revs) > Keep {
			t.Fatalf("round %d: %d revisions kept, want at most %d", round, len(revs), Keep)
		}
		for i, r := range revs {
			if want := latest.ID - uint64(i); r.ID != want {
				t.Fatalf("round %d: List[%d].ID = %d, want %d", round, i, r.ID, want)
			}
			full, err := db.Get(r.ID)
			if err != nil {
				t.Fatal(err)
			}
			verifyCrashRevision(t, full)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: latest revision %d", round, lastID)
	}
	if lastID == 0 {
		t.Fatal("the child never committed a revision")
	}
}

func verifyCrashRevision(t *testing.T, r *Revision) {
	t.Helper()
	seq, err := checkCrashText(r.Text)
	if err != nil {
		t.Fatalf("revision %d: damaged text: %v", r.ID, err)
	}
	if seq != r.ID || r.Comment != strconv.FormatUint(r.ID, 10) {
		t.Fatalf("revision %d holds text of sequence %d (comment %q)", r.ID, seq, r.Comment)
	}
	if r.Text != crashText(r.ID) {
		t.Fatalf("revision %d: text differs from what was committed", r.ID)
	}
	wantDiff, err := unifiedDiff(crashText(r.ID-1), r.Text, r.ID-1, r.ID)
	if r.ID == 1 {
		wantDiff, err = unifiedDiff("", r.Text, 0, 1)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Diff != wantDiff {
		t.Fatalf("revision %d: diff differs from the diff against revision %d", r.ID, r.ID-1)
	}
}
