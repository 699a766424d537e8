//go:build linux

package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// passResult is one load run against a system: how many messages, how
// long until the sink had them all, and what it cost the system.
type passResult struct {
	tool     string
	messages int // accepted (250) and counted by the sink
	failed   int
	err      string
	e2e      time.Duration // first connection to the last message counted by the sink
	accept   time.Duration // first connection to the last 250
	rate     float64       // messages per second end to end
	p50, p99 time.Duration // acceptance latency (Go client only)
	cpu      float64       // CPU seconds of the system during the pass
	// CPU seconds of the load generator, of the sink, and of everything
	// else on the machine (other work disturbs the measurement).
	loadCPU, sinkCPU, otherCPU float64
}

// otherShare is the share of the machine's capacity that other processes
// used during the pass.
func (p *passResult) otherShare(cores int) float64 {
	if p.e2e <= 0 || cores <= 0 {
		return 0
	}
	return max(0, p.otherCPU) / (p.e2e.Seconds() * float64(cores))
}

func (p *passResult) ok() bool { return p.err == "" && p.messages > 0 }

// cpuPer1k is CPU seconds per 1,000 messages.
func (p *passResult) cpuPer1k() float64 {
	if p.messages == 0 {
		return 0
	}
	return p.cpu / float64(p.messages) * 1000
}

// caseResult is one case on one system.
type caseResult struct {
	system   string
	c        caseSpec
	passes   []*passResult // the Go client's, then smtp-source's in plain cases
	peakHWM  int64         // peak ΣVmHWM (mailgate: its VmHWM)
	peakPss  int64         // peak ΣPss
	maxProcs int
	hops     string  // what the hops negotiated, as checked after the run
	busy     float64 // cores busy with other work just before the case
	err      string
}

// throughputPass is the pass whose rate and CPU the report shows:
// smtp-source in plain cases (the load tool), the Go client with
// STARTTLS (smtp-source has no TLS).
func (r *caseResult) throughputPass() *passResult {
	for _, p := range r.passes {
		if p.tool == "smtp-source" && p.ok() {
			return p
		}
	}
	return r.latencyPass()
}

// latencyPass is the Go client's pass (it alone measures latency).
func (r *caseResult) latencyPass() *passResult {
	for _, p := range r.passes {
		if p.tool == "Go client" && p.ok() {
			return p
		}
	}
	return nil
}

func (r *caseResult) summary() string {
	var parts []string
	for _, p := range r.passes {
		s := fmt.Sprintf("%s %d msgs %.0f/s cpu %.2fs/1k", p.tool, p.messages, p.rate, p.cpuPer1k())
		if p.tool == "Go client" {
			s += fmt.Sprintf(" p50 %.2fms p99 %.2fms", ms(p.p50), ms(p.p99))
		}
		if p.err != "" {
			s += " ERROR " + p.err
		}
		parts = append(parts, s)
	}
	if r.err != "" {
		parts = append(parts, "ERROR "+r.err)
	}
	return strings.Join(parts, "; ") + fmt.Sprintf("; peak RSS %.1f MiB", mib(r.peakHWM))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(n int64) float64        { return float64(n) / (1 << 20) }

// runCase starts a sink and the system, runs the passes and stops both.
func runCase(o options, bin, name string, c caseSpec) *caseResult {
	r := &caseResult{system: name, c: c}
	r.busy = waitQuiet(o.quietWait, o.log)
	sk, err := startSink(c.tls, o.sinkNice)
	if err != nil {
		r.err = "sink: " + err.Error()
		return r
	}
	defer sk.Stop()
	var sys system
	var mg *mailgateSystem
	if name == "mailgate" {
		mg, err = startMailgate(bin, sk.Addr)
		sys = mg
	} else {
		var pf *postfixSystem
		pf, err = startPostfix(sk.Addr)
		sys = pf
	}
	if err != nil {
		r.err = "start: " + err.Error()
		return r
	}
	defer sys.Stop()
	procs := sys.Procs()
	smp := startSampler(procs)

	goPass := runPass(sys, sk, procs, o, func() loadResult {
		return goLoad(sys.Addr(), c.sessions, o.messages, c.size, c.tls, o.maxSend)
	})
	r.passes = append(r.passes, goPass)
	if !c.tls && goPass.ok() {
		// smtp-source cannot stop after a time: it gets as many messages
		// as the Go client managed within the time limit.
		n := goPass.messages
		if goPass.messages == o.messages || goPass.accept < o.maxSend {
			n = o.messages
		}
		r.passes = append(r.passes, runPass(sys, sk, procs, o, func() loadResult {
			return smtpSource(sys.Addr(), c.sessions, n, c.size)
		}))
	}
	r.peakHWM, r.peakPss, r.maxProcs = smp.finish()
	if mg != nil {
		r.hops = mailgateHops(mg)
	} else if sk.front != nil {
		r.hops = sinkHops(sk)
	}
	return r
}

// runPass runs one load and waits until the sink has counted every
// accepted message; the system's CPU time is taken before and after.
func runPass(sys system, sk *sink, procs procSet, o options, load func() loadResult) *passResult {
	base := sk.Count()
	m0, own0, sink0, cpu0 := machineCPU(), ownCPU(), sk.cpu(), procs.cpu()
	lr := load()
	p := &passResult{tool: lr.tool, failed: lr.failed, err: lr.firstErr, accept: lr.sent.Sub(lr.start)}
	if lr.accepted == 0 {
		if p.err == "" {
			p.err = "no message accepted"
		}
		return p
	}
	timeout := max(60*time.Second, 3*p.accept)
	if err := sk.WaitCount(base+lr.accepted, timeout); err != nil {
		p.err = fmt.Sprintf("sink: %v", err)
		p.messages = sk.Count() - base
		return p
	}
	p.e2e = time.Since(lr.start)
	p.cpu = procs.cpu() - cpu0
	p.loadCPU, p.sinkCPU = ownCPU()-own0, sk.cpu()-sink0
	p.otherCPU = machineCPU() - m0 - p.cpu - p.loadCPU - p.sinkCPU
	p.messages = lr.accepted
	p.rate = float64(p.messages) / p.e2e.Seconds()
	if len(lr.lat) > 0 {
		p.p50, p.p99 = latencies(lr.lat)
	}
	if lr.failed > 0 && p.err == "" {
		p.err = fmt.Sprintf("%d messages failed", lr.failed)
	}
	return p
}

var historyTLS = regexp.MustCompile(`tls=("[^"]*"|\S+) relay=\S+ relay_tls=("[^"]*"|\S+)`)

// mailgateHops reads the last history line: the TLS of the inbound
// session and of the delivery.
func mailgateHops(m *mailgateSystem) string {
	out, err := m.ssh(adminPass, "", false, "diagnose log history 1 disposition=Delivered")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	hops := "unknown"
	if sm := historyTLS.FindStringSubmatch(out); sm != nil {
		hops = "in: " + strings.Trim(sm[1], `"`) + "; out: " + strings.Trim(sm[2], `"`)
	}
	// The event and history logs drop records rather than slow mail down
	// when their writer falls behind: say so when it happened.
	if out, err := m.ssh(adminPass, "", false, `diagnose log event 20 "records dropped"`); err == nil {
		if n := len(droppedRe.FindAllString(out, -1)); n > 0 {
			hops += fmt.Sprintf("; **event log dropped records %d times**", n)
		}
	}
	return hops
}

var droppedRe = regexp.MustCompile(`\d+ log records dropped`)

// sinkHops counts the TLS sink's sessions that used TLS.
func sinkHops(sk *sink) string {
	ss := sk.front.Sessions()
	n := 0
	for _, s := range ss {
		if s.TLS != "" {
			n++
		}
	}
	return fmt.Sprintf("out: %d of %d sink sessions in TLS", n, len(ss))
}
