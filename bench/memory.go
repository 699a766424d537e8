//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"time"
)

// memResult is the memory of a system idle and with idle SMTP connections
// open (connected, banner received, nothing sent).
type memResult struct {
	system           string
	idleRSS, idlePss int64
	idleProcs        int
	conns            int // connections that got their banner
	wanted           int
	connRSS, connPss int64
	connProcs        int
	note             string
	err              string
}

// postfixSmtpdLimit is Postfix's default_process_limit, which bounds the
// smtpd processes, one per connection.
const postfixSmtpdLimit = 100

// measureMemory starts the system on a plain sink, waits for it to settle,
// samples its memory, opens idle SMTP connections, waits for each banner
// and samples again.
func measureMemory(bin, name string, conns int) memResult {
	r := memResult{system: name, wanted: conns}
	sk, err := startSink(false, 0)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer sk.Stop()
	var sys system
	if name == "mailgate" {
		sys, err = startMailgate(bin, sk.Addr)
	} else {
		sys, err = startPostfix(sk.Addr)
		// One smtpd process per connection, at most default_process_limit:
		// more connections wait in the listen queue without a banner.
		r.wanted = min(conns, postfixSmtpdLimit)
		r.note = fmt.Sprintf("%d connections: one smtpd process each, and default_process_limit is %d; "+
			"more would wait in the listen queue without a banner, so 1,000 is not comparable", r.wanted, postfixSmtpdLimit)
	}
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer sys.Stop()
	procs := sys.Procs()
	time.Sleep(3 * time.Second)
	idle := procs.memory(true)
	r.idleRSS, r.idlePss, r.idleProcs = idle.rss, idle.pss, idle.procs

	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := 0; i < r.wanted; i++ {
		c, err := net.DialTimeout("tcp", sys.Addr(), 10*time.Second)
		if err != nil {
			r.err = fmt.Sprintf("connection %d: %v", i+1, err)
			break
		}
		open = append(open, c)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "220") {
			r.err = fmt.Sprintf("connection %d: no banner: %q %v", i+1, line, err)
			break
		}
		r.conns++
	}
	time.Sleep(2 * time.Second)
	busy := procs.memory(true)
	r.connRSS, r.connPss, r.connProcs = busy.rss, busy.pss, busy.procs
	return r
}
