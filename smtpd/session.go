package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailgate/config"
	"mailgate/mailauth"
	"mailgate/policy"
	"mailgate/queue"
)

// Tunables (variables for the tests).
var (
	autodetectWait = 300 * time.Millisecond // how long to wait for a TLS ClientHello on plain ports
	authFailDelay  = 300 * time.Millisecond // pause before answering a failed AUTH
	rdnsTimeout    = 5 * time.Second
)

// maxAuthFailures is how many failed AUTH attempts a connection gets.
const maxAuthFailures = 5

// session is one client connection. It is go-smtp's Session (and
// AuthSession) for that connection.
type session struct {
	srv  *Server
	id   string
	kind Kind
	cfg  *config.Config
	d    *derived
	lim  limits
	ip   netip.Addr
	raw  net.Conn
	shim *shim
	conn *smtp.Conn // set by go-smtp's NewSession
	host string     // our host name
	rdns string     // "" when unknown

	// Connection state, on go-smtp's goroutine.
	tlsInfo   *policy.TLSInfo
	tlsLine   string // "TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits"
	tlsEnv    string // "TLSv1.3 TLS_AES_128_GCM_SHA256"
	tlsHeader string // "(version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 bits=128)"
	esmtp     bool
	needHelo  bool // TLS started; the client must greet again
	authUser  string
	authFails int
	msgs      int

	mu sync.Mutex // the transaction; BDAT runs Data on another goroutine
	tx transaction
}

type transaction struct {
	active    bool
	from      string
	rcpts     []string // accepted, to be queued
	classes   []string // why each of rcpts was accepted (policy classifier)
	discarded []string // accepted, to be dropped
	count     int      // accepted recipients, for max-recipients
}

func (s *session) event(level, format string, args ...any) {
	s.srv.o.Event(level, fmt.Sprintf(format, args...)+", session="+s.id)
}

func (s *session) client() string {
	name := s.rdns
	if name == "" {
		name = "unknown"
	}
	return name + "[" + s.ip.String() + "]"
}

func (s *session) run() {
	ms := &s.cfg.System.Mailserver
	s.host = s.d.hostname
	if s.srv.o.Hostname != nil {
		if h := s.srv.o.Hostname(); h != "" {
			s.host = h
		}
	}
	s.rdns = s.lookup()

	tlsConf := s.d.tls
	if s.srv.o.Certs == nil || s.srv.o.Certs.Get() == nil {
		tlsConf = nil // no certificates loaded: no TLS rather than failed handshakes
	}
	implicit := s.kind == SMTPS || s.kind == MSA && ms.SMTPMSAMode == "implicit"
	var prefix []byte
	if !implicit && ms.TLSAutodetect && tlsConf != nil {
		prefix = peek(s.raw, autodetectWait)
		implicit = len(prefix) > 0 && prefix[0] == 0x16
	}
	sh := newShim(s.raw, prefix, s.lim.maxLine, s.lim.cmdTimeout, s.lim.dataTimeout)
	s.shim = sh
	sh.event = s.event
	sh.onTLS = s.tlsStarted
	sh.onGreet = s.greeted
	sh.tlsConf = tlsConf
	switch {
	case implicit:
		if tlsConf == nil {
			s.event("warning", "%s connection from %s closed: no server certificate", s.kind, s.client())
			sh.Close()
			return
		}
		if sh.startTLS() != nil {
			return
		}
	case s.kind == SMTP:
		if !ms.SMTPStartTLS {
			sh.tlsConf = nil
		}
		sh.offerTLS = policy.OfferSTARTTLS(s.cfg, s.policySession())
	default: // MSA with STARTTLS: always offered, AUTH needs it
		sh.offerTLS = true
	}

	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.conn = c
		return s, nil
	})
	srv := newSMTPServer(be, s.host, s.lim, errorLog{event: s.event})
	ln := newOneConnListener(sh)
	srv.Serve(ln)
	srv.Shutdown(context.Background())
	sh.Close()
}

func (s *session) lookup() string {
	if s.srv.o.LookupAddr == nil || !s.ip.IsValid() {
		return ""
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, rdnsTimeout)
	defer cancel()
	name, err := s.srv.o.LookupAddr(ctx, s.ip)
	if err != nil {
		return ""
	}
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if !validHostname(name) {
		return ""
	}
	return name
}

func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (s *session) policySession() policy.Session {
	return policy.Session{ClientIP: s.ip, ReverseDNS: s.rdns, Authenticated: s.authUser != "", TLS: s.tlsInfo}
}

// tlsStarted is called by the shim once a handshake completed.
func (s *session) tlsStarted(cs tls.ConnectionState) {
	now := s.srv.o.Now()
	verified := verifyPeer(cs.PeerCertificates, s.d.caPool, now)
	s.tlsInfo = policy.Info(&cs, verified)
	s.tlsLine = policy.Describe(s.tlsInfo)
	s.tlsEnv = policy.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	s.tlsHeader = fmt.Sprintf("(version=%s cipher=%s bits=%d)", policy.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), s.tlsInfo.Bits)
	verify := "NONE"
	if len(cs.PeerCertificates) > 0 {
		verify = "FAIL"
		if verified {
			verify = "OK"
		}
	}
	sni := ""
	if cs.ServerName != "" {
		sni = ", sni=" + cs.ServerName
	}
	s.event("information", "STARTTLS=server, client=%s, version=%s, cipher=%s, bits=%d, verify=%s%s",
		s.client(), policy.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), s.tlsInfo.Bits, verify, sni)
	// RFC 3207: forget what the client said before TLS.
	s.needHelo = s.conn != nil
	s.mu.Lock()
	s.tx = transaction{}
	s.mu.Unlock()
}

// greeted is called by the shim when go-smtp answers EHLO or HELO.
func (s *session) greeted(esmtp bool) {
	s.esmtp = esmtp
	s.needHelo = false
}

func smtpErr(code int, enhanced, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: text}
	if n, _ := fmt.Sscanf(enhanced, "%d.%d.%d", &e.EnhancedCode[0], &e.EnhancedCode[1], &e.EnhancedCode[2]); n != 3 {
		e.EnhancedCode = smtp.EnhancedCodeNotSet
	}
	return e
}

func reply(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}

var (
	errHeloAgain   = smtpErr(503, "5.5.1", "Send EHLO again after STARTTLS")
	errAuthNeeded  = smtpErr(530, "5.7.0", "Authentication required")
	errAuthTLS     = smtpErr(538, "5.7.11", "Must issue a STARTTLS command first (encryption required for authentication)")
	errAuthOff     = smtpErr(502, "5.5.1", "Authentication is not offered on this port")
	errAuthMalform = smtpErr(501, "5.5.2", "Malformed authentication data")
	// RFC 4954: the authentication server of the user's domain gave no answer.
	errAuthUnavailable = smtpErr(454, "4.7.0", "Temporary authentication failure")
	errAuthThrottled   = smtpErr(454, "4.7.0", "Too many failed authentications from your address, try again later")
	errAuthTooMany     = smtpErr(421, "4.7.0", "Too many authentication failures, closing connection")
	errTooManyRcpt     = smtpErr(452, "4.5.3", "Too many recipients")
	errSmuggling       = smtpErr(550, "5.6.0", "Message contains bare CR or LF (not accepted: SMTP smuggling protection)")
	errTooBig          = smtpErr(552, "5.3.4", "Message size exceeds fixed maximum message size")
	errDataTimeout     = smtpErr(421, "4.4.2", "Timeout waiting for data, closing connection")
	errDiskFull        = smtpErr(452, "4.3.1", "Insufficient system storage")
	errQueue           = smtpErr(451, "4.3.0", "Local error in processing, try again later")
	errNoSender        = smtpErr(503, "5.5.1", "Send MAIL first")
)

// Reset implements smtp.Session.
func (s *session) Reset() {
	s.mu.Lock()
	s.tx = transaction{}
	s.mu.Unlock()
}

// Logout implements smtp.Session.
func (s *session) Logout() error { return nil }

// authPort reports whether the port of this session offers SMTP AUTH at
// all: the SMTP port with smtp-auth, the SMTPS port with smtp-auth-smtps,
// the submission port always.
func (s *session) authPort() bool {
	ms := &s.cfg.System.Mailserver
	switch s.kind {
	case SMTP:
		return ms.SMTPAuth
	case SMTPS:
		return ms.SMTPAuthSMTPS
	}
	return true
}

// authOffered reports whether SMTP AUTH is offered now: on a port that
// has it, under TLS, or before STARTTLS with smtp-auth-over-tls disable
// (SMTPS is always under TLS).
func (s *session) authOffered() bool {
	return s.authPort() && (s.tlsInfo != nil || !s.cfg.System.Mailserver.SMTPAuthOverTLS)
}

// AuthMechanisms implements smtp.AuthSession: AUTH is advertised only
// when it is offered (authOffered).
func (s *session) AuthMechanisms() []string {
	if !s.authOffered() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.authPort() {
		return nil, errAuthOff
	}
	if !s.authOffered() {
		return nil, errAuthTLS
	}
	if s.needHelo {
		return nil, errHeloAgain
	}
	var inner sasl.Server
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		inner = sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return s.authFailed(user, "authorization identity differs")
			}
			return s.login(user, pass)
		})
	case sasl.Login:
		inner = &loginServer{check: s.login}
	default:
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return saslServer{s: s, inner: inner}, nil
}

// saslServer maps malformed exchanges to a proper reply (counted as a
// failed attempt).
type saslServer struct {
	s     *session
	inner sasl.Server
}

func (a saslServer) Next(resp []byte) ([]byte, bool, error) {
	ch, done, err := a.inner.Next(resp)
	if err != nil {
		if _, ok := err.(*smtp.SMTPError); !ok {
			if e := a.s.authFailed("", "malformed exchange"); e == errAuthTooMany {
				return nil, false, e
			}
			return nil, false, errAuthMalform
		}
	}
	return ch, done, err
}

// loginServer is the server side of the LOGIN mechanism.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if resp == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

func (s *session) login(user, pass string) error {
	res, err := s.srv.o.Auth.Check(s.srv.ctx, s.cfg, user, pass, s.ip)
	var unavailable *mailauth.UnavailableError
	switch {
	case errors.Is(err, mailauth.ErrThrottled):
		s.event("warning", "client=%s, sasl_username=%s, authentication refused: %v", s.client(), user, err)
		return errAuthThrottled
	case errors.As(err, &unavailable):
		s.event("warning", "client=%s, sasl_username=%s, authentication unavailable: %v", s.client(), user, err)
		return errAuthUnavailable
	case err != nil:
		return s.authFailed(user, err.Error())
	}
	s.authUser = res.User
	via := ""
	if res.Via != "local" {
		via = " by " + res.Via
	}
	s.event("information", "client=%s, sasl_username=%s, authenticated%s", s.client(), res.User, via)
	return nil
}

func (s *session) authFailed(user, why string) error {
	s.authFails++
	time.Sleep(authFailDelay)
	s.event("warning", "client=%s, sasl_username=%s, authentication failed: %s", s.client(), user, why)
	if s.authFails >= maxAuthFailures {
		s.shim.closeAfterWrite.Store(true)
		return errAuthTooMany
	}
	return smtp.ErrAuthFailed
}

// Mail implements smtp.Session.
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.needHelo {
		return errHeloAgain
	}
	if s.kind == MSA && s.authUser == "" {
		return errAuthNeeded
	}
	s.mu.Lock()
	s.tx = transaction{active: true, from: from}
	s.mu.Unlock()
	return nil
}

// Rcpt implements smtp.Session: the receive policy decides.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.needHelo {
		return errHeloAgain
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tx.active {
		return errNoSender
	}
	if s.tx.count >= s.lim.maxRcpt {
		s.history(s.tx.from, to, "Recipient Limit", "Temp Fail", reply(errTooManyRcpt))
		return errTooManyRcpt
	}
	d := policy.Receive(s.cfg, s.policySession(), s.tx.from, to)
	if !d.Accept {
		e := smtpErr(d.Code, d.Enhanced, d.Text)
		disp := "Reject"
		if d.Code/100 == 4 {
			disp = "Temp Fail"
		}
		s.history(s.tx.from, to, d.Classifier, disp, reply(e))
		return e
	}
	if check := s.srv.o.CheckRecipient; check != nil && !d.Discard {
		if err := check(s.cfg, to); err != nil {
			r := &Refusal{Code: 451, Enhanced: "4.3.0", Text: "Recipient check failed, try again later", Classifier: "Recipient Check"}
			errors.As(err, &r)
			e := smtpErr(r.Code, r.Enhanced, r.Text)
			disp := "Reject"
			if r.Code/100 == 4 {
				disp = "Temp Fail"
			}
			s.history(s.tx.from, to, r.Classifier, disp, reply(e))
			return e
		}
	}
	s.tx.count++
	if d.Discard {
		s.tx.discarded = append(s.tx.discarded, to)
		s.history(s.tx.from, to, d.Classifier, "Discard", d.Reply())
		return nil
	}
	for _, r := range s.tx.rcpts {
		if r == to {
			return nil
		}
	}
	s.tx.rcpts = append(s.tx.rcpts, to)
	s.tx.classes = append(s.tx.classes, d.Classifier)
	return nil
}

func (s *session) history(from, to, class, disp, status string) {
	s.srv.o.History(History{Time: s.srv.o.Now(), SessionID: s.id, ClientIP: s.ip, From: from, To: to,
		Classifier: class, Disposition: disp, TLS: s.tlsLine, Status: status})
}

// refuse records a message-level refusal for every recipient.
func (s *session) refuse(tx transaction, class string, e *smtp.SMTPError) error {
	disp := "Reject"
	if e.Code/100 == 4 {
		disp = "Temp Fail"
	}
	for _, r := range tx.rcpts {
		s.history(tx.from, r, class, disp, reply(e))
	}
	return e
}

// Data implements smtp.Session. The whole message is read and checked
// before anything is queued; it is acknowledged only once the queue has
// stored it.
func (s *session) Data(r io.Reader) error {
	isDATA := s.shim.takeDataMode()
	s.mu.Lock()
	tx := s.tx
	tx.rcpts = append([]string(nil), tx.rcpts...)
	tx.classes = append([]string(nil), tx.classes...)
	s.mu.Unlock()
	sp := newSpool(s.srv.o.SpoolDir)
	defer sp.Close()
	size, bare, err := copyMessage(sp, r, !isDATA)
	switch {
	case err == nil:
	case errors.Is(err, smtp.ErrDataTooLarge):
		s.event("information", "message from %s refused: larger than %d bytes, from=<%s>", s.client(), s.lim.maxSize, tx.from)
		return s.refuse(tx, "Message Size", errTooBig)
	case s.shim.overlong.Load():
		return s.refuse(tx, "Line Length", smtpErr(500, "5.5.2", "Line too long"))
	case isTimeout(err):
		s.event("information", "timeout receiving message data from %s", s.client())
		s.shim.closeAfterWrite.Store(true)
		return s.refuse(tx, "Data Timeout", errDataTimeout)
	case errors.As(err, new(*spoolError)):
		// Storing the message failed, not the client: a temporary local
		// error (go-smtp would answer 554 with the file name).
		s.event("error", "message from %s not received: %v, from=<%s>", s.client(), err, tx.from)
		if diskFull(err) {
			return s.refuse(tx, "Disk Full", errDiskFull)
		}
		return s.refuse(tx, "Queue Error", errQueue)
	default:
		return err // the client went away or reset the transfer
	}
	if s.needHelo {
		return errHeloAgain
	}
	if !tx.active {
		return errNoSender
	}
	if isDATA && s.shim.bareInData.Load() {
		bare = true
	}
	if bare {
		s.event("warning", "message from %s refused: bare CR or LF in DATA (SMTP smuggling protection), from=<%s>", s.client(), tx.from)
		return s.refuse(tx, "SMTP Smuggling", errSmuggling)
	}
	s.msgs++
	msgID := fmt.Sprintf("%s-%d", s.id, s.msgs)
	if len(tx.rcpts) == 0 {
		s.event("information", "message %s from %s discarded, from=<%s>, size=%d", msgID, s.client(), tx.from, size)
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + msgID}
	}
	now := s.srv.o.Now()
	env := queue.Envelope{From: tx.from, Recipients: tx.rcpts, Classifiers: tx.classes, SessionID: s.id, ClientIP: s.ip, Helo: s.helo(),
		AuthUser: s.authUser, TLS: s.tlsEnv, Received: now}
	if a, ok := s.raw.LocalAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		env.Server = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	hdr := ""
	if s.srv.o.Hidden == nil || !s.srv.o.Hidden(s.cfg, &env) {
		hdr = s.received(msgID, tx.rcpts, now)
	}
	body, err := sp.Reader()
	if err != nil {
		s.event("error", "message %s from %s: spool: %v", msgID, s.client(), err)
		return s.refuse(tx, "Queue Error", errQueue)
	}
	id, err := s.srv.o.Queue.Enqueue(env, io.MultiReader(strings.NewReader(hdr), body))
	if err != nil {
		if diskFull(err) {
			s.event("error", "message %s from %s not queued: %v", msgID, s.client(), err)
			return s.refuse(tx, "Disk Full", errDiskFull)
		}
		if errors.Is(err, queue.ErrTooBig) {
			return s.refuse(tx, "Message Size", errTooBig)
		}
		s.event("error", "message %s from %s not queued: %v", msgID, s.client(), err)
		return s.refuse(tx, "Queue Error", errQueue)
	}
	s.event("information", "queued as %s, message %s from %s, from=<%s>, nrcpt=%d, size=%d", id, msgID, s.client(), tx.from, len(tx.rcpts), size)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func diskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	var df interface{ DiskFull() bool }
	return errors.As(err, &df) && df.DiskFull()
}

func (s *session) helo() string {
	if s.conn == nil {
		return ""
	}
	return s.conn.Hostname()
}

// copyBuffers are copyMessage's working buffers, reused across messages:
// allocating them per message cost a tenth of the CPU under load.
type copyBuffers struct {
	in  [32 << 10]byte
	out [2*(32<<10) + 2]byte
}

var copyBufs = sync.Pool{New: func() any { return new(copyBuffers) }}

// copyMessage copies the message from r to w. For DATA (normalise false)
// it reports whether a bare CR or LF occurred, and stops storing (but
// keeps reading, so that the dialogue stays in step) once one did. For
// BDAT it rewrites bare CR and LF to CRLF and ends the message with CRLF.
func copyMessage(w io.Writer, r io.Reader, normalise bool) (size int64, bare bool, err error) {
	bufs := copyBufs.Get().(*copyBuffers)
	defer copyBufs.Put(bufs)
	buf, out := bufs.in[:], bufs.out[:0]
	prevCR := false
	var last byte
	for {
		n, rerr := r.Read(buf)
		out = out[:0]
		for _, c := range buf[:n] {
			if prevCR && c != '\n' {
				bare = true
				out = append(out, '\n')
			}
			if c == '\n' && !prevCR {
				bare = true
				out = append(out, '\r')
			}
			out = append(out, c)
			prevCR = c == '\r'
		}
		if rerr == io.EOF {
			if prevCR {
				bare = true
				out = append(out, '\n')
			}
			if normalise {
				end := last
				if len(out) > 0 {
					end = out[len(out)-1]
				}
				if end != 0 && end != '\n' {
					out = append(out, '\r', '\n')
				}
			}
		}
		if len(out) > 0 && (normalise || !bare) {
			if _, err := w.Write(out); err != nil {
				return size, bare && !normalise, &spoolError{err}
			}
			size += int64(len(out))
			last = out[len(out)-1]
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = nil
			}
			return size, bare && !normalise, rerr
		}
	}
}

// received renders the Received header (RFC 5321 section 4.4), folded.
func (s *session) received(msgID string, rcpts []string, now time.Time) string {
	helo := sanitize(s.helo(), 255)
	if helo == "" {
		helo = "unknown"
	}
	rdns := s.rdns
	if rdns == "" {
		rdns = "unknown"
	}
	lit := s.ip.String()
	if s.ip.Is6() {
		lit = "IPv6:" + lit
	}
	proto := "ESMTP"
	if !s.esmtp {
		proto = "SMTP"
	}
	if s.tlsInfo != nil {
		proto += "S"
	}
	if s.authUser != "" {
		if proto == "SMTP" {
			proto = "ESMTP"
		}
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s (%s [%s])\r\n\tby %s (mailgate) with %s id %s", helo, rdns, lit, sanitize(s.host, 255), proto, msgID)
	if s.tlsHeader != "" {
		b.WriteString("\r\n\t" + s.tlsHeader)
	}
	if len(rcpts) == 1 {
		b.WriteString("\r\n\tfor <" + sanitize(rcpts[0], 320) + ">")
	}
	b.WriteString("; " + now.In(s.d.loc).Format(time.RFC1123Z) + "\r\n")
	return b.String()
}

// sanitize keeps printable ASCII other than parentheses, angle brackets
// and semicolons (which would change the header's structure) and limits
// the length.
func sanitize(s string, max int) string {
	clean := len(s) <= max
	for i := 0; clean && i < len(s); i++ {
		clean = !headerUnsafe(s[i])
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, c := range []byte(s) {
		if b.Len() >= max {
			break
		}
		if headerUnsafe(c) {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// headerUnsafe reports whether sanitize replaces c.
func headerUnsafe(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '<' || c == '>' || c == ';'
}
