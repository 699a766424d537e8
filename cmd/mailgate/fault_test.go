package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailgate/postfixtest"
	"mailgate/queue"
)

// Fault tests against the real binary: kill -9 under load, a full data
// partition, next hops that hang, drop or refuse, abusive clients. `make
// test` runs the short versions; `make soak` (MAILGATE_SOAK=1) the long
// ones.

// TestFaultKillRepeatedly kills the appliance with SIGKILL again and again
// while clients keep sending. After each restart every message that got a
// 250 before the kill is delivered; at the end every acknowledged message
// is, the queue is empty, and duplicates stay within what can be in
// flight at each kill.
func TestFaultKillRepeatedly(t *testing.T) {
	kills := scale(3, 20)
	g := startGateway(t)
	// Sustained, but below what delivery keeps up with: each restart
	// waits for the backlog of the kill before it.
	load := startLoad(fmt.Sprintf("127.0.0.1:%d", g.smtp), "bob@example.com", 8, 40*time.Millisecond)
	defer load.stop()
	delivered := sinkMessages(g.sink)
	for k := 1; k <= kills; k++ {
		load.waitAcked(t, load.ackedN.Load()+int64(scale(100, 300)), 60*time.Second)
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond) // somewhere else in the cycle each time
		g.stop(syscall.SIGKILL)
		before := load.ackedIDs()
		g.start()
		dups := waitDelivered(t, delivered, before, 60*time.Second)
		t.Logf("kill %d: %d messages acknowledged so far, all delivered after the restart; %d duplicates so far", k, len(before), dups)
	}
	load.stop()
	acked := load.ackedIDs()
	dups := waitDelivered(t, delivered, acked, 60*time.Second)
	g.waitCLI("diagnose mailqueue list", 30*time.Second, func(s string) bool { return strings.Contains(s, "0 message(s) in the queue") })
	t.Logf("%d kills; %d messages acknowledged, all delivered; %d duplicate deliveries; %d attempted", kills, len(acked), dups, load.sent.Load())
	if dups > kills*maxInFlight {
		t.Errorf("%d duplicate deliveries, more than the %d deliveries that can be in flight at %d kills", dups, kills*maxInFlight, kills)
	}
}

// TestFaultDiskFull runs the appliance on a small file system of its own.
// Past the queue's free-space threshold new mail gets 452 4.3.1; with the
// file system full to the last block too, whatever the message size;
// mail accepted before is neither lost nor stuck; once the space returns
// mail is accepted again without a restart, and a kill -9 afterwards
// finds a consistent queue.
func TestFaultDiskFull(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "data-partition")
	fsKind := mountSmall(t, mnt, 96<<20)
	g := startGateway(t, "-data", filepath.Join(mnt, "data"))
	// held.example's server takes messages and answers them only once the
	// gate opens: those deliveries are in flight when the disk fills.
	gate := make(chan struct{})
	held := startFakeMTA(t, fakeBehaviour{Gate: gate})
	g.addDomain("held.example", held.port)
	server := fmt.Sprintf("127.0.0.1:%d", g.smtp)
	ackedMain, ackedHeld := map[string]bool{}, map[string]bool{}
	send := func(id, rcpt string, size int) sendResult {
		t.Helper()
		msg := fmt.Sprintf("Subject: disk full\r\nX-Load-ID: %s\r\n\r\n%s", id, padding(size))
		res, err := sendMail(server, "sender@outside.example", []string{rcpt}, msg)
		if res.ok {
			if strings.HasSuffix(rcpt, "@held.example") {
				ackedHeld[id] = true
			} else {
				ackedMain[id] = true
			}
		} else if res.reply == "" {
			t.Fatalf("%s: %v", id, err)
		}
		return res
	}
	mustAccept := func(id, rcpt string, size int) {
		t.Helper()
		if res := send(id, rcpt, size); !res.ok {
			t.Fatalf("%s (%d bytes) refused: %s", id, size, res.reply)
		}
	}
	mustRefuse := func(id string, size int) {
		t.Helper()
		if res := send(id, "bob@example.com", size); res.ok || !strings.HasPrefix(res.reply, "452 4.3.1") {
			t.Errorf("%s (%d bytes): got %q, want 452 4.3.1", id, size, res.reply)
		}
	}

	// Before: mail that is delivered at once, and mail that waits in the
	// queue. Messages over 1 MiB are spooled to the data partition while
	// they are received.
	for i := 0; i < 5; i++ {
		mustAccept(fmt.Sprintf("before-%d", i), "bob@example.com", 2000)
		mustAccept(fmt.Sprintf("held-%d", i), fmt.Sprintf("h%d@held.example", i), 2000)
	}
	mustAccept("before-large", "bob@example.com", 2<<20)
	mustAccept("held-large", "hl@held.example", 2<<20)
	for deadline := time.Now().Add(30 * time.Second); held.atGate.Load() < 6; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 6 deliveries to held.example in flight", held.atGate.Load())
		}
	}

	// Past the threshold (64 MiB free by default).
	ballast := filepath.Join(mnt, "ballast")
	fillUp(t, ballast, 32<<20)
	time.Sleep(300 * time.Millisecond) // the queue looks at the file system every 100 ms
	mustRefuse("threshold-small", 2000)
	mustRefuse("threshold-large", 2<<20)
	if out, _ := swaks(t, "--server", server, "--from", "sender@outside.example", "--to", "bob@example.com"); !strings.Contains(out, "452 4.3.1") {
		t.Errorf("swaks past the threshold: no 452 4.3.1:\n%s", out)
	}

	// Full to the last block.
	fillUp(t, ballast, 0)
	t.Logf("%s data partition full: %d bytes free", fsKind, freeSpace(t, mnt))
	mustRefuse("full-small", 2000)
	mustRefuse("full-large", 2<<20)
	// The deliveries in flight finish while the disk is full: the next
	// hop has the messages, but their results cannot be recorded.
	close(gate)
	waitDelivered(t, held.bodies, ackedHeld, 30*time.Second)
	if out := g.cli("diagnose mailqueue retry all"); !strings.Contains(out, "Scheduled") && !strings.Contains(out, "disk full") {
		t.Errorf("retry with a full disk: %s", out)
	}
	if out := g.cli("get system status"); !strings.Contains(out, "Uptime") {
		t.Errorf("CLI with a full disk:\n%s", out)
	}

	// Space returns: mail is accepted again, small and large.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		mustAccept(fmt.Sprintf("after-%d", i), "bob@example.com", 2000)
	}
	mustAccept("after-large", "bob@example.com", 2<<20)
	waitDelivered(t, g.sink.Messages, ackedMain, 30*time.Second)

	// More rounds under load (soak): full, then free again, each time.
	cycles := scale(0, 10)
	if cycles > 0 {
		load := startLoad(server, "bob@example.com", 4, 0)
		for i := 0; i < cycles; i++ {
			load.waitAcked(t, load.ackedN.Load()+50, 30*time.Second)
			fillUp(t, ballast, 32<<20)
			waitCount(t, "452 4.3.1 past the threshold", &load.diskFull, load.diskFull.Load()+20, 30*time.Second)
			fillUp(t, ballast, 0)
			waitCount(t, "452 4.3.1 on a full disk", &load.diskFull, load.diskFull.Load()+20, 30*time.Second)
			if err := os.Remove(ballast); err != nil {
				t.Fatal(err)
			}
		}
		load.stop()
		for id := range load.ackedIDs() {
			ackedMain[id] = true
		}
		waitDelivered(t, g.sink.Messages, ackedMain, 60*time.Second)
		t.Logf("%d cycles under load: %d messages acknowledged, %d refused with 452 4.3.1", cycles, load.ackedN.Load(), load.diskFull.Load())
	}

	// A crash after the episode: the queue comes back consistent, nothing
	// is lost, nothing stays stuck, and a message that was being received
	// leaves no spool file behind.
	c, err := net.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "EHLO client.test\r\nMAIL FROM:<a@outside.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n%s", padding(3<<20))
	spool := filepath.Join(mnt, "data", "spool")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ents, _ := os.ReadDir(spool); len(ents) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a message being received was not spooled to disk")
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.stop(syscall.SIGKILL)
	g.start()
	g.waitCLI("diagnose mailqueue list", 60*time.Second, func(s string) bool { return strings.Contains(s, "0 message(s) in the queue") })
	dupsMain := waitDelivered(t, g.sink.Messages, ackedMain, 30*time.Second)
	dupsHeld := waitDelivered(t, held.bodies, ackedHeld, 30*time.Second)
	if ents, _ := os.ReadDir(spool); len(ents) > 0 {
		t.Errorf("spool files left behind after kill -9 and restart: %d", len(ents))
	}
	t.Logf("%d + %d acknowledged messages delivered; duplicates: %d, %d (deliveries whose results could not be recorded on the full disk)",
		len(ackedMain), len(ackedHeld), dupsMain, dupsHeld)
	// A delivery whose result cannot be journaled is made again after the
	// restart: the held ones, and under load those that finished in each
	// full period (in flight or just after, a few per period).
	if limit := len(ackedHeld) + cycles*queue.DefaultWorkers; dupsMain+dupsHeld > limit {
		t.Errorf("%d duplicate deliveries, more than the %d deliveries that may have finished while the disk was full", dupsMain+dupsHeld, limit)
	}
}

// TestFaultMisbehavingNextHops delivers to next hops that misbehave: one
// that accepts the connection and hangs, ones that drop the connection in
// the middle of the message or right after it, one that answers 4xx and
// 5xx at random, and a real Postfix that refuses recipients. Queue states,
// reasons, retries and DSNs (to the sender's domain, a protected domain
// with its own sink) must be right.
func TestFaultMisbehavingNextHops(t *testing.T) {
	g := startGateway(t)
	senders := postfixtest.StartSink(t, postfixtest.SinkOptions{})
	hang := startFakeMTA(t, fakeBehaviour{HangGreeting: true})
	hangData := startFakeMTA(t, fakeBehaviour{HangAfterData: true})
	drop := startFakeMTA(t, fakeBehaviour{DropMidData: 64 << 10})
	dropEnd := startFakeMTA(t, fakeBehaviour{DropAfterData: true})
	seed := uint64(time.Now().UnixNano())
	t.Logf("random replies: seed %d", seed)
	random := startFakeMTA(t, randomBehaviour(seed, true))
	refusing := postfixtest.StartSink(t, postfixtest.SinkOptions{RejectRcpt: map[string]string{
		"bad@real.example":   "550 5.1.1 No such user here",
		"later@real.example": "450 4.2.1 Mailbox busy, try later",
	}})
	var lines []string
	for _, d := range []struct {
		name string
		port int
	}{{"senders.example", senders.Port}, {"hang.example", hang.port}, {"hangdata.example", hangData.port},
		{"drop.example", drop.port}, {"dropend.example", dropEnd.port}, {"random.example", random.port}, {"real.example", refusing.Port}} {
		lines = append(lines, "edit "+d.name, "set smtp-server 127.0.0.1", fmt.Sprintf("set smtp-port %d", d.port), "next")
	}
	g.configure(append(append([]string{"config domain"}, lines...), "end")...)

	server := fmt.Sprintf("127.0.0.1:%d", g.smtp)
	send := func(mark string, size int, rcpts ...string) string {
		t.Helper()
		msg := fmt.Sprintf("Subject: %s\r\nMessage-ID: <%s@senders.example>\r\nX-Load-ID: %s\r\n\r\n%s", mark, mark, mark, padding(size))
		res, err := sendMail(server, "tester@senders.example", rcpts, msg)
		if !res.ok {
			t.Fatalf("%s refused: %s %v", mark, res.reply, err)
		}
		return res.id
	}
	hangID := send("hang", 1000, "h@hang.example")
	send("hangdata", 1000, "h@hangdata.example")
	dropID := send("drop", 9<<20, "d@drop.example") // more than the socket buffers hold
	dropEndID := send("dropend", 1000, "e@dropend.example")
	send("real", 1000, "good@real.example", "bad@real.example", "later@real.example")
	var rnd []string
	for i := 0; i < 8; i++ {
		rnd = append(rnd, fmt.Sprintf("r%d@random.example", i))
	}
	randomID := send("random", 1000, rnd...)

	// The first attempts: everything but the hanging ones settles.
	st := queueState(g.waitCLI("diagnose mailqueue list", 30*time.Second, func(s string) bool {
		st := queueState(s)
		return st["d@drop.example"].attempts == 1 && st["e@dropend.example"].attempts == 1 &&
			st["later@real.example"].attempts == 1 &&
			// every random answer may be final: then the message has left the queue
			(st["r0@random.example"].attempts >= 1 || !strings.Contains(s, randomID))
	}))
	if q := st["d@drop.example"]; q.state != "deferred" || !containsAll(q.reason, "451 4.4.2", "lost connection with", "while sending message body") {
		t.Errorf("connection dropped in the middle of the message: %+v", q)
	}
	if q := st["e@dropend.example"]; q.state != "deferred" || !containsAll(q.reason, "451 4.4.2", "after end of data", "delivered twice") {
		t.Errorf("connection dropped after the end of data: %+v", q)
	}
	if q := st["later@real.example"]; q.state != "deferred" || !containsAll(q.reason, "450 4.2.1", "Mailbox busy, try later") {
		t.Errorf("450 at RCPT: %+v", q)
	}
	if q := st["good@real.example"]; q.state != "delivered" {
		t.Errorf("accepted recipient of a message with a deferred one: %+v", q)
	}
	if q := st["bad@real.example"]; q.state != "bounced" || !strings.Contains(q.reason, "550 5.1.1") {
		t.Errorf("550 at RCPT: %+v", q)
	}
	if _, err := refusing.WaitMessage("X-Load-ID: real", 10*time.Second); err != nil {
		t.Errorf("the accepted recipient got nothing: %v", err)
	}

	// The bounce for bad@real.example reaches the sender's domain.
	var dsns []*dsnReport
	for deadline := time.Now().Add(20 * time.Second); len(dsns) == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no DSN for bad@real.example at senders.example:\n%s", g.cli("diagnose mailqueue list"))
		}
		dsns = dsnsFor(t, senders.Messages(), "X-Load-ID: real")
	}
	d := dsns[0]
	if len(dsns) != 1 || len(d.rcpts) != 1 {
		t.Fatalf("want one DSN with one recipient, got %d: %+v", len(dsns), dsns)
	}
	r := d.rcpts[0]
	if r["final-recipient"] != "rfc822; bad@real.example" || r["action"] != "failed" || r["status"] != "5.1.1" ||
		!strings.HasPrefix(r["diagnostic-code"], "smtp; 550 5.1.1") || !strings.Contains(r["diagnostic-code"], "No such user here") ||
		!strings.Contains(r["remote-mta"], "127.0.0.1") {
		t.Errorf("DSN recipient fields: %v", r)
	}
	if !strings.HasPrefix(d.perMessage["reporting-mta"], "dns; ") || !strings.Contains(d.headers, "Subject: real") {
		t.Errorf("DSN: %+v", d)
	}
	if raw, _ := senders.WaitMessage("X-Load-ID: real", time.Second); !strings.Contains(raw, "Return-Path: <>") {
		t.Errorf("DSN not sent from the null sender:\n%s", raw)
	}

	// The droppers behave again: retried, delivered once.
	drop.set(fakeBehaviour{})
	dropEnd.set(fakeBehaviour{})
	for _, id := range []string{dropID, dropEndID} {
		if out := g.cli("diagnose mailqueue retry " + id); !strings.Contains(out, "Scheduled") {
			t.Fatalf("retry %s: %s", id, out)
		}
	}
	for _, f := range []*fakeMTA{drop, dropEnd} {
		if dups := waitDelivered(t, f.bodies, map[string]bool{map[*fakeMTA]string{drop: "drop", dropEnd: "dropend"}[f]: true}, 20*time.Second); dups != 0 {
			t.Errorf("delivered %d times too often after the retry", dups)
		}
	}

	// Random replies: states follow the last answers, round after round.
	checkRandom(t, g, random, randomID, rnd, senders)

	// The hanging next hops: the attempts are still in progress (the
	// delivery command timeout is 5 minutes); they hold nothing else up,
	// and a stop interrupts them without counting an attempt.
	st = queueState(g.cli("diagnose mailqueue list"))
	for _, rc := range []string{"h@hang.example", "h@hangdata.example"} {
		if q := st[rc]; q.state != "queued" || q.attempts != 0 {
			t.Errorf("%s while its next hop hangs: %+v", rc, q)
		}
	}
	if hang.connections() == 0 || hangData.connections() == 0 {
		t.Errorf("hanging next hops not tried: %d, %d connections", hang.connections(), hangData.connections())
	}
	start := time.Now()
	g.stop(syscall.SIGTERM)
	t.Logf("stopped in %v with two deliveries hanging", time.Since(start).Round(time.Millisecond))
	g.start()
	st = queueState(g.waitCLI("diagnose mailqueue list", 20*time.Second, func(s string) bool { return hang.connections() >= 2 }))
	if q := st["h@hang.example"]; q.state != "queued" || q.attempts != 0 || q.msgID != hangID {
		t.Errorf("after the restart: %+v", q)
	}
	if !soak() {
		return
	}
	// Soak: wait for the delivery timeouts (5 minutes for a command, 10
	// for the reply to the end of data).
	st = queueState(g.waitCLI("diagnose mailqueue list", 12*time.Minute, func(s string) bool {
		st := queueState(s)
		return st["h@hang.example"].attempts >= 1 && st["h@hangdata.example"].attempts >= 1
	}))
	if q := st["h@hang.example"]; q.state != "deferred" || !containsAll(q.reason, "4.4.2", "initial greeting", "i/o timeout") {
		t.Errorf("next hop that hangs after accepting the connection: %+v", q)
	}
	if q := st["h@hangdata.example"]; q.state != "deferred" || !containsAll(q.reason, "4.4.2", "after end of data", "i/o timeout") {
		t.Errorf("next hop that hangs after the end of data: %+v", q)
	}
}

// randomBehaviour answers RCPT and the end of data at random: 250, 4xx or
// 5xx (withTemp false: no 4xx).
func randomBehaviour(seed uint64, withTemp bool) fakeBehaviour {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 0x6d61696c67617465))
	pick := func(ok, temp, perm string) string {
		mu.Lock()
		defer mu.Unlock()
		switch n := rng.IntN(10); {
		case n < 4:
			return ok
		case n < 7 && withTemp:
			return temp
		case n < 7:
			return ok
		}
		return perm
	}
	return fakeBehaviour{
		Rcpt: func(rc string) string {
			return pick("250 2.1.5 Ok", "450 4.2.0 <"+rc+">: temporarily unavailable", "550 5.1.1 <"+rc+">: unknown user")
		},
		Data: func() string {
			return pick("250 2.0.0 Ok: queued", "451 4.3.0 temporary local problem", "554 5.7.1 message refused")
		},
	}
}

// checkRandom follows the recipients of the message sent to the random
// next hop: after each attempt the queue shows, for each recipient, what
// the next hop last answered; deferred recipients are retried until none
// is left; bounced ones are in exactly one DSN with the right status,
// delivered ones were delivered once.
func checkRandom(t *testing.T, g *gateway, f *fakeMTA, id string, rcpts []string, senders *postfixtest.Instance) {
	t.Helper()
	want := map[string]string{} // recipient -> expected final state
	reply := map[string]string{}
	for round := 1; ; round++ {
		// Wait for the attempt of this round to be recorded.
		var st map[string]queuedRcpt
		g.waitCLI("diagnose mailqueue list", 30*time.Second, func(s string) bool {
			st = queueState(s)
			if _, ok := st[rcpts[0]]; !ok {
				return true // the message is done
			}
			for _, rc := range rcpts {
				if q := st[rc]; q.state == "queued" || q.state == "deferred" && q.attempts < round {
					return false
				}
			}
			return true
		})
		// What the next hop said last, per recipient.
		last := map[string]string{}
		for _, d := range f.decisions() {
			if d.stage == "rcpt" || last[d.rcpt] != "" && last[d.rcpt][0] == '2' {
				last[d.rcpt] = d.reply
			}
		}
		deferred := 0
		for _, rc := range rcpts {
			code := last[rc]
			if code == "" {
				t.Fatalf("round %d: the next hop never saw %s", round, rc)
			}
			state := map[byte]string{'2': "delivered", '4': "deferred", '5': "bounced"}[code[0]]
			if want[rc] != "" {
				continue // final before this round
			}
			if q, ok := st[rc]; ok && q.state != state {
				t.Errorf("round %d: %s is %s (%s), the next hop last said %q", round, rc, q.state, q.reason, code)
			} else if ok && state == "deferred" && !strings.Contains(q.reason, code[:3]) {
				t.Errorf("round %d: %s deferred with reason %q, the next hop said %q", round, rc, q.reason, code)
			}
			if state == "deferred" {
				deferred++
			} else {
				want[rc], reply[rc] = state, code
			}
		}
		t.Logf("round %d: %d of %d recipients final", round, len(want), len(rcpts))
		if deferred == 0 {
			break
		}
		if round == 4 {
			f.set(randomBehaviour(uint64(time.Now().UnixNano()), false)) // converge
		}
		if out := g.cli("diagnose mailqueue retry " + id); !strings.Contains(out, "Scheduled") {
			t.Fatalf("retry: %s", out)
		}
		if round > 10 {
			t.Fatal("recipients still deferred after 10 rounds")
		}
	}

	// Final dispositions in the history log.
	hist := dispositions(g.waitCLI("diagnose log history 200 random.example", 10*time.Second, func(s string) bool {
		return len(dispositions(s)) >= len(rcpts)
	}))
	delivered := map[string]int{}
	for _, m := range f.received() {
		for _, rc := range m.rcpts {
			delivered[rc]++
		}
	}
	for _, rc := range rcpts {
		wantDisp := map[string]string{"delivered": "Delivered", "bounced": "Bounced"}[want[rc]]
		if h := hist[rc]; len(h) != 1 || h[0] != wantDisp {
			t.Errorf("history of %s: %v, want [%s]", rc, h, wantDisp)
		}
		if n := delivered[rc]; (want[rc] == "delivered") != (n == 1) || n > 1 {
			t.Errorf("%s (%s) delivered %d times", rc, want[rc], n)
		}
	}

	// Every bounced recipient is in exactly one DSN, with the next hop's
	// status and reply.
	bounced := 0
	for _, s := range want {
		if s == "bounced" {
			bounced++
		}
	}
	var reported map[string]int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		reported = map[string]int{}
		n := 0
		for _, d := range dsnsFor(t, senders.Messages(), "X-Load-ID: random") {
			for _, r := range d.rcpts {
				rc := strings.TrimPrefix(r["final-recipient"], "rfc822; ")
				reported[rc]++
				n++
				code := reply[rc]
				if want[rc] != "bounced" || r["action"] != "failed" || len(code) < 9 || r["status"] != code[4:9] ||
					r["diagnostic-code"] != "smtp; "+code {
					t.Errorf("DSN for %s (%s, next hop said %q): %v", rc, want[rc], code, r)
				}
			}
		}
		if n >= bounced || time.Now().After(deadline) {
			break
		}
	}
	for rc, s := range want {
		if s == "bounced" && reported[rc] != 1 {
			t.Errorf("%s bounced, reported in %d DSNs", rc, reported[rc])
		}
	}
}

// TestFaultAbusiveClients: thousands of idle connections, slow-drip DATA,
// over-long lines, binary garbage and pipelined floods. The limits hold
// with the right replies, the appliance's memory stays bounded and an
// honest client is served all along.
func TestFaultAbusiveClients(t *testing.T) {
	idle := scale(2000, 10000)
	raiseFileLimit(t, uint64(idle+1000)) // the client ends; the appliance needs as many
	g := startGateway(t)
	pid := g.cmd.Process.Pid
	if lim := fileLimit(pid); lim < int64(idle+500) {
		t.Fatalf("the appliance may open %d files; the test needs %d", lim, idle+500)
	}
	g.configure("config system mailserver", fmt.Sprintf("set smtp-max-connections %d", idle+50),
		fmt.Sprintf("set max-connections-per-ip %d", idle), "set max-recipients 100", "end")
	server := fmt.Sprintf("127.0.0.1:%d", g.smtp)
	rss := sampleRSS(t, pid)
	honest := func(tag string) {
		t.Helper()
		var out string
		var code int
		for try := 0; try < 5; try++ { // connections closed a moment ago may not be released yet
			out, code = swaks(t, "--server", server, "--from", "honest@outside.example", "--to", "bob@example.com",
				"--header", "Subject: honest "+tag)
			if !strings.Contains(out, "421 4.7.0") {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
			t.Errorf("honest client (%s) not served: %d\n%s", tag, code, out)
			return
		}
		if _, err := g.sink.WaitMessage("Subject: honest "+tag, 30*time.Second); err != nil {
			t.Errorf("honest message (%s) not delivered: %v", tag, err)
		}
	}
	honest("before")
	base := procStatus(pid, "VmRSS")

	// Idle connections up to the per-address limit, then one more.
	start := time.Now()
	conns := openIdle(t, server, "127.0.0.2", idle)
	t.Logf("%d idle connections open in %v", idle, time.Since(start).Round(time.Millisecond))
	expectRefused(t, server, "127.0.0.2")
	honest("among idle connections")
	// Up to the total limit, then one more from a fresh address.
	extra := openIdle(t, server, "127.0.0.3", 50)
	expectRefused(t, server, "127.0.0.4")
	rssIdle, fds := procStatus(pid, "VmRSS"), openFiles(pid)
	for _, c := range extra {
		c.Close()
	}
	t.Logf("VmRSS %d MiB before, %d MiB with %d connections (%d KiB each); %d open files",
		base>>10, rssIdle>>10, idle+50, (rssIdle-base)/int64(idle+50), fds)
	if perConn := (rssIdle - base) << 10 / int64(idle+50); perConn > 64<<10 {
		t.Errorf("%d bytes of memory per idle connection", perConn)
	}
	honest("after the total limit")
	for _, c := range conns {
		c.Close()
	}

	// Abuse with short timeouts, while an honest client sends.
	g.configure("config system mailserver", "set command-timeout 5", "set data-timeout 5", "end")
	abusers := []struct {
		name string
		run  func() error
	}{
		{"slow drip within the data timeout", func() error { return slowDrip(server, 0) }},
		{"slow drip that stalls past the data timeout", func() error { return slowDrip(server, 7*time.Second) }},
		{"over-long command line", func() error { return longLine(server, false) }},
		{"over-long line in DATA", func() error { return longLine(server, true) }},
		{"endless line", func() error { return endless(server) }},
		{"binary garbage", func() error { return garbage(server) }},
		{"pipelined RCPT flood", func() error { return rcptFlood(server, 100) }},
		{"pipelined NOOP flood, replies never read", func() error { return noopFlood(server) }},
		{"connection churn", func() error { return churn(server, scale(1000, 20000)) }},
	}
	rounds := scale(1, 6)
	var wg sync.WaitGroup
	for _, a := range abusers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			for r := 0; r < rounds; r++ {
				if err := a.run(); err != nil {
					t.Errorf("%s: %v", a.name, err)
					return
				}
			}
			t.Logf("%s: as expected, %v", a.name, time.Since(start).Round(time.Millisecond))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for i := 0; ; i++ {
		honest(fmt.Sprintf("during abuse %d", i))
		select {
		case <-done:
		case <-time.After(time.Second):
			continue
		}
		break
	}
	peak := rss.stop()
	t.Logf("VmRSS peak %d MiB (%d MiB before the idle connections)", peak>>10, base>>10)
	if limit := base + int64(idle+50)*64 + 96<<10; peak > limit {
		t.Errorf("VmRSS peaked at %d MiB, more than %d MiB", peak>>10, limit>>10)
	}
	if n := openFiles(pid); n > 200 {
		t.Errorf("%d files still open after the abuse", n)
	}
}
