// Package webui is the appliance's administrative web interface: a few
// server-rendered pages over HTTPS (status, configuration with backup and
// apply, revisions, logs, mail queue, firmware upgrade) for the
// administrators of `config system admin`, doing what the SSH CLI does
// through the same admin.Service.
//
// Every page except the login form needs a session: a random 32-byte token
// in a Secure, HttpOnly, SameSite=Strict cookie, ended by logout, by the
// admin idle timeout of `config system global`, or when the administrator's
// entry, password or trusted hosts change. Every POST carries a per-session
// token (the login form a per-browser one) and cross-origin browser
// requests are refused.
package webui

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"mailgate/admin"
	"mailgate/config"
	"mailgate/policy"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = http.ErrServerClosed

// DefaultFailedLoginDelay is the pause after a failed login.
const DefaultFailedLoginDelay = 300 * time.Millisecond

const (
	maxSessions     = 1000
	sessionLifetime = 12 * time.Hour // absolute, whatever the activity
	maxConfigBytes  = 8 << 20
	maxFormBytes    = 64 << 10
	maxViewBytes    = 256 << 10 // of a queued message shown inline
	maxNameBytes    = 128       // of a login name
)

// Options configure a Server.
type Options struct {
	Service *admin.Service
	Now     func() time.Time // nil: time.Now
	// FailedLoginDelay is added to every failed login (0: default,
	// negative: none).
	FailedLoginDelay time.Duration
}

// Server is the web UI; it is an http.Handler.
type Server struct {
	svc     *admin.Service
	now     func() time.Time
	delay   time.Duration
	handler http.Handler
	pages   map[string]*pageTemplate
	hs      *http.Server
	done    chan struct{}
	once    sync.Once

	mu       sync.Mutex
	sessions map[string]*session // by hash of the cookie token
}

// New builds the web UI of o.Service.
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FailedLoginDelay == 0 {
		o.FailedLoginDelay = DefaultFailedLoginDelay
	}
	s := &Server{
		svc:      o.Service,
		now:      o.Now,
		delay:    o.FailedLoginDelay,
		pages:    parsePages(),
		done:     make(chan struct{}),
		sessions: map[string]*session{},
	}
	s.handler = s.routes()
	s.hs = &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{GetConfigForClient: s.tlsConfig, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      10 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Handshake failures of scanners and of browsers that do not
		// trust the certificate yet are not worth logging.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return s
}

// Serve serves HTTPS on l (a TCP listener) until Close, with the
// certificates of the appliance's certificate store. It may be called
// again with another listener (a changed port); it returns
// ErrServerClosed after Close.
func (s *Server) Serve(l net.Listener) error {
	return s.hs.ServeTLS(l, "", "")
}

// Close closes the listeners and every connection; the sessions end.
func (s *Server) Close() error {
	s.once.Do(func() { close(s.done) })
	s.mu.Lock()
	clear(s.sessions)
	s.mu.Unlock()
	return s.hs.Close()
}

// ServeHTTP serves one request (over TLS when called by Serve).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	s.handler.ServeHTTP(w, r)
}

// tlsConfig follows system global ssl-versions (never below TLS 1.2 for
// administration) and strong-crypto, like the mail services.
func (s *Server) tlsConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	c, _ := s.svc.Config()
	return webTLSConfig(c, s.svc), nil
}

func webTLSConfig(c *config.Config, svc *admin.Service) *tls.Config {
	g := c.System.Global
	lo, hi, ok := policy.VersionRange(g.SSLVersions)
	lo = max(lo, tls.VersionTLS12) // administration: never below TLS 1.2
	if !ok || hi < tls.VersionTLS12 {
		lo, hi = tls.VersionTLS12, tls.VersionTLS13
	}
	t := &tls.Config{
		GetCertificate: svc.Certificates().GetCertificate,
		MinVersion:     lo,
		MaxVersion:     hi,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if g.StrongCrypto {
		t.CipherSuites = policy.StrongSuites
	}
	return t
}

// remoteIP is the client address of r (no proxy headers are trusted).
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func remoteString(ip netip.Addr) string {
	if ip.IsValid() {
		return ip.String()
	}
	return ""
}

// pause delays a failed login; it ends early when the request is gone or
// the server closes.
func (s *Server) pause(r *http.Request) {
	if s.delay <= 0 {
		return
	}
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	case <-s.done:
	}
}
