// Package pop3d is the appliance's POP3 service (server mode): RFC 1939
// with the CAPA extension mechanism (RFC 2449), STLS (RFC 2595) and SASL
// PLAIN (RFC 5034, RFC 4616), UIDL and TOP, on a plain port and on an
// implicit-TLS port (POP3S).
//
// No Go library for a POP3 server is available, so the protocol is here;
// the mailboxes are not: a Backend checks logins and opens a Maildrop, a
// snapshot of the user's INBOX taken at login. Deletions are only marks
// until QUIT ends the session normally (the UPDATE state), when the
// Maildrop applies them; a connection that drops applies nothing.
//
// By default no password crosses a plain connection: before STLS, CAPA
// lists neither USER nor SASL, and USER, PASS and AUTH are refused.
package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailgate/policy"
)

// Message is one message of a maildrop.
type Message struct {
	UIDL string // unique id, stable across sessions: 1-70 characters 0x21-0x7E
	Size int64  // octets as sent: CRLF line ends, before dot-stuffing
}

// Maildrop is the snapshot of a mailbox a session works on.
type Maildrop interface {
	// Messages lists the messages; message n of the session is index n-1.
	Messages() []Message
	// Open returns the content of a message (CRLF line ends).
	Open(i int) (io.ReadCloser, error)
	// Delete removes the messages (indexes) when the session ends with
	// QUIT.
	Delete(indexes []int) error
	// Close ends the session's use of the maildrop.
	Close() error
}

// Backend checks logins.
type Backend interface {
	// Login returns the maildrop of user and the user's canonical name,
	// or an error: ErrAuthFailed for a wrong name or password, any other
	// error for a failure to check or to open the mailbox (answered as a
	// temporary failure).
	Login(ctx context.Context, user, pass string, remote netip.Addr) (Maildrop, string, error)
}

// ErrAuthFailed is a refused login.
var ErrAuthFailed = errors.New("authentication failed")

// Options configure a Server.
type Options struct {
	Backend Backend
	// TLS returns the TLS configuration for STLS and POP3S; nil, or nil
	// returned, means no TLS (STLS is not offered).
	TLS func() *tls.Config
	// PlainAuth lets USER/PASS and AUTH work without TLS.
	PlainAuth bool
	// Hostname is named in the greeting.
	Hostname string
	// IdleTimeout ends a session that sends nothing (0: 10 minutes, the
	// least RFC 1939 allows).
	IdleTimeout time.Duration
	// MaxConnections and MaxPerIP limit concurrent sessions (0: no limit).
	MaxConnections, MaxPerIP int
	// Event receives event log lines; level is "information" or
	// "warning".
	Event func(level, msg string)
}

// Limits of the protocol.
const (
	maxLine         = 512 // RFC 2449: 255 for commands, 255 for arguments; SASL lines are longer
	maxAuthFailures = 3
)

// authFailDelay is the pause before a refused login is answered.
var authFailDelay = time.Second

// Server is a POP3 service on any number of listeners.
type Server struct {
	o Options

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	perIP     map[netip.Addr]int
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// New returns a server.
func New(o Options) *Server {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{o: o, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}, perIP: map[netip.Addr]int{}, ctx: ctx, cancel: cancel}
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("pop3d: server closed")

// Serve accepts connections on ln until it fails or the server closes;
// implicitTLS makes it a POP3S listener.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c, implicitTLS)
		}()
	}
}

// Close stops the listeners and ends every session (deletions of
// sessions that did not QUIT are not applied).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) event(level, format string, args ...any) {
	if s.o.Event != nil {
		s.o.Event(level, fmt.Sprintf(format, args...))
	}
}

// admit registers c, or refuses it over the limits.
func (s *Server) admit(c net.Conn, ip netip.Addr) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "server closing", false
	}
	if s.o.MaxConnections > 0 && len(s.conns) >= s.o.MaxConnections {
		return "too many connections", false
	}
	if s.o.MaxPerIP > 0 && s.perIP[ip] >= s.o.MaxPerIP {
		return "too many connections from your address", false
	}
	s.conns[c] = struct{}{}
	s.perIP[ip]++
	return "", true
}

func (s *Server) release(c net.Conn, ip netip.Addr) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
}

func (s *Server) handle(raw net.Conn, implicitTLS bool) {
	defer raw.Close()
	ip := netip.Addr{}
	if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil {
		ip = ap.Addr().Unmap()
	}
	if why, ok := s.admit(raw, ip); !ok {
		raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(raw, "-ERR [SYS/TEMP] %s\r\n", why)
		s.event("warning", "pop3: client=%s refused: %s", ip, why)
		return
	}
	defer s.release(raw, ip)
	ss := &session{srv: s, raw: raw, conn: raw, ip: ip}
	if implicitTLS {
		conf := s.tlsConfig()
		if conf == nil {
			return
		}
		tc := tls.Server(raw, conf)
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.event("warning", "pop3s: client=%s TLS handshake failed: %v", ip, err)
			return
		}
		ss.conn = tc
		ss.tlsState(tc)
	}
	ss.run()
}

func (s *Server) tlsConfig() *tls.Config {
	if s.o.TLS == nil {
		return nil
	}
	return s.o.TLS()
}

// session is one POP3 connection.
type session struct {
	srv  *Server
	raw  net.Conn
	conn net.Conn // raw or TLS over it
	r    *bufio.Reader
	w    *bufio.Writer
	ip   netip.Addr
	tls  string // "TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits", "" in plain text

	user      string // after USER
	fails     int
	drop      Maildrop // TRANSACTION state when set
	login     string
	msgs      []Message
	deleted   []bool
	quitClean bool
}

func (ss *session) tlsState(tc *tls.Conn) {
	cs := tc.ConnectionState()
	ss.tls = policy.Describe(policy.Info(&cs, false))
	ss.srv.event("information", "pop3: client=%s TLS %s", ss.ip, ss.tls)
}

func (ss *session) reply(format string, args ...any) error {
	fmt.Fprintf(ss.w, format+"\r\n", args...)
	return ss.w.Flush()
}

func (ss *session) run() {
	ss.r = bufio.NewReaderSize(ss.conn, 4096)
	ss.w = bufio.NewWriter(ss.conn)
	defer func() {
		if ss.drop != nil {
			ss.drop.Close()
		}
	}()
	ss.conn.SetDeadline(time.Now().Add(ss.srv.o.IdleTimeout))
	if ss.reply("+OK %s POP3 server ready", ss.srv.o.Hostname) != nil {
		return
	}
	for {
		ss.conn.SetDeadline(time.Now().Add(ss.srv.o.IdleTimeout))
		line, err := ss.readLine()
		if errors.Is(err, errLineTooLong) {
			if ss.reply("-ERR line too long") != nil {
				return
			}
			continue
		}
		if err != nil {
			if ss.drop != nil && !ss.quitClean {
				ss.srv.event("information", "pop3: client=%s user=%s connection ended without QUIT: no message deleted", ss.ip, ss.login)
			}
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		if !ss.command(strings.ToUpper(cmd), arg) {
			return
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one CRLF (or LF) terminated line without its end; a
// line over maxLine is consumed and refused.
func (ss *session) readLine() (string, error) {
	var b []byte
	tooLong := false
	for {
		frag, err := ss.r.ReadSlice('\n')
		if !tooLong {
			b = append(b, frag...)
			if len(b) > maxLine+2 {
				tooLong, b = true, nil
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		if tooLong {
			return "", errLineTooLong
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

// authAllowed reports whether USER/PASS and AUTH may be used now.
func (ss *session) authAllowed() bool {
	return ss.tls != "" || ss.srv.o.PlainAuth
}

// command runs one command; false ends the session.
func (ss *session) command(cmd, arg string) bool {
	if ss.drop == nil {
		return ss.authorization(cmd, arg)
	}
	return ss.transaction(cmd, arg)
}

func (ss *session) capa() bool {
	fmt.Fprintf(ss.w, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n")
	if ss.drop == nil {
		if ss.authAllowed() {
			fmt.Fprintf(ss.w, "USER\r\nSASL PLAIN\r\n")
		}
		if ss.tls == "" && ss.srv.tlsConfig() != nil {
			fmt.Fprintf(ss.w, "STLS\r\n")
		}
	}
	fmt.Fprintf(ss.w, "IMPLEMENTATION mailgate\r\n.\r\n")
	return ss.w.Flush() == nil
}

func (ss *session) authorization(cmd, arg string) bool {
	switch cmd {
	case "CAPA":
		return ss.capa()
	case "QUIT":
		ss.reply("+OK %s POP3 server signing off", ss.srv.o.Hostname)
		return false
	case "NOOP":
		return ss.reply("+OK") == nil
	case "STLS":
		return ss.stls()
	case "USER":
		if !ss.authAllowed() {
			return ss.reply("-ERR [AUTH] Use STLS first: no password in plain text") == nil
		}
		if arg == "" {
			return ss.reply("-ERR USER needs a name") == nil
		}
		ss.user = arg
		return ss.reply("+OK send PASS") == nil
	case "PASS":
		if !ss.authAllowed() {
			return ss.reply("-ERR [AUTH] Use STLS first: no password in plain text") == nil
		}
		if ss.user == "" {
			return ss.reply("-ERR USER first") == nil
		}
		user := ss.user
		ss.user = ""
		return ss.loginWith(user, arg)
	case "AUTH":
		return ss.auth(arg)
	case "APOP":
		return ss.reply("-ERR APOP is not supported") == nil
	}
	if isTransactionCommand(cmd) {
		return ss.reply("-ERR log in first") == nil
	}
	return ss.reply("-ERR unknown command") == nil
}

func isTransactionCommand(cmd string) bool {
	switch cmd {
	case "STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL":
		return true
	}
	return false
}

func (ss *session) stls() bool {
	conf := ss.srv.tlsConfig()
	switch {
	case ss.tls != "":
		return ss.reply("-ERR already in TLS") == nil
	case conf == nil:
		return ss.reply("-ERR TLS not available") == nil
	case ss.r.Buffered() > 0:
		// Commands pipelined after STLS would be read as if protected.
		ss.reply("-ERR data after STLS")
		return false
	}
	if ss.reply("+OK begin TLS negotiation") != nil {
		return false
	}
	tc := tls.Server(ss.raw, conf)
	ss.raw.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.HandshakeContext(ss.srv.ctx); err != nil {
		ss.srv.event("warning", "pop3: client=%s STLS handshake failed: %v", ss.ip, err)
		return false
	}
	ss.conn = tc
	ss.r = bufio.NewReaderSize(tc, 4096)
	ss.w = bufio.NewWriter(tc)
	ss.user = ""
	ss.tlsState(tc)
	return true
}

// auth is AUTH [mechanism [initial-response]].
func (ss *session) auth(arg string) bool {
	mech, ir, hasIR := strings.Cut(strings.TrimSpace(arg), " ")
	if mech == "" {
		// A list of mechanisms (a common extension, used by Outlook).
		if !ss.authAllowed() {
			return ss.reply("+OK\r\n.") == nil
		}
		return ss.reply("+OK\r\nPLAIN\r\n.") == nil
	}
	if !ss.authAllowed() {
		return ss.reply("-ERR [AUTH] Use STLS first: no password in plain text") == nil
	}
	if !strings.EqualFold(mech, "PLAIN") {
		return ss.reply("-ERR unsupported mechanism") == nil
	}
	if !hasIR {
		if ss.reply("+ ") != nil {
			return false
		}
		line, err := ss.readLine()
		if err != nil {
			return errors.Is(err, errLineTooLong) && ss.reply("-ERR line too long") == nil
		}
		ir = line
	}
	if ir == "*" {
		return ss.reply("-ERR authentication cancelled") == nil
	}
	if ir == "=" {
		ir = ""
	}
	raw, err := base64.StdEncoding.DecodeString(ir)
	if err != nil {
		return ss.failed("", "malformed SASL response")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return ss.failed("", "malformed SASL PLAIN message")
	}
	if parts[0] != "" && parts[0] != parts[1] {
		return ss.failed(parts[1], "authorization identity differs")
	}
	return ss.loginWith(parts[1], parts[2])
}

// loginWith checks a login and enters the TRANSACTION state.
func (ss *session) loginWith(user, pass string) bool {
	drop, name, err := ss.srv.o.Backend.Login(ss.srv.ctx, user, pass, ss.ip)
	switch {
	case errors.Is(err, ErrAuthFailed):
		return ss.failed(user, "bad user name or password")
	case err != nil:
		ss.srv.event("warning", "pop3: client=%s user=%s login failed: %v", ss.ip, user, err)
		return ss.reply("-ERR [SYS/TEMP] mailbox unavailable, try again later") == nil
	}
	ss.drop, ss.login = drop, name
	ss.msgs = drop.Messages()
	ss.deleted = make([]bool, len(ss.msgs))
	n, size := ss.stat()
	ss.srv.event("information", "pop3: client=%s user=%s logged in, %d messages (%d octets)", ss.ip, name, n, size)
	return ss.reply("+OK maildrop has %d messages (%d octets)", n, size) == nil
}

// failed answers a refused login; after maxAuthFailures the session ends.
func (ss *session) failed(user, why string) bool {
	ss.fails++
	time.Sleep(authFailDelay)
	ss.srv.event("warning", "pop3: client=%s user=%s authentication failed: %s", ss.ip, user, why)
	if ss.reply("-ERR [AUTH] authentication failed") != nil {
		return false
	}
	return ss.fails < maxAuthFailures
}

func (ss *session) stat() (n int, size int64) {
	for i, m := range ss.msgs {
		if !ss.deleted[i] {
			n++
			size += m.Size
		}
	}
	return n, size
}

// msg parses a message number argument.
func (ss *session) msg(arg string) (int, string) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(ss.msgs) {
		return 0, "-ERR no such message"
	}
	if ss.deleted[n-1] {
		return 0, fmt.Sprintf("-ERR message %d already deleted", n)
	}
	return n - 1, ""
}

func (ss *session) transaction(cmd, arg string) bool {
	switch cmd {
	case "CAPA":
		return ss.capa()
	case "STAT":
		n, size := ss.stat()
		return ss.reply("+OK %d %d", n, size) == nil
	case "LIST", "UIDL":
		value := func(i int) string {
			if cmd == "LIST" {
				return strconv.FormatInt(ss.msgs[i].Size, 10)
			}
			return ss.msgs[i].UIDL
		}
		if strings.TrimSpace(arg) != "" {
			i, e := ss.msg(arg)
			if e != "" {
				return ss.reply("%s", e) == nil
			}
			return ss.reply("+OK %d %s", i+1, value(i)) == nil
		}
		n, size := ss.stat()
		if cmd == "LIST" {
			fmt.Fprintf(ss.w, "+OK %d messages (%d octets)\r\n", n, size)
		} else {
			fmt.Fprintf(ss.w, "+OK\r\n")
		}
		for i := range ss.msgs {
			if !ss.deleted[i] {
				fmt.Fprintf(ss.w, "%d %s\r\n", i+1, value(i))
			}
		}
		return ss.reply(".") == nil
	case "RETR":
		i, e := ss.msg(arg)
		if e != "" {
			return ss.reply("%s", e) == nil
		}
		return ss.send(i, -1)
	case "TOP":
		num, lines, _ := strings.Cut(strings.TrimSpace(arg), " ")
		i, e := ss.msg(num)
		if e != "" {
			return ss.reply("%s", e) == nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(lines))
		if err != nil || n < 0 {
			return ss.reply("-ERR TOP needs a message number and a number of lines") == nil
		}
		return ss.send(i, n)
	case "DELE":
		i, e := ss.msg(arg)
		if e != "" {
			return ss.reply("%s", e) == nil
		}
		ss.deleted[i] = true
		return ss.reply("+OK message %d deleted", i+1) == nil
	case "RSET":
		clear(ss.deleted)
		n, size := ss.stat()
		return ss.reply("+OK maildrop has %d messages (%d octets)", n, size) == nil
	case "NOOP":
		return ss.reply("+OK") == nil
	case "QUIT":
		return ss.update()
	case "USER", "PASS", "AUTH", "APOP", "STLS":
		return ss.reply("-ERR already logged in") == nil
	}
	return ss.reply("-ERR unknown command") == nil
}

// update applies the deletions at QUIT (the UPDATE state).
func (ss *session) update() bool {
	ss.quitClean = true
	var del []int
	for i, d := range ss.deleted {
		if d {
			del = append(del, i)
		}
	}
	if len(del) > 0 {
		if err := ss.drop.Delete(del); err != nil {
			ss.srv.event("warning", "pop3: client=%s user=%s deleting %d messages failed: %v", ss.ip, ss.login, len(del), err)
			ss.reply("-ERR [SYS/TEMP] some deleted messages not removed")
			return false
		}
		ss.srv.event("information", "pop3: client=%s user=%s deleted %d messages", ss.ip, ss.login, len(del))
	}
	ss.reply("+OK %s POP3 server signing off (%d messages left)", ss.srv.o.Hostname, len(ss.msgs)-len(del))
	return false
}

// send writes message i as a multi-line response, dot-stuffed: all of it
// (lines < 0), or its header and the first lines lines of its body.
func (ss *session) send(i, lines int) bool {
	rc, err := ss.drop.Open(i)
	if err != nil {
		ss.srv.event("warning", "pop3: client=%s user=%s reading message %d: %v", ss.ip, ss.login, i+1, err)
		return ss.reply("-ERR [SYS/TEMP] message cannot be read") == nil
	}
	defer rc.Close()
	if lines < 0 {
		fmt.Fprintf(ss.w, "+OK %d octets\r\n", ss.msgs[i].Size)
	} else {
		fmt.Fprintf(ss.w, "+OK\r\n")
	}
	br := bufio.NewReaderSize(rc, 32*1024)
	inBody, bodyLines := false, 0
	for {
		ss.conn.SetDeadline(time.Now().Add(ss.srv.o.IdleTimeout))
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if inBody && lines >= 0 {
				if bodyLines >= lines {
					break
				}
				bodyLines++
			}
			if line[0] == '.' {
				ss.w.WriteByte('.')
			}
			ss.w.Write(line)
			if line[len(line)-1] != '\n' && err != bufio.ErrBufferFull {
				ss.w.WriteString("\r\n") // a last line without its end
			}
			if !inBody && (string(line) == "\r\n" || string(line) == "\n") {
				inBody = true
			}
		}
		if err == bufio.ErrBufferFull {
			// A very long line: the rest follows without stuffing.
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				ss.w.Write(line)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			ss.srv.event("warning", "pop3: client=%s user=%s reading message %d: %v", ss.ip, ss.login, i+1, err)
			return false // the response cannot be ended honestly
		}
	}
	return ss.reply(".") == nil
}
