// Package mailauth checks the credentials of mail users (SMTP AUTH today;
// IMAP, POP3 and webmail in server mode): the local users of
// `config user local`, in server mode the mailboxes of the domains'
// `config user mail`, and, for another user of a protected domain, the
// SMTP servers of the domain's
// `config profile authentication smtp`, to which the appliance
// authenticates with the user's own name and password.
package mailauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailgate/config"
	"mailgate/delivery"
)

// ErrFailed is a wrong user name or password (or a disabled account).
var ErrFailed = errors.New("bad user name or password")

// UnavailableError says that no authentication server of the user's
// domain gave an answer: the credentials are neither accepted nor
// refused (SMTP: 454 4.7.0, try again later).
type UnavailableError struct {
	Domain string
	Errs   []error // one per profile tried, "profile NAME (host:port): why"
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("no authentication server of %s answered: %v", e.Domain, errors.Join(e.Errs...))
}

// Result is an accepted login.
type Result struct {
	// User is the configured name of a local user, or local@domain for a
	// mailbox or a user checked by an authentication profile.
	User string
	// Via is "local", "mailbox", or "profile NAME (host:port)".
	Via string
}

// Checker checks credentials. The zero value checks remote servers'
// certificates against the system's CAs only.
type Checker struct {
	// Roots returns the CAs that remote authentication servers'
	// certificates must chain to (nil: the system's).
	Roots func() *x509.CertPool
	// HeloName returns the name sent in EHLO to them ("" or nil:
	// "localhost").
	HeloName func() string
	// Timeout bounds one remote check (0: 20 seconds).
	Timeout time.Duration
	// Lookup resolves the servers' host names (nil: the system resolver).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Port overrides every profile's port (test networks only).
	Port int
}

// Check checks user and pass against c. A local user (case-insensitive
// name) decides alone, then, in server mode, a mailbox (config domain /
// config user mail); a name without '@' is tried with
// default-auth-domain appended. A name that is neither but whose
// domain is a protected domain with SMTP authentication profiles is
// checked by those servers, in order, the next only when one gives no
// answer.
func (k *Checker) Check(ctx context.Context, c *config.Config, user, pass string) (Result, error) {
	name := user
	u := findLocal(c, name)
	if dom := c.System.Mailserver.DefaultAuthDomain; u == nil && dom != "" && user != "" && !strings.Contains(user, "@") {
		name = user + "@" + dom
		u = findLocal(c, name)
	}
	if u != nil {
		hash := []byte(u.Password)
		if !u.Status || u.Password == "" {
			hash = dummyHash() // same time as a real check
		}
		if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !u.Status || u.Password == "" {
			return Result{}, ErrFailed
		}
		return Result{User: u.Name, Via: "local"}, nil
	}
	local, domain, ok := strings.Cut(name, "@")
	d := findDomain(c, domain)
	if mu := findMailUser(c, d, local); mu != nil {
		return checkMailUser(c, d, mu, pass)
	}
	if !ok || local == "" || d == nil || len(d.Profile.Authentication.SMTP) == 0 || pass == "" {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(pass)) // same time as a real check
		return Result{}, ErrFailed
	}
	unavailable := &UnavailableError{Domain: d.Name}
	for _, p := range d.Profile.Authentication.SMTP {
		s, login := k.server(p, local, d.Name)
		err := delivery.CheckAuth(ctx, s, login, pass)
		via := "profile " + p.Name + " (" + s.Addr + ")"
		switch {
		case err == nil:
			return Result{User: local + "@" + d.Name, Via: via}, nil
		case errors.Is(err, delivery.ErrAuthRejected):
			return Result{}, fmt.Errorf("%w (%s: %v)", ErrFailed, via, err)
		}
		unavailable.Errs = append(unavailable.Errs, fmt.Errorf("%s: %w", via, err))
	}
	return Result{}, unavailable
}

// server is the check of profile p for local@domain: the address, TLS
// and mechanism its options ask for, and the name sent.
func (k *Checker) server(p config.SMTPAuthProfile, local, domain string) (delivery.AuthServer, string) {
	has := func(o string) bool {
		for _, x := range p.Option {
			if x == o {
				return true
			}
		}
		return false
	}
	port := p.Port
	if k.Port != 0 {
		port = k.Port
	}
	s := delivery.AuthServer{
		Addr:        net.JoinHostPort(p.Server, strconv.Itoa(port)),
		ImplicitTLS: has("ssl"),
		StartTLS:    has("tls"),
		CRAMOnly:    has("secure"),
		Timeout:     k.Timeout,
		Lookup:      k.Lookup,
		TLS:         &tls.Config{ServerName: p.Server, MinVersion: tls.VersionTLS12},
	}
	if k.Roots != nil {
		s.TLS.RootCAs = k.Roots()
	}
	if k.HeloName != nil {
		s.HeloName = k.HeloName()
	}
	login := local
	if has("senddomain") {
		login = local + "@" + domain
	}
	return s, login
}

// checkMailUser checks the password of a mailbox (server mode): the
// account and its resource profile must be enabled.
func checkMailUser(c *config.Config, d *config.Domain, u *config.MailUser, pass string) (Result, error) {
	ok := u.Status && u.Password != ""
	for _, p := range c.Profile.Resource {
		if p.Name == u.ResourceProfile && !p.AccountStatus {
			ok = false
		}
	}
	hash := []byte(u.Password)
	if !ok {
		hash = dummyHash()
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !ok {
		return Result{}, ErrFailed
	}
	return Result{User: u.Name + "@" + d.Name, Via: "mailbox"}, nil
}

// findMailUser is the mailbox local@d, in server mode only.
func findMailUser(c *config.Config, d *config.Domain, local string) *config.MailUser {
	if d == nil || c.System.Global.OperationMode != "server" {
		return nil
	}
	for i := range d.User.Mail {
		if u := &d.User.Mail[i]; strings.EqualFold(u.Name, local) {
			return u
		}
	}
	return nil
}

func findLocal(c *config.Config, name string) *config.User {
	for i := range c.User.Local {
		if u := &c.User.Local[i]; strings.EqualFold(u.Name, name) {
			return u
		}
	}
	return nil
}

func findDomain(c *config.Config, name string) *config.Domain {
	for i := range c.Domain {
		if d := &c.Domain[i]; strings.EqualFold(d.Name, name) {
			return d
		}
	}
	return nil
}

var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return h
})
