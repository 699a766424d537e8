package cli

import (
	"io"
	"net/netip"
	"time"

	"mailgate/admin"
)

// Console is what an interpreter sees of the terminal it runs on: an
// output stream and a way to read further lines (confirmations such as
// "Do you want to continue? (y/n)" and pasted text such as certificates).
type Console interface {
	io.Writer
	// ReadLine prints prompt (as the terminal's prompt, or on a line of
	// its own in plain mode) and returns the next input line without its
	// line ending. io.EOF when the input ends.
	ReadLine(prompt string) (string, error)
	// ReadPassword is ReadLine without echo (interactive mode); in plain
	// mode it is the same as ReadLine.
	ReadPassword(prompt string) (string, error)
	// Interactive reports whether a PTY is attached (prompts, echo, help).
	Interactive() bool
}

// LineUnreader is a plain-mode Console that can put a line back, so that
// the next ReadLine returns it: a script's line that was read as the
// answer to a question but is not one (see Session.confirm).
type LineUnreader interface {
	Unread(line string)
}

// Interpreter runs the command language for one admin session.
type Interpreter interface {
	// Prompt is the prompt for the current context, e.g. "mailgate # " or
	// "mailgate (global) # ".
	Prompt() string
	// Run executes one input line. Failures are printed to the console by
	// the interpreter itself and also returned, so that plain mode can set
	// a non-zero exit status.
	Run(line string, con Console) error
	// Complete returns the completion of line for the tab key: the new line
	// and whether it changed; candidates are printed when ambiguous.
	Complete(line string) (newLine string, candidates []string)
	// Help returns the text shown when '?' is typed at the end of line.
	Help(line string) string
	// Exited reports whether the session asked to end (exit/quit, reboot).
	Exited() bool
	// Close abandons any uncommitted configuration block.
	Close()
}

// AdminInfo is the part of an administrator's configuration that the SSH
// server needs besides the login check; it is read afresh for every
// authentication attempt and session.
type AdminInfo struct {
	Name       string
	PublicKeys []string // authorized_keys lines
	ReadOnly   bool
	// MustChangePassword is set while the administrator has the empty
	// first-boot password: a new one must be chosen before anything else.
	MustChangePassword bool
}

// Accounts is the administrator database as the SSH server sees it. The
// password check, the trusted hosts and the throttling of failed logins
// per client address are those of the administration layer, shared with
// every other administrative interface of the appliance.
type Accounts interface {
	Admin(name string) (AdminInfo, bool)
	// CheckLogin checks a password login of name from ip (see
	// admin.Service.CheckLogin): the password, the trusted hosts and the
	// lockout of ip. It logs the outcome ("login", "login failed: ...",
	// "login locked out: ...") and counts failures against ip.
	CheckLogin(name, password string, ip netip.Addr) (admin.Access, error)
	// LoginRefusal says why the administrator name may not log in to the
	// CLI from ip ("unknown user", "account disabled", "no cli access",
	// "not a trusted host"), or "" when it may.
	LoginRefusal(name string, ip netip.Addr) string
	// LoginThrottled reports whether logins from ip are refused after too
	// many failures.
	LoginThrottled(ip netip.Addr) bool
	// RecordLoginFailure logs a failed login that CheckLogin did not see
	// (a rejected public key) and counts it against ip.
	RecordLoginFailure(name string, ip netip.Addr, reason string)
	// ClearLoginFailures forgets the failures of ip after a successful
	// login that CheckLogin did not see (a public key).
	ClearLoginFailures(ip netip.Addr)
	// SetPassword hashes and stores a new password for name as a committed
	// configuration change; it refuses weak passwords with a clear error.
	SetPassword(name, password string) error
	// IdleTimeout is the current admin-idle-timeout.
	IdleTimeout() time.Duration
}
