//go:build linux

// Command bench measures mailgate in gateway mode against Debian's Postfix
// configured as an equivalent relay, end to end on loopback:
//
//	load (smtp-source or a Go SMTP client) -> system under test -> sink
//
// The sink is Postfix's smtp-sink(1) as the protected domain's mail
// server (with a Postfix STARTTLS front end for the TLS cases). Both
// systems keep their queue on disk with their default fsync behaviour.
// For each case (message size x concurrent sessions x plain or STARTTLS)
// it reports messages per second end to end, acceptance latency, peak
// memory and CPU time per 1,000 messages of both systems and their ratio,
// then the memory of idle connections and Go micro-benchmarks of the hot
// paths, as a Markdown report printed at the end and saved in -out.
//
//	go run ./bench                 # the full matrix (make bench)
//	go run ./bench -quick          # a short run (make bench-quick)
//	go run ./bench -cases 1k-10-plain,100k-10-tls -systems mailgate
//
// It needs root (Postfix instances) and Postfix's programs (make
// test-deps). All traffic stays on 127.0.0.1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// caseSpec is one cell of the matrix.
type caseSpec struct {
	size     int // body bytes
	sessions int
	tls      bool
}

func (c caseSpec) String() string {
	mode := "plain"
	if c.tls {
		mode = "tls"
	}
	return fmt.Sprintf("%dk-%d-%s", c.size/1024, c.sessions, mode)
}

func parseCase(s string) (caseSpec, error) {
	f := strings.Split(strings.TrimSpace(s), "-")
	bad := fmt.Errorf("case %q: want SIZEk-SESSIONS-plain|tls, e.g. 1k-10-plain", s)
	if len(f) != 3 || !strings.HasSuffix(f[0], "k") {
		return caseSpec{}, bad
	}
	kb, err1 := strconv.Atoi(strings.TrimSuffix(f[0], "k"))
	n, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || kb <= 0 || n <= 0 || (f[2] != "plain" && f[2] != "tls") {
		return caseSpec{}, bad
	}
	return caseSpec{size: kb * 1024, sessions: n, tls: f[2] == "tls"}, nil
}

func parseCases(list string) ([]caseSpec, error) {
	var out []caseSpec
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		c, err := parseCase(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

const (
	fullCases  = "1k-1-plain,1k-10-plain,1k-100-plain,100k-1-plain,100k-10-plain,100k-100-plain,1k-1-tls,1k-10-tls,1k-100-tls,100k-1-tls,100k-10-tls,100k-100-tls"
	quickCases = "1k-10-plain,1k-1-plain,100k-10-plain,1k-10-tls"
)

// options of a run.
type options struct {
	mode     string // "full", "quick" or "tiny": for the report
	cases    []caseSpec
	systems  []string
	messages int           // per pass, at most
	maxSend  time.Duration // per pass: no new message after this
	memory   bool          // idle RSS and 1,000 idle connections
	idleConn int
	micro    string // go test -benchtime for the micro-benchmarks; "" skips them
	// quietWait is how long a case waits for other work on the machine
	// to stop before it starts anyway.
	quietWait time.Duration
	out       string // directory for the report ("": none)
	// sinkNice is the CPU priority (nice value) of the sink processes.
	sinkNice int
	log      func(format string, args ...any)
}

func main() {
	quick := flag.Bool("quick", false, "short run: 2,000 messages per pass, 4 cases (make bench-quick)")
	tiny := flag.Bool("tiny", false, "smoke run: 200 messages, one case, no memory figure or micro-benchmarks")
	cases := flag.String("cases", "", "comma-separated cases SIZEk-SESSIONS-plain|tls (default: the full matrix, or the quick set)")
	systems := flag.String("systems", "mailgate,postfix", "systems to measure")
	messages := flag.Int("messages", 0, "messages per pass (default 20000; -quick 2000)")
	maxSend := flag.Duration("max-send", 0, "stop sending after this long in a pass (default 30s; -quick 15s)")
	memory := flag.Bool("memory", true, "measure idle RSS and idle connections")
	micro := flag.String("benchtime", "", "go test -benchtime for the micro-benchmarks (default 1s; -quick 100ms; \"off\" skips them)")
	out := flag.String("out", "bench/results", "directory for the Markdown report")
	quietWait := flag.Duration("quiet-wait", 2*time.Minute, "before each case, wait at most this long for the machine to be idle")
	sinkNice := flag.Int("sink-nice", 10, "nice value of the sink processes (smtp-sink and the STARTTLS sink), for both systems; 0 leaves them at normal priority")
	flag.Parse()

	o := options{mode: "full", messages: 20000, maxSend: 30 * time.Second, memory: *memory, idleConn: 1000, micro: "1s", out: *out, quietWait: *quietWait, sinkNice: *sinkNice,
		log: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }}
	list := fullCases
	switch {
	case *tiny:
		o.mode, o.messages, o.maxSend, o.memory, o.micro = "tiny", 200, 15*time.Second, false, ""
		list = "1k-10-plain"
	case *quick:
		o.mode, o.messages, o.maxSend, o.micro = "quick", 2000, 15*time.Second, "100ms"
		list = quickCases
	}
	if *cases != "" {
		list = *cases
		o.mode += "-selected"
	}
	if *messages > 0 {
		o.messages = *messages
	}
	if *maxSend > 0 {
		o.maxSend = *maxSend
	}
	switch *micro {
	case "":
	case "off":
		o.micro = ""
	default:
		o.micro = *micro
	}
	var err error
	if o.cases, err = parseCases(list); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	o.systems = strings.Split(*systems, ",")
	rep, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Print(rep.markdown)
	if rep.path != "" {
		fmt.Fprintln(os.Stderr, "bench: report saved as", rep.path)
	}
}

type runReport struct {
	markdown string
	path     string
	results  []*caseResult
}

// run measures every case on every system, then the memory figure and the
// micro-benchmarks, and writes the report.
func run(o options) (*runReport, error) {
	if o.log == nil {
		o.log = func(string, ...any) {}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("Postfix instances need root")
	}
	for _, p := range []string{SmtpSourcePath, "/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/master"} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s is missing (make test-deps installs Postfix)", p)
		}
	}
	for _, s := range o.systems {
		if s != "mailgate" && s != "postfix" {
			return nil, fmt.Errorf("unknown system %q (mailgate, postfix)", s)
		}
	}
	started := time.Now()
	tmp, err := os.MkdirTemp("", "bench-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	o.log("building mailgate")
	bin, err := buildMailgate(tmp)
	if err != nil {
		return nil, err
	}
	env := probeEnvironment()
	var results []*caseResult
	for _, c := range o.cases {
		for _, s := range o.systems {
			o.log("%s: %s", c, s)
			r := runCase(o, bin, s, c)
			o.log("%s: %s: %s", c, s, r.summary())
			results = append(results, r)
		}
	}
	var mem []memResult
	if o.memory {
		for _, s := range o.systems {
			o.log("memory: %s", s)
			mem = append(mem, measureMemory(bin, s, o.idleConn))
		}
	}
	var micro []microResult
	var microErr error
	if o.micro != "" {
		o.log("micro-benchmarks (-benchtime %s)", o.micro)
		micro, microErr = runMicro(o.micro)
	}
	rep := &runReport{results: results}
	rep.markdown = report(o, env, results, mem, micro, microErr, time.Since(started))
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return rep, err
		}
		name := fmt.Sprintf("%s-%s.md", started.Format("2006-01-02-150405"), o.mode)
		rep.path = filepath.Join(o.out, name)
		if err := os.WriteFile(rep.path, []byte(rep.markdown), 0o644); err != nil {
			return rep, err
		}
	}
	return rep, nil
}
