package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// shim is the net.Conn that go-smtp talks to. It owns the client's
// transport (the TCP connection, or a *tls.Conn over it) and so always
// sees the SMTP dialogue in clear text, in both directions. go-smtp is run
// without a TLSConfig and never learns about TLS; the shim provides it:
//
//   - Read hands go-smtp at most one line per call. go-smtp's buffered
//     reader therefore never holds bytes beyond the line it is working on,
//     which makes the STARTTLS switch exact: whatever the client sent
//     after the STARTTLS line is fed to the TLS handshake, never to the
//     SMTP parser (no command injection, CVE-2011-0411 style).
//   - Read enforces max-line-length on every line of the stream (commands,
//     DATA and BDAT content alike): the client gets "500 5.5.2 Line too
//     long" and the connection is closed.
//   - Read sets an idle deadline before every read from the transport:
//     command-timeout, or data-timeout between a 354 reply and the next
//     reply.
//   - Write sees go-smtp's replies, one line per call (textproto flushes
//     every line). It answers accepted MAIL and RCPT commands with the
//     standard "250 2.1.0 Ok" and "250 2.1.5 Ok", adds "250-STARTTLS" to
//     EHLO replies when STARTTLS is offered to this client, and turns
//     go-smtp's answer to STARTTLS
//     ("502 5.5.1 TLS not supported", which it gives for want of a
//     TLSConfig) into "220 2.0.0 Ready to start TLS" followed by the
//     handshake whenever TLS is available on this connection, offered or
//     not.
type shim struct {
	raw net.Conn

	mu     sync.Mutex
	tr     net.Conn // raw, or the *tls.Conn once TLS is up
	closed bool
	done   chan struct{} // closed by Close

	// Read side; only go-smtp's connection goroutine reads.
	buf     []byte
	pending []byte // read from the transport, not yet handed out
	rerr    error  // transport error to report once pending is drained
	dead    error  // every further Read fails with this
	lineLen int

	// Write side.
	partial []byte // incomplete reply line

	maxLine     int
	cmdTimeout  time.Duration
	dataTimeout time.Duration
	timeout     atomic.Int64 // current idle timeout for reads

	tlsConf   *tls.Config // nil: no TLS on this connection
	offerTLS  bool        // advertise STARTTLS in EHLO replies
	tlsActive atomic.Bool

	closeAfterWrite atomic.Bool // close once the next reply is written
	dataMode        atomic.Bool // a 354 went out and Data has not taken it
	overlong        atomic.Bool // closed for a line that was too long
	bareInData      atomic.Bool // the DATA now being received has a bare CR or LF

	// Between a 354 reply and the next reply everything the client sends
	// is message data; the shim checks it for bare CR and LF itself,
	// because go-smtp's DATA reader drops "." followed by a bare CR at the
	// start of a line and so hides that one from the session.
	inData     bool
	dataPrevCR bool

	// Hooks into the session, called on go-smtp's connection goroutine.
	onTLS   func(cs tls.ConnectionState)
	onGreet func(esmtp bool)
	event   func(level, format string, args ...any)
}

var (
	replyTLSRefused = []byte("502 5.5.1 TLS not supported\r\n")
	replyInTLS      = []byte("502 5.5.1 Already running in TLS\r\n")
	replyTLSReady   = []byte("220 2.0.0 Ready to start TLS\r\n")
	replyLineLong   = []byte("500 5.5.2 Line too long\r\n")
	capSTARTTLS     = []byte("250-STARTTLS\r\n")
	ehloFirst       = []byte("250-Hello ")
	mailOK          = []byte("250 2.0.0 Roger, accepting mail from <")
	rcptOK          = []byte("250 2.0.0 I'll make sure <")
	heloReply       = []byte("250 2.0.0 Hello ")
	dataGoAhead     = []byte("354 ")
)

// standardReplies replaces go-smtp replies whose codes differ from RFC
// 5321's: commands out of sequence are 503 (not 502, which means "not
// implemented"), an unrecognised command line is 500, a missing argument
// is 501, and unknown MAIL/RCPT parameters are 555.
var standardReplies = map[string]string{
	"502 5.5.1 Please introduce yourself first.\r\n":         "503 5.5.1 Error: send HELO/EHLO first\r\n",
	"502 5.5.1 Missing MAIL FROM command.\r\n":               "503 5.5.1 Error: need MAIL command\r\n",
	"502 5.5.1 Missing RCPT TO command.\r\n":                 "503 5.5.1 Error: need RCPT command\r\n",
	"502 5.5.1 MAIL not allowed during message transfer\r\n": "503 5.5.1 Error: nested MAIL command\r\n",
	"502 5.5.1 RCPT not allowed during message transfer\r\n": "503 5.5.1 Error: RCPT during message transfer\r\n",
	"502 5.5.1 DATA not allowed during message transfer\r\n": "503 5.5.1 Error: DATA during message transfer\r\n",
	"502 5.5.1 DATA not allowed for BINARYMIME messages\r\n": "503 5.5.1 Error: BINARYMIME messages need BDAT\r\n",
	"501 5.5.2 Bad command\r\n":                              "500 5.5.2 Error: command not recognized\r\n",
	"502 5.5.4 Missing parameter\r\n":                        "501 5.5.4 Syntax: AUTH mechanism\r\n",
	"500 5.5.4 Unknown MAIL FROM argument\r\n":               "555 5.5.4 Error: unsupported MAIL parameter or address syntax\r\n",
	"500 5.5.4 Unknown RCPT TO argument\r\n":                 "555 5.5.4 Error: unsupported RCPT parameter or address syntax\r\n",
}

func newShim(raw net.Conn, prefix []byte, maxLine int, cmdTimeout, dataTimeout time.Duration) *shim {
	s := &shim{raw: raw, tr: raw, done: make(chan struct{}), buf: make([]byte, 16<<10),
		maxLine: maxLine, cmdTimeout: cmdTimeout, dataTimeout: dataTimeout}
	if len(prefix) > 0 {
		s.pending = append([]byte(nil), prefix...)
	}
	s.timeout.Store(int64(cmdTimeout))
	s.onTLS = func(tls.ConnectionState) {}
	s.onGreet = func(bool) {}
	s.event = func(string, string, ...any) {}
	return s
}

func (s *shim) transport() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tr
}

// recoverIO turns a panic on the I/O path (which go-smtp does not guard)
// into a closed connection and a logged error.
func (s *shim) recoverIO(err *error) {
	if r := recover(); r != nil {
		s.event("error", "panic in SMTP connection: %v\n%s", r, debug.Stack())
		s.abort()
		s.dead = net.ErrClosed
		*err = net.ErrClosed
	}
}

// Read implements net.Conn for go-smtp; see the type's documentation.
func (s *shim) Read(p []byte) (n int, err error) {
	defer s.recoverIO(&err)
	if s.dead != nil {
		return 0, s.dead
	}
	if len(p) == 0 {
		return 0, nil
	}
	for len(s.pending) == 0 {
		if s.rerr != nil {
			return 0, s.fail(s.rerr)
		}
		tr := s.transport()
		if d := time.Duration(s.timeout.Load()); d > 0 {
			tr.SetReadDeadline(time.Now().Add(d))
		}
		m, err := tr.Read(s.buf)
		s.pending = s.buf[:m]
		if err != nil {
			s.rerr = err
		}
	}
	k := len(s.pending)
	if i := bytes.IndexByte(s.pending, '\n'); i >= 0 {
		k = i + 1
	}
	k = min(k, len(p))
	for _, c := range s.pending[:k] {
		s.lineLen++
		if s.lineLen > s.maxLine {
			return 0, s.lineTooLong()
		}
		if c == '\n' {
			s.lineLen = 0
		}
	}
	if s.inData {
		for _, c := range s.pending[:k] {
			if s.dataPrevCR != (c == '\n') {
				s.bareInData.Store(true)
			}
			s.dataPrevCR = c == '\r'
		}
	}
	copy(p, s.pending[:k])
	s.pending = s.pending[k:]
	return k, nil
}

// fail records a transport error for Read. A timeout also arranges for the
// connection to be closed once go-smtp (or the session) has answered it.
func (s *shim) fail(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.closeAfterWrite.Store(true)
	}
	s.dead = err
	return err
}

func (s *shim) lineTooLong() error {
	s.overlong.Store(true)
	s.event("warning", "line longer than %d bytes from client, connection closed", s.maxLine)
	s.writeOut(replyLineLong)
	s.lingerClose()
	s.dead = net.ErrClosed
	return net.ErrClosed
}

// lingerTime bounds lingerClose.
const lingerTime = time.Second

// lingerClose ends the connection after a final reply: it stops sending
// (FIN, after a close_notify under TLS) and for a moment reads and drops
// what the client is still sending, so that the client gets to read the
// reply instead of losing it to a reset.
func (s *shim) lingerClose() {
	if tc, ok := s.transport().(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(lingerTime))
		tc.CloseWrite()
	}
	if cw, ok := s.raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	s.raw.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, s.raw, 1<<20)
	s.Close()
}

// Write implements net.Conn for go-smtp; see the type's documentation.
func (s *shim) Write(p []byte) (n int, err error) {
	defer s.recoverIO(&err)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	data := append(s.partial, p...)
	s.partial = nil
	var out []byte
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := data[:i+1]
		data = data[i+1:]
		if out, err = s.reply(out, line); err != nil {
			s.Close()
			return 0, err
		}
	}
	if len(data) > 0 {
		s.partial = append([]byte(nil), data...)
	}
	if len(out) > 0 {
		if err := s.writeOut(out); err != nil {
			// A reply that cannot be written (the client has not read
			// for command-timeout, or is gone) ends the session: go-smtp
			// ignores write errors, and its buffered writer would fail
			// every later reply at once while commands are still read.
			s.Close()
			return 0, err
		}
	}
	if len(s.partial) == 0 && s.closeAfterWrite.Load() {
		s.lingerClose()
		s.dead = net.ErrClosed
	}
	return len(p), nil
}

// reply handles one complete reply line, appending what is to be sent to
// out.
func (s *shim) reply(out, line []byte) ([]byte, error) {
	s.inData = false
	switch {
	case bytes.Equal(line, replyTLSRefused):
		s.timeout.Store(int64(s.cmdTimeout))
		if s.tlsActive.Load() {
			return append(out, replyInTLS...), nil
		}
		if s.tlsConf == nil {
			return append(out, line...), nil
		}
		out = append(out, replyTLSReady...)
		if err := s.writeOut(out); err != nil {
			return nil, err
		}
		s.startTLS()
		return nil, nil
	case bytes.HasPrefix(line, ehloFirst):
		s.timeout.Store(int64(s.cmdTimeout))
		out = append(out, line...)
		if s.offerTLS && s.tlsConf != nil && !s.tlsActive.Load() {
			out = append(out, capSTARTTLS...)
		}
		s.onGreet(true)
		return out, nil
	case bytes.HasPrefix(line, heloReply):
		s.onGreet(false)
	case bytes.HasPrefix(line, mailOK):
		line = []byte("250 2.1.0 Ok\r\n")
	case bytes.HasPrefix(line, rcptOK):
		line = []byte("250 2.1.5 Ok\r\n")
	case bytes.HasPrefix(line, dataGoAhead):
		s.timeout.Store(int64(s.dataTimeout))
		s.dataMode.Store(true)
		s.inData, s.dataPrevCR = true, false
		s.bareInData.Store(false)
		return append(out, line...), nil
	case line[0] == '5':
		if std, ok := standardReplies[string(line)]; ok {
			line = []byte(std)
		}
	}
	s.timeout.Store(int64(s.cmdTimeout))
	return append(out, line...), nil
}

func (s *shim) writeOut(b []byte) error {
	tr := s.transport()
	tr.SetWriteDeadline(time.Now().Add(s.cmdTimeout))
	_, err := tr.Write(b)
	return err
}

// startTLS runs the server side of a TLS handshake on the raw connection;
// bytes the client sent ahead are its first TLS bytes. On failure the
// connection is closed.
func (s *shim) startTLS() error {
	raw := &prefixConn{Conn: s.raw, prefix: append([]byte(nil), s.pending...)}
	s.pending, s.rerr = nil, nil
	tc := tls.Server(raw, s.tlsConf)
	ctx, cancel := context.WithTimeout(context.Background(), s.cmdTimeout)
	defer cancel()
	tc.SetDeadline(time.Now().Add(s.cmdTimeout))
	err := tc.HandshakeContext(ctx)
	if err != nil {
		s.event("warning", "TLS handshake failed: %v", err)
		s.Close()
		s.dead = net.ErrClosed
		return err
	}
	tc.SetDeadline(time.Time{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		tc.Close()
		s.dead = net.ErrClosed
		return net.ErrClosed
	}
	s.tr = tc
	s.mu.Unlock()
	s.tlsActive.Store(true)
	s.lineLen = 0
	s.onTLS(tc.ConnectionState())
	return nil
}

// takeDataMode reports (once) whether the message now being received
// follows a DATA command (rather than BDAT).
func (s *shim) takeDataMode() bool { return s.dataMode.Swap(false) }

// Close closes the connection, with a TLS close_notify when TLS is up.
func (s *shim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	tr := s.tr
	s.mu.Unlock()
	var err error
	if tc, ok := tr.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		err = tc.Close()
	}
	if rerr := s.raw.Close(); err == nil && !errors.Is(rerr, net.ErrClosed) {
		err = rerr
	}
	close(s.done)
	return err
}

// abort closes the TCP connection at once (server shutdown); go-smtp then
// fails on its next read or write and closes the shim itself.
func (s *shim) abort() { s.raw.Close() }

func (s *shim) LocalAddr() net.Addr  { return s.raw.LocalAddr() }
func (s *shim) RemoteAddr() net.Addr { return s.raw.RemoteAddr() }

// The shim manages deadlines itself; go-smtp is run without timeouts.
func (s *shim) SetDeadline(time.Time) error      { return nil }
func (s *shim) SetReadDeadline(time.Time) error  { return nil }
func (s *shim) SetWriteDeadline(time.Time) error { return nil }

// prefixConn is a net.Conn that returns prefix before reading from Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// oneConnListener hands out one connection, then blocks until that
// connection is closed (or the listener is), so that a go-smtp Server can
// serve exactly one connection.
type oneConnListener struct {
	c      *shim
	once   sync.Once
	ch     chan net.Conn
	closed chan struct{}
	close  sync.Once
}

func newOneConnListener(c *shim) *oneConnListener {
	l := &oneConnListener{c: c, ch: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.ch <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	default:
	}
	select {
	case <-l.c.done:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.close.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }

// peek waits up to d for the client's first bytes (TLS auto-detection).
func peek(raw net.Conn, d time.Duration) []byte {
	raw.SetReadDeadline(time.Now().Add(d))
	defer raw.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(raw, buf, 1)
	return buf[:n]
}

// errorLog receives go-smtp's own log lines.
type errorLog struct {
	event func(level, format string, args ...any)
}

func (l errorLog) Printf(format string, v ...any) { l.log(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.log(fmt.Sprintln(v...)) }

func (l errorLog) log(msg string) {
	level := "information"
	if strings.Contains(msg, "panic") {
		level = "error"
	}
	l.event(level, "%s", strings.TrimSpace(msg))
}
