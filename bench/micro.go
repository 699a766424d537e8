//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// microPackages hold the Go benchmarks of the hot paths: receive policy
// evaluation, queue enqueue and dequeue, Received header and DATA copy.
var microPackages = []string{"mailgate/policy", "mailgate/queue", "mailgate/smtpd"}

// microResult is one line of go test -bench output.
type microResult struct {
	pkg, name  string
	iterations string
	metrics    [][2]string // value, unit
}

// runMicro runs the packages' benchmarks, one package at a time.
func runMicro(benchtime string) ([]microResult, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", benchtime, "-count", "1"}, microPackages...)
	cmd := exec.Command("go", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return parseBench(out), fmt.Errorf("go test -bench: %v\n%s", err, out)
	}
	return parseBench(out), nil
}

func parseBench(out []byte) []microResult {
	var res []microResult
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if j := strings.LastIndexByte(name, '-'); j > 0 {
			name = name[:j] // the GOMAXPROCS suffix
		}
		m := microResult{pkg: pkg, name: name, iterations: f[1]}
		for k := 2; k+1 < len(f); k += 2 {
			m.metrics = append(m.metrics, [2]string{f[k], f[k+1]})
		}
		res = append(res, m)
	}
	return res
}

func (m microResult) metric(unit string) string {
	for _, v := range m.metrics {
		if v[1] == unit {
			return v[0]
		}
	}
	return ""
}

// environment describes the machine for the report.
type environment struct {
	cpu, kernel, goVersion, postfix string
	cores                           int
	fsyncP50, fsyncP99              time.Duration
	fsyncErr                        string
}

func probeEnvironment() environment {
	e := environment{cores: runtime.NumCPU(), goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				e.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("/usr/sbin/postconf", "-d", "-h", "mail_version").Output(); err == nil {
		e.postfix = strings.TrimSpace(string(out))
	}
	e.fsyncP50, e.fsyncP99, e.fsyncErr = fsyncLatency()
	return e
}

// fsyncLatency times appending 4 KiB and fdatasync-ing it, 200 times, in
// the temporary directory where both systems keep their queues.
func fsyncLatency() (p50, p99 time.Duration, errText string) {
	dir, err := os.MkdirTemp("", "bench-fsync-")
	if err != nil {
		return 0, 0, err.Error()
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		return 0, 0, err.Error()
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var lat []time.Duration
	for i := 0; i < 200; i++ {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err.Error()
		}
		if err := fdatasync(f); err != nil {
			return 0, 0, err.Error()
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return percentile(lat, 0.5), percentile(lat, 0.99), ""
}

func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
