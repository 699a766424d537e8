package postfixtest

import (
	"crypto/tls"
	"net/smtp"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func send(t *testing.T, addr string, tlsConf *tls.Config, from string, to []string, body string) (queued string, err error) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return "", err
	}
	if tlsConf != nil {
		if err := c.StartTLS(tlsConf); err != nil {
			return "", err
		}
	}
	if err := c.Mail(from); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	w.Write([]byte(body))
	if err := w.Close(); err != nil {
		return "", err
	}
	return "", c.Quit()
}

func TestSinkRelayAndTLS(t *testing.T) {
	ca, err := NewCA("Test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("mx.tls.test")
	if err != nil {
		t.Fatal(err)
	}
	plain := StartSink(t, SinkOptions{RejectRcpt: map[string]string{"nobody@x.test": "550 5.1.1 No such user"},
		RejectSender: map[string]string{"later@src.test": "451 4.3.0 Try later"}})
	tlsSink := StartSink(t, SinkOptions{TLSCertPEM: certPEM, TLSKeyPEM: keyPEM, Hostname: "mx.tls.test"})
	broken := StartSink(t, SinkOptions{BrokenTLS: true})
	refuse := StartSink(t, SinkOptions{RefuseTLS: true})

	if _, err := send(t, plain.Addr, nil, "a@src.test", []string{"b@any.example"}, "Subject: plain-1\r\n\r\nhello\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.WaitMessage("plain-1", 10*time.Second); err != nil {
		t.Fatal(err, plain.Log())
	}
	_, err = send(t, plain.Addr, nil, "a@src.test", []string{"nobody@x.test"}, "x")
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "5.1.1") {
		t.Fatalf("rejected recipient: %v", err)
	}

	_, err = send(t, plain.Addr, nil, "later@src.test", []string{"b@any.example"}, "x")
	if err == nil || !strings.Contains(err.Error(), "451") || !strings.Contains(err.Error(), "4.3.0") {
		t.Fatalf("rejected sender: %v", err)
	}

	conf := &tls.Config{ServerName: "mx.tls.test", RootCAs: ca.Pool()}
	if _, err := send(t, tlsSink.Addr, conf, "a@src.test", []string{"b@any.example"}, "Subject: tls-1\r\n\r\nhello\r\n"); err != nil {
		t.Fatal(err, tlsSink.Log())
	}
	msg, err := tlsSink.WaitMessage("tls-1", 10*time.Second)
	if err != nil || !strings.Contains(msg, "(using TLS") {
		t.Fatalf("TLS message: %v\n%s", err, msg)
	}
	if err := tlsSink.WaitLog("TLS connection established from", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ss := tlsSink.Sessions()
	if len(ss) == 0 || !strings.HasPrefix(ss[len(ss)-1].TLS, "TLSv1.3") {
		t.Fatalf("sessions: %+v", ss)
	}

	_, err = send(t, broken.Addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10}, "a@src.test", []string{"b@any.example"}, "x")
	if err == nil || !strings.Contains(err.Error(), "handshake failure") {
		t.Fatalf("broken TLS: %v", err)
	}
	_, err = send(t, refuse.Addr, &tls.Config{InsecureSkipVerify: true}, "a@src.test", []string{"b@any.example"}, "x")
	if err == nil || !strings.Contains(err.Error(), "454") {
		t.Fatalf("refused TLS: %v", err)
	}

	relay := StartRelay(t, RelayOptions{RelayHost: plain.Addr})
	if _, err := send(t, relay.Addr, nil, "a@src.test", []string{"c@far.example"}, "Subject: relayed-1\r\n\r\nhi\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.WaitMessage("relayed-1", 10*time.Second); err != nil {
		t.Fatal(err, relay.Log())
	}
	if err := relay.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestSmtpSink(t *testing.T) {
	s := SmtpSink(t, 0)
	for i := 0; i < 3; i++ {
		if _, err := send(t, s.Addr, nil, "a@src.test", []string{"b@any.example"}, "Subject: x\r\n\r\nx\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitCount(3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestRelayToSmtpSink is the benchmark's reference path: smtp-source into
// a Postfix relay that forwards to smtp-sink.
func TestRelayToSmtpSink(t *testing.T) {
	null := SmtpSink(t, 0)
	relay := StartRelay(t, RelayOptions{RelayHost: null.Addr})
	out, err := exec.Command("/usr/sbin/smtp-source", "-s", "2", "-m", "20", "-f", "a@src.test", "-t", "b@far.example", relay.Addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v %s", err, out)
	}
	if err := null.WaitCount(20, 20*time.Second); err != nil {
		t.Fatal(err, relay.Log())
	}
}
