package mta

import (
	"net"
	"net/smtp"
	"strconv"
	"testing"
	"time"

	"mailgate/admin/admintest"
	"mailgate/config/configtest"
	"mailgate/postfixtest"
	"mailgate/smtpd"
)

// smtp-service disable closes the SMTP port at Start and at Apply while
// SMTPS and submission keep listening; enable opens it again.
func TestSMTPServiceSwitch(t *testing.T) {
	svc, _ := admintest.Open(t, t.TempDir(), nil)
	cur, _ := svc.Config()
	off := configtest.Apply(t, cur.Clone(), "config system mailserver\nset smtp-service disable\nend\n")
	if err := svc.Replace("admin", "test setup", off); err != nil {
		t.Fatal(err)
	}
	smtpPort := postfixtest.Port(t)
	m, err := Start(Options{DataDir: t.TempDir(), Service: svc, ListenHost: "127.0.0.1",
		SMTPPort: smtpPort, SMTPSPort: postfixtest.Port(t), MSAPort: postfixtest.Port(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	smtpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort))
	open := func(addr string) bool {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	check := func(what string, smtpOpen bool) {
		t.Helper()
		if got := m.Addr(smtpd.SMTP) != ""; got != smtpOpen {
			t.Errorf("%s: SMTP listener %v", what, got)
		}
		if got := open(smtpAddr); got != smtpOpen {
			t.Errorf("%s: connecting to the SMTP port: %v", what, got)
		}
		for _, k := range []smtpd.Kind{smtpd.SMTPS, smtpd.MSA} {
			if a := m.Addr(k); a == "" || !open(a) {
				t.Errorf("%s: %s not listening", what, k)
			}
		}
	}
	check("started with smtp-service disable", false)

	on := configtest.Apply(t, off.Clone(), "config system mailserver\nset smtp-service enable\nend\n")
	if err := m.Apply(on); err != nil {
		t.Fatal(err)
	}
	check("smtp-service enable", true)
	c, err := smtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("x.example"); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	if err := m.Apply(off); err != nil {
		t.Fatal(err)
	}
	check("smtp-service disable again", false)
}
