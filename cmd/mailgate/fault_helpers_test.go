package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailgate/postfixtest"
)

// Helpers of the fault tests (fault_test.go) and of the kill -9 test in
// gateway_e2e_test.go: a load generator, delivery accounting, a small
// SMTP client that returns the server's replies, misbehaving SMTP servers,
// and what /proc tells about the appliance.

// soak reports whether the long versions of the fault tests run
// (MAILGATE_SOAK=1, which `make soak` sets).
func soak() bool { return os.Getenv("MAILGATE_SOAK") != "" }

// scale returns short, or long in a soak run.
func scale[T any](short, long T) T {
	if soak() {
		return long
	}
	return short
}

// cli runs one CLI command as admin and returns its output.
func (g *gateway) cli(command string) string {
	g.t.Helper()
	out, _ := g.ssh(newPassword, "", "admin@127.0.0.1", command)
	return out
}

// configure runs CLI lines as admin and fails the test when they fail.
func (g *gateway) configure(lines ...string) {
	g.t.Helper()
	if out, code := g.ssh(newPassword, strings.Join(lines, "\n")+"\n", "admin@127.0.0.1"); code != 0 {
		g.t.Fatalf("configuration failed: %d\n%s", code, out)
	}
}

// addDomain makes domain a protected domain whose mail server is
// 127.0.0.1:port.
func (g *gateway) addDomain(domain string, port int) {
	g.t.Helper()
	g.configure("config domain", "edit "+domain, "set smtp-server 127.0.0.1", "set smtp-port "+strconv.Itoa(port), "next", "end")
}

// waitCLI runs command until its output satisfies ok and returns it.
func (g *gateway) waitCLI(command string, timeout time.Duration, ok func(string) bool) string {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := g.cli(command)
		if ok(out) {
			return out
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%q did not show what was expected within %v:\n%s", command, timeout, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// queuedRcpt is a recipient line of `diagnose mailqueue list`.
type queuedRcpt struct {
	msgID, state, reason string
	attempts             int
}

var (
	queueMsgLine  = regexp.MustCompile(`^(\S+)( DEAD)?  \d+ bytes  received`)
	queueRcptLine = regexp.MustCompile(`^    (\S+)\s+(\S+)\s+attempts=(\d+) `)
)

// queueState parses `diagnose mailqueue list`: recipient address (lower
// case) -> its state. The tests use each address in one message only.
func queueState(list string) map[string]queuedRcpt {
	out := map[string]queuedRcpt{}
	msg, last := "", ""
	for _, l := range strings.Split(list, "\n") {
		if m := queueMsgLine.FindStringSubmatch(l); m != nil {
			msg = m[1]
			continue
		}
		if m := queueRcptLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[3])
			last = strings.ToLower(m[1])
			out[last] = queuedRcpt{msgID: msg, state: m[2], attempts: n}
			continue
		}
		if r, ok := strings.CutPrefix(l, "        reason: "); ok && last != "" {
			q := out[last]
			q.reason = r
			out[last] = q
		}
	}
	return out
}

// sendResult is what a small SMTP client saw.
type sendResult struct {
	reply string // the last reply (to the end of data when it got there)
	id    string // the queue ID of a 250 after DATA
	ok    bool   // 250 after DATA
}

var queuedAs = regexp.MustCompile(`queued as (\S+)`)

// sendMail runs one SMTP transaction against addr and returns the reply
// to the end of data (or the first failing reply). Unlike net/smtp it
// keeps the replies, so that tests can check codes such as 452 4.3.1.
func sendMail(addr, from string, rcpts []string, msg string) (sendResult, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return sendResult{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	tp := textproto.NewConn(c)
	expect := func(code int) (string, error) {
		got, text, err := tp.ReadResponse(code)
		return strconv.Itoa(got) + " " + strings.ReplaceAll(text, "\n", " "), err
	}
	cmd := func(code int, format string, args ...any) (string, error) {
		if err := tp.PrintfLine(format, args...); err != nil {
			return "", err
		}
		return expect(code)
	}
	if r, err := expect(220); err != nil {
		return sendResult{reply: r}, err
	}
	if r, err := cmd(250, "EHLO client.test"); err != nil {
		return sendResult{reply: r}, err
	}
	if r, err := cmd(250, "MAIL FROM:<%s>", from); err != nil {
		return sendResult{reply: r}, err
	}
	accepted := 0
	var last string
	for _, rc := range rcpts {
		r, err := cmd(250, "RCPT TO:<%s>", rc)
		last = r
		if err == nil {
			accepted++
		} else if _, ok := err.(*textproto.Error); !ok {
			return sendResult{reply: r}, err
		}
	}
	if accepted == 0 {
		return sendResult{reply: last}, fmt.Errorf("no recipient accepted: %s", last)
	}
	if r, err := cmd(354, "DATA"); err != nil {
		return sendResult{reply: r}, err
	}
	w := tp.DotWriter()
	io.WriteString(w, msg)
	if err := w.Close(); err != nil {
		return sendResult{}, err
	}
	r, err := expect(250)
	res := sendResult{reply: r, ok: err == nil}
	if m := queuedAs.FindStringSubmatch(r); m != nil && res.ok {
		res.id = m[1]
	}
	tp.PrintfLine("QUIT")
	return res, err
}

// loadGen sends messages from several clients in a loop, each with an
// X-Load-ID header, and remembers which ones got a 250 after DATA.
type loadGen struct {
	server string
	rcpt   string

	mu    sync.Mutex
	acked map[string]bool

	sent, ackedN atomic.Int64
	diskFull     atomic.Int64 // refused with 452 4.3.1
	stopped      atomic.Bool
	wg           sync.WaitGroup
}

// startLoad starts workers sending to rcpt through server until stop,
// each pausing between messages.
func startLoad(server, rcpt string, workers int, pause time.Duration) *loadGen {
	l := &loadGen{server: server, rcpt: rcpt, acked: map[string]bool{}}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func(w int) {
			defer l.wg.Done()
			for i := 0; !l.stopped.Load(); i++ {
				l.sent.Add(1)
				if l.send(fmt.Sprintf("w%d-%d", w, i)) != nil {
					time.Sleep(20 * time.Millisecond) // the appliance is down
				}
				time.Sleep(pause)
			}
		}(w)
	}
	return l
}

func (l *loadGen) send(id string) error {
	msg := fmt.Sprintf("Subject: load\r\nX-Load-ID: %s\r\n\r\nbody %s\r\n", id, id)
	res, err := sendMail(l.server, "load@outside.example", []string{l.rcpt}, msg)
	if err != nil || !res.ok {
		if strings.HasPrefix(res.reply, "452 4.3.1") {
			l.diskFull.Add(1)
		}
		return fmt.Errorf("%s: %v", res.reply, err)
	}
	l.mu.Lock()
	l.acked[id] = true
	l.mu.Unlock()
	l.ackedN.Add(1)
	return nil
}

// stop stops the workers and waits for them.
func (l *loadGen) stop() {
	l.stopped.Store(true)
	l.wg.Wait()
}

// ackedIDs returns a copy of the acknowledged IDs.
func (l *loadGen) ackedIDs() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.acked)
}

// waitAcked waits until at least n messages were acknowledged in total.
func (l *loadGen) waitAcked(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	waitCount(t, "acknowledged messages", &l.ackedN, n, timeout)
}

// waitCount waits until c reaches n.
func waitCount(t *testing.T, what string, c *atomic.Int64, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d within %v", what, c.Load(), n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var loadIDRe = regexp.MustCompile(`X-Load-ID: (\S+)`)

// sourceLoad is Postfix's smtp-source as the load client: one process per
// client, each sending one message per session (-s 1, sessions one after
// the other) to an address of its own numbered per message (-N:
// "17bob+w3@example.com"). The verbose dialog (-v) of a process is then
// in order, so it tells which message got a 250 after DATA; the sink's
// X-Original-To header tells which message arrived. A process stops at
// its first connection failure (when the appliance is killed).
type sourceLoad struct {
	mu    sync.Mutex
	procs []*exec.Cmd
	acked map[string]bool // recipient addresses

	sent, ackedN atomic.Int64
	wg           sync.WaitGroup
}

// origRcptRe finds the recipient of a message a Postfix sink delivered.
var origRcptRe = regexp.MustCompile(`(?m)^X-Original-To: (\S+)`)

// startSourceLoad starts clients smtp-source processes sending to
// local+wN@domain through server until stop or their first failure.
func startSourceLoad(t *testing.T, server, local, domain string, clients int) *sourceLoad {
	t.Helper()
	bin, err := exec.LookPath("smtp-source")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/smtp-source"); err != nil {
			t.Fatal("Postfix's smtp-source is required for these tests (make test-deps installs it)")
		}
	}
	l := &sourceLoad{acked: map[string]bool{}}
	for w := range clients {
		cmd := exec.Command(bin, "-v", "-N", "-s", "1", "-m", "1000000", "-f", "load@outside.example",
			"-t", fmt.Sprintf("%s+w%d@%s", local, w, domain), server)
		out, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		l.procs = append(l.procs, cmd)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.read(out)
			cmd.Wait()
		}()
	}
	t.Cleanup(l.stop)
	return l
}

// read follows one process's dialog.
func (l *sourceLoad) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	rcpt, dataSent := "", false
	for sc.Scan() {
		_, line, _ := strings.Cut(sc.Text(), ": ") // "/usr/sbin/smtp-source: RCPT TO:<...>"
		switch {
		case strings.HasPrefix(line, "RCPT TO:<"):
			rcpt = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(line, "RCPT TO:<"), ">"))
			l.sent.Add(1)
		case line == ".":
			dataSent = true
		case dataSent && strings.HasPrefix(line, "<<< "):
			dataSent = false
			if strings.HasPrefix(line, "<<< 250 ") {
				l.mu.Lock()
				l.acked[rcpt] = true
				l.mu.Unlock()
				l.ackedN.Add(1)
			}
		}
	}
}

// stop ends the processes still running and waits for their output.
func (l *sourceLoad) stop() {
	for _, p := range l.procs {
		p.Process.Kill() // an error: it has exited already
	}
	l.wg.Wait()
}

// ackedIDs returns the addresses of the acknowledged messages.
func (l *sourceLoad) ackedIDs() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.acked)
}

// sinkMessages returns a function listing the messages a Postfix sink
// holds, reading each file once (delivered files never change).
func sinkMessages(sink *postfixtest.Instance) func() []string {
	var mu sync.Mutex
	read := map[string]string{}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, p := range sink.MessageFiles() {
			m, ok := read[p]
			if !ok {
				b, err := os.ReadFile(p)
				if err != nil {
					continue
				}
				m = string(b)
				read[p] = m
			}
			out = append(out, m)
		}
		return out
	}
}

// waitDelivered waits until every acknowledged X-Load-ID is among the
// messages a next hop received (msgs returns them) and returns the number
// of duplicate deliveries (of any ID).
func waitDelivered(t *testing.T, msgs func() []string, acked map[string]bool, timeout time.Duration) int {
	t.Helper()
	return waitDeliveredBy(t, loadIDRe, msgs, acked, timeout)
}

// waitDeliveredBy is waitDelivered with the message's ID found by idRe
// (its first submatch, compared in lower case).
func waitDeliveredBy(t *testing.T, idRe *regexp.Regexp, msgs func() []string, acked map[string]bool, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		seen := map[string]int{}
		for _, m := range msgs() {
			if sm := idRe.FindStringSubmatch(m); sm != nil {
				seen[strings.ToLower(sm[1])]++
			}
		}
		var missing []string
		for id := range acked {
			if seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			dups := 0
			for _, c := range seen {
				dups += c - 1
			}
			return dups
		}
		if time.Now().After(deadline) {
			if len(missing) > 10 {
				missing = missing[:10]
			}
			t.Fatalf("%d acknowledged messages not delivered within %v (e.g. %v)", len(missing), timeout, missing)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// procStatus returns a field of /proc/<pid>/status in kB ("VmRSS").
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

// openFiles counts the file descriptors of a process.
func openFiles(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// fileLimit returns the soft RLIMIT_NOFILE of a process.
func fileLimit(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(l, "Max open files"))
			if len(f) > 0 {
				if f[0] == "unlimited" {
					return 1 << 40
				}
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return -1
}

// raiseFileLimit raises this process's RLIMIT_NOFILE to at least n (up to
// the hard limit, which root may raise too); the appliance started later
// inherits it.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= n {
		return
	}
	want := rl
	want.Cur = n
	if want.Max < n {
		want.Max = n
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		want.Max, want.Cur = rl.Max, rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if rl.Cur < n {
		t.Fatalf("RLIMIT_NOFILE is %d; the test needs %d", rl.Cur, n)
	}
}

// fakeMTA is a raw-TCP SMTP server that misbehaves on demand: no real MTA
// hangs or drops a connection when asked. Its behaviour can change while
// it runs; every RCPT and end-of-data decision is recorded.
type fakeMTA struct {
	ln   net.Listener
	port int
	done chan struct{}

	atGate atomic.Int64 // transactions waiting for the gate

	mu       sync.Mutex
	behave   fakeBehaviour
	conns    int
	decided  []fakeDecision
	messages []fakeMessage // transactions answered 250 at the end of data
}

// fakeBehaviour says how a fakeMTA answers.
type fakeBehaviour struct {
	// HangGreeting accepts the connection and never says anything.
	HangGreeting bool
	// HangAfterData reads the whole message and never answers it.
	HangAfterData bool
	// DropMidData closes the connection (with a reset) after this many
	// bytes of message data (0: no). The message must be larger than the
	// socket buffers for the client to notice in the middle of it.
	DropMidData int
	// DropAfterData reads the whole message and closes the connection
	// without answering.
	DropAfterData bool
	// Rcpt answers a RCPT (nil: "250 2.1.5 Ok").
	Rcpt func(rcpt string) string
	// Data answers the end of data (nil: "250 2.0.0 Ok: queued").
	Data func() string
	// Gate, when set, holds the answer to the end of data until it is
	// closed.
	Gate chan struct{}
}

// fakeDecision is one answer of a fakeMTA.
type fakeDecision struct {
	rcpt  string // lower case
	stage string // "rcpt" or "data"
	reply string
}

type fakeMessage struct {
	from  string
	rcpts []string
	data  string
}

func startFakeMTA(t *testing.T, b fakeBehaviour) *fakeMTA {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMTA{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, done: make(chan struct{}), behave: b}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(f.done)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				stop := closeOnDone(f.done, c)
				defer stop()
				f.serve(c)
			}()
		}
	}()
	return f
}

// closeOnDone closes c when done is closed; the returned func stops that.
func closeOnDone(done chan struct{}, c net.Conn) func() {
	finished := make(chan struct{})
	go func() {
		select {
		case <-done:
			c.Close()
		case <-finished:
		}
	}()
	return func() { close(finished) }
}

func (f *fakeMTA) set(b fakeBehaviour) {
	f.mu.Lock()
	f.behave = b
	f.mu.Unlock()
}

func (f *fakeMTA) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *fakeMTA) decisions() []fakeDecision {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeDecision(nil), f.decided...)
}

func (f *fakeMTA) received() []fakeMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMessage(nil), f.messages...)
}

// bodies returns the messages answered 250 at the end of data.
func (f *fakeMTA) bodies() []string {
	var out []string
	for _, m := range f.received() {
		out = append(out, m.data)
	}
	return out
}

func (f *fakeMTA) serve(c net.Conn) {
	f.mu.Lock()
	f.conns++
	b := f.behave
	f.mu.Unlock()
	if b.HangGreeting {
		io.Copy(io.Discard, c) // until the client or the test gives up
		return
	}
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		return w.Flush() == nil
	}
	say("220 fake.test ESMTP")
	var from string
	var rcpts []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO":
			say("250-fake.test", "250-PIPELINING", "250-8BITMIME", "250 SIZE 104857600")
		case verb == "HELO":
			say("250 fake.test")
		case verb == "MAIL":
			from, rcpts = addrOf(line), nil
			say("250 2.1.0 Ok")
		case verb == "RCPT":
			rc := strings.ToLower(addrOf(line))
			reply := "250 2.1.5 Ok"
			if b.Rcpt != nil {
				reply = b.Rcpt(rc)
			}
			f.mu.Lock()
			f.decided = append(f.decided, fakeDecision{rcpt: rc, stage: "rcpt", reply: reply})
			f.mu.Unlock()
			if reply[0] == '2' {
				rcpts = append(rcpts, rc)
			}
			say(reply)
		case verb == "DATA":
			if len(rcpts) == 0 {
				say("554 5.5.1 No valid recipients")
				continue
			}
			say("354 End data with <CR><LF>.<CR><LF>")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
				if b.DropMidData > 0 && data.Len() >= b.DropMidData {
					// Stop reading for a moment, so that the client is
					// still sending when the connection goes.
					time.Sleep(300 * time.Millisecond)
					if tc, ok := c.(*net.TCPConn); ok {
						tc.SetLinger(0) // a reset, as from a crash
					}
					return
				}
			}
			if b.DropAfterData {
				return
			}
			if b.HangAfterData {
				io.Copy(io.Discard, c)
				return
			}
			if b.Gate != nil {
				f.atGate.Add(1)
				select {
				case <-b.Gate:
				case <-f.done:
					return
				}
				f.atGate.Add(-1)
			}
			reply := "250 2.0.0 Ok: queued"
			if b.Data != nil {
				reply = b.Data()
			}
			f.mu.Lock()
			for _, rc := range rcpts {
				f.decided = append(f.decided, fakeDecision{rcpt: rc, stage: "data", reply: reply})
			}
			if reply[0] == '2' {
				f.messages = append(f.messages, fakeMessage{from: from, rcpts: rcpts, data: data.String()})
			}
			f.mu.Unlock()
			say(reply)
			rcpts = nil
		case verb == "RSET":
			from, rcpts = "", nil
			say("250 2.0.0 Ok")
		case verb == "NOOP":
			say("250 2.0.0 Ok")
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

// addrOf extracts the address of "MAIL FROM:<a@b> ..." or "RCPT TO:<a@b>".
func addrOf(line string) string {
	i, j := strings.IndexByte(line, '<'), strings.IndexByte(line, '>')
	if i < 0 || j < i {
		return ""
	}
	return line[i+1 : j]
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// mountSmall mounts a small file system of size bytes at dir for the
// appliance's data directory: tmpfs, or else a loop-mounted ext4 image.
// It is unmounted when the test ends. It returns what it mounted.
func mountSmall(t *testing.T, dir string, size int64) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unmount := func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s; detaching lazily", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	}
	tmpfsOut, tmpfsErr := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput()
	if tmpfsErr == nil {
		t.Cleanup(unmount)
		return "tmpfs"
	}
	img := dir + ".img"
	var loopOut []byte
	loopErr := func() error {
		f, err := os.Create(img)
		if err != nil {
			return err
		}
		f.Truncate(size)
		f.Close()
		if loopOut, err = exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
			return err
		}
		loopOut, err = exec.Command("mount", "-o", "loop", img, dir).CombinedOutput()
		return err
	}()
	if loopErr != nil {
		t.Skipf("cannot mount a small file system for the data directory: tmpfs: %v %s; loop-mounted ext4: %v %s",
			tmpfsErr, bytes.TrimSpace(tmpfsOut), loopErr, bytes.TrimSpace(loopOut))
	}
	t.Cleanup(unmount)
	return "ext4 on a loop device"
}

// freeSpace is the space available on the file system holding path.
func freeSpace(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fillUp grows the ballast file until at most leave bytes are free (0:
// until the file system refuses to store more).
func fillUp(t *testing.T, ballast string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(ballast, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i) | 1 // not zeros: nothing may compress or skip them
	}
	for {
		free := freeSpace(t, filepath.Dir(ballast))
		if free <= leave {
			break
		}
		n := min(int64(len(buf)), free-leave)
		if leave == 0 {
			n = int64(len(buf))
		}
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	f.Sync()
}

// padding returns about n bytes of message body in lines of 78 octets.
func padding(n int) string {
	line := strings.Repeat("0123456789", 7) + "abcdef\r\n"
	return strings.Repeat(line, n/len(line)+1)
}

// dsnReport is a delivery status notification as a test sees it.
type dsnReport struct {
	contentType string            // of the whole message, with parameters
	perMessage  map[string]string // fields of the delivery-status part
	rcpts       []map[string]string
	headers     string // the text/rfc822-headers part
}

// parseDSN parses an RFC 3464 multipart/report message.
func parseDSN(raw string) (*dsnReport, error) {
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		return nil, err
	}
	d := &dsnReport{contentType: m.Header.Get("Content-Type")}
	mt, params, err := mime.ParseMediaType(d.contentType)
	if err != nil {
		return nil, err
	}
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return nil, fmt.Errorf("not a delivery status notification: %s", d.contentType)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(p)
		switch p.Header.Get("Content-Type") {
		case "message/delivery-status":
			text := strings.ReplaceAll(string(body), "\r\n", "\n")
			for i, block := range strings.Split(strings.TrimSpace(text), "\n\n") {
				fields := map[string]string{}
				for _, l := range strings.Split(block, "\n") {
					if k, v, ok := strings.Cut(l, ":"); ok {
						fields[strings.ToLower(k)] = strings.TrimSpace(v)
					}
				}
				if i == 0 {
					d.perMessage = fields
				} else {
					d.rcpts = append(d.rcpts, fields)
				}
			}
		case "text/rfc822-headers":
			d.headers = string(body)
		}
	}
	if d.perMessage == nil {
		return nil, errors.New("no message/delivery-status part")
	}
	return d, nil
}

// dsnsFor returns the DSNs in msgs about messages with header mark.
func dsnsFor(t *testing.T, msgs []string, mark string) []*dsnReport {
	t.Helper()
	var out []*dsnReport
	for _, raw := range msgs {
		if !strings.Contains(raw, "multipart/report") || !strings.Contains(raw, mark) {
			continue
		}
		d, err := parseDSN(raw)
		if err != nil {
			t.Errorf("unparsable DSN: %v\n%s", err, raw)
			continue
		}
		if strings.Contains(d.headers, mark) {
			out = append(out, d)
		}
	}
	return out
}

var historyLine = regexp.MustCompile(`to=<([^>]+)> .*disposition=(\S+)`)

// dispositions parses `diagnose log history` lines: recipient -> the
// dispositions recorded for it, oldest first.
func dispositions(hist string) map[string][]string {
	out := map[string][]string{}
	lines := strings.Split(strings.TrimSpace(hist), "\n")
	for i := len(lines) - 1; i >= 0; i-- { // newest first on the screen
		if m := historyLine.FindStringSubmatch(lines[i]); m != nil {
			out[strings.ToLower(m[1])] = append(out[strings.ToLower(m[1])], m[2])
		}
	}
	return out
}

// rssSampler follows the VmRSS of a process.
type rssSampler struct {
	peak atomic.Int64 // kB
	quit chan struct{}
	done chan struct{}
}

func sampleRSS(t *testing.T, pid int) *rssSampler {
	s := &rssSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			if v := procStatus(pid, "VmRSS"); v > s.peak.Load() {
				s.peak.Store(v)
			}
			select {
			case <-s.quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

// stop ends the sampling and returns the peak in kB.
func (s *rssSampler) stop() int64 {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
	return s.peak.Load()
}

// dialFrom connects to addr from a local loopback address.
func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return d.Dial("tcp", addr)
}

// openIdle opens n connections from local that read the greeting and
// then say nothing.
func openIdle(t *testing.T, addr, local string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialFrom(local, addr)
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(func() { c.Close() })
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "220 ") {
				errs <- fmt.Errorf("connection %d: greeting %q: %v", i, line, err)
				return
			}
			c.SetReadDeadline(time.Time{})
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("idle connections: %v", err)
	}
	return conns
}

// expectRefused checks that a connection from local is refused with
// 421 4.7.0.
func expectRefused(t *testing.T, addr, local string) {
	t.Helper()
	c, err := dialFrom(local, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0") {
		t.Errorf("connection from %s over the limit: got %q, want 421 4.7.0", local, line)
	}
}

// session is a raw SMTP client connection for the abusers.
type session struct {
	c net.Conn
	r *bufio.Reader
}

func dialSession(addr string) (*session, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	s := &session{c: c, r: bufio.NewReader(c)}
	if r, err := s.reply(); err != nil || !strings.HasPrefix(r, "220") {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %v", r, err)
	}
	return s, nil
}

// reply reads one reply (the last line of a multi-line one).
func (s *session) reply() (string, error) {
	s.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return strings.TrimSpace(l), err
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n"), nil
		}
	}
}

// cmd sends a line and checks that the reply starts with want.
func (s *session) cmd(line, want string) error {
	if _, err := io.WriteString(s.c, line+"\r\n"); err != nil {
		return err
	}
	r, err := s.reply()
	if !strings.HasPrefix(r, want) {
		return fmt.Errorf("%.40q: got %q (%v), want %s", line, r, err, want)
	}
	return nil
}

// closed waits for the server to close the connection.
func (s *session) closed(within time.Duration) error {
	s.c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, s.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("connection still open after %v", within)
	}
	return nil
}

func (s *session) begin(rcpt string) error {
	for _, step := range [][2]string{{"EHLO abuser.test", "250"}, {"MAIL FROM:<abuser@outside.example>", "250"},
		{"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"}} {
		if err := s.cmd(step[0], step[1]); err != nil {
			return err
		}
	}
	return nil
}

// slowDrip sends a message a few bytes at a time, 200 ms apart (within
// the data timeout): it must be accepted. With stall, it then pauses that
// long, past the data timeout: it must get 421 4.4.2 and be closed.
func slowDrip(addr string, stall time.Duration) error {
	s, err := dialSession(addr)
	if err != nil {
		return err
	}
	defer s.c.Close()
	if err := s.begin("bob@example.com"); err != nil {
		return err
	}
	msg := "Subject: slow drip\r\n\r\none byte at a time\r\n"
	for i := 0; i < len(msg); i += 3 {
		if _, err := io.WriteString(s.c, msg[i:min(i+3, len(msg))]); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	if stall > 0 {
		time.Sleep(stall)
		if r, _ := s.reply(); !strings.HasPrefix(r, "421 4.4.2") {
			return fmt.Errorf("after a pause past the data timeout: got %q, want 421 4.4.2", r)
		}
		return s.closed(5 * time.Second)
	}
	return s.cmd(".", "250 2.0.0 Ok: queued as")
}

// longLine sends a line longer than max-line-length (2000), as a command
// or in DATA: 500 5.5.2 and the connection closed.
func longLine(addr string, inData bool) error {
	s, err := dialSession(addr)
	if err != nil {
		return err
	}
	defer s.c.Close()
	line := "EHLO " + strings.Repeat("a", 5000)
	if inData {
		if err := s.begin("bob@example.com"); err != nil {
			return err
		}
		line = "Subject: long\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n."
	}
	if err := s.cmd(line, "500 5.5.2 Line too long"); err != nil {
		return err
	}
	return s.closed(5 * time.Second)
}

// endless sends 64 MiB without a line end: the server must answer and
// close long before it has read them all.
func endless(addr string) error {
	s, err := dialSession(addr)
	if err != nil {
		return err
	}
	defer s.c.Close()
	written := make(chan int64, 1)
	go func() {
		chunk := bytes.Repeat([]byte("z"), 64<<10)
		var n int64
		s.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for n < 64<<20 {
			k, err := s.c.Write(chunk)
			n += int64(k)
			if err != nil {
				break
			}
		}
		written <- n
	}()
	if r, _ := s.reply(); !strings.HasPrefix(r, "500 5.5.2 Line too long") {
		return fmt.Errorf("got %q, want 500 5.5.2", r)
	}
	if err := s.closed(10 * time.Second); err != nil {
		return err
	}
	if n := <-written; n >= 64<<20 {
		return fmt.Errorf("the server read all %d bytes of an endless line", n)
	}
	return nil
}

// garbage sends random bytes: 5xx replies, then the connection closed.
func garbage(addr string) error {
	s, err := dialSession(addr)
	if err != nil {
		return err
	}
	defer s.c.Close()
	junk := make([]byte, 256<<10)
	for i := range junk {
		junk[i] = byte(rand.IntN(256))
	}
	go func() {
		s.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		s.c.Write(junk)
	}()
	replies, bad := 0, ""
	for {
		r, err := s.reply()
		if err != nil {
			break
		}
		replies++
		if r == "" || r[0] != '5' {
			bad = r
		}
	}
	if replies == 0 || bad != "" {
		return fmt.Errorf("%d replies to garbage, unexpected %q", replies, bad)
	}
	return s.closed(5 * time.Second)
}

// rcptFlood pipelines MAIL and three times max recipients: the first max
// are accepted, the others get 452 4.5.3, and the message then goes
// through.
func rcptFlood(addr string, max int) error {
	s, err := dialSession(addr)
	if err != nil {
		return err
	}
	defer s.c.Close()
	var b strings.Builder
	b.WriteString("EHLO flood.test\r\nMAIL FROM:<flood@outside.example>\r\n")
	for i := 0; i < 3*max; i++ {
		fmt.Fprintf(&b, "RCPT TO:<flood%d@example.com>\r\n", i)
	}
	if _, err := io.WriteString(s.c, b.String()); err != nil {
		return err
	}
	counts := map[string]int{}
	for i := 0; i < 2+3*max; i++ {
		r, err := s.reply()
		if err != nil {
			return fmt.Errorf("reply %d: %v", i, err)
		}
		if i >= 2 {
			counts[r[:min(len(r), 9)]]++
		}
	}
	if counts["250 2.1.5"] != max || counts["452 4.5.3"] != 2*max {
		return fmt.Errorf("RCPT replies %v, want %d accepted and %d refused with 452 4.5.3", counts, max, 2*max)
	}
	if err := s.cmd("DATA", "354"); err != nil {
		return err
	}
	return s.cmd("Subject: flood\r\n\r\nflood\r\n.", "250 2.0.0 Ok: queued as")
}

// noopFlood pipelines NOOPs and never reads a reply: once its replies
// cannot be written for command-timeout, the server must give up.
func noopFlood(addr string) error {
	s, err := dialSession(addr)
	if err != nil {
		return err
	}
	defer s.c.Close()
	chunk := []byte(strings.Repeat("NOOP\r\n", 10000))
	start := time.Now()
	s.c.SetWriteDeadline(time.Now().Add(30 * time.Second)) // command-timeout is 5 s
	var n int64
	for n < 1<<30 {
		k, err := s.c.Write(chunk)
		n += int64(k)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("connection still open after %v (%d bytes sent)", time.Since(start).Round(time.Second), n)
			}
			return nil // closed by the server
		}
	}
	return fmt.Errorf("the server read 1 GiB of NOOPs without its replies being read")
}

// churn opens and closes n connections as fast as 16 clients can: each
// is greeted (or refused with 421) and says QUIT.
func churn(addr string, n int) error {
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Value
	per := n / 16
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				s, err := dialSession(addr)
				if err != nil {
					if !strings.Contains(err.Error(), "421") {
						failed.Add(1)
						first.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				if err := s.cmd("QUIT", "221"); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
				s.c.Close()
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return fmt.Errorf("%d of %d connections failed, e.g. %v", failed.Load(), n, first.Load())
	}
	return nil
}
