package cli

import (
	"io"
	"net/netip"
	"time"
)

// Console is what an interpreter sees of the terminal it runs on: an
// output stream and a way to read further lines (confirmations such as
// "Do you want to continue? (y/n)" and pasted text such as certificates).
type Console interface {
	io.Writer
	// ReadLine prints prompt (interactive mode only) and returns the next
	// input line without its line ending. io.EOF when the input ends.
	ReadLine(prompt string) (string, error)
	// ReadPassword is ReadLine without echo (interactive mode); in plain
	// mode it is the same as ReadLine.
	ReadPassword(prompt string) (string, error)
	// Interactive reports whether a PTY is attached (prompts, echo, help).
	Interactive() bool
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

// AdminInfo is the part of an administrator's configuration that login
// needs; it is read afresh for every authentication attempt and session.
type AdminInfo struct {
	Name         string
	PasswordHash string   // bcrypt hash; "" means the empty first-boot password
	PublicKeys   []string // authorized_keys lines
	TrustHosts   []netip.Prefix
	ReadOnly     bool
}

// Accounts is the administrator database as the SSH server sees it.
type Accounts interface {
	Admin(name string) (AdminInfo, bool)
	// SetPassword hashes and stores a new password for name as a committed
	// configuration change; it refuses weak passwords with a clear error.
	SetPassword(name, password string) error
	// IdleTimeout is the current admin-idle-timeout.
	IdleTimeout() time.Duration
}
