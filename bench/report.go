//go:build linux

package main

import (
	"fmt"
	"strings"
	"time"
)

// report renders the Markdown report.
func report(o options, env environment, results []*caseResult, mem []memResult, micro []microResult, microErr error, took time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# mailgate vs Postfix: relay benchmark (%s run, %s)\n\n", o.mode, time.Now().Format("2006-01-02"))
	p("Machine: %d cores (%s), Linux %s, %s, Postfix %s. ", env.cores, orDash(env.cpu), orDash(env.kernel), env.goVersion, orDash(env.postfix))
	if env.fsyncErr == "" {
		p("fdatasync of a 4 KiB append on the queue file system: p50 %.2f ms, p99 %.2f ms. ", ms(env.fsyncP50), ms(env.fsyncP99))
	}
	p("Up to %d messages per pass or %v of sending; the run took %v.\n\n", o.messages, o.maxSend, took.Round(time.Second))
	p("Topology, all on 127.0.0.1: load → system under test → sink (`smtp-sink`, the protected domain's server). " +
		"Case names are body size, concurrent sessions, plain or STARTTLS on both hops.\n\n")

	p("## End to end\n\n")
	p("Ratios are mailgate/Postfix: above 1 is better for msg/s, below 1 is better for the others. " +
		"msg/s and CPU come from `smtp-source` in plain cases and from the Go client with STARTTLS; " +
		"latency always from the Go client (see Method).\n\n")
	p("| Case | msg/s mailgate | msg/s Postfix | × | p50 ms mailgate | p50 ms Postfix | × | p99 ms mailgate | p99 ms Postfix | × | " +
		"peak RSS MiB mailgate | peak RSS MiB Postfix | × | peak PSS MiB mailgate | peak PSS MiB Postfix | × | CPU s/1k msgs mailgate | CPU s/1k msgs Postfix | × |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range o.cases {
		mg, pf := find(results, "mailgate", c), find(results, "postfix", c)
		row := []string{"`" + c.String() + "`"}
		row = append(row, triple(mg, pf, func(r *caseResult) float64 {
			return passVal(r.throughputPass(), func(p *passResult) float64 { return p.rate })
		}, "%.0f")...)
		row = append(row, triple(mg, pf, func(r *caseResult) float64 {
			return passVal(r.latencyPass(), func(p *passResult) float64 { return ms(p.p50) })
		}, "%.2f")...)
		row = append(row, triple(mg, pf, func(r *caseResult) float64 {
			return passVal(r.latencyPass(), func(p *passResult) float64 { return ms(p.p99) })
		}, "%.2f")...)
		row = append(row, triple(mg, pf, func(r *caseResult) float64 { return mib(r.peakHWM) }, "%.1f")...)
		row = append(row, triple(mg, pf, func(r *caseResult) float64 { return mib(r.peakPss) }, "%.1f")...)
		row = append(row, triple(mg, pf, func(r *caseResult) float64 { return passVal(r.throughputPass(), (*passResult).cpuPer1k) }, "%.2f")...)
		p("| %s |\n", strings.Join(row, " | "))
	}
	p("\n")

	p("## Targets\n\n")
	p("| Target | Figure | Met |\n|---|---|---|\n")
	for _, t := range targets(o, results, mem) {
		p("| %s | %s | %s |\n", t[0], t[1], t[2])
	}
	p("\n")

	p("## Every pass\n\n")
	p("A plain case runs the Go client first (latency), then `smtp-source` on the same instance with as many messages. " +
		"Peak memory covers the whole case; ΣPSS shares pages mapped by several processes among them (Postfix's daemons share libraries).\n\n")
	p("CPU s is the system's; the load generator's and the sink's CPU are shown too, and Other is what the rest of the machine " +
		"used during the pass, as a share of all cores (Busy before: cores in use by other work when the case started).\n\n")
	p("| Case | System | Load | Messages | End to end s | Last 250 s | msg/s | p50 ms | p99 ms | CPU s | CPU s/1k | Load CPU s | Sink CPU s | Other | Busy before | " +
		"Peak ΣVmHWM MiB | Peak ΣPSS MiB | Max procs | Hops | Errors |\n")
	p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	disturbed := 0.0
	for _, r := range results {
		if len(r.passes) == 0 {
			p("| `%s` | %s |%s %s |\n", r.c, r.system, strings.Repeat(" – |", 17), cell(r.err))
			continue
		}
		for _, ps := range r.passes {
			lat50, lat99 := "–", "–"
			if ps.tool == "Go client" && ps.ok() {
				lat50, lat99 = fmt.Sprintf("%.2f", ms(ps.p50)), fmt.Sprintf("%.2f", ms(ps.p99))
			}
			errs := ps.err
			if r.err != "" {
				errs = strings.TrimSpace(errs + " " + r.err)
			}
			other := ps.otherShare(env.cores)
			disturbed = max(disturbed, other)
			p("| `%s` | %s | %s | %d | %.1f | %.1f | %.0f | %s | %s | %.1f | %.2f | %.1f | %.1f | %.0f%% | %.2f | %.1f | %.1f | %d | %s | %s |\n",
				r.c, r.system, ps.tool, ps.messages, ps.e2e.Seconds(), ps.accept.Seconds(), ps.rate, lat50, lat99, ps.cpu, ps.cpuPer1k(),
				ps.loadCPU, ps.sinkCPU, 100*other, r.busy, mib(r.peakHWM), mib(r.peakPss), r.maxProcs, cell(r.hops), cell(errs))
		}
	}
	p("\n")
	if disturbed > 0.1 {
		p("**Caution:** other processes used up to %.0f%% of the machine during a pass; those figures understate both systems.\n\n", 100*disturbed)
	}

	if len(mem) > 0 {
		p("## Memory of idle connections\n\n")
		p("The system relays to a plain sink and has been idle for 3 s; then connections are opened one after the other, " +
			"each waits for its 220 banner and stays open without a command; 2 s later the memory is sampled again.\n\n")
		p("| System | Idle ΣRSS MiB | Idle ΣPSS MiB | Procs | Connections | ΣRSS MiB | ΣPSS MiB | Procs | RSS KiB per connection | Note |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, m := range mem {
			per := "–"
			if m.conns > 0 {
				per = fmt.Sprintf("%.0f", float64(m.connRSS-m.idleRSS)/1024/float64(m.conns))
			}
			note := m.note
			if m.err != "" {
				note = strings.TrimSpace(note + " ERROR: " + m.err)
			}
			p("| %s | %.1f | %.1f | %d | %d | %.1f | %.1f | %d | %s | %s |\n", m.system, mib(m.idleRSS), mib(m.idlePss), m.idleProcs,
				m.conns, mib(m.connRSS), mib(m.connPss), m.connProcs, per, cell(note))
		}
		p("\n")
	}

	if len(micro) > 0 || microErr != nil {
		p("## Micro-benchmarks (go test -bench, -benchtime %s)\n\n", o.micro)
		if microErr != nil {
			p("Error: %s\n\n", cell(firstLine(microErr.Error())))
		}
		p("| Package | Benchmark | Iterations | ns/op | B/op | allocs/op | Other |\n|---|---|---:|---:|---:|---:|---|\n")
		for _, m := range micro {
			var other []string
			for _, v := range m.metrics {
				switch v[1] {
				case "ns/op", "B/op", "allocs/op":
				default:
					other = append(other, v[0]+" "+v[1])
				}
			}
			p("| %s | %s | %s | %s | %s | %s | %s |\n", m.pkg, m.name, m.iterations, orDash(m.metric("ns/op")),
				orDash(m.metric("B/op")), orDash(m.metric("allocs/op")), orDash(strings.Join(other, ", ")))
		}
		p("\n")
	}

	p("## Method\n\n")
	p(method)
	return b.String()
}

const method = `- **Systems.** mailgate: the binary built from this tree, gateway mode (the factory mode), a fresh data
  directory per case, configured over SSH with the OpenSSH client as an administrator would: the first
  password, domain ` + "`bench.example`" + ` → smtp-server 127.0.0.1 on the sink's port, and
  ` + "`max-connections 5000`, `max-connections-per-ip 2000`" + ` (100 sessions and 1,000 idle connections come
  from one address). Nothing else is changed: the queue fsyncs before every 250 (group commit), delivery
  uses its defaults (32 workers, 8 per destination domain, connection reuse, opportunistic STARTTLS).
  Its reverse DNS lookups go to a DNS server on 127.0.0.1 that knows no names.
  Postfix: Debian's Postfix as a private instance (own main.cf, master.cf, queue and data directories,
  started with ` + "`master -w`" + ` and stopped after the case; the machine's mail setup is not touched), from
  postfixtest.NewRelay: relayhost = [127.0.0.1]:sink, mynetworks = 127.0.0.0/8, no DNS, log file through
  postlogd, and Debian's stock TLS lines (smtpd_tls_security_level = may with a generated certificate,
  smtp_tls_security_level = may, smtp_tls_CApath = /etc/ssl/certs, smtp_tls_session_cache_database =
  btree:${data_directory}/smtp_scache). Concurrency and durability are Postfix's defaults
  (default_process_limit = 100, default_destination_concurrency_limit = 20, connection caching on demand,
  smtp_tls_connection_reuse = no, the queue file fsynced before 250).
- **Load.** Plain cases: Postfix's ` + "`smtp-source -d -s SESSIONS -m N -l SIZE`" + ` (each session sends message
  after message on one connection; no pipelining) gives msg/s and CPU. It cannot speak STARTTLS nor time
  each message, so a Go client does the same (N sessions, messages back to back on one connection, commands
  not pipelined, STARTTLS when the case asks) and records for every message the time from the final "."
  of DATA to the 250: the acceptance latency of every case, and msg/s and CPU of the STARTTLS cases. The Go
  client runs first; ` + "`smtp-source`" + ` gets as many messages as the Go client sent within the time limit.
  The Go client and smtp-source run on the same 2 cores as the systems, alike for both.
- **Sink.** ` + "`smtp-sink`" + ` (postfixtest.NewSmtpSink) counts messages and discards them. It has no TLS:
  for STARTTLS on the second hop, a Postfix sink instance with STARTTLS (postfixtest.NewSink, smtpd only)
  sits in front of it as a before-queue proxy (smtpd_proxy_filter = the smtp-sink), so no disk queue
  slows the sink; both systems relay to the same kind of sink. The Hops column shows what the second hop
  negotiated (mailgate: its history log; Postfix: the TLS sink's log). The sink processes run at nice 10
  (` + "`-sink-nice`" + `), for both systems: they are the measuring apparatus, and on two cores the STARTTLS
  proxy's CPU (about 2 ms per message) would otherwise be taken from the acceptance being measured.
- **End to end** is from the first connection of the load until the sink has counted every message
  that got a 250; msg/s = messages / that time.
- **CPU** is utime+stime from /proc/PID/stat taken before and after the pass: mailgate's process;
  for Postfix the master and every live child (smtpd, cleanup, qmgr, smtp, trivial-rewrite, tlsmgr, …)
  plus the master's cutime+cstime, which holds the time of the children it has reaped. Divided by the
  messages of the pass × 1,000.
- **Peak RSS**: mailgate's VmHWM. Postfix is many processes: every 200 ms the VmHWM of the master and
  its children are summed and the largest sum is kept (an upper bound: each process counts the shared
  libraries again). Peak ΣPSS (sampled every second) divides shared pages among the processes.
- **A shared machine.** Each case first waits (up to -quiet-wait) until other processes use less than a
  quarter of a core. Other (in Every pass) is the machine's busy time during the pass minus the system's,
  the load generator's and the sink's: kernel threads working for the pass (ext4's journal, loopback
  softirqs) land there too, so it is a few per cent even on an idle machine.
`

func find(results []*caseResult, system string, c caseSpec) *caseResult {
	for _, r := range results {
		if r.system == system && r.c == c {
			return r
		}
	}
	return nil
}

func passVal(p *passResult, f func(*passResult) float64) float64 {
	if p == nil {
		return 0
	}
	return f(p)
}

// triple is the mailgate figure, the Postfix figure and their ratio.
func triple(mg, pf *caseResult, f func(*caseResult) float64, format string) []string {
	var a, b float64
	if mg != nil {
		a = f(mg)
	}
	if pf != nil {
		b = f(pf)
	}
	out := []string{num(a, format), num(b, format), "–"}
	if a > 0 && b > 0 {
		out[2] = fmt.Sprintf("%.2f", a/b)
	}
	return out
}

func num(v float64, format string) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf(format, v)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// cell makes text safe in a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", "/")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return orDash(s)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// targets checks the figures against the targets.
func targets(o options, results []*caseResult, mem []memResult) [][3]string {
	var out [][3]string
	met := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	rate := func(r *caseResult) float64 {
		if r == nil {
			return 0
		}
		return passVal(r.throughputPass(), func(p *passResult) float64 { return p.rate })
	}
	key := caseSpec{size: 1024, sessions: 10}
	var behind []string
	compared := 0
	for _, c := range o.cases {
		mg, pf := rate(find(results, "mailgate", c)), rate(find(results, "postfix", c))
		if mg == 0 || pf == 0 {
			continue
		}
		if c == key {
			out = append(out, [3]string{"`1k-10-plain` end to end ≥ 5× Postfix", fmt.Sprintf("%.0f vs %.0f msg/s: %.2f×", mg, pf, mg/pf), met(mg >= 5*pf)})
			continue
		}
		compared++
		if mg < pf {
			behind = append(behind, fmt.Sprintf("`%s` %.2f×", c, mg/pf))
		}
	}
	if compared > 0 {
		fig := fmt.Sprintf("%d other cases compared", compared)
		if len(behind) > 0 {
			fig += "; behind: " + strings.Join(behind, ", ")
		}
		out = append(out, [3]string{"every other case ≥ Postfix", fig, met(len(behind) == 0)})
	}
	for _, c := range []caseSpec{key, {size: 1024, sessions: 10, tls: true}} {
		if r := find(results, "mailgate", c); r != nil && r.latencyPass() != nil {
			p99 := r.latencyPass().p99
			out = append(out, [3]string{fmt.Sprintf("`%s` acceptance p99 < 10 ms", c), fmt.Sprintf("%.2f ms", ms(p99)), met(p99 < 10*time.Millisecond)})
		}
	}
	for _, m := range mem {
		if m.system != "mailgate" || m.err != "" && m.conns == 0 {
			continue
		}
		out = append(out, [3]string{"idle RSS < 40 MiB", fmt.Sprintf("%.1f MiB", mib(m.idleRSS)), met(m.idleRSS < 40<<20)})
		out = append(out, [3]string{fmt.Sprintf("%d idle connections < 100 MiB", m.wanted),
			fmt.Sprintf("%.1f MiB with %d connections", mib(m.connRSS), m.conns), met(m.conns == m.wanted && m.connRSS < 100<<20)})
	}
	return out
}
