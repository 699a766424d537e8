//go:build linux

package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SmtpSourcePath is Postfix's load generator (Debian layout).
var SmtpSourcePath = "/usr/sbin/smtp-source"

// loadResult is what a load run saw.
type loadResult struct {
	tool     string
	accepted int             // messages that got their 250
	failed   int             // messages refused or lost with their session
	firstErr string          // the first failure, for the report
	lat      []time.Duration // end of DATA to 250, per message (Go client)
	start    time.Time       // first connection
	sent     time.Time       // last 250 received
}

// message builds a message of about size bytes of body (like smtp-source
// -l, headers not counted), CRLF line ends, no line starting with a dot.
func message(size int) []byte {
	var b strings.Builder
	b.WriteString("From: <" + benchFrom + ">\r\nTo: <" + benchRcpt + ">\r\nSubject: bench\r\n")
	b.WriteString("Message-ID: <bench@client.bench>\r\n\r\n")
	line := "La la la, the quick brown fox jumps over the lazy dog, 0123456789 la la la.\r\n"
	for n := 0; n < size; n += len(line) {
		b.WriteString(line)
	}
	return []byte(b.String())
}

// goLoad sends up to total messages over sessions concurrent SMTP
// sessions, each sending message after message on one connection (like
// smtp-source -d -s sessions), with STARTTLS when useTLS. It stops taking
// new messages after maxSend. Commands are not pipelined (neither does
// smtp-source). For every message it records the time from the end of
// DATA (the final "." written) to the 250 reply.
func goLoad(addr string, sessions, total, size int, useTLS bool, maxSend time.Duration) loadResult {
	res := loadResult{tool: "Go client", start: time.Now()}
	body := message(size)
	deadline := res.start.Add(maxSend)
	var (
		next   atomic.Int64
		mu     sync.Mutex
		wg     sync.WaitGroup
		failed atomic.Int64
	)
	take := func() bool {
		if time.Now().After(deadline) {
			return false
		}
		return next.Add(1) <= int64(total)
	}
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		if res.firstErr == "" {
			res.firstErr = err.Error()
		}
		mu.Unlock()
	}
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			defer func() {
				mu.Lock()
				res.lat = append(res.lat, lat...)
				mu.Unlock()
			}()
			for attempts := 0; attempts < 5; attempts++ {
				c, err := dialSMTP(addr, useTLS)
				if err != nil {
					fail(err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for {
					if !take() {
						c.quit()
						return
					}
					d, err := c.send(body)
					if err != nil {
						fail(err)
						c.close()
						break // reconnect
					}
					lat = append(lat, d)
				}
			}
		}()
	}
	wg.Wait()
	res.sent = time.Now()
	res.accepted = len(res.lat)
	res.failed = int(failed.Load())
	return res
}

type smtpConn struct {
	nc net.Conn
	r  *textproto.Reader
	w  *bufio.Writer
}

func dialSMTP(addr string, useTLS bool) (*smtpConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &smtpConn{}
	c.attach(nc)
	fail := func(err error) (*smtpConn, error) { nc.Close(); return nil, err }
	if _, _, err := c.r.ReadResponse(220); err != nil {
		return fail(fmt.Errorf("banner: %w", err))
	}
	if err := c.cmd(250, "EHLO "+benchHelo); err != nil {
		return fail(err)
	}
	if !useTLS {
		return c, nil
	}
	if err := c.cmd(220, "STARTTLS"); err != nil {
		return fail(err)
	}
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, ServerName: "relay.test"})
	if err := tc.Handshake(); err != nil {
		return fail(fmt.Errorf("TLS handshake: %w", err))
	}
	c.attach(tc)
	if err := c.cmd(250, "EHLO "+benchHelo); err != nil {
		return fail(err)
	}
	return c, nil
}

func (c *smtpConn) attach(nc net.Conn) {
	c.nc = nc
	c.r = textproto.NewReader(bufio.NewReader(nc))
	c.w = bufio.NewWriterSize(nc, 32<<10)
}

func (c *smtpConn) cmd(code int, line string) error {
	c.nc.SetDeadline(time.Now().Add(60 * time.Second))
	c.w.WriteString(line + "\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	if _, msg, err := c.r.ReadResponse(code); err != nil {
		return fmt.Errorf("%s: %v %s", strings.Fields(line)[0], err, msg)
	}
	return nil
}

// send runs one mail transaction; it returns the time from the end of
// DATA to the 250.
func (c *smtpConn) send(body []byte) (time.Duration, error) {
	if err := c.cmd(250, "MAIL FROM:<"+benchFrom+">"); err != nil {
		return 0, err
	}
	if err := c.cmd(250, "RCPT TO:<"+benchRcpt+">"); err != nil {
		return 0, err
	}
	if err := c.cmd(354, "DATA"); err != nil {
		return 0, err
	}
	c.w.Write(body)
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, msg, err := c.r.ReadResponse(250); err != nil {
		return 0, fmt.Errorf("end of DATA: %v %s", err, msg)
	}
	return time.Since(t0), nil
}

func (c *smtpConn) quit() {
	c.cmd(221, "QUIT")
	c.close()
}

func (c *smtpConn) close() { c.nc.Close() }

// smtpSource runs Postfix's smtp-source: total messages over sessions
// parallel sessions, each reusing its connection (-d), size bytes of
// payload each (-l).
func smtpSource(addr string, sessions, total, size int) loadResult {
	res := loadResult{tool: "smtp-source", start: time.Now()}
	cmd := exec.Command(SmtpSourcePath, "-d", "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(total), "-l", strconv.Itoa(size),
		"-M", benchHelo, "-f", benchFrom, "-t", benchRcpt, addr)
	out, err := cmd.CombinedOutput()
	res.sent = time.Now()
	if err != nil {
		res.failed = total
		res.firstErr = fmt.Sprintf("smtp-source: %v: %s", err, strings.TrimSpace(string(out)))
		return res
	}
	res.accepted = total
	return res
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p+0.999999) - 1
	k = max(0, min(k, len(sorted)-1))
	return sorted[k]
}

func latencies(lat []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(lat)
	slices.Sort(s)
	return percentile(s, 0.50), percentile(s, 0.99)
}
