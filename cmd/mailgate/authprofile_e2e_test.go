package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"mailgate/postfixtest"
)

// A user of a protected domain with an SMTP authentication profile
// submits mail with the password the domain's own server knows: Postfix
// with Cyrus SASL checks it over STARTTLS, with a certificate of a CA the
// appliance trusts by system certificate ca, at a name the appliance's
// resolver finds. When that server is down the client hears 454 4.7.0.
func TestSubmissionAuthenticatedByDomainServer(t *testing.T) {
	g := startGateway(t)
	ca, err := postfixtest.NewCA("example.com internal CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("exchange.example.com")
	if err != nil {
		t.Fatal(err)
	}
	auth := postfixtest.StartSink(t, postfixtest.SinkOptions{Hostname: "exchange.example.com", TLSCertPEM: certPEM, TLSKeyPEM: keyPEM,
		SASLUsers: map[string]string{"carol@example.com": "Carol-Remote-7"}})
	_, authPort, _ := net.SplitHostPort(auth.Addr)
	g.dns.AddA("exchange.example.com", "127.0.0.1")

	setup := strings.Join([]string{
		"config system certificate ca", "edit internal", `set certificate "` + strings.TrimSpace(string(ca.CertPEM)) + `"`, "next", "end",
		"config domain", "edit example.com",
		"config profile authentication smtp", "edit exchange",
		"set server exchange.example.com", "set port " + authPort, "set option tls senddomain",
		"next", "end", "next", "end",
	}, "\n") + "\n"
	if out, code := g.ssh(newPassword, setup, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("setup: %d\n%s", code, out)
	}
	show, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "show domain")
	if !strings.Contains(show, "        config profile authentication smtp\n            edit \"exchange\"\n") {
		t.Fatalf("show domain:\n%s", show)
	}

	submit := func(pass, subject string) (string, int) {
		return swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", g.msa), "--tls", "--from", "carol@example.com",
			"--to", "friend@outside.example", "--auth", "LOGIN", "--auth-user", "carol@example.com", "--auth-password", pass,
			"--header", "Subject: "+subject)
	}
	if out, code := submit("Carol-Remote-7", "by the domain's server"); code != 0 || !strings.Contains(out, "235 ") || !strings.Contains(out, "250 2.0.0") {
		t.Fatalf("submission refused: %d\n%s", code, out)
	}
	if _, err := g.sink.WaitMessage("Subject: by the domain's server", 30*time.Second); err != nil {
		t.Fatalf("not delivered: %v\n%s", err, g.sink.Log())
	}
	if out, _ := submit("wrong", "wrong password"); !strings.Contains(out, "535 ") {
		t.Fatalf("a wrong password was not refused with 535:\n%s", out)
	}
	auth.Stop()
	if out, _ := submit("Carol-Remote-7", "server down"); !strings.Contains(out, "454 4.7.0") {
		t.Fatalf("with the server down, want 454 4.7.0:\n%s", out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		events, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "diagnose log event 50")
		if strings.Contains(events, "sasl_username=carol@example.com, authenticated by profile exchange (exchange.example.com:"+authPort+")") &&
			strings.Contains(events, "sasl_username=carol@example.com, authentication unavailable: no authentication server of example.com answered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event log:\n%s", events)
		}
	}
}
