package smtpd

import (
	"crypto/tls"
	"testing"
)

// smtp-auth, smtp-auth-over-tls and smtp-auth-smtps decide where EHLO
// lists AUTH and where AUTH is accepted, over real SMTP.
func TestAuthSwitches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	// ehlo returns the EHLO reply on port k, after STARTTLS when tls.
	ehlo := func(k Kind, tlsOn bool) (*client, string) {
		t.Helper()
		var c *client
		if k == SMTPS {
			c = dialTLS(t, e.addr[k], &tls.Config{InsecureSkipVerify: true})
		} else {
			c = dial(t, e.addr[k])
		}
		c.reply()
		if tlsOn && k != SMTPS {
			c.expect("EHLO x.example", "250")
			c.starttls(nil)
		}
		return c, c.expect("EHLO x.example", "250")
	}
	login := "AUTH PLAIN " + plainIR(userName, userPass)

	// Factory: AUTH only under TLS, on every port.
	for _, k := range []Kind{SMTP, MSA} {
		c, r := ehlo(k, false)
		mustNotContain(t, r, "AUTH")
		c.expect(login, "538 5.7.11")
		c, r = ehlo(k, true)
		mustContain(t, r, "AUTH PLAIN LOGIN")
		c.expect(login, "235 2.0.0")
	}
	c, r := ehlo(SMTPS, true)
	mustContain(t, r, "AUTH PLAIN LOGIN")
	c.expect(login, "235 2.0.0")
	out, err := swaks(t, "--port", e.port(SMTP), "--tls", "--auth", "PLAIN", "--auth-user", userName, "--auth-password", userPass,
		"--from", userName, "--to", "friend@elsewhere.example")
	if err != nil {
		t.Fatalf("swaks on the SMTP port: %v\n%s", err, out)
	}
	mustContain(t, out, "250-AUTH PLAIN LOGIN", "235 2.0.0 Authentication succeeded", "250 2.0.0 Ok: queued as")

	// smtp-auth disable: not on the SMTP port, still on submission.
	e.setConfig(testConfig(t, "config system mailserver\nset smtp-auth disable\nend"))
	c, r = ehlo(SMTP, true)
	mustNotContain(t, r, "AUTH")
	c.expect(login, "502 5.5.1 Authentication is not offered on this port")
	c, r = ehlo(MSA, true)
	mustContain(t, r, "AUTH PLAIN LOGIN")
	c.expect(login, "235 2.0.0")
	out, err = swaks(t, "--port", e.port(SMTP), "--tls", "--auth", "PLAIN", "--auth-user", userName, "--auth-password", userPass,
		"--from", userName, "--to", "friend@elsewhere.example")
	if err == nil {
		t.Fatalf("swaks authenticated on the SMTP port with smtp-auth disable:\n%s", out)
	}
	mustNotContain(t, out, "250-AUTH")

	// smtp-auth-smtps disable: not on the SMTPS port.
	e.setConfig(testConfig(t, "config system mailserver\nset smtp-auth-smtps disable\nend"))
	c, r = ehlo(SMTPS, true)
	mustNotContain(t, r, "AUTH")
	c.expect(login, "502 5.5.1")
	c, r = ehlo(SMTP, true)
	mustContain(t, r, "AUTH PLAIN LOGIN")

	// smtp-auth-over-tls disable: AUTH in plain text as well, on the SMTP
	// and submission ports.
	e.setConfig(testConfig(t, "config system mailserver\nset smtp-auth-over-tls disable\nend"))
	for _, k := range []Kind{SMTP, MSA} {
		c, r := ehlo(k, false)
		mustContain(t, r, "AUTH PLAIN LOGIN")
		c.expect(login, "235 2.0.0")
		c.expect("MAIL FROM:<"+userName+">", "250")
		c.expect("RCPT TO:<x@elsewhere.example>", "250")
	}
	e.setConfig(testConfig(t, "config system mailserver\nset smtp-auth-over-tls disable\nset smtp-auth disable\nend"))
	c, r = ehlo(SMTP, false)
	mustNotContain(t, r, "AUTH")
	c.expect(login, "502 5.5.1")
}
