package mta

import (
	"bufio"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/admin/admintest"
	"mailgate/config/configtest"
	"mailgate/postfixtest"
)

// TestMailName: with a host name without a dot and a local domain name,
// the appliance calls itself hostname.local-domain-name both in its
// greeting and in the EHLO of its deliveries (helo-name being empty).
func TestMailName(t *testing.T) {
	sink := postfixtest.StartSink(t, postfixtest.SinkOptions{})
	_, sinkPort, _ := net.SplitHostPort(sink.Addr)
	svc, _ := admintest.Open(t, t.TempDir(), nil)
	cur, _ := svc.Config()
	c := configtest.Apply(t, cur.Clone(), `config system global
set hostname gw
set local-domain-name example.test
end
config domain
edit corp.test
set smtp-server 127.0.0.1
set smtp-port `+sinkPort+`
next
end
`)
	if err := svc.Replace("admin", "test setup", c); err != nil {
		t.Fatal(err)
	}
	if got := c.Mailsetting.StartTLS.HeloName; got != "" {
		t.Fatalf("helo-name %q", got)
	}
	smtpPort := postfixtest.Port(t)
	m, err := Start(Options{DataDir: t.TempDir(), Service: svc, ListenHost: "127.0.0.1",
		SMTPPort: smtpPort, SMTPSPort: postfixtest.Port(t), MSAPort: postfixtest.Port(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort))

	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	greeting, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil || !strings.HasPrefix(greeting, "220 gw.example.test ") {
		t.Fatalf("greeting %q %v", greeting, err)
	}

	send(t, addr, "sender@outside.test", "bob@corp.test", "Subject: mail name\r\n\r\nhello\r\n")
	msg, err := sink.WaitMessage("Subject: mail name", 20*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, sink.Log())
	}
	// Postfix's Received header names the EHLO argument first.
	if !strings.Contains(msg, "Received: from gw.example.test (") {
		t.Fatalf("EHLO name not gw.example.test:\n%s", msg)
	}
}

// send submits a message in plain text.
func send(t *testing.T, addr, from, to, msg string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}
