package mailauth_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailgate/config"
	"mailgate/mailauth"
	"mailgate/postfixtest"
)

// authServers starts Postfix instances with SMTP AUTH (Cyrus SASL) as the
// domain's authentication servers: one with STARTTLS, one with implicit
// TLS, both with a certificate of ca for "auth.example.com".
type authServers struct {
	ca          *postfixtest.CA
	plain, smtp *postfixtest.Instance // STARTTLS offered; implicit TLS
}

var saslUsers = map[string]string{
	"alice@example.com": "Alice-Pass-1", // realm example.com: login name alice@example.com
	"alice":             "Local-Realm",  // realm auth.example.com: login name alice
}

func startAuthServers(t *testing.T) *authServers {
	t.Helper()
	ca, err := postfixtest.NewCA("auth test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("auth.example.com")
	if err != nil {
		t.Fatal(err)
	}
	o := postfixtest.SinkOptions{Hostname: "auth.example.com", TLSCertPEM: certPEM, TLSKeyPEM: keyPEM, SASLUsers: saslUsers}
	s := &authServers{ca: ca, plain: postfixtest.StartSink(t, o)}
	o.SMTPS = true
	s.smtp = postfixtest.StartSink(t, o)
	return s
}

func port(t *testing.T, i *postfixtest.Instance) int {
	_, p, _ := net.SplitHostPort(i.Addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cfg is a configuration with one local user and the protected domain
// example.com checked by profiles.
func cfg(t *testing.T, profiles ...config.SMTPAuthProfile) *config.Config {
	h, err := bcrypt.GenerateFromPassword([]byte("Local-User-1"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c := config.Factory(config.FactoryOptions{})
	c.User.Local = []config.User{{Name: "bob@example.com", Status: true, Password: string(h)}}
	d := config.Domain{Name: "example.com", SMTPServer: "192.0.2.25", SMTPPort: 25}
	d.Profile.Authentication.SMTP = profiles
	c.Domain = []config.Domain{d}
	return c
}

// checker trusts ca and resolves auth.example.com to loopback.
func (s *authServers) checker() *mailauth.Checker {
	return &mailauth.Checker{
		Roots:    func() *x509.CertPool { return s.ca.Pool() },
		HeloName: func() string { return "mailgate.test" },
		Timeout:  10 * time.Second,
	}
}

func profile(name string, p int, opts ...string) config.SMTPAuthProfile {
	return config.SMTPAuthProfile{Name: name, Server: "auth.example.com", Port: p, Option: opts}
}

// The options of a profile decide TLS, mechanism and login name; Postfix
// (Cyrus SASL) is the authentication server.
func TestProfilesAgainstPostfix(t *testing.T) {
	s := startAuthServers(t)
	k := s.checker()
	k.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) { return loopback(host) }
	plain, smtps := port(t, s.plain), port(t, s.smtp)
	cases := []struct {
		name    string
		p       config.SMTPAuthProfile
		user    string
		pass    string
		want    string // the user accepted, "" refused
		refused bool   // ErrFailed (else, when want is "", unavailable)
	}{
		{"starttls senddomain", profile("p", plain, "tls", "senddomain"), "alice@example.com", "Alice-Pass-1", "alice@example.com", false},
		{"starttls, login name without domain", profile("p", plain, "tls"), "alice@example.com", "Local-Realm", "alice@example.com", false},
		{"the name form matters", profile("p", plain, "tls"), "alice@example.com", "Alice-Pass-1", "", true},
		{"wrong password", profile("p", plain, "tls", "senddomain"), "alice@example.com", "nope", "", true},
		{"cram-md5 (secure) in plain text", profile("p", plain, "secure", "senddomain"), "alice@example.com", "Alice-Pass-1", "alice@example.com", false},
		{"cram-md5 wrong password", profile("p", plain, "secure", "senddomain"), "alice@example.com", "nope", "", true},
		{"implicit TLS", profile("p", smtps, "ssl", "senddomain"), "alice@example.com", "Alice-Pass-1", "alice@example.com", false},
		{"implicit TLS to a STARTTLS port", profile("p", plain, "ssl", "senddomain"), "alice@example.com", "Alice-Pass-1", "", false},
		{"plain text", profile("p", plain, "senddomain"), "alice@example.com", "Alice-Pass-1", "alice@example.com", false},
		{"default-auth-domain", profile("p", plain, "tls", "senddomain"), "alice", "Alice-Pass-1", "alice@example.com", false},
		{"a domain without profiles", profile("p", plain, "tls"), "alice@other.example", "Alice-Pass-1", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg(t, tc.p)
			c.System.Mailserver.DefaultAuthDomain = "example.com"
			res, err := k.Check(context.Background(), c, tc.user, tc.pass, netip.Addr{})
			var unavailable *mailauth.UnavailableError
			switch {
			case tc.want != "":
				if err != nil || res.User != tc.want || !strings.HasPrefix(res.Via, "profile p (auth.example.com:") {
					t.Fatalf("Check = %+v, %v; want %s by the profile", res, err, tc.want)
				}
			case tc.refused:
				if !errors.Is(err, mailauth.ErrFailed) {
					t.Fatalf("Check = %+v, %v; want ErrFailed", res, err)
				}
			default:
				if !errors.As(err, &unavailable) {
					t.Fatalf("Check = %+v, %v; want UnavailableError", res, err)
				}
			}
		})
	}
}

// A certificate the appliance does not trust makes the server unusable,
// so that a password is never sent to an impostor.
func TestProfileCertificateMustVerify(t *testing.T) {
	s := startAuthServers(t)
	k := s.checker()
	other, err := postfixtest.NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	k.Roots = func() *x509.CertPool { return other.Pool() }
	k.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) { return loopback(host) }
	_, err = k.Check(context.Background(), cfg(t, profile("p", port(t, s.plain), "tls", "senddomain")), "alice@example.com", "Alice-Pass-1", netip.Addr{})
	var unavailable *mailauth.UnavailableError
	if !errors.As(err, &unavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Check: %v, want unavailable for the certificate", err)
	}
}

// Profiles are tried in order; the next only when one does not answer.
// Local users decide alone.
func TestProfileOrderAndLocalUsers(t *testing.T) {
	s := startAuthServers(t)
	k := s.checker()
	k.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) { return loopback(host) }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now

	c := cfg(t, profile("down", dead, "tls"), profile("up", port(t, s.plain), "tls", "senddomain"))
	res, err := k.Check(context.Background(), c, "alice@example.com", "Alice-Pass-1", netip.Addr{})
	if err != nil || res.User != "alice@example.com" || !strings.HasPrefix(res.Via, "profile up ") {
		t.Fatalf("Check = %+v, %v; want alice by profile up", res, err)
	}
	c = cfg(t, profile("up", port(t, s.plain), "tls", "senddomain"), profile("other", port(t, s.smtp), "ssl", "senddomain"))
	if _, err := k.Check(context.Background(), c, "alice@example.com", "wrong", netip.Addr{}); !errors.Is(err, mailauth.ErrFailed) {
		t.Fatalf("a refusal by the first profile: %v, want ErrFailed (no second try)", err)
	}
	c = cfg(t, profile("down", dead, "tls"))
	_, err = k.Check(context.Background(), c, "alice@example.com", "Alice-Pass-1", netip.Addr{})
	var unavailable *mailauth.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.Domain != "example.com" || len(unavailable.Errs) != 1 {
		t.Fatalf("every server down: %v, want UnavailableError", err)
	}

	// bob is a local user: his password is checked here, never remotely.
	c = cfg(t, profile("up", port(t, s.plain), "tls", "senddomain"))
	if res, err := k.Check(context.Background(), c, "BOB@example.com", "Local-User-1", netip.Addr{}); err != nil || res.User != "bob@example.com" || res.Via != "local" {
		t.Fatalf("local user: %+v, %v", res, err)
	}
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Alice-Pass-1", netip.Addr{}); !errors.Is(err, mailauth.ErrFailed) {
		t.Fatalf("local user, wrong password: %v", err)
	}
	c.User.Local[0].Status = false
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Local-User-1", netip.Addr{}); !errors.Is(err, mailauth.ErrFailed) {
		t.Fatalf("disabled local user: %v", err)
	}
}

// loopback resolves the test's server name to 127.0.0.1.
func loopback(host string) ([]netip.Addr, error) {
	if host != "auth.example.com" {
		return nil, errors.New("no such host " + host)
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// In server mode the mailboxes of config user mail log in as local@domain
// (or local with default-auth-domain); a disabled account or resource
// profile refuses. In another mode they are no accounts.
func TestMailboxUsers(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("Mailbox-Pass-3"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c := config.Factory(config.FactoryOptions{Mode: "server"})
	c.System.Mailserver.DefaultAuthDomain = "example.com"
	c.Profile.Resource = []config.ResourceProfile{{Name: "staff", AccountStatus: true}, {Name: "left", AccountStatus: false}}
	d := config.Domain{Name: "example.com"}
	d.User.Mail = []config.MailUser{
		{Name: "Alice", Status: true, Password: string(h), ResourceProfile: "staff"},
		{Name: "dave", Status: false, Password: string(h)},
		{Name: "erin", Status: true, Password: string(h), ResourceProfile: "left"},
	}
	c.Domain = []config.Domain{d}
	k := &mailauth.Checker{}
	for _, login := range []string{"alice@example.com", "ALICE@Example.COM", "alice"} {
		res, err := k.Check(context.Background(), c, login, "Mailbox-Pass-3", netip.Addr{})
		if err != nil || res.User != "Alice@example.com" || res.Via != "mailbox" {
			t.Errorf("%s: %+v, %v", login, res, err)
		}
	}
	for _, tc := range []struct{ login, pass string }{
		{"alice@example.com", "wrong"}, {"dave@example.com", "Mailbox-Pass-3"}, {"erin@example.com", "Mailbox-Pass-3"},
		{"nobody@example.com", "Mailbox-Pass-3"}, {"alice@other.example", "Mailbox-Pass-3"},
	} {
		if _, err := k.Check(context.Background(), c, tc.login, tc.pass, netip.Addr{}); !errors.Is(err, mailauth.ErrFailed) {
			t.Errorf("%s / %s: %v, want ErrFailed", tc.login, tc.pass, err)
		}
	}
	c.System.Global.OperationMode = "gateway"
	if _, err := k.Check(context.Background(), c, "alice@example.com", "Mailbox-Pass-3", netip.Addr{}); !errors.Is(err, mailauth.ErrFailed) {
		t.Errorf("a mailbox outside server mode: %v, want ErrFailed", err)
	}
}

// Ten failures from one address lock it out (logins refused unchecked,
// other addresses unaffected) until the lockout ends; ten failures for
// one name slow its checks, one at a time; a success is cached until the
// password changes.
func TestThrottleAndCache(t *testing.T) {
	c := cfg(t)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	k := &mailauth.Checker{Now: func() time.Time { return now }}
	attacker, other := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.9")
	for i := 1; i <= mailauth.AddressThreshold; i++ {
		_, err := k.Check(context.Background(), c, fmt.Sprintf("user%d@example.com", i), "guess", attacker)
		if !errors.Is(err, mailauth.ErrFailed) {
			t.Fatalf("failure %d: %v", i, err)
		}
		if locked := strings.Contains(fmt.Sprint(err), "192.0.2.7 locked out for 1m0s after 10 failures"); locked != (i == mailauth.AddressThreshold) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Local-User-1", attacker); !errors.Is(err, mailauth.ErrThrottled) {
		t.Fatalf("locked address, right password: %v, want ErrThrottled", err)
	}
	if res, err := k.Check(context.Background(), c, "bob@example.com", "Local-User-1", other); err != nil || res.User != "bob@example.com" {
		t.Fatalf("another address: %+v, %v", res, err)
	}
	now = now.Add(mailauth.AddressLockout)
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Local-User-1", attacker); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}

	// The cache: bob's next logins compare no hash, until his password
	// changes; a wrong password is never taken from the cache.
	n := k.Bcrypts()
	for i := 0; i < 3; i++ {
		if _, err := k.Check(context.Background(), c, "Bob@example.com", "Local-User-1", other); err != nil {
			t.Fatal(err)
		}
	}
	if got := k.Bcrypts() - n; got != 0 {
		t.Errorf("%d hashes compared for cached logins", got)
	}
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Local-User-2", other); !errors.Is(err, mailauth.ErrFailed) {
		t.Errorf("wrong password: %v", err)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("Changed-Pass-9"), bcrypt.MinCost)
	c.User.Local[0].Password = string(h)
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Local-User-1", other); !errors.Is(err, mailauth.ErrFailed) {
		t.Errorf("old password after a change: %v", err)
	}
	now = now.Add(mailauth.CacheTTL)

	// A name under attack from many addresses: each further check waits
	// UserDelay, one at a time.
	mailauth.UserDelay = 100 * time.Millisecond
	for i := 0; i < mailauth.UserThreshold; i++ {
		k.Check(context.Background(), c, "bob@example.com", "guess", netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.Check(context.Background(), c, "bob@example.com", "Changed-Pass-9", other)
		}()
	}
	wg.Wait()
	if d := time.Since(start); d < 3*mailauth.UserDelay {
		t.Errorf("three checks of a name under attack took %v, want them one after the other (>= %v)", d, 3*mailauth.UserDelay)
	}
	if res, err := k.Check(context.Background(), c, "bob@example.com", "Changed-Pass-9", other); err != nil || res.User != "bob@example.com" {
		t.Errorf("the owner still logs in: %+v, %v", res, err)
	}
}
