package delivery

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/postfixtest"
	"mailgate/queue"
)

// Delivery of 1 KiB messages one after the other over a reused connection
// to the sink that make bench uses: smtp-sink, behind a Postfix smtpd with
// STARTTLS as a before-queue proxy for the TLS case. ns/op is the time per
// message of one delivery worker, the sink's turns included.
func BenchmarkDeliverPlain1KiB(b *testing.B) { benchDeliver(b, false) }
func BenchmarkDeliverTLS1KiB(b *testing.B)   { benchDeliver(b, true) }

func benchDeliver(b *testing.B, useTLS bool) {
	f := peers(b)
	null, err := postfixtest.NewSmtpSink("127.0.0.1", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Stop()
	addr := null.Addr
	if useTLS {
		certPEM, keyPEM, err := postfixtest.SelfSigned("sink.bench", "127.0.0.1")
		if err != nil {
			b.Fatal(err)
		}
		front, err := postfixtest.NewSink(postfixtest.SinkOptions{Hostname: "sink.bench", TLSCertPEM: certPEM, TLSKeyPEM: keyPEM,
			Extra: map[string]string{"smtpd_proxy_filter": null.Addr}})
		if err != nil {
			b.Fatal(err)
		}
		defer front.Stop()
		addr = front.Addr
	}
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	cfg := config.New()
	cfg.System.Mailserver.RelayServerStatus = true
	cfg.Mailsetting.RelayServer = []config.RelayServer{{Name: "sink", Server: host, Port: port}}
	d, _ := newDeliverer(b, f, cfg, nil)
	line := "La la la, the quick brown fox jumps over the lazy dog, 0123456789 la la la.\r\n"
	body := "From: <s@mailgate.test>\r\nTo: <u@far-away.example>\r\nSubject: bench\r\n\r\n" + strings.Repeat(line, 1024/len(line)+1)
	job := &queue.Job{MsgID: "bench", From: "s@mailgate.test", Domain: "far-away.example", Rcpts: []string{"u@far-away.example"},
		Size: int64(len(body)), Attempt: 1,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	ctx := context.Background()
	if r := d.Deliver(ctx, job)[0]; r.Status != queue.Delivered || (r.TLS != "") != useTLS {
		b.Fatalf("%+v", r)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	self0, sink0 := selfCPU(), postfixCPU()
	for b.Loop() {
		if r := d.Deliver(ctx, job)[0]; r.Status != queue.Delivered {
			b.Fatalf("%+v", r)
		}
	}
	self, sink := selfCPU()-self0, cpuSince(sink0, postfixCPU())
	b.ReportMetric(float64(self.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(sink.Microseconds())/float64(b.N), "sink-cpu-µs/op")
}

// selfCPU is the CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postfixCPU is the CPU time of each running Postfix process and
// smtp-sink (the sinks' side of a benchmark), by process ID.
func postfixCPU() map[string]time.Duration {
	names := map[string]bool{"smtpd": true, "smtp-sink": true, "master": true, "tlsmgr": true, "anvil": true, "proxymap": true}
	dirs, _ := os.ReadDir("/proc")
	out := map[string]time.Duration{}
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i || !names[string(b[i+1:j])] {
			continue
		}
		f := strings.Fields(string(b[j+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		out[d.Name()] = time.Duration(u+s) * time.Second / 100 // USER_HZ
	}
	return out
}

// cpuSince is the CPU time the processes of now used since before (those
// that ran throughout, or started since).
func cpuSince(before, now map[string]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range now {
		d += t - before[pid]
	}
	return d
}
