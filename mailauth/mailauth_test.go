package mailauth_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
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
			res, err := k.Check(context.Background(), c, tc.user, tc.pass)
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
	_, err = k.Check(context.Background(), cfg(t, profile("p", port(t, s.plain), "tls", "senddomain")), "alice@example.com", "Alice-Pass-1")
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
	res, err := k.Check(context.Background(), c, "alice@example.com", "Alice-Pass-1")
	if err != nil || res.User != "alice@example.com" || !strings.HasPrefix(res.Via, "profile up ") {
		t.Fatalf("Check = %+v, %v; want alice by profile up", res, err)
	}
	c = cfg(t, profile("up", port(t, s.plain), "tls", "senddomain"), profile("other", port(t, s.smtp), "ssl", "senddomain"))
	if _, err := k.Check(context.Background(), c, "alice@example.com", "wrong"); !errors.Is(err, mailauth.ErrFailed) {
		t.Fatalf("a refusal by the first profile: %v, want ErrFailed (no second try)", err)
	}
	c = cfg(t, profile("down", dead, "tls"))
	_, err = k.Check(context.Background(), c, "alice@example.com", "Alice-Pass-1")
	var unavailable *mailauth.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.Domain != "example.com" || len(unavailable.Errs) != 1 {
		t.Fatalf("every server down: %v, want UnavailableError", err)
	}

	// bob is a local user: his password is checked here, never remotely.
	c = cfg(t, profile("up", port(t, s.plain), "tls", "senddomain"))
	if res, err := k.Check(context.Background(), c, "BOB@example.com", "Local-User-1"); err != nil || res.User != "bob@example.com" || res.Via != "local" {
		t.Fatalf("local user: %+v, %v", res, err)
	}
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Alice-Pass-1"); !errors.Is(err, mailauth.ErrFailed) {
		t.Fatalf("local user, wrong password: %v", err)
	}
	c.User.Local[0].Status = false
	if _, err := k.Check(context.Background(), c, "bob@example.com", "Local-User-1"); !errors.Is(err, mailauth.ErrFailed) {
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
		res, err := k.Check(context.Background(), c, login, "Mailbox-Pass-3")
		if err != nil || res.User != "Alice@example.com" || res.Via != "mailbox" {
			t.Errorf("%s: %+v, %v", login, res, err)
		}
	}
	for _, tc := range []struct{ login, pass string }{
		{"alice@example.com", "wrong"}, {"dave@example.com", "Mailbox-Pass-3"}, {"erin@example.com", "Mailbox-Pass-3"},
		{"nobody@example.com", "Mailbox-Pass-3"}, {"alice@other.example", "Mailbox-Pass-3"},
	} {
		if _, err := k.Check(context.Background(), c, tc.login, tc.pass); !errors.Is(err, mailauth.ErrFailed) {
			t.Errorf("%s / %s: %v, want ErrFailed", tc.login, tc.pass, err)
		}
	}
	c.System.Global.OperationMode = "gateway"
	if _, err := k.Check(context.Background(), c, "alice@example.com", "Mailbox-Pass-3"); !errors.Is(err, mailauth.ErrFailed) {
		t.Errorf("a mailbox outside server mode: %v, want ErrFailed", err)
	}
}
