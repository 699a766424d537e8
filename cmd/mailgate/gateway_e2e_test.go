package main

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/dnstest"
	"mailgate/postfixtest"
	"mailgate/queue"
)

// gateway is an appliance in gateway mode with a Postfix sink as the
// protected domain's mail server and as the MX of an outside domain.
type gateway struct {
	*instance
	smtp, smtps, msa int
	sink             *postfixtest.Instance
	dns              *dnstest.Server
}

// Extra appliance flags may follow (a later -data overrides the default).
func startGateway(t *testing.T, args ...string) *gateway {
	t.Helper()
	sink := postfixtest.StartSink(t, postfixtest.SinkOptions{})
	_, sinkPort, _ := net.SplitHostPort(sink.Addr)
	dns := dnstest.Start(t)
	dns.AddMX("outside.example", 10, "mx.outside.example")
	dns.AddA("mx.outside.example", "127.0.0.1")
	g := &gateway{sink: sink, dns: dns, smtp: postfixtest.Port(t), smtps: postfixtest.Port(t), msa: postfixtest.Port(t)}
	g.instance = startFresh(t, append([]string{"-smtp-port", strconv.Itoa(g.smtp), "-smtps-port", strconv.Itoa(g.smtps),
		"-msa-port", strconv.Itoa(g.msa), "-dns-server", dns.Addr(), "-mx-port", sinkPort}, args...)...)
	setup := strings.Join([]string{
		"config domain", "edit example.com", "set smtp-server 127.0.0.1", "set smtp-port " + sinkPort, "next", "end",
		"config user local", "edit alice", "set password Alice#Submit2026", "next", "end",
		"config system mailserver", "config mail-queue", "edit default", "set queue-retry 1", "next", "end", "end",
	}, "\n") + "\n"
	if out, code := g.ssh(newPassword, setup, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("gateway setup: %d\n%s", code, out)
	}
	return g
}

// swaks runs the swaks client; it returns the transcript and exit status.
func swaks(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("swaks", append([]string{"--timeout", "20", "--hide-informational"}, args...)...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("swaks: %v", err)
	}
	return string(out), 0
}

func TestGatewayRelaysAndRefusesOpenRelay(t *testing.T) {
	g := startGateway(t)
	server := fmt.Sprintf("127.0.0.1:%d", g.smtp)

	// Inbound to the protected domain, over STARTTLS.
	out, code := swaks(t, "--server", server, "--from", "sender@outside.example", "--to", "bob@example.com",
		"--tls", "--header", "Subject: e2e inbound", "--body", "hello from outside")
	if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
		t.Fatalf("inbound message refused: %d\n%s", code, out)
	}
	msg, err := g.sink.WaitMessage("Subject: e2e inbound", 30*time.Second)
	if err != nil {
		t.Fatalf("inbound message not delivered: %v\n%s", err, g.sink.Log())
	}
	if !regexp.MustCompile(`Received: from \S+ \(unknown \[127.0.0.1\]\)\s+by mailgate \(mailgate\) with ESMTPS id`).MatchString(msg) ||
		!strings.Contains(msg, "version=TLSv1.3") {
		t.Fatalf("Received header lacks the TLS details:\n%s", msg)
	}

	// Open-relay attempts: an outside domain, a forged local sender, no auth.
	for _, tc := range [][]string{
		{"--from", "x@outside.example", "--to", "victim@elsewhere.example"},
		{"--from", "ceo@example.com", "--to", "victim@elsewhere.example"},
		{"--from", "ceo@example.com", "--to", "victim@elsewhere.example", "--tls"},
	} {
		out, _ = swaks(t, append([]string{"--server", server}, tc...)...)
		if !strings.Contains(out, "550 5.7.1") {
			t.Errorf("open relay attempt %v not refused with 550 5.7.1:\n%s", tc, out)
		}
	}

	// AUTH is never offered or accepted in plain text.
	out, _ = swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", g.msa), "--from", "alice@example.com", "--to", "friend@outside.example",
		"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "Alice#Submit2026")
	if strings.Contains(out, "235 ") {
		t.Fatalf("AUTH accepted in plain text:\n%s", out)
	}
	// Authenticated submission relays outward by MX (our DNS server points
	// outside.example at the sink).
	out, code = swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", g.msa), "--tls", "--from", "alice@example.com",
		"--to", "friend@outside.example", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "Alice#Submit2026",
		"--header", "Subject: e2e outbound")
	if code != 0 || !strings.Contains(out, "250 2.0.0") {
		t.Fatalf("authenticated submission refused: %d\n%s", code, out)
	}
	if _, err := g.sink.WaitMessage("Subject: e2e outbound", 30*time.Second); err != nil {
		t.Fatalf("outbound message not delivered by MX: %v\n%s", err, g.sink.Log())
	}

	// The history log has one line per message and recipient.
	deadline := time.Now().Add(10 * time.Second)
	for {
		hist, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose log history 50")
		// The delivered record says why the message was accepted and how
		// it came in, and where it went.
		delivered := regexp.MustCompile(`to=<bob@example.com> classifier="Protected Domain" disposition=Delivered tls="TLSv1.3 [^"]+" relay=\S+ relay_tls=`)
		if delivered.MatchString(hist) && strings.Contains(hist, "disposition=Delivered") &&
			strings.Contains(hist, "to=<victim@elsewhere.example>") && strings.Contains(hist, "Relay Denied") &&
			strings.Contains(hist, "to=<friend@outside.example>") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history log incomplete:\n%s", hist)
		}
		time.Sleep(300 * time.Millisecond)
	}
	events, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose log event 200")
	if !strings.Contains(events, "STARTTLS=server") || !strings.Contains(events, "relay=") {
		t.Fatalf("event log lacks TLS session and delivery lines:\n%s", events)
	}
	if q, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose mailqueue list"); !strings.Contains(q, "0 message(s) in the queue") {
		t.Fatalf("queue not empty after delivery:\n%s", q)
	}
}

// maxInFlight bounds the duplicate deliveries one kill -9 may cause. A
// duplicate is legitimate only for a delivery in flight at the kill: the
// next hop took the message, but the appliance had not yet written the
// result to its journal (the write follows the 250 within a millisecond
// or so; kill -9 keeps what was written). The load tests send to one
// domain, where the queue runs at most DefaultPerDomain deliveries at
// once, each on its own connection with one transaction at a time.
const maxInFlight = queue.DefaultPerDomain

// TestGatewayKillDuringLoad sends messages with Postfix's smtp-source
// from several clients, kills the appliance with SIGKILL in the middle,
// restarts it, and checks that every message that got a 250 reaches the
// sink, counting duplicates: no more than the deliveries in flight.
func TestGatewayKillDuringLoad(t *testing.T) {
	g := startGateway(t)
	load := startSourceLoad(t, fmt.Sprintf("127.0.0.1:%d", g.smtp), "bob", "example.com", 8)
	// Let load build up, then kill -9 mid-stream.
	waitCount(t, "acknowledged messages", &load.ackedN, 150, 60*time.Second)
	g.stop(syscall.SIGKILL)
	load.stop()
	acked := load.ackedIDs()
	g.start()
	dups := waitDeliveredBy(t, origRcptRe, sinkMessages(g.sink), acked, 90*time.Second)
	t.Logf("%d messages acknowledged before kill -9, all delivered; %d duplicate deliveries (at most %d in flight); %d attempted",
		len(acked), dups, maxInFlight, load.sent.Load())
	if dups > maxInFlight {
		t.Errorf("%d duplicate deliveries, more than the %d deliveries that can be in flight", dups, maxInFlight)
	}
}

// TestGatewayKillWithNextHopDown is the kill -9 test with nothing in
// flight: the next hop refuses connections during the load and the kill,
// and comes up after the restart. Every message that got a 250 is then
// delivered exactly once.
func TestGatewayKillWithNextHopDown(t *testing.T) {
	g := startGateway(t)
	hop := postfixtest.Port(t) // nothing listens there until after the restart
	g.addDomain("later.example", hop)
	load := startSourceLoad(t, fmt.Sprintf("127.0.0.1:%d", g.smtp), "bob", "later.example", 8)
	waitCount(t, "acknowledged messages", &load.ackedN, 150, 60*time.Second)
	g.stop(syscall.SIGKILL)
	load.stop()
	acked := load.ackedIDs()
	g.start()
	// The messages tried before the kill were deferred: nothing listened.
	g.waitCLI("diagnose mailqueue list", 20*time.Second, func(s string) bool { return strings.Contains(s, "deferred") })
	sink := postfixtest.StartSink(t, postfixtest.SinkOptions{Port: hop})
	g.waitCLI("diagnose mailqueue retry all", 20*time.Second, func(s string) bool { return strings.Contains(s, "Scheduled") })
	dups := waitDeliveredBy(t, origRcptRe, sinkMessages(sink), acked, 90*time.Second)
	g.waitCLI("diagnose mailqueue list", 30*time.Second, func(s string) bool { return strings.Contains(s, "0 message(s) in the queue") })
	t.Logf("%d messages acknowledged before kill -9 with the next hop down, all delivered after the restart; %d duplicate deliveries; %d attempted",
		len(acked), dups, load.sent.Load())
	if dups != 0 {
		t.Errorf("%d duplicate deliveries with nothing in flight at the kill", dups)
	}
}

// TestGatewayDeferredQueue: a protected domain whose server refuses
// connections; the admin lists the deferred message with its reason,
// retries it, downloads it and deletes it.
func TestGatewayDeferredQueue(t *testing.T) {
	g := startGateway(t)
	dead := postfixtest.Port(t) // nothing listens here
	setup := fmt.Sprintf("config domain\nedit deadend.example\nset smtp-server 127.0.0.1\nset smtp-port %d\nnext\nend\n", dead)
	if out, code := g.ssh(newPassword, setup, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("setup: %s", out)
	}
	out, code := swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", g.smtp), "--from", "a@outside.example",
		"--to", "c@deadend.example", "--header", "Subject: stuck in the queue")
	if code != 0 {
		t.Fatalf("send: %s", out)
	}
	id := regexp.MustCompile(`queued as (\S+)`).FindStringSubmatch(out)[1]
	waitFor := func(cmd, want string) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := g.ssh(newPassword, "", "admin@127.0.0.1", cmd)
			if strings.Contains(out, want) {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never showed %q:\n%s", cmd, want, out)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	list := waitFor("diagnose mailqueue list", "attempts=1")
	if !strings.Contains(list, id) || !strings.Contains(list, "c@deadend.example") || !strings.Contains(list, "deferred") ||
		!strings.Contains(list, "reason: ") {
		t.Fatalf("queue list lacks the deferred message and its reason:\n%s", list)
	}
	if out, _ = g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose mailqueue retry "+id); !strings.Contains(out, "Scheduled") {
		t.Fatalf("retry: %s", out)
	}
	waitFor("diagnose mailqueue list", "attempts=2")
	msg, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose mailqueue view "+id)
	if !strings.Contains(msg, "Subject: stuck in the queue") || !strings.Contains(msg, "by mailgate (mailgate)") {
		t.Fatalf("view:\n%s", msg)
	}
	if out, _ = g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose mailqueue delete "+id); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %s", out)
	}
	waitFor("diagnose mailqueue list", "0 message(s) in the queue")
	waitFor("diagnose log history 20 deadend", "disposition=Deleted")
	if out, _ = g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose mailqueue view "+id); !strings.Contains(out, "entry not found") {
		t.Fatalf("view after delete: %s", out)
	}
}
