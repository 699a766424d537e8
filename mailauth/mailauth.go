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
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailgate/config"
	"mailgate/delivery"
	"mailgate/throttle"
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
	// Now is the clock (nil: time.Now), for tests.
	Now func() time.Time

	ips     throttle.Lockout[netip.Addr] // failures per client address
	users   throttle.Lockout[string]     // failures per user name (lower case)
	penalty chan struct{}                // serialises the checks of names under attack

	bcrypts atomic.Int64 // password hashes compared (for tests)

	mu       sync.Mutex
	cacheKey []byte
	cache    map[[sha256.Size]byte]cacheEntry
}

// Throttling and caching. AddressThreshold failures from one address
// within throttle.Window lock it out for AddressLockout (doubling for each
// further lockout, up to throttle.MaxLockout): its logins are refused
// unchecked. UserThreshold failures for one user name, from anywhere,
// do not lock the user out (that would let anyone lock anyone out) but
// slow every further check of that name: they are made one at a time,
// each after UserDelay. A successful local or mailbox check is
// remembered for CacheTTL, so that a client that logs in often does not
// pay for bcrypt each time; a changed password misses the cache.
const (
	AddressThreshold = 10
	AddressLockout   = time.Minute
	UserThreshold    = 10
	CacheTTL         = 10 * time.Minute
	maxCache         = 10000
)

// UserDelay is the pause before each check of a name under attack.
var UserDelay = 2 * time.Second

// ErrThrottled refuses a login unchecked: the client's address failed
// too often.
var ErrThrottled = errors.New("too many failed logins from this address")

type cacheEntry struct {
	hash  string // the stored password hash the password matched
	res   Result
	until time.Time
}

func (k *Checker) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// Check checks user and pass against c. A local user (case-insensitive
// name) decides alone, then, in server mode, a mailbox (config domain /
// config user mail); a name without '@' is tried with
// default-auth-domain appended. A name that is neither but whose
// domain is a protected domain with SMTP authentication profiles is
// checked by those servers, in order, the next only when one gives no
// answer.
//
// remote is the client's address (invalid when unknown): failures are
// counted against it and against the user name (see AddressThreshold).
func (k *Checker) Check(ctx context.Context, c *config.Config, user, pass string, remote netip.Addr) (Result, error) {
	now := k.now()
	remote = remote.Unmap()
	if remote.IsValid() && k.ips.Locked(remote, now) {
		return Result{}, ErrThrottled
	}
	key := strings.ToLower(user)
	if k.users.Locked(key, now) {
		k.mu.Lock()
		if k.penalty == nil {
			k.penalty = make(chan struct{}, 1)
		}
		penalty := k.penalty
		k.mu.Unlock()
		select {
		case penalty <- struct{}{}:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		time.Sleep(UserDelay)
		defer func() { <-penalty }()
	}
	res, err := k.check(ctx, c, user, pass)
	switch {
	case err == nil:
		if remote.IsValid() {
			k.ips.Success(remote)
		}
		k.users.Success(key)
	case errors.Is(err, ErrFailed):
		k.users.Fail(key, now, UserThreshold, throttle.Window)
		if remote.IsValid() {
			if d := k.ips.Fail(remote, now, AddressThreshold, AddressLockout); d > 0 {
				err = fmt.Errorf("%w; %s locked out for %v after %d failures", err, remote, d, AddressThreshold)
			}
		}
	}
	return res, err
}

func (k *Checker) check(ctx context.Context, c *config.Config, user, pass string) (Result, error) {
	name := user
	u := findLocal(c, name)
	if dom := c.System.Mailserver.DefaultAuthDomain; u == nil && dom != "" && user != "" && !strings.Contains(user, "@") {
		name = user + "@" + dom
		u = findLocal(c, name)
	}
	if u != nil {
		return k.password(user, pass, u.Password, u.Status, Result{User: u.Name, Via: "local"})
	}
	local, domain, ok := strings.Cut(name, "@")
	d := findDomain(c, domain)
	if mu := findMailUser(c, d, local); mu != nil {
		enabled := mu.Status
		for _, p := range c.Profile.Resource {
			if p.Name == mu.ResourceProfile && !p.AccountStatus {
				enabled = false
			}
		}
		return k.password(user, pass, mu.Password, enabled, Result{User: mu.Name + "@" + d.Name, Via: "mailbox"})
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

// password checks pass against the bcrypt hash of an account that is
// enabled or not (a disabled one fails, after the same time), with the
// cache of successful checks.
func (k *Checker) password(login, pass, hash string, enabled bool, ok Result) (Result, error) {
	if !enabled || hash == "" {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(pass)) // same time as a real check
		return Result{}, ErrFailed
	}
	id := k.cacheID(login, pass)
	now := k.now()
	k.mu.Lock()
	e, hit := k.cache[id]
	k.mu.Unlock()
	if hit && e.hash == hash && now.Before(e.until) && e.res == ok {
		return ok, nil
	}
	k.bcrypts.Add(1)
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) != nil {
		return Result{}, ErrFailed
	}
	k.mu.Lock()
	if len(k.cache) >= maxCache {
		for id, e := range k.cache {
			if !now.Before(e.until) || len(k.cache) >= maxCache {
				delete(k.cache, id)
			}
		}
	}
	k.cache[id] = cacheEntry{hash: hash, res: ok, until: now.Add(CacheTTL)}
	k.mu.Unlock()
	return ok, nil
}

// cacheID is a keyed hash of a login and its password: the cache holds
// no password, nor a hash of one that could be checked without the key
// (a random value of this process).
func (k *Checker) cacheID(login, pass string) [sha256.Size]byte {
	k.mu.Lock()
	if k.cacheKey == nil {
		k.cacheKey = make([]byte, 32)
		rand.Read(k.cacheKey)
		k.cache = map[[sha256.Size]byte]cacheEntry{}
	}
	m := hmac.New(sha256.New, k.cacheKey)
	k.mu.Unlock()
	m.Write([]byte(strings.ToLower(login)))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var id [sha256.Size]byte
	copy(id[:], m.Sum(nil))
	return id
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
