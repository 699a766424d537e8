package admin

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/throttle"
)

// Login throttling per client IP address, shared by every administrative
// interface of a Service: admin-lockout-threshold failed logins within
// LoginFailureWindow lock the address out for admin-lockout-duration
// minutes (`config system global`); every further lockout doubles the
// duration up to LoginMaxLockout (or the configured duration, if longer).
// LoginMaxFailures and LoginLockout are the factory values.
const (
	LoginMaxFailures   = 4
	LoginFailureWindow = throttle.Window
	LoginLockout       = 3 * time.Minute
	LoginMaxLockout    = throttle.MaxLockout
)

// ErrLoginFailed is returned by CheckLogin for an unknown administrator, a
// wrong password and an address outside the trusted hosts alike; the
// reason is only written to the event log.
var ErrLoginFailed = errors.New("login failed")

// ErrLoginThrottled is returned by CheckLogin while the client address is
// locked out after too many failures; the credentials are not checked.
var ErrLoginThrottled = errors.New("login failed: too many failed logins from this address, try again later")

// Access is what a successful login grants.
type Access struct {
	Name     string
	ReadOnly bool // access profile read_only_prof
	// MustChangePassword is set for an administrator without a password
	// (first boot): a new one must be chosen before anything else.
	MustChangePassword bool
}

// CheckLogin checks an administrator's password login from ip: the bcrypt
// hash of `config system admin` (an empty hash accepts exactly the empty
// password and requires a new one), then the trusted hosts (trusted-hosts;
// an empty list allows every address). Unknown names cost as much as known ones.
// Failures are logged and counted against ip (see LoginThrottled); while
// ip is locked out every attempt fails with ErrLoginThrottled.
func (s *Service) CheckLogin(name, password string, ip netip.Addr, channel string) (Access, error) {
	ip = ip.Unmap()
	if s.LoginThrottled(ip) {
		return Access{}, ErrLoginThrottled
	}
	c, _ := s.Config()
	var ad *config.Admin
	for i := range c.System.Admin {
		if c.System.Admin[i].Name == name {
			ad = &c.System.Admin[i]
			break
		}
	}
	match := false
	switch {
	case ad == nil:
		bcrypt.CompareHashAndPassword(s.dummyHash(), []byte(password))
	case ad.Password == "":
		bcrypt.CompareHashAndPassword(s.dummyHash(), []byte(password))
		match = password == ""
	default:
		match = bcrypt.CompareHashAndPassword([]byte(ad.Password), []byte(password)) == nil
	}
	var reason string
	switch {
	case ad == nil:
		reason = "unknown user"
	case !match:
		reason = "invalid password"
	default:
		reason = LoginRefusal(*ad, ip, channel)
	}
	if reason == "" {
		s.loginThrottle().Success(ip)
		s.Event(eventlog.Information, "admin", name, remoteString(ip), "login")
		return Access{Name: ad.Name, ReadOnly: ad.AccessProfile == "read_only_prof", MustChangePassword: ad.Password == ""}, nil
	}
	s.RecordLoginFailure(name, ip, reason)
	return Access{}, ErrLoginFailed
}

// RecordLoginFailure logs a failed login of name from ip and counts it
// towards the lockout of ip; CheckLogin calls it, other authentication
// methods (SSH public keys) may too.
func (s *Service) RecordLoginFailure(name string, ip netip.Addr, reason string) {
	ip = ip.Unmap()
	remote := remoteString(ip)
	c, _ := s.Config()
	g := c.System.Global
	lock := s.loginThrottle().Fail(ip, s.opt.Now(), g.AdminLockoutThreshold, time.Duration(g.AdminLockoutDuration)*time.Minute)
	s.Event(eventlog.Warning, "admin", name, remote, "login failed: "+reason)
	if lock > 0 {
		s.Event(eventlog.Warning, "admin", name, remote, fmt.Sprintf("login locked out: %d failures, further logins from %s refused for %s",
			g.AdminLockoutThreshold, remote, lock))
	}
}

// ClearLoginFailures forgets the failures counted against ip, as a
// successful CheckLogin does; authentication methods that do not go
// through CheckLogin (SSH public keys) call it after a successful login.
// It logs nothing.
func (s *Service) ClearLoginFailures(ip netip.Addr) {
	s.loginThrottle().Success(ip.Unmap())
}

// LoginThrottled reports whether logins from ip are currently refused
// after too many failures.
func (s *Service) LoginThrottled(ip netip.Addr) bool {
	return s.loginThrottle().Locked(ip.Unmap(), s.opt.Now())
}

// The ways an administrator logs in, as `config system admin` access
// names them.
const (
	ChannelCLI = "cli" // the SSH CLI
	ChannelGUI = "gui" // the web UI
)

// LoginRefusal says why ad may not log in from ip through channel, or ""
// when it may: a disabled account (status), a channel its access leaves
// out, an address outside its trusted hosts.
func LoginRefusal(ad config.Admin, ip netip.Addr, channel string) string {
	switch {
	case !ad.Status:
		return "account disabled"
	case !slices.Contains(ad.Access, channel):
		return "no " + channel + " access"
	case !TrustedHost(ad, ip):
		return "not a trusted host"
	}
	return ""
}

// TrustedHost reports whether ip may log in as ad: inside one of its
// trusted-hosts prefixes, or anywhere when the list is empty. The
// factory list, 0.0.0.0/0 ::/0, is any address too.
func TrustedHost(ad config.Admin, ip netip.Addr) bool {
	var hosts []netip.Prefix
	for _, t := range ad.TrustedHosts {
		if p, err := netip.ParsePrefix(t); err == nil {
			hosts = append(hosts, p.Masked())
		}
	}
	if len(hosts) == 0 {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range hosts {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// BackupHeader is the first line of a configuration backup (`execute
// backup config`, the web UI download); a text starting with it is
// restored as a whole.
func BackupHeader(c *config.Config, user string) string {
	return fmt.Sprintf("#config-version=mailgate-%s:opmode=%s:user=%s:format=%d\n", Version, c.System.Global.OperationMode, user, config.FormatVersion)
}

func remoteString(ip netip.Addr) string {
	if ip.IsValid() {
		return ip.String()
	}
	return ""
}

// dummyHash is compared against when there is no real hash, at the cost
// new passwords are hashed with, so that it takes as long.
func (s *Service) dummyHash() []byte {
	cost := s.opt.HashCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("mailgate-no-such-admin"), cost)
	if err != nil {
		panic(err) // only fails for an invalid cost or without randomness
	}
	v, _ := dummyHashes.LoadOrStore(cost, h)
	return v.([]byte)
}

var (
	dummyHashes sync.Map // bcrypt cost → hash
	throttles   sync.Map // *Service → *throttle.Lockout
)

func (s *Service) loginThrottle() *throttle.Lockout[netip.Addr] {
	t, _ := throttles.LoadOrStore(s, &throttle.Lockout[netip.Addr]{})
	return t.(*throttle.Lockout[netip.Addr])
}
