package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"mailgate/admin"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Close.
var ErrServerClosed = ssh.ErrServerClosed

// Defaults for the timing fields of ServerConfig.
const (
	DefaultFailedAuthDelay = 300 * time.Millisecond
	DefaultLoginGraceTime  = 2 * time.Minute
)

// ServerConfig configures the administrative SSH server.
type ServerConfig struct {
	Addr           string // listen address for ListenAndServe, e.g. ":2222"
	HostKeyPEM     []byte // OpenSSH PEM private host key; persisted by the caller
	Accounts       Accounts
	NewInterpreter func(admin string, readOnly bool) Interpreter
	// Banners returns the pre-login banner, sent before authentication,
	// and the post-login banner, printed at the start of an interactive
	// session; "" for none. It is called afresh for every connection and
	// session, so a committed change applies to the next one. May be nil.
	Banners func() (pre, post string)
	// Event is the event log sink (may be nil) for what the server logs
	// itself: public-key logins, logouts, first-login password changes and
	// refusals in the session handler. Password logins and every counted
	// failure are logged by Accounts.
	Event func(level, subsystem, user, remote, msg string)

	// FailedAuthDelay is added to every failed password attempt (0 =
	// default, negative = none).
	FailedAuthDelay time.Duration
	// LoginGraceTime bounds the time from TCP connect to the first session
	// (0 = default, negative = unlimited).
	LoginGraceTime time.Duration
}

// Server is the administrative SSH server.
type Server struct {
	cfg    ServerConfig
	signer gossh.Signer
	srv    *ssh.Server
	done   chan struct{}

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*sshConn]struct{}
	sessions  sync.WaitGroup
}

// GenerateHostKey returns a new ed25519 host key as an OpenSSH PEM private key.
func GenerateHostKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(block), nil
}

// NewServer checks cfg and builds a server; it does not listen yet.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Accounts == nil {
		return nil, errors.New("ssh server: no accounts")
	}
	if cfg.NewInterpreter == nil {
		return nil, errors.New("ssh server: no interpreter")
	}
	if len(cfg.HostKeyPEM) == 0 {
		return nil, errors.New("ssh server: no host key")
	}
	signer, err := gossh.ParsePrivateKey(cfg.HostKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("ssh server: host key: %w", err)
	}
	if cfg.FailedAuthDelay == 0 {
		cfg.FailedAuthDelay = DefaultFailedAuthDelay
	}
	if cfg.LoginGraceTime == 0 {
		cfg.LoginGraceTime = DefaultLoginGraceTime
	}
	s := &Server{
		cfg:       cfg,
		signer:    signer,
		done:      make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*sshConn]struct{}{},
	}
	s.srv = &ssh.Server{
		Addr:        cfg.Addr,
		Handler:     s.handleSession,
		HostSigners: []ssh.Signer{signer},
		Version:     "mailgate",
		// Asked once per connection, at the first authentication request.
		BannerHandler: func(ssh.Context) string { return s.preLoginBanner() },
		// Both handlers are always set: with neither, gliderlabs/ssh
		// turns client authentication off. Keyboard-interactive is not
		// offered.
		PasswordHandler:      s.checkPassword,
		PublicKeyHandler:     s.checkPublicKey,
		ConnCallback:         s.wrapConn,
		ServerConfigCallback: s.gosshConfig,
		ChannelHandlers:      map[string]ssh.ChannelHandler{"session": ssh.DefaultSessionHandler},
		RequestHandlers:      map[string]ssh.RequestHandler{},
		// SFTP only explains how to upload an upgrade file (scp.go).
		SubsystemHandlers: map[string]ssh.SubsystemHandler{"sftp": s.handleSFTP},
	}
	return s, nil
}

// preLoginBanner is the SSH pre-authentication banner: the configured
// text, cleaned for a terminal, ending with a line break; "" for none.
func (s *Server) preLoginBanner() string {
	if s.cfg.Banners == nil {
		return ""
	}
	pre, _ := s.cfg.Banners()
	return bannerText(pre)
}

// postLoginBanner is the text printed at the start of an interactive
// session, like preLoginBanner.
func (s *Server) postLoginBanner() string {
	if s.cfg.Banners == nil {
		return ""
	}
	_, post := s.cfg.Banners()
	return bannerText(post)
}

// bannerText drops the control characters of t other than tab and line
// feed (a banner must not drive the administrator's terminal) and ends it
// with a line break; it returns "" for a text without anything to show.
func bannerText(t string) string {
	t = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || !unicode.IsControl(r) {
			return r
		}
		return -1
	}, t)
	if strings.TrimSpace(t) == "" {
		return ""
	}
	if !strings.HasSuffix(t, "\n") {
		t += "\n"
	}
	return t
}

// HostKeyFingerprint returns the host key fingerprint as OpenSSH prints it
// ("SHA256:...").
func (s *Server) HostKeyFingerprint() string {
	return gossh.FingerprintSHA256(s.signer.PublicKey())
}

// ListenAndServe listens on cfg.Addr (":22" if empty) and serves.
func (s *Server) ListenAndServe() error {
	addr := s.cfg.Addr
	if addr == "" {
		addr = ":22"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve accepts connections on l until Close; it then returns
// ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
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
	err := s.srv.Serve(l)
	if s.isClosed() {
		return ErrServerClosed
	}
	return err
}

// Close stops the listeners, ends every connection and session and waits
// (a bounded time) for the session handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var ls []net.Listener
	for l := range s.listeners {
		ls = append(ls, l)
	}
	var cs []*sshConn
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()

	err := s.srv.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	for _, l := range ls {
		l.Close()
	}
	for _, c := range cs {
		c.Close()
	}
	finished := make(chan struct{})
	go func() {
		s.sessions.Wait()
		close(finished)
	}()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-finished:
	case <-t.C:
	}
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// beginSession registers a session handler unless the server is closing.
func (s *Server) beginSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions.Add(1)
	return true
}

func (s *Server) event(level, user, remote, msg string) {
	if s.cfg.Event != nil {
		s.cfg.Event(level, "admin", user, remote, msg)
	}
}

// pause delays a failed password attempt; it does not hold any lock and
// ends early when the server closes.
func (s *Server) pause() {
	d := s.cfg.FailedAuthDelay
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

// ---- connections ----

type sshConnKey struct{}

// sshConn wraps every accepted TCP connection: it lets Close reach
// connections still in the handshake, enforces the login grace time and
// keeps the per-connection bookkeeping of authentication attempts. That
// bookkeeping is only ever used to refuse, never to grant access.
type sshConn struct {
	net.Conn
	srv    *Server
	ip     netip.Addr
	remote string

	mu         sync.Mutex
	grace      time.Time         // deadline until the first session starts
	accepted   map[string]string // names whose credentials a handler accepted → method
	authUser   string            // user the SSH handshake authenticated
	authMethod string            // "password" or "publickey"
	authOK     bool
	// lastKey is the key of the latest public-key callback. x/crypto/ssh
	// calls the callback last with the key that authenticates (its key
	// cache holds one entry), so after a public-key login it is the key the
	// client proved it holds; authKey keeps it for the session handler.
	lastKey   gossh.PublicKey
	authKey   gossh.PublicKey
	pwFailed  bool   // a password failure was already counted
	pkUser    string // last rejected public-key attempt, counted at close
	pkReason  string
	closeOnce sync.Once
}

func (s *Server) wrapConn(ctx ssh.Context, conn net.Conn) net.Conn {
	c := &sshConn{Conn: conn, srv: s, accepted: map[string]string{}}
	c.ip = sshRemoteIP(conn.RemoteAddr())
	c.remote = sshRemoteString(c.ip, conn.RemoteAddr())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if s.cfg.LoginGraceTime > 0 {
		c.grace = time.Now().Add(s.cfg.LoginGraceTime)
		conn.SetDeadline(c.grace)
	}
	ctx.SetValue(sshConnKey{}, c)
	return c
}

func sshConnOf(ctx ssh.Context) *sshConn {
	c, _ := ctx.Value(sshConnKey{}).(*sshConn)
	return c
}

// SetDeadline keeps the login grace deadline in force: gliderlabs/ssh
// resets the deadline on every read and write.
func (c *sshConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.grace.IsZero() && (t.IsZero() || c.grace.Before(t)) {
		t = c.grace
	}
	return c.Conn.SetDeadline(t)
}

func (c *sshConn) clearGrace() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.grace.IsZero() {
		c.grace = time.Time{}
		c.Conn.SetDeadline(time.Time{})
	}
}

func (c *sshConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		c.mu.Lock()
		count := !c.authOK && !c.pwFailed && c.pkReason != ""
		user, reason := c.pkUser, c.pkReason
		c.mu.Unlock()
		// Public-key rejections count as one failure per connection, so
		// that a client offering several keys before the right one is not
		// locked out.
		if count {
			c.srv.cfg.Accounts.RecordLoginFailure(user, c.ip, reason)
		}
	})
	return err
}

// accept records that the credentials of user passed method.
func (c *sshConn) accept(user, method string) {
	c.mu.Lock()
	c.accepted[user] = method
	c.mu.Unlock()
}

func (c *sshConn) passwordFailed() {
	c.mu.Lock()
	c.pwFailed = true
	c.mu.Unlock()
}

func (c *sshConn) publicKeyRejected(user, reason string) {
	c.mu.Lock()
	c.pkUser, c.pkReason = user, reason
	c.mu.Unlock()
}

// handshakeDone records the user the SSH layer authenticated; it is only
// accepted if one of our handlers approved that very name. It returns the
// method that approved it ("" if none).
func (c *sshConn) handshakeDone(user string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.accepted[user]; m != "" && !c.authOK {
		c.authOK, c.authUser, c.authMethod = true, user, m
		if m == "publickey" {
			c.authKey = c.lastKey
		}
		return m
	}
	return ""
}

// seenKey records the key of a public-key callback (see lastKey).
func (c *sshConn) seenKey(key gossh.PublicKey) {
	c.mu.Lock()
	c.lastKey = key
	c.mu.Unlock()
}

// authenticated reports whether the handshake authenticated user, by
// which method and, for a public-key login, with which key.
func (c *sshConn) authenticated(user string) (method string, key gossh.PublicKey, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.authOK || c.authUser != user {
		return "", nil, false
	}
	return c.authMethod, c.authKey, true
}

func (s *Server) gosshConfig(ctx ssh.Context) *gossh.ServerConfig {
	c := sshConnOf(ctx)
	return &gossh.ServerConfig{
		MaxAuthTries: 6,
		// Called by x/crypto/ssh with the metadata of the attempt itself
		// (the right user name); err == nil only on the final success.
		AuthLogCallback: func(md gossh.ConnMetadata, method string, err error) {
			if err != nil || c == nil {
				return
			}
			// A successful CheckLogin has already cleared the failures.
			if c.handshakeDone(md.User()) == "publickey" {
				s.cfg.Accounts.ClearLoginFailures(c.ip)
			}
		},
	}
}

// ---- authentication ----

// sshNextAttempt makes gliderlabs/ssh refresh the connection metadata
// (notably the user name) in ctx before the next authentication callback.
// It only records it on the first callback, yet a client may change the
// user name between attempts; without this a later attempt for "admin"
// would be checked against the credentials of the first name tried.
func sshNextAttempt(ctx ssh.Context) {
	ctx.SetValue(ssh.ContextKeySessionID, nil)
}

// checkPassword hands the password to the shared login check, which
// logs and counts failures and refuses every attempt while the address is
// locked out.
func (s *Server) checkPassword(ctx ssh.Context, password string) bool {
	defer sshNextAttempt(ctx)
	c := sshConnOf(ctx)
	if c == nil {
		return false
	}
	user := ctx.User()
	_, err := s.cfg.Accounts.CheckLogin(user, password, c.ip)
	if err == nil {
		c.accept(user, "password")
		return true
	}
	if !errors.Is(err, admin.ErrLoginThrottled) {
		c.passwordFailed()
	}
	s.pause()
	return false
}

// checkPublicKey compares key with the administrator's authorized keys.
// A rejection is counted once per connection (see sshConn.Close), and no
// key is accepted while the address is locked out.
func (s *Server) checkPublicKey(ctx ssh.Context, key ssh.PublicKey) bool {
	defer sshNextAttempt(ctx)
	c := sshConnOf(ctx)
	if c == nil {
		return false
	}
	c.seenKey(key)
	user := ctx.User()
	if s.cfg.Accounts.LoginThrottled(c.ip) {
		return false
	}
	info, ok := s.cfg.Accounts.Admin(user)
	var reason string
	switch {
	case !ok:
		reason = "unknown user"
	case !sshKeyAllowed(info.PublicKeys, key):
		reason = "public key not accepted"
	default:
		if reason = s.cfg.Accounts.LoginRefusal(user, c.ip); reason == "" {
			c.accept(user, "publickey")
			return true
		}
	}
	c.publicKeyRejected(user, reason)
	return false
}

func sshKeyAllowed(lines []string, key gossh.PublicKey) bool {
	want := key.Marshal()
	for _, line := range lines {
		pk, _, opts, _, err := gossh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			continue
		}
		certAuthority := false
		for _, o := range opts {
			if o == "cert-authority" {
				certAuthority = true
			}
		}
		if !certAuthority && bytes.Equal(pk.Marshal(), want) {
			return true
		}
	}
	return false
}

func sshRemoteIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func sshRemoteString(ip netip.Addr, a net.Addr) string {
	if ip.IsValid() {
		return ip.String()
	}
	if a != nil {
		return a.String()
	}
	return ""
}
