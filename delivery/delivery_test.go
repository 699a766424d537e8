package delivery

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailgate/config"
	"mailgate/postfixtest"
	"mailgate/queue"
)

func want(t *testing.T, r queue.Result, status queue.Status, code int, enh, text string) {
	t.Helper()
	if r.Status != status || r.Code != code || (enh != "" && r.Enhanced != enh) || !strings.Contains(r.Text, text) {
		t.Fatalf("got %s\nwant %s %d %s %q", fmtResult(r), statusName(status), code, enh, text)
	}
}

func TestMXRouting(t *testing.T) {
	f := peers(t)
	f.dns.AddMX("prio.test", 20, "mx.tls.test")
	f.dns.AddMX("prio.test", 10, "mx.plain.test")
	f.dns.AddMX("mxfallback.test", 10, "mx.dead.test")
	f.dns.AddMX("mxfallback.test", 20, "mx.plain.test")
	f.dns.AddA("mx.dead.test", deadIP)
	f.dns.AddA("implicit.test", plainIP)
	f.dns.AddNullMX("nullmx.test")
	f.dns.SetServFail("servfail.test")
	f.dns.AddTXT("nodata.test", "v=spf1 -all")
	f.dns.AddMX("ghostmx.test", 10, "mx.ghost.test") // the MX host does not exist
	d, logs := newDeliverer(t, f, config.New(), nil)
	from := "sender@mailgate.test"

	t.Run("priority", func(t *testing.T) {
		r := deliver(t, d, newJob("mx-priority", from, "prio.test", "user@prio.test"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
		if !strings.HasPrefix(r.Host, "mx.plain.test[127.0.0.2]:") {
			t.Fatalf("delivered to %s, want the preference 10 MX", r.Host)
		}
		arrivedTLS(t, f.plain, r, "mx-priority")
	})
	t.Run("next MX", func(t *testing.T) {
		logs.reset()
		r := deliver(t, d, newJob("mx-fallback", from, "mxfallback.test", "user@mxfallback.test"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
		lines := logs.all()
		if len(lines) != 2 || !strings.Contains(lines[0], "relay=mx.dead.test[127.0.0.9]:") ||
			!strings.Contains(lines[0], "status=deferred (451 4.4.1 connect to mx.dead.test[127.0.0.9]") ||
			!strings.Contains(lines[0], "connection refused") || !strings.Contains(lines[1], "relay=mx.plain.test[127.0.0.2]") {
			t.Fatalf("log: %q", lines)
		}
		arrivedTLS(t, f.plain, r, "mx-fallback")
	})
	t.Run("implicit MX", func(t *testing.T) {
		r := deliver(t, d, newJob("mx-implicit", from, "implicit.test", "user@implicit.test"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
		if !strings.HasPrefix(r.Host, "implicit.test[127.0.0.2]:") {
			t.Fatalf("host %s", r.Host)
		}
	})
	t.Run("address literal", func(t *testing.T) {
		r := deliver(t, d, newJob("mx-literal", from, "[127.0.0.2]", "user@[127.0.0.2]"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
	})
	t.Run("null MX", func(t *testing.T) {
		logs.reset()
		r := deliver(t, d, newJob("mx-null", from, "nullmx.test", "a@nullmx.test", "b@nullmx.test"))
		want(t, r[0], queue.PermFail, 550, "5.1.10", "null MX")
		want(t, r[1], queue.PermFail, 550, "5.1.10", "null MX")
		if !strings.Contains(logs.last(), "relay=none, status=bounced (550 5.1.10") {
			t.Fatalf("log %q", logs.last())
		}
	})
	t.Run("NXDOMAIN", func(t *testing.T) {
		want(t, deliver(t, d, newJob("mx-nx", from, "nonexistent.test", "a@nonexistent.test"))[0], queue.PermFail, 550, "5.1.2", "not found")
	})
	t.Run("SERVFAIL", func(t *testing.T) {
		want(t, deliver(t, d, newJob("mx-servfail", from, "servfail.test", "a@servfail.test"))[0], queue.TempFail, 451, "4.4.3", "MX lookup")
	})
	t.Run("no MX and no address", func(t *testing.T) {
		want(t, deliver(t, d, newJob("mx-nodata", from, "nodata.test", "a@nodata.test"))[0], queue.PermFail, 550, "5.4.4", "not found")
	})
	t.Run("MX host not found", func(t *testing.T) {
		want(t, deliver(t, d, newJob("mx-ghost", from, "ghostmx.test", "a@ghostmx.test"))[0], queue.PermFail, 550, "5.4.4", "mx.ghost.test")
	})
}

func TestDNSTimeoutDefers(t *testing.T) {
	f := peers(t)
	f.dns.SetDrop("slow.test")
	d, _ := newDeliverer(t, f, config.New(), nil, func(o *Options) {
		o.Resolver = NewResolver([]string{f.dns.Addr()})
		o.Resolver.Timeout = 100 * time.Millisecond
	})
	want(t, deliver(t, d, newJob("dns-timeout", "s@mailgate.test", "slow.test", "a@slow.test"))[0], queue.TempFail, 451, "4.4.3", "timeout")
}

func TestPerRecipientReplies(t *testing.T) {
	f := peers(t)
	d, logs := newDeliverer(t, f, config.New(), nil)
	res := deliver(t, d, newJob("per-rcpt", "sender@mailgate.test", "plain.test", "good@plain.test", "bad@plain.test", "busy@plain.test", "also@plain.test"))
	want(t, res[0], queue.Delivered, 250, "2.0.0", "queued as")
	want(t, res[1], queue.PermFail, 550, "5.1.1", "No such user")
	want(t, res[2], queue.TempFail, 450, "4.2.1", "Mailbox busy")
	want(t, res[3], queue.Delivered, 250, "2.0.0", "queued as")
	line := logs.last()
	for _, s := range []string{"status=sent (250 2.0.0 Ok: queued as", "to=<good@plain.test>,<also@plain.test>",
		"bounced (550 5.1.1 <bad@plain.test>: Recipient address rejected: No such user) to=<bad@plain.test>", "deferred (450 4.2.1"} {
		if !strings.Contains(line, s) {
			t.Errorf("log line %q lacks %q", line, s)
		}
	}
	msg := arrivedMessage(t, f.plain, "per-rcpt")
	// The first recipient's copy may arrive before the second is
	// delivered: Postfix logs "removed" when it is done with the message.
	qid := postfixtest.QueueID(res[0].Text)
	if err := f.plain.WaitLog(qid+": removed", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Count(f.plain.Log(), qid+": to=<") != 2 {
		t.Errorf("want exactly the two accepted recipients delivered:\n%s", f.plain.Log())
	}
	if !strings.Contains(msg, "\n.leading dot") || strings.Contains(msg, "..leading dot") {
		t.Errorf("dot-stuffed line lost: %q", msg)
	}
}

func arrivedMessage(t *testing.T, sink *postfixtest.Instance, token string) string {
	t.Helper()
	m, err := sink.WaitMessage(token, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStartTLSHostLists(t *testing.T) {
	f := peers(t)
	for _, c := range []struct {
		name             string
		include, exclude []string
		tls              bool
	}{
		{"exclude host", nil, []string{"[mx.tls.test]"}, false},
		{"exclude domain", nil, []string{"tls.test"}, false},
		{"exclude other", nil, []string{".other.test"}, true},
		{"include other", []string{"other.test"}, nil, false},
		{"include subdomain", []string{".tls.test"}, nil, true},
		{"include wins", []string{"[mx.tls.test]"}, []string{"tls.test"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.New()
			cfg.Mailsetting.StartTLS.IncludeHosts, cfg.Mailsetting.StartTLS.ExcludeHosts = c.include, c.exclude
			d, logs := newDeliverer(t, f, cfg, nil)
			token := "lists-" + strings.ReplaceAll(c.name, " ", "-")
			r := deliver(t, d, newJob(token, "s@mailgate.test", "tls.test", "u@tls.test"))[0]
			want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
			if got := arrivedTLS(t, f.tls, r, token); got != c.tls {
				t.Fatalf("over TLS = %v; log %s", got, logs.last())
			}
			if !c.tls && !strings.Contains(logs.last(), "tls=none (reason: excluded by policy)") {
				t.Fatalf("log %s", logs.last())
			}
		})
	}
}

func TestProtocolPinning(t *testing.T) {
	f := peers(t)
	cfg := config.New()
	cfg.Mailsetting.StartTLS.HostProtocol = []config.HostProtocol{{Host: "[mx.tls.test]", SSLVersions: []string{"tls1_2"}}}
	d, logs := newDeliverer(t, f, cfg, nil)
	r := deliver(t, d, newJob("pinned-12", "s@mailgate.test", "tls.test", "u@tls.test"))[0]
	want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
	if !strings.HasPrefix(r.TLS, "TLSv1.2 ") || !strings.Contains(logs.last(), "version=TLSv1.2") {
		t.Fatalf("%s; %s", fmtResult(r), logs.last())
	}
	s, err := f.tls.WaitSessionOf(postfixtest.QueueID(r.Text), 5*time.Second)
	if err != nil || !strings.HasPrefix(s.TLS, "TLSv1.2 ") {
		t.Fatalf("sink session %+v %v", s, err)
	}
	// Other destinations keep TLS 1.3.
	cfg.Mailsetting.StartTLS.HostProtocol[0].Host = "[mx.other.test]"
	d2, _ := newDeliverer(t, f, cfg, nil)
	r = deliver(t, d2, newJob("pinned-none", "s@mailgate.test", "tls.test", "u@tls.test"))[0]
	if !strings.HasPrefix(r.TLS, "TLSv1.3 ") {
		t.Fatalf("%s", fmtResult(r))
	}
}

func TestHeloName(t *testing.T) {
	f := peers(t)
	cfg := config.New()
	cfg.Mailsetting.StartTLS.HeloName = "out.mailgate.test"
	d, _ := newDeliverer(t, f, cfg, nil)
	r := deliver(t, d, newJob("helo-name", "s@mailgate.test", "tls.test", "u@tls.test"))[0]
	want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
	if msg := arrivedMessage(t, f.tls, "helo-name"); !strings.Contains(msg, "from out.mailgate.test") {
		t.Fatalf("EHLO name not in Received: %q", msg)
	}
	d2, _ := newDeliverer(t, f, config.New(), nil)
	deliver(t, d2, newJob("helo-default", "s@mailgate.test", "tls.test", "u@tls.test"))
	if msg := arrivedMessage(t, f.tls, "helo-default"); !strings.Contains(msg, "from mailgate.test") {
		t.Fatalf("host name not in Received: %q", msg)
	}
}

func TestConnectionReuse(t *testing.T) {
	f := peers(t)
	for _, c := range []struct {
		domain string
		sink   *postfixtest.Instance
		tls    bool
	}{{"plain.test", f.plain, false}, {"tls.test", f.tls, true}} {
		t.Run(c.domain, func(t *testing.T) {
			d, logs := newDeliverer(t, f, config.New(), nil)
			var sessions []postfixtest.Session
			for n := 1; n <= 3; n++ {
				token := "reuse-" + c.domain + "-" + strconv.Itoa(n)
				r := deliver(t, d, newJob(token, "s@mailgate.test", c.domain, "u@"+c.domain))[0]
				want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
				if c.tls != (r.TLS != "") || c.tls != strings.Contains(logs.last(), "STARTTLS=client") {
					t.Fatalf("TLS %q; %s", r.TLS, logs.last())
				}
				s, err := c.sink.WaitSessionOf(postfixtest.QueueID(r.Text), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				sessions = append(sessions, s)
			}
			for _, s := range sessions[1:] {
				if s.Client != sessions[0].Client || s.PID != sessions[0].PID || (s.TLS != "") != c.tls {
					t.Fatalf("jobs went over different connections: %+v", sessions)
				}
			}
			d.Close()
			if err := c.sink.WaitLog("disconnect from "+sessions[0].Client+" ", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			for _, s := range c.sink.Sessions() {
				if s.Client == sessions[0].Client && (!strings.Contains(s.Stats, "mail=3 rcpt=3 data=3 rset=2 quit=1") || len(s.QueueIDs) != 3) {
					t.Fatalf("session %+v", s)
				}
			}
		})
	}
}

func TestNoPipelining(t *testing.T) {
	f := peers(t)
	sink, err := postfixtest.NewSmtpSink("127.0.0.6", f.port, "-p")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Stop()
	f.dns.AddMX("nopipe.test", 10, "mx.nopipe.test")
	f.dns.AddA("mx.nopipe.test", "127.0.0.6")
	d, logs := newDeliverer(t, f, config.New(), nil)
	res := deliver(t, d, newJob("nopipe", "s@mailgate.test", "nopipe.test", "a@nopipe.test", "b@nopipe.test"))
	for _, r := range res {
		want(t, r, queue.Delivered, 250, "", "")
	}
	if err := sink.WaitCount(1, 5*time.Second); err != nil {
		t.Fatal(err, logs.all())
	}
}

// A go-smtp server standing in for a relay host with SMTP AUTH (Postfix
// needs Dovecot or Cyrus SASL for the server side).
type authServer struct {
	addr   string
	user   string
	pass   string
	mu     sync.Mutex
	got    []gotMessage
	conns  []net.Conn // accepted connections
	auths  int        // AUTH commands received
	server *smtp.Server
}

// trackListener records the connections it accepts.
type trackListener struct {
	net.Listener
	a *authServer
}

func (l trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.a.mu.Lock()
		l.a.conns = append(l.a.conns, c)
		l.a.mu.Unlock()
	}
	return c, err
}

// dropConnections closes every connection accepted so far, under the

// startSMTPSServer starts an implicit-TLS test server with a certificate
// of the fixture's CA for 127.0.0.1, and returns it with its port.
func startSMTPSServer(t *testing.T, f *fixture) (*authServer, int) {
	t.Helper()
	certPEM, keyPEM, err := f.ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := startAuthServer(t, "", "", &tls.Config{Certificates: []tls.Certificate{cert}})
	_, portStr, _ := net.SplitHostPort(srv.addr)
	port, _ := strconv.Atoi(portStr)
	return srv, port
}

// SMTP server's feet; it returns how many there were.
func (a *authServer) dropConnections() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
	return len(a.conns)
}

func (a *authServer) authAttempts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.auths
}

func (a *authServer) accepted() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

type gotMessage struct {
	authUser, from string
	rcpts          []string
	data           string
	tls            bool
}

type authSession struct {
	srv  *authServer
	conn *smtp.Conn
	user string
	msg  gotMessage
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	s.srv.mu.Lock()
	s.srv.auths++
	s.srv.mu.Unlock()
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.srv.user || password != s.srv.pass {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *authSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.srv.user != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.msg = gotMessage{authUser: s.user, from: from}
	return nil
}

func (s *authSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.rcpts = append(s.msg.rcpts, to)
	return nil
}

func (s *authSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.data = string(b)
	_, s.msg.tls = s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.got = append(s.srv.got, s.msg)
	s.srv.mu.Unlock()
	return nil
}

func (s *authSession) Reset()        { s.msg = gotMessage{} }
func (s *authSession) Logout() error { return nil }

func startAuthServer(t *testing.T, user, pass string, tlsConf *tls.Config, mod ...func(*smtp.Server)) *authServer {
	t.Helper()
	ln := listen(t, "127.0.0.1")
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	return serveAuth(t, ln, user, pass, mod...)
}

// serveAuth runs an authServer on ln until the test ends.
func serveAuth(t *testing.T, ln net.Listener, user, pass string, mod ...func(*smtp.Server)) *authServer {
	t.Helper()
	a := &authServer{user: user, pass: pass}
	a.server = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &authSession{srv: a, conn: c}, nil
	}))
	a.server.Domain = "relay.test"
	a.server.AllowInsecureAuth = true
	a.server.ReadTimeout, a.server.WriteTimeout = 10*time.Second, 10*time.Second
	for _, m := range mod {
		m(a.server)
	}
	a.addr = ln.Addr().String()
	go a.server.Serve(trackListener{ln, a})
	t.Cleanup(func() { a.server.Close() })
	return a
}

func (a *authServer) messages() []gotMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]gotMessage(nil), a.got...)
}

func testSeal(s string) string { return "sealed:" + hex.EncodeToString([]byte(s)) }

func testUnseal(tok string) ([]byte, error) {
	if !strings.HasPrefix(tok, "sealed:") {
		return nil, errors.New("not sealed")
	}
	return hex.DecodeString(strings.TrimPrefix(tok, "sealed:"))
}

// serverCert is a certificate of the test CA for names.
func serverCert(t *testing.T, f *fixture, names ...string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := f.ca.Issue(names...)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestRelayServerAuth: credentials go to a relay server over TLS
// (STARTTLS or SMTPS) only. Without TLS, whether the relay does not offer
// STARTTLS or a fallback mode continues in plain text, the delivery is
// deferred and the relay never sees an AUTH command (as Postfix's
// smtp_sasl_security_options = noplaintext).
func TestRelayServerAuth(t *testing.T) {
	f := peers(t)
	cert := serverCert(t, f, "127.0.0.1")
	withTLS := func(s *smtp.Server) { s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} }
	brokenTLS := func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("no certificate here")
		}}
	}
	const user, pass = "relayuser", "s3cret pass"
	starttls := startAuthServer(t, user, pass, nil, withTLS)
	smtps := startAuthServer(t, user, pass, &tls.Config{Certificates: []tls.Certificate{cert}})
	plain := startAuthServer(t, user, pass, nil) // no STARTTLS
	broken := startAuthServer(t, user, pass, nil, brokenTLS)
	unseal := func(o *Options) { o.Unseal = testUnseal }
	deadLog := "relay=" + deadIP + "[" + deadIP + "]:" + strconv.Itoa(f.port) + ", status=deferred (451 4.4.1 connect to"

	for _, c := range []struct {
		name        string
		srv         *authServer
		smtps       bool
		pass        string
		fallback    string
		preferPlain bool
		status      queue.Status
		text        string
		log         string // in the log line of the relay's attempt (PORT: its port)
		authTries   int    // AUTH commands the relay receives
	}{
		{"starttls", starttls, false, pass, "", false, queue.Delivered, "",
			"STARTTLS=client, relay=127.0.0.1[127.0.0.1]:PORT, version=TLSv1.3, verify=OK", 1},
		{"smtps", smtps, true, pass, "", false, queue.Delivered, "",
			"SMTPS=client, relay=127.0.0.1[127.0.0.1]:PORT, version=TLSv1.3, verify=OK", 1},
		{"wrong password", starttls, false, "wrong", "", false, queue.TempFail, "535",
			"status=deferred (451 4.7.0 authentication to 127.0.0.1[127.0.0.1]:PORT failed: 535", 1},
		{"no STARTTLS", plain, false, pass, "", false, queue.TempFail, "not encrypted; credentials not sent",
			"relay=127.0.0.1[127.0.0.1]:PORT, tls=none (reason: not offered), status=deferred (451 4.7.0 relay 127.0.0.1[127.0.0.1]:PORT requires authentication but the connection is not encrypted; credentials not sent)", 0},
		{"fallback plain", broken, false, pass, "plain", false, queue.TempFail, "not encrypted; credentials not sent",
			"tls=none (reason: fallback to plain after TLS handshake failed", 0},
		// The alternating modes' plain text attempt is not made to a relay
		// that needs AUTH: it stays on TLS.
		{"next-retry after a TLS failure", starttls, false, pass, "next-retry", true, queue.Delivered, "",
			"STARTTLS=client, relay=127.0.0.1[127.0.0.1]:PORT, version=TLSv1.3, verify=OK", 1},
		{"next-retry-any after a TLS failure", starttls, false, pass, "next-retry-any", true, queue.Delivered, "",
			"STARTTLS=client, relay=127.0.0.1[127.0.0.1]:PORT, version=TLSv1.3, verify=OK", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, portStr, _ := net.SplitHostPort(c.srv.addr)
			port, _ := strconv.Atoi(portStr)
			cfg := config.New()
			cfg.Mailsetting.StartTLS.Fallback = c.fallback
			cfg.System.Mailserver.RelayServerStatus = true
			cfg.Mailsetting.RelayServer = []config.RelayServer{
				{Name: "down", Server: deadIP, Port: f.port},
				{Name: "smarthost", Server: "127.0.0.1", Port: port, SMTPS: c.smtps, AuthStatus: true, AuthUsername: user, AuthPassword: testSeal(c.pass)},
			}
			d, logs := newDeliverer(t, f, cfg, nil, unseal)
			token := "relay-auth-" + strings.ReplaceAll(c.name, " ", "-")
			tries, msgs := c.srv.authAttempts(), len(c.srv.messages())
			job := newJob(token, "s@mailgate.test", "far-away.example", "u@far-away.example")
			job.PreferPlain = c.preferPlain
			r := deliver(t, d, job)[0]
			if r.Status != c.status || !strings.Contains(r.Text, c.text) {
				t.Fatalf("%s; %q", fmtResult(r), logs.all())
			}
			if c.status == queue.TempFail {
				want(t, r, queue.TempFail, 451, "4.7.0", c.text)
			}
			lines := logs.all()
			if len(lines) != 2 || !strings.HasPrefix(lines[0], deadLog) || !strings.Contains(lines[1], strings.ReplaceAll(c.log, "PORT", portStr)) {
				t.Fatalf("log %q", lines)
			}
			if n := c.srv.authAttempts() - tries; n != c.authTries {
				t.Fatalf("%d AUTH commands at the relay, want %d", n, c.authTries)
			}
			got := c.srv.messages()[msgs:]
			if c.status != queue.Delivered {
				if len(got) != 0 {
					t.Fatalf("relay received %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].authUser != user || !got[0].tls || got[0].from != "s@mailgate.test" || !strings.Contains(got[0].data, token) {
				t.Fatalf("relay received %+v", got)
			}
		})
	}
}

// A pooled connection that the next hop has closed meanwhile (silently,
// or with a 421 after its idle timeout) is replaced by a new one within
// the same attempt: the message is delivered, not deferred.
func TestReuseStaleConnection(t *testing.T) {
	f := peers(t)
	srv := startAuthServer(t, "", "", nil)
	host, portStr, _ := net.SplitHostPort(srv.addr)
	port, _ := strconv.Atoi(portStr)
	cfg := config.New()
	cfg.System.Mailserver.RelayServerStatus = true
	cfg.Mailsetting.RelayServer = []config.RelayServer{{Name: "smarthost", Server: host, Port: port}}
	d, logs := newDeliverer(t, f, cfg, nil)
	send := func(token string) {
		t.Helper()
		r := deliver(t, d, newJob(token, "s@mailgate.test", "far-away.example", "u@far-away.example"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "")
		if n := len(logs.all()); n != 1 || !strings.Contains(logs.last(), "status=sent (250") {
			t.Fatalf("log %q", logs.all())
		}
		logs.reset()
	}
	send("stale-1")
	send("stale-2")
	if n := srv.accepted(); n != 1 {
		t.Fatalf("%d connections for two messages, want 1", n)
	}
	srv.dropConnections()
	send("stale-3")
	if n := srv.accepted(); n != 2 {
		t.Fatalf("%d connections after the first was dropped, want 2", n)
	}
	got := srv.messages()
	if len(got) != 3 {
		t.Fatalf("relay received %d messages, want 3", len(got))
	}
	for i, m := range got {
		if !strings.Contains(m.data, fmt.Sprintf("stale-%d", i+1)) || len(m.rcpts) != 1 {
			t.Fatalf("message %d: %+v", i+1, m)
		}
	}

	// A next hop with a short idle timeout: 421, then it closes.
	srv = startAuthServer(t, "", "", nil, func(s *smtp.Server) { s.ReadTimeout = time.Second })
	host, portStr, _ = net.SplitHostPort(srv.addr)
	port, _ = strconv.Atoi(portStr)
	cfg = config.New()
	cfg.System.Mailserver.RelayServerStatus = true
	cfg.Mailsetting.RelayServer = []config.RelayServer{{Name: "smarthost", Server: host, Port: port}}
	d, logs = newDeliverer(t, f, cfg, nil)
	send("idle-1")
	send("idle-2")
	if n := srv.accepted(); n != 1 {
		t.Fatalf("%d connections for two messages, want 1", n)
	}
	time.Sleep(1500 * time.Millisecond)
	send("idle-3")
	if n := srv.accepted(); n != 2 {
		t.Fatalf("%d connections after an idle timeout, want 2", n)
	}
	if got := srv.messages(); len(got) != 3 || !strings.Contains(got[2].data, "idle-3") {
		t.Fatalf("relay received %+v", got)
	}
}

func TestProtectedDomain(t *testing.T) {
	f := peers(t)
	f.dns.AddA("mail.corp.test", deadIP)

	// A primary that refuses with 421 at the greeting.
	busy := listen(t, "127.0.0.1")
	go func() {
		for {
			c, err := busy.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("421 4.3.2 Service not available, try later\r\n"))
			c.Close()
		}
	}()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	smtps, sp := startSMTPSServer(t, f)
	smtpsPort := strconv.Itoa(sp)

	cfg := config.New()
	cfg.Domain = []config.Domain{
		{Name: "corp.test", RelayType: "host", SMTPServer: "mail.corp.test", SMTPPort: f.port, FallbackHost: "mx.plain.test", FallbackPort: f.port},
		{Name: "busy.test", RelayType: "host", SMTPServer: "127.0.0.1", SMTPPort: busyPort, FallbackHost: "mx.tls.test", FallbackPort: f.port},
		{Name: "smtps.test", RelayType: "host", SMTPServer: "127.0.0.1", SMTPPort: sp, SMTPS: true},
		{Name: "tls.test", RelayType: "mx-lookup"},
		{Name: "noserver.test", RelayType: "host"},
	}
	// Relay servers are not used for protected domains.
	cfg.System.Mailserver.RelayServerStatus = true
	cfg.Mailsetting.RelayServer = []config.RelayServer{{Name: "down", Server: deadIP, Port: 25}}
	d, logs := newDeliverer(t, f, cfg, nil)

	t.Run("fallback after connect failure", func(t *testing.T) {
		logs.reset()
		r := deliver(t, d, newJob("protected-fallback", "s@x.example", "corp.test", "u@corp.test"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
		if !strings.HasPrefix(r.Host, "mx.plain.test[127.0.0.2]") || len(logs.all()) != 2 {
			t.Fatalf("%s; %q", fmtResult(r), logs.all())
		}
		arrivedMessage(t, f.plain, "protected-fallback")
	})
	t.Run("fallback after 421 greeting", func(t *testing.T) {
		logs.reset()
		r := deliver(t, d, newJob("protected-busy", "s@x.example", "busy.test", "u@busy.test"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
		lines := logs.all()
		if len(lines) != 2 || !strings.Contains(lines[0], "status=deferred (421 4.3.2") || !strings.Contains(lines[1], "STARTTLS=client, relay=mx.tls.test") {
			t.Fatalf("log %q", lines)
		}
	})
	t.Run("smtps", func(t *testing.T) {
		r := deliver(t, d, newJob("protected-smtps", "s@x.example", "smtps.test", "u@smtps.test"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "")
		if !strings.HasPrefix(logs.last(), "SMTPS=client, relay=127.0.0.1[127.0.0.1]:"+smtpsPort+", version=TLSv1.3, verify=OK") || r.TLS == "" {
			t.Fatalf("%s; %s", fmtResult(r), logs.last())
		}
		if got := smtps.messages(); len(got) != 1 || !got[0].tls {
			t.Fatalf("received %+v", got)
		}
	})
	t.Run("mx-lookup", func(t *testing.T) {
		r := deliver(t, d, newJob("protected-mx", "s@x.example", "tls.test", "u@tls.test"))[0]
		want(t, r, queue.Delivered, 250, "2.0.0", "queued as")
	})
	t.Run("no server", func(t *testing.T) {
		want(t, deliver(t, d, newJob("protected-none", "s@x.example", "noserver.test", "u@noserver.test"))[0], queue.TempFail, 451, "4.3.5", "smtp-server")
	})
}

func TestContextCancel(t *testing.T) {
	f := peers(t)
	mute := listen(t, "127.0.0.1")
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	cfg := config.New()
	cfg.Domain = []config.Domain{{Name: "mute.test", RelayType: "host", SMTPServer: "127.0.0.1", SMTPPort: mute.Addr().(*net.TCPAddr).Port}}
	d, _ := newDeliverer(t, f, cfg, nil, func(o *Options) { o.CommandTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := d.Deliver(ctx, newJob("cancel", "s@x.example", "mute.test", "u@mute.test"))[0]
	if time.Since(start) > 5*time.Second || r.Status != queue.TempFail {
		t.Fatalf("%v: %s", time.Since(start), fmtResult(r))
	}
}

func TestSizeLimit(t *testing.T) {
	f := peers(t)
	d, _ := newDeliverer(t, f, config.New(), nil)
	job := newJob("too-big", "s@mailgate.test", "plain.test", "u@plain.test")
	job.Size = 100 << 20 // Postfix advertises SIZE 10240000
	want(t, deliver(t, d, job)[0], queue.PermFail, 552, "5.3.4", "exceeds")
}

func TestInvalidAddresses(t *testing.T) {
	f := peers(t)
	d, _ := newDeliverer(t, f, config.New(), nil)
	res := deliver(t, d, newJob("bad-addr", "s@mailgate.test", "plain.test", "ok@plain.test", "x@plain.test>\r\nRSET"))
	want(t, res[0], queue.Delivered, 250, "2.0.0", "queued as")
	want(t, res[1], queue.PermFail, 553, "5.1.3", "invalid recipient")
}

// brokenSMTPS is an implicit-TLS next hop whose every handshake fails
// (the server has no certificate to offer); it returns the port.
func brokenSMTPS(t *testing.T) int {
	t.Helper()
	ln := tls.NewListener(listen(t, "127.0.0.1"), &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("no certificate here") },
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// A failed handshake with an SMTPS next hop follows the TLS profile of
// the delivery rule like a failed STARTTLS: action fail bounces at once,
// tempfail defers; without a profile that requires TLS it defers (there
// is no plain text to fall back to, and nothing for next-retry to
// alternate with).
func TestSMTPSHandshakeFailure(t *testing.T) {
	f := peers(t)
	port := brokenSMTPS(t)
	for _, c := range []struct {
		level, action, fallback string
		status                  queue.Status
		code                    int
		enh, text, log          string
	}{
		{"encrypt", "fail", "plain", queue.PermFail, 550, "5.7.0", "TLS required, but TLS handshake failed", "status=bounced (550 5.7.0 TLS required"},
		{"secure", "fail", "none", queue.PermFail, 550, "5.7.0", "TLS required, but TLS handshake failed", "status=bounced (550 5.7.0 TLS required"},
		{"encrypt", "tempfail", "plain", queue.TempFail, 454, "4.7.0", "TLS required, but TLS handshake failed", "status=deferred (454 4.7.0 TLS required"},
		{"secure", "tempfail", "next-retry", queue.TempFail, 454, "4.7.0", "TLS required, but TLS handshake failed", "status=deferred (454 4.7.0 TLS required"},
		{"", "", "plain", queue.TempFail, 451, "4.7.5", "TLS handshake with 127.0.0.1[127.0.0.1]", "status=deferred (451 4.7.5 TLS handshake with"},
		{"preferred", "fail", "next-retry-any", queue.TempFail, 451, "4.7.5", "TLS handshake with 127.0.0.1[127.0.0.1]", "status=deferred (451 4.7.5 TLS handshake with"},
	} {
		name := c.level + "-" + c.action + "-" + c.fallback
		t.Run(name, func(t *testing.T) {
			cfg := config.New()
			cfg.Domain = []config.Domain{{Name: "smtps.test", RelayType: "host", SMTPServer: "127.0.0.1", SMTPPort: port, SMTPS: true}}
			cfg.Mailsetting.StartTLS.Fallback = c.fallback
			if c.level != "" {
				cfg.Profile.TLS = []config.TLSProfile{{Name: "p", Level: c.level, Action: c.action, CheckSSLVersion: true, MinSSLVersion: "tls1_2"}}
				cfg.Policy.AccessControl.Delivery = []config.DeliveryRule{{ID: 1, Status: true, SenderPattern: "*",
					RecipientPattern: "*", DestinationIPMask: "0.0.0.0/0", TLSProfile: "p"}}
			}
			d, logs := newDeliverer(t, f, cfg, nil)
			r := deliver(t, d, newJob("smtps-broken-"+name, "s@x.example", "smtps.test", "u@smtps.test"))[0]
			want(t, r, c.status, c.code, c.enh, c.text)
			if r.TLSHandshakeFailed {
				t.Errorf("flagged for a plain text retry: %s", fmtResult(r))
			}
			if required := c.level == "encrypt" || c.level == "secure"; required != (r.Classifier == "TLS Enforcement") {
				t.Errorf("classifier %q", r.Classifier)
			}
			line := logs.last()
			if len(logs.all()) != 1 || !strings.Contains(line, "tls=failed (TLS handshake failed") || !strings.Contains(line, c.log) {
				t.Fatalf("log %q", logs.all())
			}
		})
	}
}

// TestSNI: the TLS handshake names the MX host (server name indication),
// and names nothing when the next hop is an address literal.
func TestSNI(t *testing.T) {
	f := peers(t)
	const ip = "127.0.0.7"
	certPEM, keyPEM, err := f.ca.Issue("mx.sni.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var names []string
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(f.port)))
	if err != nil {
		t.Fatal(err)
	}
	srv := serveAuth(t, ln, "", "", func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				mu.Lock()
				names = append(names, hello.ServerName)
				mu.Unlock()
				return nil, nil
			}}
	})
	f.dns.AddMX("sni.test", 10, "mx.sni.test")
	f.dns.AddA("mx.sni.test", ip)
	d, logs := newDeliverer(t, f, config.New(), nil)
	for _, c := range []struct{ domain, sni, log string }{
		{"sni.test", "mx.sni.test", "STARTTLS=client, relay=mx.sni.test[" + ip + "]:" + strconv.Itoa(f.port) + ", version=TLSv1.3, verify=OK"},
		{"[" + ip + "]", "", "STARTTLS=client, relay=" + ip + "[" + ip + "]:" + strconv.Itoa(f.port) + ", version=TLSv1.3, verify=FAIL"},
	} {
		mu.Lock()
		names = nil
		mu.Unlock()
		r := deliver(t, d, newJob("sni-"+c.domain, "s@mailgate.test", c.domain, "u@"+c.domain))[0]
		want(t, r, queue.Delivered, 250, "", "")
		if !strings.HasPrefix(logs.last(), c.log) {
			t.Fatalf("log %s", logs.last())
		}
		mu.Lock()
		got := names
		mu.Unlock()
		if len(got) != 1 || got[0] != c.sni {
			t.Fatalf("%s: server names in the handshakes %q, want [%q]", c.domain, got, c.sni)
		}
	}
	if n := len(srv.messages()); n != 2 {
		t.Fatalf("%d messages arrived, want 2", n)
	}
}

// TestSMTPSHops: the smtps option of a relay server and fallback-smtps of
// a protected domain's fallback server make the connection to that hop
// implicit TLS, and only to that hop.
func TestSMTPSHops(t *testing.T) {
	f := peers(t)
	smtps, port := startSMTPSServer(t, f)
	portStr := strconv.Itoa(port)
	smtpsLog := "SMTPS=client, relay=127.0.0.1[127.0.0.1]:" + portStr + ", version=TLSv1.3, verify=OK"
	deadLog := "relay=" + deadIP + "[" + deadIP + "]:" + strconv.Itoa(f.port) + ", status=deferred (451 4.4.1 connect to"

	for _, c := range []struct {
		name  string
		setup func(cfg *config.Config)
		logs  []string // prefixes of the attempts' log lines
		tls   bool     // arrived at the SMTPS server (else at the plain Postfix peer)
	}{
		{"relay server smtps", func(cfg *config.Config) {
			cfg.System.Mailserver.RelayServerStatus = true
			cfg.Mailsetting.RelayServer = []config.RelayServer{
				{Name: "down", Server: deadIP, Port: f.port, SMTPS: true},
				{Name: "smarthost", Server: "127.0.0.1", Port: port, SMTPS: true},
			}
		}, []string{deadLog, smtpsLog}, true},
		{"domain fallback-smtps", func(cfg *config.Config) {
			cfg.Domain = []config.Domain{{Name: "far-away.example", RelayType: "host", SMTPServer: deadIP, SMTPPort: f.port,
				FallbackHost: "127.0.0.1", FallbackPort: port, FallbackSMTPS: true}}
		}, []string{deadLog, smtpsLog}, true},
		{"smtps primary, plain fallback", func(cfg *config.Config) {
			cfg.Domain = []config.Domain{{Name: "far-away.example", RelayType: "host", SMTPServer: deadIP, SMTPPort: f.port, SMTPS: true,
				FallbackHost: "mx.plain.test", FallbackPort: f.port}}
		}, []string{deadLog, "relay=mx.plain.test[" + plainIP + "]:" + strconv.Itoa(f.port) + ", tls=none (reason: not offered), status=sent"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.New()
			c.setup(cfg)
			d, logs := newDeliverer(t, f, cfg, nil)
			token := "smtps-hop-" + strings.ReplaceAll(c.name, " ", "-")
			before := len(smtps.messages())
			r := deliver(t, d, newJob(token, "s@mailgate.test", "far-away.example", "u@far-away.example"))[0]
			want(t, r, queue.Delivered, 250, "2.0.0", "")
			lines := logs.all()
			if len(lines) != len(c.logs) {
				t.Fatalf("log %q", lines)
			}
			for k, p := range c.logs {
				if !strings.HasPrefix(lines[k], p) {
					t.Fatalf("log line %d %q, want %q...", k+1, lines[k], p)
				}
			}
			got := smtps.messages()[before:]
			if c.tls {
				if len(got) != 1 || !got[0].tls || !strings.Contains(got[0].data, token) || r.TLS == "" {
					t.Fatalf("SMTPS server received %+v; %s", got, fmtResult(r))
				}
			} else {
				if len(got) != 0 {
					t.Fatalf("SMTPS server received %+v", got)
				}
				arrivedMessage(t, f.plain, token)
			}
		})
	}
}

// Outgoing mail goes through relay-host-list only with system mailserver
// relay-server-status enable: to the entry relay-server-name names, or to
// every entry in order; a relay of relay-type mx-lookup is the mail
// exchangers of its mx-lookup-domain-name.
func TestRelayServerSelection(t *testing.T) {
	f := peers(t)
	a, b := startAuthServer(t, "", "", nil), startAuthServer(t, "", "", nil)
	entry := func(name, addr string) config.RelayServer {
		host, portStr, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(portStr)
		return config.RelayServer{Name: name, RelayType: "host", Server: host, Port: port}
	}
	cfg := config.New()
	cfg.Mailsetting.RelayServer = []config.RelayServer{entry("a", a.addr), entry("b", b.addr),
		{Name: "mx", RelayType: "mx-lookup", MXDomain: "plain.test", Port: f.port}}
	d, logs := newDeliverer(t, f, cfg, nil)
	send := func(token, rcpt string) string {
		t.Helper()
		logs.reset()
		r := deliver(t, d, newJob(token, "s@mailgate.test", rcpt[strings.LastIndexByte(rcpt, '@')+1:], rcpt))[0]
		want(t, r, queue.Delivered, 250, "", "")
		return logs.last()
	}

	// Off (the factory value): by MX, the relays unused.
	if l := send("relay-off", "u@plain.test"); !strings.Contains(l, "relay=mx.plain.test") {
		t.Fatalf("relay-server-status disable: %s", l)
	}
	cfg.System.Mailserver.RelayServerStatus = true
	cfg.System.Mailserver.RelayServerName = "b"
	send("relay-b", "u@far-away.example")
	if len(a.messages()) != 0 || len(b.messages()) != 1 {
		t.Fatalf("relay-server-name b: a got %d, b got %d", len(a.messages()), len(b.messages()))
	}
	cfg.System.Mailserver.RelayServerName = ""
	send("relay-all", "u@far-away.example")
	if len(a.messages()) != 1 {
		t.Fatalf("every entry in order: a got %d", len(a.messages()))
	}
	cfg.System.Mailserver.RelayServerName = "mx"
	if l := send("relay-mx", "u@far-away.example"); !strings.Contains(l, "relay=mx.plain.test") {
		t.Fatalf("relay-type mx-lookup: %s", l)
	}
}

// CRAM-MD5 answers the challenge of RFC 2195's example as the RFC does.
func TestCRAMMD5(t *testing.T) {
	c := &cramMD5Client{user: "tim", pass: "tanstaaftanstaaf"}
	if mech, ir, err := c.Start(); mech != "CRAM-MD5" || ir != nil || err != nil {
		t.Fatalf("Start: %s %q %v", mech, ir, err)
	}
	got, err := c.Next([]byte("<1896.697170952@postoffice.reston.mci.net>"))
	if err != nil || string(got) != "tim b913a602c7eda7a495b4e6e7334d3890" {
		t.Fatalf("response %q %v", got, err)
	}
	if _, err := c.Next([]byte("again")); err == nil {
		t.Fatal("a second challenge was answered")
	}
}
