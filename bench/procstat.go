//go:build linux

package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat (100
// on every Linux architecture Go supports).
const clockTicks = 100

// procCPU returns a process's CPU seconds from /proc/PID/stat: its own
// user and system time, and with children also the time of its children
// that it has reaped (cutime, cstime).
func procCPU(pid int, children bool) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'. Field 3 (state) is f[0]; utime is field 14.
	j := bytes.LastIndexByte(b, ')')
	if j < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[j+1:]))
	if len(f) < 15 {
		return 0, false
	}
	var ticks int64
	n := 2 // utime, stime
	if children {
		n = 4 // and cutime, cstime
	}
	for k := 0; k < n; k++ {
		v, _ := strconv.ParseInt(f[11+k], 10, 64)
		ticks += v
	}
	return float64(ticks) / clockTicks, true
}

// procStatus returns fields of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(pid int) (rss, hwm int64, ok bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			rss = kbField(line)
		case strings.HasPrefix(line, "VmHWM:"):
			hwm = kbField(line)
		}
	}
	return rss, hwm, true
}

// procPss returns the proportional set size of a process (shared pages
// divided among the processes that map them), from smaps_rollup.
func procPss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Pss:") {
			return kbField(line)
		}
	}
	return 0
}

func kbField(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	v, _ := strconv.ParseInt(f[1], 10, 64)
	return v * 1024
}

// childrenOf lists the processes whose parent is ppid (scanning /proc:
// this kernel may lack /proc/PID/task/TID/children).
func childrenOf(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	want := "PPid:\t" + strconv.Itoa(ppid) + "\n"
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(want)) {
			out = append(out, pid)
		}
	}
	return out
}

// procSet names the processes of a system under test: root is the main
// process (mailgate, or Postfix's master); tree adds its children
// (Postfix's daemons, which the master starts and reaps).
type procSet struct {
	root int
	tree bool
}

func (p procSet) pids() []int {
	if !p.tree {
		return []int{p.root}
	}
	return append(childrenOf(p.root), p.root)
}

// cpu is the CPU seconds the system used so far: the root's own time and
// that of the children it has reaped, plus the live children's time.
// Children are read before the root, so a child reaped in between is
// counted twice rather than lost (a few milliseconds at most).
func (p procSet) cpu() float64 {
	var total float64
	if p.tree {
		for _, pid := range childrenOf(p.root) {
			c, _ := procCPU(pid, true)
			total += c
		}
	}
	c, _ := procCPU(p.root, p.tree)
	return total + c
}

// memory is a sample of the system's memory: the sum over its processes
// of VmRSS, of VmHWM (each process's own peak) and, when withPss, of Pss.
type memory struct {
	rss, hwm, pss int64
	procs         int
}

func (p procSet) memory(withPss bool) memory {
	var m memory
	for _, pid := range p.pids() {
		rss, hwm, ok := procStatus(pid)
		if !ok {
			continue
		}
		m.rss += rss
		m.hwm += hwm
		m.procs++
		if withPss {
			m.pss += procPss(pid)
		}
	}
	return m
}

// sampler follows a system's memory while it runs: the peak over samples
// of ΣVmHWM (every 200 ms) and of ΣPss (every second), and the largest
// number of processes seen.
type sampler struct {
	p    procSet
	stop chan struct{}
	done chan struct{}

	mu               sync.Mutex
	peakHWM, peakPss int64
	maxProcs         int64
}

func startSampler(p procSet) *sampler {
	s := &sampler{p: p, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *sampler) run() {
	defer close(s.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		s.sample(n%5 == 0)
		select {
		case <-s.stop:
			s.sample(true)
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) sample(withPss bool) {
	m := s.p.memory(withPss)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peakHWM = max(s.peakHWM, m.hwm)
	s.maxProcs = max(s.maxProcs, int64(m.procs))
	if withPss {
		s.peakPss = max(s.peakPss, m.pss)
	}
}

// finish stops sampling and returns the peaks.
func (s *sampler) finish() (hwm, pss int64, procs int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakHWM, s.peakPss, int(s.maxProcs)
}

// machineCPU is the busy CPU seconds of the whole machine since boot, from
// the first line of /proc/stat (everything but idle and iowait).
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return float64(busy) / clockTicks
}

// ownCPU is the CPU seconds of this process (the Go load client) and of
// its reaped children (smtp-source).
func ownCPU() float64 {
	var total float64
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		}
	}
	return total
}

// childNamed finds a live child of this process by its command name.
func childNamed(comm string) int {
	for _, pid := range childrenOf(os.Getpid()) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return pid
		}
	}
	return 0
}

// busyCores is how many cores the machine kept busy over d.
func busyCores(d time.Duration) float64 {
	c0, t0 := machineCPU(), time.Now()
	time.Sleep(d)
	return (machineCPU() - c0) / time.Since(t0).Seconds()
}

// waitQuiet waits, at most maxWait, until the machine is nearly idle (less
// than a quarter of a core busy over a second): other work on the machine
// would be measured as the systems' slowness. It returns the last level.
func waitQuiet(maxWait time.Duration, log func(string, ...any)) float64 {
	deadline := time.Now().Add(maxWait)
	for {
		busy := busyCores(time.Second)
		if busy < 0.25 || time.Now().After(deadline) {
			return busy
		}
		log("machine busy (%.2f cores used by other processes): waiting", busy)
		time.Sleep(4 * time.Second)
	}
}
