package postfixtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// NullSink is a running smtp-sink(1): a fast SMTP server that throws mail
// away and counts it.
type NullSink struct {
	Addr  string
	cmd   *exec.Cmd
	watch *exec.Cmd

	mu    sync.Mutex
	cond  *sync.Cond
	msgs  int
	sess  int
	done  bool
	waitc chan struct{}
}

// SmtpSink starts smtp-sink on 127.0.0.1:port (0: a free port) for a test
// and stops it when the test ends. Extra smtp-sink options (e.g. "-p" to
// hide PIPELINING) may follow.
func SmtpSink(t testing.TB, port int, args ...string) *NullSink {
	t.Helper()
	s, err := NewSmtpSink("127.0.0.1", port, args...)
	if err != nil {
		t.Fatalf("smtp-sink: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

var counters = regexp.MustCompile(`sess=(\d+) quit=\d+ mesg=(\d+)`)

// NewSmtpSink starts smtp-sink on host:port (0: a free port).
func NewSmtpSink(host string, port int, args ...string) (*NullSink, error) {
	if _, err := os.Stat(SmtpSinkPath); err != nil {
		return nil, fmt.Errorf("smtp-sink is not installed (make test-deps): %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%q is not a loopback address", host)
	}
	if port == 0 {
		p, err := freePort(host)
		if err != nil {
			return nil, err
		}
		port = p
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	argv := []string{"-c"}
	if os.Geteuid() == 0 {
		argv = append(argv, "-u", "nobody")
	}
	argv = append(argv, args...)
	argv = append(argv, addr, "256")
	cmd := exec.Command(SmtpSinkPath, argv...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &NullSink{Addr: addr, cmd: cmd, waitc: make(chan struct{})}
	s.watch = watchdog(`kill "$SINK_PID" 2>/dev/null`, "SINK_PID="+strconv.Itoa(cmd.Process.Pid))
	s.cond = sync.NewCond(&s.mu)
	go s.read(out)
	go func() {
		cmd.Wait()
		s.mu.Lock()
		s.done = true
		s.cond.Broadcast()
		s.mu.Unlock()
		close(s.waitc)
	}()
	if err := WaitListening(addr, 10*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("smtp-sink on %s: %v %s", addr, err, stderr.String())
	}
	return s, nil
}

// read follows the counters smtp-sink -c prints ("sess=N quit=N mesg=N",
// separated by carriage returns).
func (s *NullSink) read(r io.Reader) {
	buf := make([]byte, 4096)
	var pending []byte
	for {
		n, err := r.Read(buf)
		pending = append(pending, buf[:n]...)
		if ms := counters.FindAllSubmatch(pending, -1); len(ms) > 0 {
			last := ms[len(ms)-1]
			sess, _ := strconv.Atoi(string(last[1]))
			msgs, _ := strconv.Atoi(string(last[2]))
			s.mu.Lock()
			s.sess, s.msgs = sess, msgs
			s.cond.Broadcast()
			s.mu.Unlock()
			if j := bytes.LastIndexByte(pending, '\r'); j >= 0 {
				pending = append(pending[:0], pending[j+1:]...)
			}
		}
		if err != nil {
			return
		}
	}
}

// Count is the number of messages received so far.
func (s *NullSink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs
}

// Sessions is the number of SMTP sessions that ended so far.
func (s *NullSink) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess
}

// WaitCount waits until n messages were received.
func (s *NullSink) WaitCount(n int, timeout time.Duration) error {
	timer := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.msgs < n {
		if s.done {
			return errors.New("smtp-sink exited")
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("smtp-sink: %d of %d messages within %v", s.msgs, n, timeout)
		}
		s.cond.Wait()
	}
	return nil
}

// Stop terminates the smtp-sink process.
func (s *NullSink) Stop() {
	stopWatchdog(s.watch)
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
	}
	<-s.waitc
}
