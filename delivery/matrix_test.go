package delivery

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/postfixtest"
	"mailgate/queue"
)

// step is the expected outcome of one delivery attempt.
type step struct {
	status    queue.Status
	code      int
	flag      bool     // TLSHandshakeFailed
	text      string   // in Result.Text
	log       []string // in the log line
	delivered bool
	overTLS   bool
	// noSTARTTLS: the session that delivered the message never sent
	// STARTTLS (the peer's count of commands shows none).
	noSTARTTLS bool
	classifier string // Result.Classifier
}

// TestTLSMatrix delivers to real Postfix peers with each delivery TLS
// level and each STARTTLS fallback mode, repeating the attempt the way
// the queue does (PreferPlain after a flagged failure, alternating) until
// it succeeds, bounces or has been tried three times.
func TestTLSMatrix(t *testing.T) {
	f := peers(t)
	type level struct {
		name    string
		profile *config.TLSProfile
		roots   *x509.CertPool
	}
	prof := func(lvl string, mod func(p *config.TLSProfile)) *config.TLSProfile {
		p := &config.TLSProfile{Name: "p", Level: lvl, Action: "tempfail", CheckSSLVersion: true, MinSSLVersion: "tls1_2", EncryptionStrength: 128}
		if mod != nil {
			mod(p)
		}
		return p
	}
	actionFail := func(p *config.TLSProfile) { p.Action = "fail" }
	levels := []level{
		{name: "no-profile"},
		{name: "none", profile: prof("none", nil)},
		{name: "preferred", profile: prof("preferred", nil)},
		{name: "encrypt", profile: prof("encrypt", nil)},
		{name: "encrypt-fail", profile: prof("encrypt", actionFail)},
		{name: "secure", profile: prof("secure", func(p *config.TLSProfile) {
			p.CheckCAName, p.CAName = true, "*Mailgate Test CA*"
			p.CheckCertSubject, p.CertSubject = true, "mx.tls.test"
		})},
		{name: "secure-fail", profile: prof("secure", func(p *config.TLSProfile) {
			p.Action = "fail"
			p.CheckCAName, p.CAName = true, "*Mailgate Test CA*"
		})},
		{name: "secure-wrong-ca", profile: prof("secure", nil), roots: f.otherCA.Pool()},
		{name: "secure-subject-mismatch", profile: prof("secure", func(p *config.TLSProfile) {
			p.CheckCertSubject, p.CertSubject = true, "*CN=mx.elsewhere.test*"
		})},
	}
	peerSinks := map[string]*postfixtest.Instance{"tls": f.tls, "plain": f.plain, "broken": f.broken, "refuse": f.refuse}
	fallbacks := []string{"none", "plain", "next-retry", "next-retry-any"}

	for _, lv := range levels {
		for _, fb := range fallbacks {
			for _, peer := range []string{"tls", "plain", "broken", "refuse"} {
				name := lv.name + "/" + fb + "/" + peer
				t.Run(name, func(t *testing.T) {
					cfg := config.New()
					cfg.Mailsetting.StartTLS.Fallback = fb
					if lv.profile != nil {
						cfg.Profile.TLS = []config.TLSProfile{*lv.profile}
						cfg.Policy.AccessControl.Delivery = []config.DeliveryRule{{ID: 1, Status: true, SenderPattern: "*",
							RecipientPattern: "*", DestinationIPMask: "0.0.0.0/0", TLSProfile: "p"}}
					}
					d, logs := newDeliverer(t, f, cfg, lv.roots)
					want := expectMatrix(lv.name, fb, peer)
					preferPlain := false
					var noSTARTTLS []string // queue ids of sessions that must not have tried STARTTLS
					for n, w := range want {
						token := fmt.Sprintf("matrix-%s-%s-%s-%d", lv.name, fb, peer, n+1)
						job := newJob(token, "sender@mailgate.test", peer+".test", "user@"+peer+".test")
						job.Attempt, job.PreferPlain = n+1, preferPlain
						logs.reset()
						r := deliver(t, d, job)[0]
						line := logs.last()
						if len(logs.all()) != 1 {
							t.Errorf("attempt %d: %d log lines, want 1: %q", n+1, len(logs.all()), logs.all())
						}
						if r.Status != w.status || (w.code != 0 && r.Code != w.code) || r.TLSHandshakeFailed != w.flag || !strings.Contains(r.Text, w.text) {
							t.Fatalf("attempt %d (prefer plain %v): got %s\nwant %s %d %q flag=%v\nlog: %s",
								n+1, preferPlain, fmtResult(r), statusName(w.status), w.code, w.text, w.flag, line)
						}
						if r.Classifier != w.classifier {
							t.Errorf("attempt %d: classifier %q, want %q", n+1, r.Classifier, w.classifier)
						}
						for _, s := range w.log {
							if !strings.Contains(line, s) {
								t.Errorf("attempt %d: log line %q lacks %q", n+1, line, s)
							}
						}
						if !strings.Contains(line, "relay=mx."+peer+".test["+r.Host[strings.Index(r.Host, "[")+1:]) {
							t.Errorf("attempt %d: log line %q does not name the relay %s", n+1, line, r.Host)
						}
						sink := peerSinks[peer]
						if w.delivered {
							if got := arrivedTLS(t, sink, r, token); got != w.overTLS {
								t.Errorf("attempt %d: arrived over TLS = %v, want %v", n+1, got, w.overTLS)
							}
							if w.overTLS != (r.TLS != "") {
								t.Errorf("attempt %d: Result.TLS = %q", n+1, r.TLS)
							}
							if w.noSTARTTLS {
								noSTARTTLS = append(noSTARTTLS, postfixtest.QueueID(r.Text))
							}
						} else if sink.HasMessage(token) {
							t.Errorf("attempt %d: message arrived although the attempt failed", n+1)
						}
						// The queue asks for plain text after a flagged failure,
						// and for TLS again after that.
						preferPlain = r.TLSHandshakeFailed && !preferPlain
					}
					if len(noSTARTTLS) > 0 {
						d.Close() // the peer logs a session's commands when it ends
						for _, qid := range noSTARTTLS {
							if s := endedSessionOf(t, peerSinks[peer], qid); strings.Contains(s.Stats, "starttls") {
								t.Errorf("STARTTLS sent in the session of %s: %s", qid, s.Stats)
							}
						}
					}
				})
			}
		}
	}
}

// expectMatrix is the specified behaviour for a level, fallback mode and
// peer, one step per attempt.
func expectMatrix(level, fallback, peer string) []step {
	required := strings.HasPrefix(level, "encrypt") || strings.HasPrefix(level, "secure")
	if level == "none" {
		// STARTTLS is never tried, whatever the peer offers and whatever
		// the fallback mode.
		s := step{status: queue.Delivered, code: 250, text: "queued as", delivered: true, noSTARTTLS: true,
			log: []string{"tls=none (reason: disabled by TLS profile)", "status=sent (250 2.0.0 Ok: queued as"}}
		return []step{s}
	}
	tlsOK := step{status: queue.Delivered, code: 250, text: "queued as", delivered: true, overTLS: true,
		log: []string{"STARTTLS=client", "version=TLSv1.3", "verify=OK", "cipher=TLS_", "bits=", "status=sent (250 2.0.0 Ok: queued as"}}
	plainOK := func(reason string) step {
		return step{status: queue.Delivered, code: 250, text: "queued as", delivered: true,
			log: []string{"tls=none (reason: " + reason, "status=sent (250 2.0.0 Ok: queued as"}}
	}
	profileFail := func(text string, log ...string) []step {
		// Failures of the profile are recorded as TLS enforcement.
		if strings.HasSuffix(level, "-fail") {
			// action fail: bounced at once.
			return []step{{status: queue.PermFail, code: 550, text: text, log: append(log, "status=bounced (550 5.7.0"), classifier: "TLS Enforcement"}}
		}
		s := step{status: queue.TempFail, code: 454, text: text, log: append(log, "status=deferred (454 4.7.0"), classifier: "TLS Enforcement"}
		return []step{s, s} // not flagged: the next attempt is the same
	}
	switch peer {
	case "tls":
		switch level {
		case "secure-wrong-ca":
			return profileFail("certificate not verified", "STARTTLS=client", "verify=FAIL")
		case "secure-subject-mismatch":
			return profileFail("does not match", "STARTTLS=client", "verify=OK")
		}
		return []step{tlsOK}
	case "plain":
		if required {
			return profileFail("TLS required", "tls=none (reason: not offered)")
		}
		return []step{plainOK("not offered")}
	}
	// broken: the handshake fails; refuse: STARTTLS gets 454.
	what := map[string]string{"broken": "TLS handshake failed", "refuse": "STARTTLS refused: 454 4.7.0"}[peer]
	if required {
		return profileFail("TLS required, but "+what, "tls=failed ("+what)
	}
	failed := func(flag bool) step {
		return step{status: queue.TempFail, code: 451, flag: flag, text: what,
			log: []string{"tls=failed (" + what, "status=deferred (451 4.7.5"}}
	}
	switch fallback {
	case "none":
		return []step{failed(false), failed(false)}
	case "plain":
		return []step{plainOK("fallback to plain after " + what)}
	case "next-retry":
		if peer == "refuse" {
			return []step{failed(false), failed(false)} // not a handshake failure
		}
	}
	// next-retry-any, and next-retry after a handshake failure: plain
	// text on the next attempt (which succeeds), TLS again after that.
	return []step{failed(true), plainOK("plain text retry after TLS failure")}
}

// TestTLSAlternation checks that next-retry goes back to TLS on the attempt
// after the plain text one.
func TestTLSAlternation(t *testing.T) {
	f := peers(t)
	cfg := config.New()
	cfg.Mailsetting.StartTLS.Fallback = "next-retry"
	d, logs := newDeliverer(t, f, cfg, nil)
	job := newJob("alternation-1", "sender@mailgate.test", "broken.test", "busy@broken.test")
	for n, prefer := range []bool{false, true, false, true} {
		job.Attempt, job.PreferPlain = n+1, prefer
		r := deliver(t, d, job)[0]
		if prefer {
			if r.Status != queue.Delivered || !strings.Contains(logs.last(), "tls=none (reason: plain text retry after TLS failure)") {
				t.Fatalf("attempt %d: %s; %s", n+1, fmtResult(r), logs.last())
			}
		} else if r.Status != queue.TempFail || !r.TLSHandshakeFailed || !strings.Contains(logs.last(), "tls=failed (TLS handshake failed") {
			t.Fatalf("attempt %d: %s; %s", n+1, fmtResult(r), logs.last())
		}
	}
}

// TestTLSProfileActionFail bounces at once when a required TLS profile
// with action fail is not met.
func TestTLSProfileActionFail(t *testing.T) {
	f := peers(t)
	cfg, err := config.Parse(`config profile tls
    edit "must"
        set level encrypt
        set action fail
    next
end
config policy access-control delivery
    edit 1
        set recipient-pattern "*@plain.test"
        set tls-profile "must"
    next
end
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, logs := newDeliverer(t, f, cfg, nil)
	r := deliver(t, d, newJob("action-fail", "sender@mailgate.test", "plain.test", "user@plain.test"))[0]
	if r.Status != queue.PermFail || r.Code != 550 || r.Enhanced != "5.7.0" || r.Classifier != "TLS Enforcement" || !strings.Contains(logs.last(), "status=bounced (550 5.7.0") {
		t.Fatalf("%s; %s", fmtResult(r), logs.last())
	}
	// The rule does not match tls.test: opportunistic TLS there.
	r = deliver(t, d, newJob("action-fail-other", "sender@mailgate.test", "tls.test", "user@tls.test"))[0]
	if r.Status != queue.Delivered || r.TLS == "" {
		t.Fatalf("%s; %s", fmtResult(r), logs.last())
	}
}

// TestMixedRecipientProfiles applies each recipient's own delivery rule
// within one job.
func TestMixedRecipientProfiles(t *testing.T) {
	f := peers(t)
	cfg, err := config.Parse(`config profile tls
    edit "must"
        set level encrypt
    next
end
config policy access-control delivery
    edit 1
        set recipient-pattern "vip@*"
        set tls-profile "must"
    next
end
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, logs := newDeliverer(t, f, cfg, nil)
	for _, c := range []struct {
		peer      string
		vipStatus queue.Status
		vipText   string
		log       string
	}{
		{"tls", queue.Delivered, "queued as", "STARTTLS=client"},
		{"plain", queue.TempFail, "TLS required", "tls=none (reason: not offered)"},
		{"broken", queue.TempFail, "TLS required, but TLS handshake failed", "tls=none (reason: fallback to plain after TLS handshake failed"},
	} {
		token := "mixed-" + c.peer
		res := deliver(t, d, newJob(token, "s@mailgate.test", c.peer+".test", "vip@"+c.peer+".test", "user@"+c.peer+".test"))
		if res[0].Status != c.vipStatus || !strings.Contains(res[0].Text, c.vipText) || res[1].Status != queue.Delivered {
			t.Fatalf("%s: %s / %s; %s", c.peer, fmtResult(res[0]), fmtResult(res[1]), logs.last())
		}
		if !strings.Contains(logs.last(), c.log) {
			t.Fatalf("%s: log %s", c.peer, logs.last())
		}
		sink := map[string]*postfixtest.Instance{"tls": f.tls, "plain": f.plain, "broken": f.broken}[c.peer]
		if over := arrivedTLS(t, sink, res[1], token); over != (c.peer == "tls") {
			t.Fatalf("%s: over TLS %v", c.peer, over)
		}
	}
}

// TestPlainFallbackSameConnection: with fallback plain, a STARTTLS that
// the peer answers with an error reply leaves the connection usable, and
// the message goes over that same connection: a counting proxy in front
// of the peer sees one connection, and the peer's session that received
// the message is the one in which STARTTLS failed. A failed handshake
// leaves nothing usable: then a second, plain connection carries it.
func TestPlainFallbackSameConnection(t *testing.T) {
	f := peers(t)
	for _, c := range []struct {
		peer  string
		sink  *postfixtest.Instance
		conns int
		stats string // in the peer's command counts of the message's session
		log   string
	}{
		{"refuse", f.refuse, 1, "ehlo=1 starttls=0/1 mail=1", "tls=none (reason: fallback to plain after STARTTLS refused: 454 4.7.0"},
		{"broken", f.broken, 2, "ehlo=1 mail=1", "tls=none (reason: fallback to plain after TLS handshake failed"},
	} {
		t.Run(c.peer, func(t *testing.T) {
			proxy := countingProxy(t, "127.0.0.1", c.sink.Addr, 0)
			cfg := config.New()
			cfg.Mailsetting.StartTLS.Fallback = "plain"
			cfg.Domain = []config.Domain{{Name: c.peer + ".test", RelayType: "host", SMTPServer: "127.0.0.1", SMTPPort: proxy.port}}
			d, logs := newDeliverer(t, f, cfg, nil)
			token := "same-conn-" + c.peer
			r := deliver(t, d, newJob(token, "s@mailgate.test", c.peer+".test", "u@"+c.peer+".test"))[0]
			if r.Status != queue.Delivered || !strings.Contains(logs.last(), c.log) {
				t.Fatalf("%s; %s", fmtResult(r), logs.last())
			}
			if arrivedTLS(t, c.sink, r, token) {
				t.Fatal("arrived over TLS")
			}
			if n := proxy.accepted(); n != c.conns {
				t.Fatalf("%d connections to the peer, want %d", n, c.conns)
			}
			d.Close()
			if s := endedSessionOf(t, c.sink, postfixtest.QueueID(r.Text)); !strings.Contains(s.Stats, c.stats) {
				t.Fatalf("the session that carried the message: %s, want %s", s.Stats, c.stats)
			}
		})
	}
}

// TestNextRetryIgnoresSMTPErrors: under next-retry and next-retry-any,
// ordinary SMTP errors do not start the plain text alternation: neither
// a 4xx reply after TLS is up (to MAIL or RCPT: not in the TLS phase) nor
// a 4xx greeting (before it). The attempt is not flagged, so the queue
// keeps the next attempt in TLS, and it does go over TLS.
func TestNextRetryIgnoresSMTPErrors(t *testing.T) {
	f := peers(t)
	for _, fb := range []string{"next-retry", "next-retry-any"} {
		for _, c := range []struct {
			name      string
			from      string
			rcpt      string
			busyConns int // connections greeted with 421 by the proxy
			first     string
			peerLog   string // in the peer's log: where it refused
		}{
			{"rcpt-4xx", "s@mailgate.test", "busy@tls.test", 0, "status=deferred (450 4.2.1 <busy@tls.test>: Recipient address rejected",
				": 450 4.2.1 <busy@tls.test>: Recipient address rejected: Mailbox busy; from=<s@mailgate.test>"},
			{"mail-4xx", "busy@mailgate.test", "u@tls.test", 0, "status=deferred (451 4.3.0 <busy@mailgate.test>: Sender address rejected",
				"reject: MAIL from "},
			{"greeting-4xx", "s@mailgate.test", "u@tls.test", 1, "status=deferred (421 4.3.2 mx.tls.test", ""},
		} {
			t.Run(fb+"/"+c.name, func(t *testing.T) {
				// The proxy listens on the TLS peer's address, so that the
				// next hop keeps its name and its certificate verifies.
				proxy := countingProxy(t, tlsIP, f.tls.Addr, c.busyConns)
				cfg := config.New()
				cfg.Mailsetting.StartTLS.Fallback = fb
				cfg.Domain = []config.Domain{{Name: "tls.test", RelayType: "host", SMTPServer: "mx.tls.test", SMTPPort: proxy.port}}
				d, logs := newDeliverer(t, f, cfg, nil)
				job := newJob("nextretry-"+fb+"-"+c.name, c.from, "tls.test", c.rcpt)
				preferPlain := false
				for n := 1; n <= 2; n++ {
					job.Attempt, job.PreferPlain = n, preferPlain
					logs.reset()
					r := deliver(t, d, job)[0]
					line := logs.last()
					if n == 1 {
						if r.Status != queue.TempFail || r.TLSHandshakeFailed || !strings.Contains(line, c.first) {
							t.Fatalf("attempt 1: %s; %s", fmtResult(r), line)
						}
						if c.busyConns == 0 && !strings.Contains(line, "STARTTLS=client") {
							t.Fatalf("attempt 1 not over TLS: %s", line)
						}
						if c.peerLog != "" {
							if err := f.tls.WaitLog(c.peerLog, 5*time.Second); err != nil {
								t.Fatal(err)
							}
						}
					} else if !strings.HasPrefix(line, "STARTTLS=client, relay=mx.tls.test[") || !strings.Contains(line, "verify=OK") {
						t.Fatalf("attempt 2 not over TLS: %s; %s", fmtResult(r), line)
					}
					// What the queue does with the flag (queue.finish).
					preferPlain = !preferPlain && r.TLSHandshakeFailed
				}
			})
		}
	}
}
