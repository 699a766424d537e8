package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
)

// The SMTP client is a small one on net/textproto rather than go-smtp's
// Client: delivery must send its own EHLO before deciding on STARTTLS,
// carry on in plain text when STARTTLS is missing or refused, tell a
// failed TLS handshake from a failed EHLO after it, and pipeline MAIL and
// RCPT; go-smtp v0.25's Client can do STARTTLS only from its constructors
// (EHLO "localhost", failing when the extension is absent) and starts the
// handshake lazily inside the next command.

// reply is an SMTP server reply.
type reply struct {
	Code int
	Enh  string // enhanced status code ("2.0.0"), "" when absent
	Text string // text without the enhanced code, lines joined by "\n"
}

// String renders a reply as one line: "250 2.0.0 Ok: queued as X".
func (r reply) String() string {
	s := strconv.Itoa(r.Code)
	if r.Enh != "" {
		s += " " + r.Enh
	}
	if r.Text != "" {
		s += " " + strings.ReplaceAll(r.Text, "\n", " ")
	}
	return s
}

func (r reply) ok() bool { return r.Code >= 200 && r.Code < 300 }

// conn is one SMTP client connection.
type conn struct {
	raw         net.Conn // the TCP connection
	nc          net.Conn // raw, or the TLS connection over it
	tp          *textproto.Conn
	ext         map[string]string // EHLO keywords (upper case) -> parameters
	greeting    reply
	cmdTimeout  time.Duration
	dataTimeout time.Duration
	tls         *tls.ConnectionState
	broken      bool        // state unknown: never reuse
	release     func() bool // stops closing the connection when the delivery's context ends
}

func newConn(raw net.Conn, cmdTimeout time.Duration) *conn {
	c := &conn{raw: raw, nc: raw, cmdTimeout: cmdTimeout, dataTimeout: max(cmdTimeout, 10*time.Minute)}
	c.tp = textproto.NewConn(raw)
	return c
}

func (c *conn) deadline(d time.Duration) {
	c.nc.SetDeadline(time.Now().Add(d))
}

// read reads one reply.
func (c *conn) read() (reply, error) {
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		var te *textproto.Error
		if !errors.As(err, &te) {
			c.broken = true
			return reply{}, err
		}
	}
	r := parseReply(code, msg)
	if r.Code == 421 {
		c.broken = true // the server closes the connection
	}
	return r, nil
}

func parseReply(code int, msg string) reply {
	r := reply{Code: code}
	lines := strings.Split(msg, "\n")
	if enh, _, ok := strings.Cut(lines[0], " "); ok && isEnhanced(enh, code) {
		r.Enh = enh
		for i, l := range lines {
			lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, enh), " ")
		}
	} else if isEnhanced(lines[0], code) && len(lines) == 1 {
		r.Enh, lines[0] = lines[0], ""
	}
	r.Text = strings.Join(lines, "\n")
	return r
}

// isEnhanced reports an RFC 3463 code whose class matches the reply code.
func isEnhanced(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0][0] != byte('0'+code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || len(p) > 3 {
			return false
		}
	}
	return true
}

// send writes a command into the buffer (flushed by flush or cmd).
func (c *conn) send(format string, args ...any) error {
	c.deadline(c.cmdTimeout)
	if _, err := fmt.Fprintf(c.tp.W, format+"\r\n", args...); err != nil {
		c.broken = true
		return err
	}
	return nil
}

func (c *conn) flush() error {
	if err := c.tp.W.Flush(); err != nil {
		c.broken = true
		return err
	}
	return nil
}

// cmd sends a command and reads its reply.
func (c *conn) cmd(format string, args ...any) (reply, error) {
	if err := c.send(format, args...); err != nil {
		return reply{}, err
	}
	if err := c.flush(); err != nil {
		return reply{}, err
	}
	return c.read()
}

// greet reads the server greeting.
func (c *conn) greet() (reply, error) {
	c.deadline(c.cmdTimeout)
	r, err := c.read()
	c.greeting = r
	return r, err
}

// hello sends EHLO, falling back to HELO when the server does not know
// EHLO. A non-2xx reply comes back without an error.
func (c *conn) hello(name string) (reply, error) {
	r, err := c.cmd("EHLO %s", name)
	if err != nil {
		return r, err
	}
	c.ext = map[string]string{}
	if r.ok() {
		lines := strings.Split(r.Text, "\n")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
			if k != "" {
				c.ext[strings.ToUpper(k)] = v
			}
		}
		return r, nil
	}
	if r.Code == 500 || r.Code == 502 || r.Code == 504 || r.Code == 550 {
		return c.cmd("HELO %s", name)
	}
	return r, nil
}

func (c *conn) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// startTLS upgrades the connection after a 220 reply to STARTTLS.
func (c *conn) startTLS(ctx context.Context, cfg *tls.Config) error {
	if c.tp.R.Buffered() > 0 {
		c.broken = true
		return errors.New("server sent data after its STARTTLS reply")
	}
	return c.handshake(ctx, cfg)
}

func (c *conn) handshake(ctx context.Context, cfg *tls.Config) error {
	tc := tls.Client(c.raw, cfg)
	tc.SetDeadline(time.Now().Add(c.cmdTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.broken = true
		return err
	}
	cs := tc.ConnectionState()
	c.nc, c.tls = tc, &cs
	c.tp = textproto.NewConn(tc)
	c.ext = nil
	return nil
}

// auth authenticates with PLAIN (or LOGIN when PLAIN is not offered).
func (c *conn) auth(user, pass, authType string) (reply, error) {
	mechs := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	has := func(m string) bool {
		for _, x := range mechs {
			if x == m {
				return true
			}
		}
		return false
	}
	auto := authType == "" || authType == "auto"
	var client sasl.Client
	switch {
	case (auto || authType == "plain") && (has("PLAIN") || len(mechs) == 0):
		client = sasl.NewPlainClient("", user, pass)
	case (auto || authType == "login") && has("LOGIN"):
		client = &loginClient{user: user, pass: pass}
	case (auto || authType == "cram-md5") && has("CRAM-MD5"):
		client = &cramMD5Client{user: user, pass: pass}
	case auto:
		return reply{}, fmt.Errorf("no supported AUTH mechanism (server offers %s)", c.ext["AUTH"])
	default:
		return reply{}, fmt.Errorf("auth-type %s is not offered (server offers %s)", authType, c.ext["AUTH"])
	}
	mech, ir, err := client.Start()
	if err != nil {
		return reply{}, err
	}
	var r reply
	if ir != nil {
		r, err = c.cmd("AUTH %s %s", mech, encode64(ir))
	} else {
		r, err = c.cmd("AUTH %s", mech)
	}
	for err == nil && r.Code == 334 {
		challenge, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Text))
		if derr != nil {
			c.cmd("*")
			return r, fmt.Errorf("bad AUTH challenge: %w", derr)
		}
		resp, nerr := client.Next(challenge)
		if nerr != nil {
			c.cmd("*")
			return r, nerr
		}
		r, err = c.cmd("%s", encode64(resp))
	}
	return r, err
}

func encode64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// loginClient is the LOGIN mechanism (user name, then password).
type loginClient struct {
	user, pass string
	step       int
}

func (l *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (l *loginClient) Next([]byte) ([]byte, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte(l.user), nil
	case 2:
		return []byte(l.pass), nil
	}
	return nil, errors.New("unexpected LOGIN challenge")
}

// cramMD5Client is CRAM-MD5 (RFC 2195): the reply to the server's
// challenge is the user name and the HMAC-MD5 of the challenge keyed
// with the password, in hex.
type cramMD5Client struct {
	user, pass string
	done       bool
}

func (c *cramMD5Client) Start() (string, []byte, error) { return "CRAM-MD5", nil, nil }

func (c *cramMD5Client) Next(challenge []byte) ([]byte, error) {
	if c.done {
		return nil, errors.New("unexpected CRAM-MD5 challenge")
	}
	c.done = true
	m := hmac.New(md5.New, []byte(c.pass))
	m.Write(challenge)
	return []byte(c.user + " " + hex.EncodeToString(m.Sum(nil))), nil
}

// txResult is what one mail transaction produced.
type txResult struct {
	mail      reply
	rcpt      []reply // per recipient; Code 0 when not sent
	data      reply   // reply to DATA when not 354, else the final reply
	committed bool    // the end of data was sent: a lost reply may mean a duplicate
	stale     bool    // the RSET ahead of the transaction failed: nothing was done, the connection is unusable
	err       error   // I/O or protocol error
	stage     string  // where err happened
}

// transaction runs MAIL, RCPT and DATA, then the message; rcpt replies are
// per recipient. When the server offers PIPELINING, MAIL, every RCPT and
// DATA go out in one write (RFC 2920), preceded by RSET when rset is set
// (a reused connection): a failed RSET then marks the result stale, and
// nothing of the transaction counts.
func (c *conn) transaction(from string, rcpts []string, size int64, smtputf8, rset bool, open func() (io.ReadCloser, error)) (tx txResult) {
	tx.rcpt = make([]reply, len(rcpts))
	params := ""
	if size > 0 && c.has("SIZE") {
		params += " SIZE=" + strconv.FormatInt(size, 10)
	}
	if smtputf8 {
		params += " SMTPUTF8"
	}
	fail := func(stage string, err error) txResult {
		c.broken = true
		tx.stage, tx.err = stage, err
		return tx
	}
	stale := func(err error) txResult {
		tx.stale = true
		return fail("RSET", err)
	}
	pipelining := c.has("PIPELINING")
	if rset && !pipelining {
		if err := c.reset(); err != nil {
			return stale(err)
		}
		rset = false
	}
	if rset {
		if err := c.send("RSET"); err != nil {
			return stale(err)
		}
	}
	if err := c.send("MAIL FROM:<%s>%s", from, params); err != nil {
		return fail("MAIL FROM", err)
	}
	if pipelining {
		for _, r := range rcpts {
			if err := c.send("RCPT TO:<%s>", r); err != nil {
				return fail("RCPT TO", err)
			}
		}
		if err := c.send("DATA"); err != nil {
			return fail("DATA", err)
		}
	}
	if err := c.flush(); err != nil {
		if rset {
			return stale(err)
		}
		return fail("MAIL FROM", err)
	}
	if rset {
		r, err := c.read()
		if err == nil && r.Code != 250 {
			err = fmt.Errorf("RSET: %s", r)
		}
		if err != nil {
			return stale(err)
		}
	}
	var err error
	if tx.mail, err = c.read(); err != nil {
		return fail("MAIL FROM", err)
	}
	accepted := 0
	for i, r := range rcpts {
		if !pipelining {
			if !tx.mail.ok() || c.broken {
				break
			}
			if err := c.send("RCPT TO:<%s>", r); err != nil {
				return fail("RCPT TO", err)
			}
			if err := c.flush(); err != nil {
				return fail("RCPT TO", err)
			}
		}
		if tx.rcpt[i], err = c.read(); err != nil {
			return fail("RCPT TO", err)
		}
		if tx.rcpt[i].ok() && tx.mail.ok() {
			accepted++
		}
	}
	if c.broken {
		return fail("RCPT TO", fmt.Errorf("connection closed by server: %s", firstBroken(tx)))
	}
	if pipelining {
		if tx.data, err = c.read(); err != nil {
			return fail("DATA", err)
		}
		if !tx.mail.ok() || accepted == 0 {
			if tx.data.Code == 354 {
				// DATA accepted without a recipient: drop the connection
				// rather than send anything, so that the server discards
				// the transaction.
				c.broken = true
			}
			tx.data = reply{}
			return tx
		}
	} else {
		if !tx.mail.ok() || accepted == 0 {
			return tx
		}
		if tx.data, err = c.cmd("DATA"); err != nil {
			return fail("DATA", err)
		}
	}
	if tx.data.Code != 354 {
		if c.broken {
			return fail("DATA", fmt.Errorf("connection closed by server: %s", tx.data))
		}
		return tx
	}
	body, err := open()
	if err != nil {
		// Nothing sensible can follow a 354 but the message: drop the
		// connection so that the server discards the transaction.
		c.broken = true
		tx.stage, tx.err = "message open", err
		return tx
	}
	defer body.Close()
	w := c.tp.DotWriter()
	buf := copyBufs.Get().(*[32 << 10]byte)
	_, err = io.CopyBuffer(w, deadlineReader{body, c}, buf[:])
	copyBufs.Put(buf)
	if err != nil {
		return fail("message body", err)
	}
	if err := w.Close(); err != nil {
		return fail("end of data", err)
	}
	tx.committed = true
	c.deadline(c.dataTimeout)
	if tx.data, err = c.read(); err != nil {
		return fail("end of data", err)
	}
	if c.broken {
		tx.stage, tx.err = "end of data", fmt.Errorf("connection closed by server: %s", tx.data)
	}
	return tx
}

func firstBroken(tx txResult) string {
	if tx.mail.Code == 421 {
		return tx.mail.String()
	}
	for _, r := range tx.rcpt {
		if r.Code == 421 {
			return r.String()
		}
	}
	return "421"
}

// copyBufs are the buffers messages are copied through to the server
// (io.Copy would allocate 32 KiB per message).
var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// deadlineReader extends the write deadline while the message streams.
type deadlineReader struct {
	r io.Reader
	c *conn
}

func (d deadlineReader) Read(p []byte) (int, error) {
	d.c.deadline(d.c.cmdTimeout)
	return d.r.Read(p)
}

// reset aborts any transaction (before reusing a connection).
func (c *conn) reset() error {
	r, err := c.cmd("RSET")
	if err != nil {
		return err
	}
	if r.Code != 250 {
		c.broken = true
		return fmt.Errorf("RSET: %s", r)
	}
	return nil
}

// quit says goodbye without waiting long, and closes.
func (c *conn) quit() {
	if !c.broken {
		c.nc.SetDeadline(time.Now().Add(time.Second))
		if err := c.send("QUIT"); err == nil && c.flush() == nil {
			c.read()
		}
	}
	c.close()
}

func (c *conn) close() {
	if c.release != nil {
		c.release()
		c.release = nil
	}
	c.broken = true
	c.nc.Close()
	c.raw.Close()
}
