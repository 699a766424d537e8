// Package smtpd is mailgate's inbound SMTP service: the SMTP port (25),
// SMTPS (465, implicit TLS) and message submission (587). It is built on
// github.com/emersion/go-smtp's server for the SMTP dialogue and adds what
// a gateway needs: the receive policy per recipient (policy.Receive),
// STARTTLS offered per client, TLS auto-detection, SMTP AUTH against the
// local users, connection limits, SMTP smuggling protection, the Received
// header, and the rule that a message is acknowledged only once the queue
// holds it durably.
//
// Every connection gets its own go-smtp server instance built from the
// configuration committed when the connection was accepted, so that a
// configuration change applies to new connections and never races with
// sessions in progress. Between go-smtp and the client sits a shim (see
// shim.go) that owns the transport and its TLS.
package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"mailgate/cert"
	"mailgate/config"
	"mailgate/mailauth"
	"mailgate/policy"
	"mailgate/queue"
)

// Kind is the service a listener provides.
type Kind int

// Services.
const (
	SMTP  Kind = iota // port 25: STARTTLS when smtp-starttls is enabled
	SMTPS             // port 465: implicit TLS
	MSA               // port 587: STARTTLS and AUTH, or implicit TLS when smtp-msa-mode is implicit
)

func (k Kind) String() string {
	switch k {
	case SMTP:
		return "SMTP"
	case SMTPS:
		return "SMTPS"
	case MSA:
		return "MSA"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Enqueuer stores accepted messages. Enqueue returns only once the message
// is stored durably. An error for which errors.Is(err, syscall.ENOSPC)
// holds, or that implements DiskFull() bool returning true, is answered
// "452 4.3.1 Insufficient system storage"; any other error "451 4.3.0".
type Enqueuer interface {
	Enqueue(env queue.Envelope, msg io.Reader) (id string, err error)
}

// Options configure a Server.
type Options struct {
	// Config returns the committed configuration. It is read once per
	// connection: changes apply to new connections.
	Config func() *config.Config
	// Certs selects the server certificate by SNI. Without it, or while it
	// holds no store, no TLS is offered (and SMTPS connections are closed).
	Certs *cert.Holder
	Queue Enqueuer
	// LookupAddr returns the client's reverse DNS name (the first PTR
	// name, no trailing dot); nil means none. Receive rules match this
	// name, so it should be forward-confirmed (the name resolves back to
	// the address): a PTR record alone is chosen by whoever owns the
	// client's address block.
	LookupAddr func(ctx context.Context, ip netip.Addr) (string, error)
	// History receives one record per refused or discarded recipient and,
	// for a message refused or failed after DATA, one per recipient.
	History func(h History)
	// Event receives event log lines; level is "information", "warning"
	// or "error".
	Event func(level, msg string)
	// Hostname is the name in the banner and Received headers; nil or ""
	// means the configured host name, qualified with local-domain-name
	// when one is set.
	Hostname func() string
	Now      func() time.Time
	// CheckRecipient, when set, checks each recipient the receive policy
	// accepted (server mode: the mailbox exists, is enabled, has room). A
	// *Refusal error is the reply; any other error answers 451 4.3.0.
	CheckRecipient func(c *config.Config, rcpt string) error
	// Auth checks SMTP AUTH credentials and throttles failures (nil: a
	// mailauth.Checker of the server's own with its defaults).
	Auth *mailauth.Checker
	// Hidden, when set, reports whether the appliance stays out of the
	// trace of a message (transparent mode's hidden box): it then adds
	// no Received header.
	Hidden func(c *config.Config, env *queue.Envelope) bool
	// SpoolDir holds messages larger than 1 MiB while they are received
	// and checked, before they go to the queue ("" = os.TempDir()).
	SpoolDir string
}

// Refusal is a recipient refused by Options.CheckRecipient: the reply,
// and the classifier of its history record.
type Refusal struct {
	Code       int
	Enhanced   string
	Text       string
	Classifier string
}

func (r *Refusal) Error() string { return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text) }

// History is a history log record written by the SMTP service.
type History struct {
	Time      time.Time
	SessionID string
	ClientIP  netip.Addr
	From, To  string
	// Classifier: a policy.Decision classifier for recipients, or for
	// messages "Message Size", "Line Length", "SMTP Smuggling", "Data
	// Timeout", "Disk Full", "Queue Error"; "Recipient Limit" for
	// recipients over max-recipients.
	Classifier  string
	Disposition string // "Reject", "Discard", "Temp Fail"
	TLS         string // "TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits", "" for plain text
	Status      string // the reply given
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("smtpd: server closed")

// Server is the inbound SMTP service. Several listeners, of any kinds, may
// be served at once.
type Server struct {
	o Options

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	total     int
	perIP     map[netip.Addr]int
	wg        sync.WaitGroup

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	derived      atomic.Pointer[derived]
	lastLimitLog atomic.Int64
}

// New returns a server; call Serve for each listener.
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Auth == nil {
		o.Auth = &mailauth.Checker{}
	}
	if o.Event == nil {
		o.Event = func(string, string) {}
	}
	if o.History == nil {
		o.History = func(History) {}
	}
	s := &Server{o: o, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}, perIP: map[netip.Addr]int{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Serve accepts connections on l and serves them as kind k until l is
// closed (it then returns nil) or Close is called (ErrServerClosed when
// Close came first).
func (s *Server) Serve(l net.Listener, k Kind) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.o.Event("warning", fmt.Sprintf("%s listener: accept: %v; retrying in %v", k, err, delay))
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c, k)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// Close stops all listeners, closes all sessions and waits for them to end.
// A session waiting for the queue to store a message finishes that first.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.cancel()
	var errs []error
	for l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

// limits are system mailserver settings with factory values for unset fields.
type limits struct {
	maxSize, maxRcpt, maxConn, maxConnIP, maxLine int
	cmdTimeout, dataTimeout                       time.Duration
}

func limitsOf(ms *config.Mailserver) limits {
	or := func(v, def int) int {
		if v <= 0 {
			return def
		}
		return v
	}
	return limits{
		maxSize:     or(ms.MaxMessageSize, 10240) * 1024,
		maxRcpt:     or(ms.MaxRecipients, 500),
		maxConn:     or(ms.MaxConnections, 2000),
		maxConnIP:   or(ms.MaxConnectionsIP, 50),
		maxLine:     or(ms.MaxLineLength, 2000),
		cmdTimeout:  time.Duration(or(ms.CommandTimeout, 300)) * time.Second,
		dataTimeout: time.Duration(or(ms.DataTimeout, 600)) * time.Second,
	}
}

func (s *Server) config() *config.Config {
	if s.o.Config != nil {
		if c := s.o.Config(); c != nil {
			return c
		}
	}
	return config.New()
}

// admit counts the connection against the limits, or refuses it.
func (s *Server) admit(c net.Conn, ip netip.Addr, lim limits) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return false
	}
	why := ""
	switch {
	case s.total >= lim.maxConn:
		why = fmt.Sprintf("%d connections in total", lim.maxConn)
	case s.perIP[ip] >= lim.maxConnIP:
		why = fmt.Sprintf("%d connections from %s", lim.maxConnIP, ip)
	}
	if why == "" {
		s.total++
		s.perIP[ip]++
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		return true
	}
	s.mu.Unlock()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "421 4.7.0 Too many connections\r\n")
	c.Close()
	// At most one line a second while under a flood.
	now := time.Now().UnixNano()
	if last := s.lastLimitLog.Load(); now-last >= int64(time.Second) && s.lastLimitLog.CompareAndSwap(last, now) {
		s.o.Event("warning", fmt.Sprintf("connection from %s refused: limit of %s reached", ip, why))
	}
	return false
}

func (s *Server) release(c net.Conn, ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

func (s *Server) handle(c net.Conn, k Kind) {
	defer s.wg.Done()
	ip := remoteIP(c)
	cfg := s.config()
	lim := limitsOf(&cfg.System.Mailserver)
	if !s.admit(c, ip, lim) {
		return
	}
	defer s.release(c, ip)
	id := newSessionID()
	defer func() {
		if r := recover(); r != nil {
			s.o.Event("error", fmt.Sprintf("panic in SMTP session: %v, session=%s\n%s", r, id, debug.Stack()))
			c.Close()
		}
	}()
	sess := &session{srv: s, id: id, kind: k, cfg: cfg, lim: lim, ip: ip, raw: c, d: s.derive(cfg)}
	sess.run()
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

var (
	sessionCounter atomic.Uint32
	sessionSeed    = func() uint32 {
		var b [4]byte
		rand.Read(b[:])
		return binary.BigEndian.Uint32(b[:])
	}()
)

// newSessionID returns a 16-digit hex id: the time in seconds and a
// process-wide counter that starts at a random value.
func newSessionID() string {
	return fmt.Sprintf("%08X%08X", uint32(time.Now().Unix()), sessionSeed+sessionCounter.Add(1))
}

// derived holds what is computed once per configuration.
type derived struct {
	cfg      *config.Config
	tls      *tls.Config // nil without certificates
	caPool   *x509.CertPool
	loc      *time.Location
	hostname string
}

func (s *Server) derive(c *config.Config) *derived {
	if d := s.derived.Load(); d != nil && d.cfg == c {
		return d
	}
	d := &derived{cfg: c, caPool: x509.NewCertPool(), loc: time.UTC}
	for _, ca := range c.System.Certificate.CA {
		certs, err := cert.ParseChain([]byte(ca.Certificate))
		if err != nil {
			continue
		}
		for _, ct := range certs {
			d.caPool.AddCert(ct)
		}
	}
	if loc, err := time.LoadLocation(c.System.Global.Timezone); err == nil && c.System.Global.Timezone != "" {
		d.loc = loc
	}
	d.hostname = c.System.Global.MailName()
	if s.o.Certs != nil {
		d.tls = serverTLSConfig(c, s.o.Certs)
	}
	s.derived.Store(d)
	return d
}

// serverTLSConfig: certificates by SNI; the versions of system global
// ssl-versions (from the lowest to the highest listed: Go cannot leave a
// gap); strong-crypto limits TLS 1.2 and older to ECDHE with AEAD, without
// it every suite Go considers secure is allowed. Client certificates are
// requested, never required, and only when a receive rule may need one (a
// TLS profile of level secure); they are verified after the handshake
// against the `system certificate ca` entries.
func serverTLSConfig(c *config.Config, certs *cert.Holder) *tls.Config {
	t := policy.MailServerTLS(c.System.Global, certs.GetCertificate)
	if wantsClientCert(c) {
		t.ClientAuth = tls.RequestClientCert
	}
	return t
}

func wantsClientCert(c *config.Config) bool {
	level := map[string]string{}
	for _, p := range c.Profile.TLS {
		level[p.Name] = p.Level
	}
	for _, r := range c.Policy.AccessControl.Receive {
		if r.Status && level[r.TLSProfile] == "secure" {
			return true
		}
	}
	return false
}

// verifyPeer checks a client certificate chain against the configured CAs.
func verifyPeer(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) bool {
	if len(certs) == 0 || roots == nil {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	return err == nil
}

// newSMTPServer is the go-smtp server for one connection.
func newSMTPServer(be smtp.Backend, hostname string, lim limits, log smtp.Logger) *smtp.Server {
	srv := smtp.NewServer(be)
	srv.Domain = hostname
	srv.MaxMessageBytes = int64(lim.maxSize)
	// The shim enforces max-line-length exactly; go-smtp's own limit is
	// only a backstop and must never be the one that trips.
	srv.MaxLineLength = lim.maxLine + 64
	// AUTH is refused in plain text by the session, with the proper reply.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log
	return srv
}
