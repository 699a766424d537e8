package delivery

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/dnstest"
	"mailgate/postfixtest"
	"mailgate/queue"
)

// fixture holds the peers shared by the tests: one DNS server and Postfix
// sinks on distinct loopback addresses that share one port (the MX port
// of the deliverers under test).
type fixture struct {
	dns     *dnstest.Server
	port    int
	ca      *postfixtest.CA // issued the TLS sink's certificate
	otherCA *postfixtest.CA // trusted by nobody
	plain   *postfixtest.Instance
	tls     *postfixtest.Instance // rejects busy@tls.test (450) and sender busy@mailgate.test (451 at MAIL)
	broken  *postfixtest.Instance
	refuse  *postfixtest.Instance
}

// Loopback addresses of the shared peers.
const (
	plainIP  = "127.0.0.2" // mx.plain.test: no STARTTLS; rejects bad@, defers busy@
	tlsIP    = "127.0.0.3" // mx.tls.test: STARTTLS with a certificate of fx.ca
	brokenIP = "127.0.0.4" // mx.broken.test: STARTTLS whose handshake always fails
	refuseIP = "127.0.0.5" // mx.refuse.test: STARTTLS answered with 454
	deadIP   = "127.0.0.9" // nothing listens here
)

var (
	fxOnce sync.Once
	fx     *fixture
	fxErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fx != nil {
		fx.stop()
	}
	os.Exit(code)
}

// peers starts the shared peers on first use; a missing Postfix fails
// the test.
func peers(t testing.TB) *fixture {
	t.Helper()
	fxOnce.Do(func() { fx, fxErr = startFixture() })
	if fxErr != nil {
		t.Fatalf("test peers: %v", fxErr)
	}
	return fx
}

func startFixture() (*fixture, error) {
	f := &fixture{}
	var err error
	if f.dns, err = dnstest.Listen("127.0.0.1"); err != nil {
		return nil, err
	}
	if f.ca, err = postfixtest.NewCA("Mailgate Test CA"); err != nil {
		return nil, err
	}
	if f.otherCA, err = postfixtest.NewCA("Unrelated CA"); err != nil {
		return nil, err
	}
	if f.port, err = sharedPort(plainIP, tlsIP, brokenIP, refuseIP, "127.0.0.6", "127.0.0.7", "127.0.0.8"); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := f.ca.Issue("mx.tls.test")
	if err != nil {
		return nil, err
	}
	type start struct {
		dst  **postfixtest.Instance
		opts postfixtest.SinkOptions
	}
	starts := []start{
		{&f.plain, postfixtest.SinkOptions{Listen: plainIP, Hostname: "mx.plain.test",
			RejectRcpt: map[string]string{"bad@plain.test": "550 5.1.1 No such user", "busy@plain.test": "450 4.2.1 Mailbox busy"}}},
		{&f.tls, postfixtest.SinkOptions{Listen: tlsIP, Hostname: "mx.tls.test", TLSCertPEM: certPEM, TLSKeyPEM: keyPEM,
			RejectRcpt:   map[string]string{"busy@tls.test": "450 4.2.1 Mailbox busy"},
			RejectSender: map[string]string{"busy@mailgate.test": "451 4.3.0 Sender busy"}}},
		{&f.broken, postfixtest.SinkOptions{Listen: brokenIP, Hostname: "mx.broken.test", BrokenTLS: true}},
		{&f.refuse, postfixtest.SinkOptions{Listen: refuseIP, Hostname: "mx.refuse.test", RefuseTLS: true}},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(starts))
	for k, s := range starts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.opts.Port = f.port
			*s.dst, errs[k] = postfixtest.NewSink(s.opts)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			f.stop()
			return nil, err
		}
	}
	for name, ip := range map[string]string{"plain": plainIP, "tls": tlsIP, "broken": brokenIP, "refuse": refuseIP} {
		f.dns.AddMX(name+".test", 10, "mx."+name+".test")
		f.dns.AddA("mx."+name+".test", ip)
	}
	return f, nil
}

func (f *fixture) stop() {
	for _, i := range []*postfixtest.Instance{f.plain, f.tls, f.broken, f.refuse} {
		if i != nil {
			i.Stop()
		}
	}
	if f.dns != nil {
		f.dns.Close()
	}
}

// sharedPort finds a TCP port free on every one of ips.
func sharedPort(ips ...string) (int, error) {
	for range 50 {
		p, err := postfixtest.FreePort(ips[0])
		if err != nil {
			return 0, err
		}
		ok := true
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no port free on %v", ips)
}

// listen opens a TCP listener for a test server on ip, at a port from
// postfixtest.FreePort (another caller may take a port between the check
// and the bind: try again then). The listener is closed when the test
// ends.
func listen(t testing.TB, ip string) net.Listener {
	t.Helper()
	var lastErr error
	for range 20 {
		p, err := postfixtest.FreePort(ip)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err == nil {
			t.Cleanup(func() { ln.Close() })
			return ln
		}
		lastErr = err
	}
	t.Fatalf("no free port on %s: %v", ip, lastErr)
	return nil
}

// proxy is a TCP proxy in front of a peer that counts the connections
// it accepts.
type proxy struct {
	port int
	mu   sync.Mutex
	n    int
}

// countingProxy forwards connections on a port of ip to target until the
// test ends. The first busy connections get a 421 greeting instead.
func countingProxy(t testing.TB, ip, target string, busy int) *proxy {
	t.Helper()
	ln := listen(t, ip)
	p := &proxy{port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.n++
			n := p.n
			p.mu.Unlock()
			if n <= busy {
				c.Write([]byte("421 4.3.2 Service busy, try later\r\n"))
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return p
}

func (p *proxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// logLines collects a deliverer's log.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *logLines) last() string {
	all := l.all()
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

func (l *logLines) reset() {
	l.mu.Lock()
	l.lines = nil
	l.mu.Unlock()
}

// newDeliverer returns a deliverer for cfg that resolves with the test DNS
// server, trusts roots (nil: the test CA) and delivers MX mail to the
// shared port.
func newDeliverer(t testing.TB, f *fixture, cfg *config.Config, roots *x509.CertPool, mod ...func(*Options)) (*Deliverer, *logLines) {
	t.Helper()
	if roots == nil {
		roots = f.ca.Pool()
	}
	logs := &logLines{}
	o := Options{
		Config:         func() *config.Config { return cfg },
		Resolver:       NewResolver([]string{f.dns.Addr()}),
		Hostname:       func() string { return "mailgate.test" },
		Roots:          func() *x509.CertPool { return roots },
		Log:            logs.add,
		MXPort:         f.port,
		DialTimeout:    2 * time.Second,
		CommandTimeout: 5 * time.Second,
	}
	for _, m := range mod {
		m(&o)
	}
	d := New(o)
	t.Cleanup(d.Close)
	return d, logs
}

// newJob is a message with a unique token in its subject.
func newJob(token, from, domain string, rcpts ...string) *queue.Job {
	body := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@mailgate.test>\r\n\r\nTest message %s.\r\n.leading dot\r\n",
		from, rcpts[0], token, token, token)
	return &queue.Job{MsgID: token, From: from, Domain: domain, Rcpts: rcpts, Size: int64(len(body)), Attempt: 1,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
}

func deliver(t *testing.T, d *Deliverer, job *queue.Job) []queue.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := d.Deliver(ctx, job)
	if len(res) != len(job.Rcpts) {
		t.Fatalf("%d results for %d recipients", len(res), len(job.Rcpts))
	}
	for i, r := range res {
		if r.Rcpt != job.Rcpts[i] {
			t.Fatalf("result %d is for %q, want %q", i, r.Rcpt, job.Rcpts[i])
		}
	}
	return res
}

// arrivedTLS waits for the message of a "queued as" reply at sink and
// reports whether its session used TLS.
func arrivedTLS(t *testing.T, sink *postfixtest.Instance, r queue.Result, token string) bool {
	t.Helper()
	qid := postfixtest.QueueID(r.Text)
	if qid == "" {
		t.Fatalf("no queue id in %q", r.Text)
	}
	if _, err := sink.WaitMessage(token, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s, err := sink.WaitSessionOf(qid, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s.TLS != ""
}

// endedSessionOf waits until sink logs the end of the session that
// received queue id qid, and returns it (with its command counts).
func endedSessionOf(t *testing.T, sink *postfixtest.Instance, qid string) postfixtest.Session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, ok := sink.SessionOf(qid); ok && s.Stats != "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session of %s did not end within 10s", qid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusName(s queue.Status) string {
	switch s {
	case queue.Delivered:
		return "Delivered"
	case queue.PermFail:
		return "PermFail"
	}
	return "TempFail"
}

func fmtResult(r queue.Result) string {
	return fmt.Sprintf("%s %d %s %q host=%s tls=%q flag=%v classifier=%q", statusName(r.Status), r.Code, r.Enhanced, r.Text, r.Host, r.TLS, r.TLSHandshakeFailed, r.Classifier)
}
