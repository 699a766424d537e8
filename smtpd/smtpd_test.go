package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailgate/cert"
	"mailgate/config"
)

func TestRelayToProtectedDomain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""), withRDNS("127.0.0.1", "client.sender.example"))
	out, err := swaks(t, "--port", e.port(SMTP), "--ehlo", "client.sender.example", "--from", "a@sender.example",
		"--to", "bob@example.com,carol@EXAMPLE.net", "--body", "hello")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	mustContain(t, out, "250 2.0.0 Ok: queued as Q0001")
	msgs := e.q.all()
	if len(msgs) != 1 {
		t.Fatalf("queued %d messages", len(msgs))
	}
	m := msgs[0]
	if m.env.From != "a@sender.example" || strings.Join(m.env.Recipients, ",") != "bob@example.com,carol@EXAMPLE.net" ||
		m.env.Helo != "client.sender.example" || m.env.ClientIP.String() != "127.0.0.1" || m.env.TLS != "" ||
		m.env.AuthUser != "" || m.env.SessionID == "" || m.env.Received.IsZero() {
		t.Errorf("envelope %+v", m.env)
	}
	// Two recipients: no "for" clause.
	hdr := string(m.msg[:strings.Index(string(m.msg), "\r\nDate:")])
	re := regexp.MustCompile(`^Received: from client\.sender\.example \(client\.sender\.example \[127\.0\.0\.1\]\)\r\n\tby mx\.example\.com \(mailgate\) with ESMTP id ` +
		m.env.SessionID + `-1; [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$`)
	if !re.MatchString(hdr) {
		t.Errorf("Received header:\n%s", hdr)
	}
	if len(e.histories()) != 0 {
		t.Errorf("history for accepted mail: %+v", e.histories())
	}
}

func TestOpenRelayRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	for _, c := range []struct{ name, from, to string }{
		{"unknown domain", "a@sender.example", "victim@elsewhere.example"},
		{"forged local sender", "ceo@example.com", "victim@elsewhere.example"},
		{"null sender", "<>", "victim@elsewhere.example"},
		{"lookalike domain", "a@sender.example", "bob@example.com.elsewhere.example"},
		{"percent hack", "a@sender.example", "victim%elsewhere.example@example.com"},
	} {
		out, err := swaks(t, "--port", e.port(SMTP), "--from", c.from, "--to", c.to, "--quit-after", "RCPT")
		if err == nil {
			t.Errorf("%s: swaks succeeded:\n%s", c.name, out)
		}
		mustContain(t, out, "550 5.7.1 Relaying denied")
	}
	// Also over TLS and on the submission port's implicit-TLS cousin.
	out, _ := swaks(t, "--port", e.port(SMTPS), "--tlsc", "--from", "a@example.com", "--to", "victim@elsewhere.example", "--quit-after", "RCPT")
	mustContain(t, out, "550 5.7.1 Relaying denied")
	// Postfix's smtp-source as a second, independent client.
	src := exec.Command(smtpSource(t), "-c", "-s", "2", "-m", "4", "-f", "spam@sender.example", "-t", "victim@elsewhere.example", e.addr[SMTP])
	outb, _ := src.CombinedOutput()
	if len(e.q.all()) != 0 {
		t.Fatalf("relayed: %+v\n%s", e.q.all(), outb)
	}
	mustContain(t, string(outb), "5.7.1")
	hs := e.histories()
	if len(hs) < 6 {
		t.Fatalf("history: %+v", hs)
	}
	h := hs[0]
	if h.Disposition != "Reject" || h.Classifier != "Relay Denied" || h.Status != "550 5.7.1 Relaying denied" ||
		h.To != "victim@elsewhere.example" || h.From != "a@sender.example" || h.SessionID == "" || h.ClientIP.String() != "127.0.0.1" {
		t.Errorf("history record %+v", h)
	}
	for _, h := range hs {
		if h.Classifier != "Relay Denied" {
			t.Errorf("history record %+v", h)
		}
	}
}

func smtpSource(t testing.TB) string {
	for _, p := range []string{"smtp-source", "/usr/sbin/smtp-source"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("Postfix's smtp-source is required for these tests (make test-deps installs it)")
	return ""
}

func TestSMTPSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	// 5 parallel sessions, 40 messages of 20 KiB, 3 recipients each.
	cmd := exec.Command(smtpSource(t), "-c", "-s", "5", "-m", "40", "-l", "20480", "-r", "3", "-f", "sender@sender.example",
		"-t", "bob@example.com", e.addr[SMTP])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	msgs := e.q.all()
	if len(msgs) != 40 {
		t.Fatalf("queued %d messages, want 40\n%s", len(msgs), out)
	}
	for _, m := range msgs {
		if len(m.env.Recipients) != 3 {
			t.Fatalf("recipients %v", m.env.Recipients)
		}
		body := string(m.msg)
		if strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\r") {
			t.Fatal("line ends not CRLF")
		}
		if !strings.HasPrefix(body, "Received: from ") || len(m.msg) < 20480 {
			t.Fatalf("message %d bytes:\n%.300s", len(m.msg), body)
		}
	}
}

func TestTLSProfileEncrypt(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, `
config profile tls
  edit must-encrypt
    set level encrypt
    set action tempfail
  next
  edit must-encrypt-fail
    set level encrypt
    set action fail
  next
end
config policy access-control receive
  edit 1
    set recipient-pattern "*@example.net"
    set tls-profile must-encrypt-fail
    set action receive
  next
  edit 2
    set tls-profile must-encrypt
    set action receive
  next
end`)
	e := newEnv(t, cfg)
	out, err := swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "bob@example.com", "--quit-after", "RCPT")
	if err == nil {
		t.Fatalf("accepted in plain text:\n%s", out)
	}
	mustContain(t, out, "454 4.7.0 TLS required")
	out, err = swaks(t, "--port", e.port(SMTP), "--tls", "--from", "a@sender.example", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("refused after STARTTLS: %v\n%s", err, out)
	}
	mustContain(t, out, "250 2.0.0 Ok: queued as")
	out, _ = swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "bob@example.net", "--quit-after", "RCPT")
	mustContain(t, out, "550 5.7.0 TLS required")
	// Receive rules never relay.
	out, _ = swaks(t, "--port", e.port(SMTP), "--tls", "--from", "a@sender.example", "--to", "x@elsewhere.example", "--quit-after", "RCPT")
	mustContain(t, out, "550 5.7.1 Relaying denied")
	if m := e.q.all(); len(m) != 1 || m[0].env.TLS != "TLSv1.3 TLS_AES_128_GCM_SHA256" {
		t.Fatalf("queue: %+v", m)
	}
	var classes []string
	for _, h := range e.histories() {
		classes = append(classes, h.Classifier+"/"+h.Disposition)
	}
	if strings.Join(classes, ",") != "TLS Enforcement/Temp Fail,TLS Enforcement/Reject,Relay Denied/Reject" {
		t.Errorf("history: %v", classes)
	}
	e.waitEvent("STARTTLS=server, client=unknown[127.0.0.1], version=TLSv1.3, cipher=TLS_AES_128_GCM_SHA256, bits=128, verify=NONE, session=")
}

// TestSecureLevelClientCertificate: receive rules with TLS profiles of
// level secure, checked with swaks (OpenSSL) as the client. Profile
// partner (action fail) requires a client certificate verified against
// the configured CAs, issued by the CA ca-name names, with a subject
// matching cert-subject; profile strong (action tempfail) also requires
// a 256-bit cipher.
func TestSecureLevelClientCertificate(t *testing.T) {
	t.Parallel()
	id := testIdentity(t)
	caName := caCommonName(t, id.CACertPEM)
	// A second CA the appliance trusts, whose name is not ca-name.
	otherCA, err := newForeignIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, `
config profile tls
  edit partner
    set level secure
    set action fail
    set check-ca-name enable
    set ca-name "`+caName+`"
    set check-cert-subject enable
    set cert-subject "*.partner.example"
  next
  edit strong
    set level secure
    set action tempfail
    set check-encryption-strength enable
    set encryption-strength 256
  next
end
config policy access-control receive
  edit 1
    set sender-pattern "*@partner.example"
    set tls-profile partner
    set action relay
  next
  edit 2
    set sender-pattern "*@strong.example"
    set tls-profile strong
    set action relay
  next
end`)
	cfg.System.Certificate.CA = append(cfg.System.Certificate.CA, config.CACert{Name: "other", Certificate: string(otherCA.CACertPEM)})
	e := newEnv(t, cfg)
	issue := func(issuer *cert.Identity, name string) [2][]byte {
		t.Helper()
		c, k, err := issuer.Issue(name, nil, time.Now().Add(24*time.Hour), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return [2][]byte{c, k}
	}
	good := issue(id, "mx.partner.example")
	wrong := issue(id, "mx.other.example")
	otherIssuer := issue(otherCA, "mx.partner.example")
	untrustedCA, err := newForeignIdentity()
	if err != nil {
		t.Fatal(err)
	}
	untrusted := issue(untrustedCA, "mx.partner.example")
	run := func(from string, c *[2][]byte, extra ...string) (string, error) {
		args := append([]string{"--port", e.port(SMTP), "--tls", "--from", from, "--to", "x@elsewhere.example"}, extra...)
		if c != nil {
			args = append(args, "--tls-cert", writeFile(t, "c.pem", c[0]), "--tls-key", writeFile(t, "k.pem", c[1]))
		}
		return swaks(t, args...)
	}
	out, err := run("a@partner.example", &good)
	if err != nil {
		t.Fatalf("verified partner refused: %v\n%s", err, out)
	}
	mustContain(t, out, "250 2.0.0 Ok: queued as")
	e.waitEvent("verify=OK")
	out, _ = run("a@partner.example", nil)
	mustContain(t, out, "550 5.7.0 certificate not verified")
	out, _ = run("a@partner.example", &untrusted)
	mustContain(t, out, "550 5.7.0 certificate not verified")
	e.waitEvent("verify=FAIL")
	out, _ = run("a@partner.example", &wrong)
	mustContain(t, out, `550 5.7.0 certificate subject "mx.other.example" does not match`)
	// Verified (the other CA is trusted) and the right subject, but
	// issued by a CA whose name is not ca-name.
	out, _ = run("a@partner.example", &otherIssuer)
	mustContain(t, out, `550 5.7.0 certificate issuer "`+caCommonName(t, otherCA.CACertPEM)+`" does not match`)

	// Cipher strength, in TLS 1.2 where the client chooses the suite:
	// AES-256 passes, AES-128 is below the profile's 256 bits.
	tls12 := func(cipher string) []string {
		return []string{"--tls-protocol", "tlsv1_2", "--tls-cipher", cipher}
	}
	out, err = run("a@strong.example", &otherIssuer, tls12("ECDHE-ECDSA-AES256-GCM-SHA384")...)
	if err != nil {
		t.Fatalf("AES-256 refused: %v\n%s", err, out)
	}
	mustContain(t, out, "250 2.0.0 Ok: queued as")
	e.waitEvent("version=TLSv1.2, cipher=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, bits=256, verify=OK")
	out, _ = run("a@strong.example", &otherIssuer, tls12("ECDHE-ECDSA-AES128-GCM-SHA256")...)
	mustContain(t, out, "454 4.7.0 cipher strength 128 bits is below 256")
	e.waitEvent("cipher=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, bits=128")
	if n := len(e.q.all()); n != 2 {
		t.Fatalf("queued %d", n)
	}
}

// caCommonName is the subject common name of a PEM CA certificate.
func caCommonName(t *testing.T, caPEM []byte) string {
	t.Helper()
	certs, err := cert.ParseChain(caPEM)
	if err != nil || len(certs) == 0 {
		t.Fatalf("CA certificate: %v", err)
	}
	return certs[0].Subject.CommonName
}

func TestSTARTTLSExclusion(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, `
config system mailserver
  set starttls-exclude-hosts legacy.example
end
config profile tls
  edit off
    set level none
  next
end
config policy access-control receive
  edit 1
    set sender-ip-mask 127.0.0.3/32
    set tls-profile off
    set action receive
  next
end`)
	e := newEnv(t, cfg, withRDNS("127.0.0.2", "MX1.Legacy.Example"))
	ehlo := func(local string) (*client, string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", e.addr[SMTP])
		if err != nil {
			t.Fatal(err)
		}
		c := &client{t: t, conn: conn}
		c.r = newReader(conn)
		t.Cleanup(func() { conn.Close() })
		c.reply()
		return c, c.expect("EHLO probe.example", "250")
	}
	_, r := ehlo("127.0.0.1")
	mustContain(t, r, "250-STARTTLS")
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		c, r := ehlo(ip)
		mustNotContain(t, r, "STARTTLS")
		// An explicit STARTTLS is honoured all the same.
		c.starttls(nil)
		r = c.expect("EHLO probe.example", "250")
		mustNotContain(t, r, "STARTTLS")
		mustContain(t, r, "AUTH PLAIN LOGIN")
		c.expect("MAIL FROM:<a@sender.example>", "250")
		c.expect("RCPT TO:<bob@example.com>", "250")
	}
	// swaks from the excluded client: plain text works, --tls fails for
	// want of the capability.
	out, err := swaks(t, "--port", e.port(SMTP), "--local-interface", "127.0.0.2", "--from", "a@legacy.example", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustNotContain(t, out, "STARTTLS")
	e.waitEvent("STARTTLS=server, client=mx1.legacy.example[127.0.0.2]")
}

func TestSTARTTLSDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, "config system mailserver\n set smtp-starttls disable\nend"))
	c := dial(t, e.addr[SMTP])
	c.reply()
	mustNotContain(t, c.expect("EHLO x.example", "250"), "STARTTLS", "AUTH")
	c.expect("STARTTLS", "502 5.5.1 TLS not supported")
	c.expect("AUTH PLAIN AGFsaWNlAHg=", "538 5.7.11 Must issue a STARTTLS command first")
	// The submission port still offers it.
	m := dial(t, e.addr[MSA])
	m.reply()
	mustContain(t, m.expect("EHLO x.example", "250"), "250-STARTTLS")
}

func TestSMTPSImplicitTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	out, err := swaks(t, "--port", e.port(SMTPS), "--tlsc", "--from", "a@sender.example", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, out, "TLS started with cipher TLSv1.3", "250 2.0.0 Ok: queued as")
	mustNotContain(t, out, "STARTTLS\n")
	c := dialTLS(t, e.addr[SMTPS], &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	mustContain(t, c.reply(), "220 mx.example.com ESMTP")
	r := c.expect("EHLO x.example", "250")
	mustNotContain(t, r, "STARTTLS")
	mustContain(t, r, "AUTH PLAIN LOGIN")
	c.expect("STARTTLS", "502 5.5.1 Already running in TLS")
	e.waitEvent("STARTTLS=server", "version=TLSv1.3", "sni=localhost")
	// openssl s_client as another implementation.
	cmd := exec.Command("openssl", "s_client", "-connect", e.addr[SMTPS], "-quiet")
	cmd.Stdin = strings.NewReader("EHLO openssl.example\r\nQUIT\r\n")
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, outb)
	}
	mustContain(t, string(outb), "220 mx.example.com", "250-Hello openssl.example", "221 2.0.0 Bye")
	// No certificate store: SMTPS connections are closed.
	e.certs.Set(nil)
	d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}
	if conn, err := d.DialContext(context.Background(), "tcp", e.addr[SMTPS]); err == nil {
		conn.Close()
		t.Fatal("handshake without a certificate")
	}
}

func TestTLSVersionsAndCiphers(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	e := newEnv(t, cfg)
	try := func(c *tls.Config) error {
		c.InsecureSkipVerify = true
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr[SMTPS], c)
		if err == nil {
			conn.Close()
		}
		return err
	}
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	if err := try(&tls.Config{MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("TLS 1.2: %v", err)
	}
	if err := try(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
		t.Error("strong-crypto must refuse CBC suites")
	}
	if err := try(&tls.Config{MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		t.Error("TLS 1.1 is not in ssl-versions")
	}
	weak := cfg.Clone()
	weak.System.Global.StrongCrypto = false
	weak.System.Global.SSLVersions = []string{"tls1_1", "tls1_2"}
	e.setConfig(weak)
	if err := try(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err != nil {
		t.Errorf("CBC without strong-crypto: %v", err)
	}
	if err := try(&tls.Config{MinVersion: tls.VersionTLS13}); err == nil {
		t.Error("TLS 1.3 is not in ssl-versions")
	}
}

func TestMSAAuth(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "config system mailserver\n set default-auth-domain example.com\nend")
	e := newEnv(t, cfg)
	for _, c := range []struct{ mech, user string }{{"PLAIN", userName}, {"LOGIN", userName}, {"PLAIN", "alice"}, {"LOGIN", "ALICE"}} {
		out, err := swaks(t, "--port", e.port(MSA), "--tls", "--auth", c.mech, "--auth-user", c.user, "--auth-password", userPass,
			"--from", userName, "--to", "friend@elsewhere.example")
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", c.mech, c.user, err, out)
		}
		mustContain(t, out, "235 2.0.0 Authentication succeeded", "250 2.0.0 Ok: queued as")
	}
	for _, m := range e.q.all() {
		if m.env.AuthUser != userName {
			t.Errorf("auth user %q", m.env.AuthUser)
		}
		mustContain(t, string(m.msg), "with ESMTPSA id ")
	}
	// Wrong password, disabled user, unknown user.
	for _, c := range []struct{ user, pass string }{{userName, "wrong"}, {"carol@example.net", userPass}, {"nobody", userPass}} {
		start := time.Now()
		out, err := swaks(t, "--port", e.port(MSA), "--tls", "--auth", "PLAIN", "--auth-user", c.user, "--auth-password", c.pass,
			"--from", userName, "--to", "friend@elsewhere.example")
		if err == nil {
			t.Fatalf("%s authenticated:\n%s", c.user, out)
		}
		mustContain(t, out, "535 5.7.8 Authentication failed")
		if time.Since(start) < authFailDelay {
			t.Error("no delay after a failed AUTH")
		}
	}
	// Plain text: AUTH is neither advertised nor accepted; MAIL needs AUTH.
	p := dial(t, e.addr[MSA])
	p.reply()
	mustNotContain(t, p.expect("EHLO x.example", "250"), "AUTH")
	p.expect("AUTH PLAIN "+plainIR(userName, userPass), "538 5.7.11 Must issue a STARTTLS command first")
	p.expect("AUTH LOGIN", "538 5.7.11")
	p.expect("MAIL FROM:<"+userName+">", "530 5.7.0 Authentication required")
	// Under TLS, MAIL still needs AUTH on the submission port.
	p.starttls(nil)
	p.expect("EHLO x.example", "250")
	p.expect("MAIL FROM:<"+userName+">", "530 5.7.0 Authentication required")
	p.expect("AUTH PLAIN "+plainIR(userName, userPass), "235 2.0.0")
	p.expect("AUTH PLAIN "+plainIR(userName, userPass), "503 5.5.1 Already authenticated")
	p.expect("MAIL FROM:<"+userName+">", "250")
	p.expect("RCPT TO:<x@elsewhere.example>", "250")
	// AUTH on port 25 after STARTTLS, relaying afterwards.
	s := dial(t, e.addr[SMTP])
	s.reply()
	s.expect("EHLO x.example", "250")
	s.expect("MAIL FROM:<"+userName+">", "250")
	s.expect("RCPT TO:<x@elsewhere.example>", "550 5.7.1 Relaying denied")
	s.expect("RSET", "250")
	s.starttls(nil)
	s.expect("EHLO x.example", "250")
	s.expect("AUTH LOGIN "+b64("alice"), "334 UGFzc3dvcmQ6")
	s.expect(b64(userPass), "235 2.0.0")
	s.expect("MAIL FROM:<"+userName+">", "250")
	s.expect("RCPT TO:<x@elsewhere.example>", "250")
	e.waitEvent("sasl_username=alice@example.com, authenticated")
	e.waitEvent("authentication failed")
}

func TestAuthFailureLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	c := dialTLS(t, e.addr[SMTPS], nil)
	c.reply()
	c.expect("EHLO x.example", "250")
	for i := 1; i < maxAuthFailures; i++ {
		c.expect("AUTH PLAIN "+plainIR(userName, "nope"), "535 5.7.8")
	}
	c.expect("AUTH PLAIN !!!", "454 4.7.0 Invalid base64 data")
	c.expect("AUTH PLAIN "+b64("no-nul-bytes"), "421 4.7.0 Too many authentication failures")
	if !c.closed() {
		t.Fatal("connection left open")
	}
}

func TestMSAImplicitMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, "config system mailserver\n set smtp-msa-mode implicit\nend"))
	out, err := swaks(t, "--port", e.port(MSA), "--tlsc", "--auth", "PLAIN", "--auth-user", userName, "--auth-password", userPass,
		"--from", userName, "--to", "friend@elsewhere.example")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, out, "250 2.0.0 Ok: queued as")
}

func TestTLSAutodetect(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "config system mailserver\n set tls-autodetect enable\nend")
	e := newEnv(t, cfg)
	out, err := swaks(t, "--port", e.port(SMTP), "--tlsc", "--from", "a@sender.example", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("implicit TLS on the SMTP port: %v\n%s", err, out)
	}
	mustContain(t, out, "TLS started", "250 2.0.0 Ok: queued as")
	out, err = swaks(t, "--port", e.port(SMTP), "--tls", "--from", "a@sender.example", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("STARTTLS with autodetect on: %v\n%s", err, out)
	}
	out, err = swaks(t, "--port", e.port(MSA), "--tlsc", "--auth", "LOGIN", "--auth-user", userName, "--auth-password", userPass,
		"--from", userName, "--to", "x@elsewhere.example")
	if err != nil {
		t.Fatalf("implicit TLS on the MSA port: %v\n%s", err, out)
	}
	// A plain client that waits for the banner gets it after the short wait.
	start := time.Now()
	c := dial(t, e.addr[SMTP])
	mustContain(t, c.reply(), "220 ")
	if d := time.Since(start); d < autodetectWait/2 || d > 5*time.Second {
		t.Errorf("banner after %v", d)
	}
	// Without autodetect the banner comes at once and TLS on the plain
	// port fails.
	off := cfg.Clone()
	off.System.Mailserver.TLSAutodetect = false
	e.setConfig(off)
	start = time.Now()
	c = dial(t, e.addr[SMTP])
	mustContain(t, c.reply(), "220 ")
	if d := time.Since(start); d > autodetectWait/2 {
		t.Errorf("banner delayed %v without autodetect", d)
	}
	out, err = swaks(t, "--port", e.port(SMTP), "--tlsc", "--from", "a@sender.example", "--to", "bob@example.com", "--timeout", "3")
	if err == nil {
		t.Fatalf("implicit TLS accepted without autodetect:\n%s", out)
	}
	if n := len(e.q.all()); n != 3 {
		t.Fatalf("queued %d", n)
	}
}

func TestDiscard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, `
config policy access-control receive
  edit 1
    set recipient-pattern "trash@example.com"
    set action discard
  next
end`))
	out, err := swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "trash@example.com")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, out, "250 2.0.0 Ok: queued as")
	if n := len(e.q.all()); n != 0 {
		t.Fatalf("discarded message queued")
	}
	out, err = swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "trash@example.com,bob@example.com")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := e.q.all()
	if len(m) != 1 || strings.Join(m[0].env.Recipients, ",") != "bob@example.com" {
		t.Fatalf("queue %+v", m)
	}
	mustContain(t, string(m[0].msg), "for <bob@example.com>;")
	hs := e.histories()
	if len(hs) != 2 || hs[0].Disposition != "Discard" || hs[0].Classifier != "Access Control Discard" || hs[0].Status != "250 2.1.5 Ok" {
		t.Fatalf("history %+v", hs)
	}
}

func TestConfigAppliesToNewConnections(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	e := newEnv(t, cfg)
	old := dial(t, e.addr[SMTP])
	old.reply()
	more := cfg.Clone()
	more.Domain = append(more.Domain, config.Domain{Name: "new.example"})
	e.setConfig(more)
	old.expect("EHLO x.example", "250")
	old.expect("MAIL FROM:<a@b.example>", "250")
	old.expect("RCPT TO:<a@new.example>", "550 5.7.1")
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	c.expect("MAIL FROM:<a@b.example>", "250")
	c.expect("RCPT TO:<a@new.example>", "250")
}

func TestSessionIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""))
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		c := dial(t, e.addr[SMTP])
		c.reply()
		c.expect("EHLO x.example", "250")
		c.expect("MAIL FROM:<a@b.example>", "250")
		c.expect("RCPT TO:<x@elsewhere.example>", "550")
		c.expect("RCPT TO:<bob@example.com>", "250")
		c.expect("DATA", "354")
		c.expect("Subject: x\r\n\r\nhi\r\n.", "250 2.0.0 Ok: queued as")
		c.expect("QUIT", "221")
	}
	msgs, hs := e.q.all(), e.histories()
	if len(msgs) != 3 || len(hs) != 3 {
		t.Fatalf("%d messages, %d history records", len(msgs), len(hs))
	}
	for i, m := range msgs {
		id := m.env.SessionID
		if !regexp.MustCompile(`^[0-9A-F]{16}$`).MatchString(id) || seen[id] || hs[i].SessionID != id {
			t.Fatalf("session id %q (history %q)", id, hs[i].SessionID)
		}
		seen[id] = true
		e.waitEvent("queued as "+m.id, "session="+id)
	}
}

func TestPanicsAreContained(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig(t, ""), func(e *env, o *Options) {
		lookup, history := o.LookupAddr, o.History
		o.LookupAddr = func(ctx context.Context, ip netip.Addr) (string, error) {
			if ip.String() == "127.0.0.4" {
				panic("lookup exploded")
			}
			return lookup(ctx, ip)
		}
		o.History = func(h History) {
			if h.To == "boom@elsewhere.example" {
				panic("history exploded")
			}
			history(h)
		}
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", e.addr[SMTP])
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, conn: conn, r: newReader(conn)}
	if !c.closed() {
		t.Fatal("connection survived the panic")
	}
	e.waitEvent("error: panic in SMTP session: lookup exploded")
	c = dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO x.example", "250")
	c.expect("MAIL FROM:<a@b.example>", "250")
	c.expect("RCPT TO:<boom@elsewhere.example>", "421 4.0.0 Internal server error")
	if !c.closed() {
		t.Fatal("connection survived the panic")
	}
	e.waitEvent("error: panic", "history exploded")
	out, err := swaks(t, "--port", e.port(SMTP), "--from", "a@sender.example", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("server unusable after panics: %v\n%s", err, out)
	}
}

func plainIR(user, pass string) string { return b64("\x00" + user + "\x00" + pass) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func newForeignIdentity() (*cert.Identity, error) {
	return cert.GenerateIdentity("other", "", nil, time.Now())
}

// A recipient the receive policy accepts is checked again by
// CheckRecipient (server mode's mailboxes): its refusal is the reply and
// the history record; an error of another kind is a temporary failure.
func TestCheckRecipient(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	e := newEnv(t, cfg, func(_ *env, o *Options) {
		o.CheckRecipient = func(_ *config.Config, rcpt string) error {
			switch rcpt {
			case "nobody@example.com":
				return &Refusal{Code: 550, Enhanced: "5.1.1", Text: "No such mailbox", Classifier: "Unknown Recipient"}
			case "broken@example.com":
				return errors.New("index unreadable")
			}
			return nil
		}
	})
	c := dial(t, e.addr[SMTP])
	c.reply()
	c.expect("EHLO client.example", "250")
	c.expect("MAIL FROM:<a@sender.example>", "250")
	c.expect("RCPT TO:<nobody@example.com>", "550 5.1.1 No such mailbox")
	c.expect("RCPT TO:<broken@example.com>", "451 4.3.0 Recipient check failed, try again later")
	c.expect("RCPT TO:<bob@example.com>", "250")
	c.expect("RCPT TO:<victim@elsewhere.example>", "550 5.7.1") // the policy decides first
	h := e.histories()
	if len(h) < 3 || h[0].Classifier != "Unknown Recipient" || h[0].Disposition != "Reject" || h[1].Classifier != "Recipient Check" || h[1].Disposition != "Temp Fail" {
		t.Fatalf("history %+v", h)
	}
}
