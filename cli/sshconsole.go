package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

const (
	sshForcedChangeMsg = "You are forced to change your password. Please input a new password.\n"
	sshNeedTTYMsg      = "password change required: log in interactively (ssh -t) to set the admin password\n"
	sshIdleMsg         = "Idle timeout, disconnecting."
	sshPasswordTries   = 3
	sshMaxPlainLine    = 16 << 20
)

var errSSHIdle = errors.New("idle timeout")

// handleSession runs one SSH session (shell or exec, with or without PTY).
func (s *Server) handleSession(sess ssh.Session) {
	if !s.beginSession() {
		sess.Exit(1)
		return
	}
	defer s.sessions.Done()

	user := sess.User()
	c := sshConnOf(sess.Context())
	ip := sshRemoteIP(sess.RemoteAddr())
	remote := sshRemoteString(ip, sess.RemoteAddr())

	// Authorisation is decided here, afresh, from the admin's current
	// record; nothing recorded in the context during authentication grants
	// access.
	var method string
	var key gossh.PublicKey
	authOK := false
	if c != nil {
		method, key, authOK = c.authenticated(user)
	}
	info, ok := s.cfg.Accounts.Admin(user)
	var refuse string
	switch {
	case !authOK:
		refuse = "authentication state mismatch"
	case !ok:
		refuse = "unknown user"
	case method == "publickey" && (key == nil || !sshKeyAllowed(info.PublicKeys, key)):
		// The key the client signed with, checked against the admin's
		// keys as they are now (one may have been removed meanwhile).
		refuse = "public key not accepted"
	default:
		refuse = s.cfg.Accounts.LoginRefusal(user, ip)
	}
	if refuse != "" {
		s.event("warning", user, remote, "login failed: "+refuse)
		io.WriteString(sess.Stderr(), "Permission denied.\n")
		sess.Exit(1)
		return
	}
	c.clearGrace()
	if method == "publickey" {
		// Accounts.CheckLogin logs password logins itself.
		s.event("information", user, remote, "login")
	}

	var idled atomic.Bool
	defer func() {
		if idled.Load() {
			s.event("information", user, remote, "logout: idle timeout")
		} else {
			s.event("information", user, remote, "logout")
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			s.event("error", user, remote, fmt.Sprintf("session aborted: %v", r))
			sess.Exit(1)
		}
	}()

	if s.serveSCP(sess, user, remote, info) {
		return
	}

	ptyReq, winCh, isPTY := sess.Pty()
	done := make(chan struct{})
	defer close(done)
	in := &sshInput{
		r:       sess,
		tty:     isPTY,
		timeout: s.cfg.Accounts.IdleTimeout,
		buf:     make([]byte, 4096),
	}
	in.onIdle = func() {
		idled.Store(true)
		code := 0
		if isPTY {
			io.WriteString(sess, "\r\n"+sshIdleMsg+"\r\n")
		} else {
			io.WriteString(sess.Stderr(), sshIdleMsg+"\n")
			code = 1
		}
		sess.Exit(code)
		// A client that has gone away never acknowledges the close.
		go func() {
			t := time.NewTimer(2 * time.Second)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				c.Close()
			}
		}()
	}

	if !isPTY {
		sess.Exit(s.runPlain(sess, in, user, remote, info))
		return
	}

	tty := newSSHTTY(in, sess, ptyReq.Window.Width, ptyReq.Window.Height)
	go func() {
		for w := range winCh {
			tty.resize(w.Width, w.Height)
		}
	}()
	if info.MustChangePassword && !s.forcePasswordChange(tty, user, remote) {
		sess.Exit(1)
		return
	}
	if sess.RawCommand() == "" {
		// Only an interactive session shows the post-login banner: the
		// output of a command run over ssh stays what the command prints.
		if b := s.postLoginBanner(); b != "" {
			tty.Write([]byte(b))
		}
	}
	interp := s.cfg.NewInterpreter(user, info.ReadOnly)
	defer interp.Close()
	tty.interp = interp

	if cmd := sess.RawCommand(); cmd != "" {
		code := 0
		if interp.Run(cmd, tty) != nil {
			code = 1
		}
		sess.Exit(code)
		return
	}

	tty.setBracketedPaste(true)
	for !interp.Exited() {
		line, err := tty.readCommand(interp.Prompt())
		if err != nil {
			if err == io.EOF && !in.broken() {
				// Ctrl-D on an empty line.
				io.WriteString(sess, "\n")
			}
			break
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		interp.Run(line, tty)
	}
	tty.setBracketedPaste(false)
	sess.Exit(0)
}

// forcePasswordChange makes an admin with the empty first-boot password
// choose one before anything else happens.
func (s *Server) forcePasswordChange(con *sshTTY, user, remote string) bool {
	con.Write([]byte(sshForcedChangeMsg))
	for try := 0; try < sshPasswordTries; try++ {
		p1, err := con.ReadPassword("New password: ")
		if err != nil {
			return false
		}
		p2, err := con.ReadPassword("Confirm password: ")
		if err != nil {
			return false
		}
		switch {
		case p1 != p2:
			con.Write([]byte("The passwords do not match.\n"))
			continue
		case p1 == "":
			con.Write([]byte("The password must not be empty.\n"))
			continue
		}
		if err := s.cfg.Accounts.SetPassword(user, p1); err != nil {
			fmt.Fprintf(con, "%v\n", err)
			continue
		}
		if info, ok := s.cfg.Accounts.Admin(user); !ok || info.MustChangePassword {
			con.Write([]byte("The password could not be set.\n"))
			return false
		}
		s.event("information", user, remote, "password changed at first login")
		return true
	}
	con.Write([]byte("Too many failed attempts, disconnecting.\n"))
	s.event("warning", user, remote, "login failed: initial password not changed")
	return false
}

// runPlain serves a session without PTY: one exec command, or every line of
// standard input. It returns the exit status.
func (s *Server) runPlain(sess ssh.Session, in *sshInput, user, remote string, info AdminInfo) int {
	if info.MustChangePassword {
		io.WriteString(sess.Stderr(), sshNeedTTYMsg)
		s.event("warning", user, remote, "login failed: password change required, session is not interactive")
		return 1
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), sshMaxPlainLine)
	con := &sshPlain{out: sess, sc: sc}
	interp := s.cfg.NewInterpreter(user, info.ReadOnly)
	defer interp.Close()

	if cmd := sess.RawCommand(); cmd != "" {
		if interp.Run(cmd, con) != nil {
			return 1
		}
		return 0
	}
	code := 0
	for !interp.Exited() {
		line, err := con.ReadLine("")
		if err != nil {
			if err != io.EOF {
				fmt.Fprintf(sess.Stderr(), "%v\n", err)
				code = 1
			}
			break
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if interp.Run(line, con) != nil {
			code = 1
		}
	}
	return code
}

// ---- input ----

// sshInput reads the session channel for a console. While it waits for
// data an idle timer runs (Accounts.IdleTimeout, read afresh each time);
// commands that run without reading are never timed out. With a PTY,
// Ctrl-C is turned into "end of line, erase line": x/term would report it
// as io.EOF and then keep replaying it.
type sshInput struct {
	r       io.Reader
	tty     bool
	timeout func() time.Duration
	onIdle  func()

	buf     []byte
	pending []byte
	err     error // sticky error from the channel
	idle    atomic.Bool
}

func (in *sshInput) Read(p []byte) (int, error) {
	for len(in.pending) == 0 {
		if in.err != nil {
			return 0, in.err
		}
		n, err := in.fill()
		data := in.buf[:n]
		if in.tty {
			var out []byte
			for _, b := range data {
				if b == 3 {
					out = append(out, 5, 21) // ^E ^U
				} else {
					out = append(out, b)
				}
			}
			data = out
		}
		in.pending = data
		if err != nil {
			in.err = err
		}
	}
	n := copy(p, in.pending)
	in.pending = in.pending[n:]
	return n, nil
}

func (in *sshInput) fill() (int, error) {
	var t *time.Timer
	if d := in.timeout(); d > 0 {
		t = time.AfterFunc(d, func() {
			if in.idle.CompareAndSwap(false, true) && in.onIdle != nil {
				in.onIdle()
			}
		})
	}
	n, err := in.r.Read(in.buf)
	if t != nil {
		t.Stop()
	}
	if in.idle.Load() {
		return 0, errSSHIdle
	}
	return n, err
}

// broken reports whether the channel itself has ended (as opposed to an
// io.EOF that x/term produced for a Ctrl-D keystroke).
func (in *sshInput) broken() bool { return in.err != nil }

// ---- plain console ----

type sshPlain struct {
	out  io.Writer
	sc   *bufio.Scanner
	back []string // lines put back by Unread, read again first
}

func (p *sshPlain) Write(b []byte) (int, error) { return p.out.Write(b) }

// ReadLine prints a non-empty prompt on a line of its own (there is no
// echo to follow it) and returns the next line of standard input.
func (p *sshPlain) ReadLine(prompt string) (string, error) {
	if prompt != "" {
		fmt.Fprintln(p.out, prompt)
	}
	if n := len(p.back); n > 0 {
		l := p.back[n-1]
		p.back = p.back[:n-1]
		return l, nil
	}
	if !p.sc.Scan() {
		if err := p.sc.Err(); err != nil {
			return "", err
		}
		return "", io.EOF
	}
	return strings.TrimSuffix(p.sc.Text(), "\r"), nil
}

func (p *sshPlain) ReadPassword(prompt string) (string, error) { return p.ReadLine(prompt) }

// Unread puts line back: the next ReadLine returns it.
func (p *sshPlain) Unread(line string) { p.back = append(p.back, line) }

func (p *sshPlain) Interactive() bool { return false }

// ---- PTY console ----

// sshTTY is the interactive console: an x/term Terminal with the
// interpreter's prompt, completion on Tab and help on '?'.
type sshTTY struct {
	in     *sshInput
	rw     io.ReadWriter
	interp Interpreter // set once the session may run commands
	hist   *sshHistory

	mu            sync.Mutex
	t             *term.Terminal
	width, height int

	// Used only by the goroutine reading input (callbacks run on it).
	prompt  string
	cmdMode bool // reading a command line (Tab and '?' active)
	literal bool // Ctrl-V: next '?' is literal
}

func newSSHTTY(in *sshInput, out io.Writer, width, height int) *sshTTY {
	if width <= 0 {
		width = 80
	}
	if height <= 0 {
		height = 24
	}
	c := &sshTTY{
		in:     in,
		rw:     sshRW{in, out},
		width:  width,
		height: height,
	}
	c.hist = &sshHistory{tty: c}
	c.t = c.newTerminal()
	return c
}

func (c *sshTTY) newTerminal() *term.Terminal {
	t := term.NewTerminal(c.rw, "")
	t.History = c.hist
	t.AutoCompleteCallback = c.autoComplete
	t.SetSize(c.width, c.height)
	return t
}

func (c *sshTTY) term() *term.Terminal {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// reset replaces the terminal after x/term returned io.EOF for a Ctrl-D:
// it keeps the keystroke buffered and would report EOF forever.
func (c *sshTTY) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.newTerminal()
}

func (c *sshTTY) resize(w, h int) {
	c.mu.Lock()
	if w <= 0 {
		w = 80
	}
	if h <= 0 {
		h = 24
	}
	c.width, c.height = w, h
	t := c.t
	c.mu.Unlock()
	t.SetSize(w, h)
}

func (c *sshTTY) columns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.width
}

func (c *sshTTY) setBracketedPaste(on bool) { c.term().SetBracketedPasteMode(on) }

// readCommand reads a command line at the interpreter's prompt.
func (c *sshTTY) readCommand(prompt string) (string, error) {
	t := c.term()
	c.prompt = prompt
	t.SetPrompt(prompt)
	c.cmdMode, c.literal = true, false
	line, err := t.ReadLine()
	c.cmdMode = false
	if err == term.ErrPasteIndicator {
		err = nil
	}
	return line, err
}

func (c *sshTTY) Write(p []byte) (int, error) { return c.term().Write(p) }

func (c *sshTTY) ReadLine(prompt string) (string, error) {
	t := c.term()
	t.SetPrompt(prompt)
	line, err := t.ReadLine()
	return c.lineResult(line, err)
}

func (c *sshTTY) ReadPassword(prompt string) (string, error) {
	line, err := c.term().ReadPassword(prompt)
	return c.lineResult(line, err)
}

func (c *sshTTY) lineResult(line string, err error) (string, error) {
	if err == term.ErrPasteIndicator {
		err = nil
	}
	if err == io.EOF && !c.in.broken() {
		// Ctrl-D: the command reading gets io.EOF; the session goes on.
		c.reset()
		c.Write([]byte("\n"))
	}
	return line, err
}

func (c *sshTTY) Interactive() bool { return true }

// autoComplete is x/term's key hook; x/term releases its lock around the
// call, so writing to the terminal from here is safe.
func (c *sshTTY) autoComplete(line string, pos int, key rune) (string, int, bool) {
	if !c.cmdMode || c.interp == nil {
		return "", 0, false
	}
	if c.literal {
		c.literal = false
		if key == '?' {
			return line[:pos] + "?" + line[pos:], pos + 1, true
		}
		return "", 0, false
	}
	switch key {
	case 0x16: // Ctrl-V
		c.literal = true
		return line, pos, true
	case '?':
		c.show(line, c.interp.Help(line[:pos]))
		return line, pos, true
	case '\t':
		prefix := line[:pos]
		newPrefix, cands := c.interp.Complete(prefix)
		if len(cands) > 1 || (len(cands) == 1 && newPrefix == prefix) {
			c.show(line, sshColumns(cands, c.columns()))
		}
		return newPrefix + line[pos:], len(newPrefix), true
	}
	return "", 0, false
}

// show prints text below the line being edited; x/term then redraws the
// prompt and the line.
func (c *sshTTY) show(line, text string) {
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	c.term().Write([]byte(c.prompt + line + "\n" + text))
}

func sshColumns(items []string, width int) string {
	if len(items) == 0 {
		return ""
	}
	w := 0
	for _, it := range items {
		w = max(w, len(it))
	}
	w += 2
	cols := max(1, width/w)
	var b strings.Builder
	for i, it := range items {
		if i%cols == cols-1 || i == len(items)-1 {
			b.WriteString(it)
			b.WriteByte('\n')
		} else {
			b.WriteString(it)
			b.WriteString(strings.Repeat(" ", w-len(it)))
		}
	}
	return b.String()
}

type sshRW struct {
	io.Reader
	io.Writer
}

// sshHistory is the command history: command lines only (not answers to
// prompts), without blank lines and repeats.
type sshHistory struct {
	tty     *sshTTY
	entries []string // oldest first
}

const sshHistorySize = 100

func (h *sshHistory) Add(s string) {
	if !h.tty.cmdMode || strings.TrimSpace(s) == "" {
		return
	}
	if n := len(h.entries); n > 0 && h.entries[n-1] == s {
		return
	}
	h.entries = append(h.entries, s)
	if len(h.entries) > sshHistorySize {
		h.entries = h.entries[len(h.entries)-sshHistorySize:]
	}
}

func (h *sshHistory) Len() int { return len(h.entries) }

func (h *sshHistory) At(i int) string { return h.entries[len(h.entries)-1-i] }
