package config_test

import (
	"strings"
	"testing"

	"mailgate/config"
)

// richScript sets something in every section and table, with values that
// need quoting and escaping.
func richScript(t testing.TB) string {
	return `
config system global
    set hostname mg1
    set local-domain-name example.com
    set admin-idle-timeout 30
    set ssl-versions tls1_3 tls1_2
    set strong-crypto disable
    set timezone Europe/Berlin
    set port-https 8443
end
config system admin
    edit admin
        set password "Str0ng!Passw0rd"
        set trusted-hosts 10.0.0.0/8
        unset trusted-hosts
        set trusted-hosts 192.0.2.0/24 2001:DB8::/32
        append trusted-hosts 2001:db8::/32 198.51.100.7
        set comments "say \"hi\" \\ back slash  and  two  spaces"
    next
    edit "ro.user@example.com"
        set access-profile read_only_prof
        set password ENC ` + pwHash + `
        set sshkey "` + testAuthKey(t) + `"
        append sshkey "` + otherAuthKey(t) + `"
        set comments 'single "quoted"'
    next
end
config system dns
    set primary 192.0.2.53
    set secondary 2001:db8::53
end
config system interface
    edit port1
        set mode static
        set ip 192.0.2.10/24
        set mtu 9000
        set allowaccess ssh ping
        set mailaccess ""
    next
    edit port2
    next
end
config system route
    edit 1
        set destination 0.0.0.0 0.0.0.0
        set gateway 192.0.2.1
    next
    edit 2
        set destination 198.51.100.0/24
        set gateway 192.0.2.254
        set interface port1
    next
end
config system certificate local
    edit mycert
        set certificate "` + testCertPEM + `"
        set private-key "` + testKeyPEM + `"
        set comments "imported 2024"
    next
end
config system certificate ca
    edit "Example CA"
        set certificate "` + testCertPEM + `
"
    next
end
config system certificate remote
    edit peer
        set certificate "` + strings.ReplaceAll(testCertPEM, "\n", "\r\n") + `"
    next
end
config system mailserver
    set smtp-port 2525
    set smtps-tls-status disable
    set default-auth-domain example.com
end
config mailsetting relay-host-list
    edit smart
        set host-name relay.example.net
        set host-port 587
        set auth-status enable
        set auth-username "relay user"
        set auth-password "p@ss \"word\""
    next
end
config mailsetting starttls
    set fallback next-retry
    set include-hosts example.com .example.org [mx.example.net]
    append include-hosts example.info
    set exclude-hosts bad.example
    set helo-name mx.example.com
    config host-protocol
        edit example.com
            set ssl-versions tls1_3
        next
        edit .legacy.example
            set ssl-versions tls1_1 tls1_0
        next
    end
end
config system mailserver
    config mail-queue
        edit default
            set queue-retry 30
            set queue-warning 2
            set queue-timeout 48
        next
        edit outgoing
            set queue-dsn-timeout 0
            set queue-retry 60
        next
    end
    set smtp-service disable
    set smtp-auth disable
    set smtp-auth-smtps disable
    set deadmail-expiry 30
end
config domain
    edit example.com
        set relay-type host
        set smtp-server 192.0.2.25
        set smtp-port 2525
        set smtps enable
        set fallback-host mx2.example.com
        set fallback-port 465
        set fallback-smtps enable
        set comments "primary # not a comment"
        config profile authentication smtp
            edit exchange
                set server mail.example.com
                set port 587
                set option tls senddomain
                set comment "the internal server"
            next
            edit backup
                set server 192.0.2.26
            next
        end
    next
    edit example.org
        set relay-type mx-lookup
    next
end
config profile tls
    edit strict
        set level secure
        set action fail
        set check-encryption-strength enable
        set encryption-strength 256
        set min-ssl-version tls1_3
        set check-ca-name enable
        set ca-name "CN=Example CA*"
        set check-cert-subject enable
        set cert-subject "CN=*.example.com, O=Example"
        set comments "strict"
    next
    edit opportunistic
    next
end
config policy access-control receive
    edit 1
        set status disable
        set sender-pattern-type regexp
        set sender-pattern "^.*@example\\.com$"
        set recipient-pattern-type default
        set recipient-pattern "*@example.com"
        set sender-ip-mask 198.51.100.0 255.255.255.0
        set reverse-dns-pattern "*.example.net"
        set authenticated authenticated
        set tls-profile strict
        set action relay
        set comment "rule 'one'"
    next
    edit 2
        set recipient-pattern-type regexp
        set recipient-pattern "^postmaster@example\\.(com|org)$"
        set authenticated not-authenticated
        set action safe-relay
    next
    edit 3
        set sender-pattern ""
        set action discard
    next
end
config policy access-control delivery
    edit 1
        set status disable
        set sender-pattern "*@example.com"
        set recipient-pattern "*@partner.example"
        set destination 203.0.113.0/24
        set tls-profile opportunistic
        set comment "to partner"
    next
end
`
}

// richConfig builds the rich tree through an Editor on the Factory config.
func richConfig(t testing.TB) *config.Config {
	t.Helper()
	e := config.NewEditor(config.Factory(factoryOpts(false)), testEnv())
	run(t, e, richScript(t))
	if e.Depth() != 0 {
		t.Fatalf("script ends at depth %d", e.Depth())
	}
	return e.Work()
}

func TestRoundTripFull(t *testing.T) {
	cases := []struct {
		name string
		c    func(t *testing.T) *config.Config
	}{
		{"new", func(*testing.T) *config.Config { return config.New() }},
		{"factory", func(*testing.T) *config.Config { return config.Factory(config.FactoryOptions{}) }},
		{"factory-cert", func(*testing.T) *config.Config { return config.Factory(factoryOpts(false)) }},
		{"factory-dev", func(*testing.T) *config.Config { return config.Factory(factoryOpts(true)) }},
		{"factory-server", func(*testing.T) *config.Config {
			return config.Factory(config.FactoryOptions{Mode: "server", Dev: true})
		}},
		{"rich", func(t *testing.T) *config.Config { return richConfig(t) }},
		{"server", func(t *testing.T) *config.Config { return serverConfig(t) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c(t)
			full := config.Render(c, true)
			for _, env := range []*config.Env{nil, testEnv()} {
				again := config.Render(mustParse(t, full, env), true)
				sameText(t, "Render(Parse(Render(c)))", again, full)
			}
			// show is a subset: replaying it on a fresh tree through the
			// CLI's editor rebuilds the same configuration.
			show := config.Render(c, false)
			e := config.NewEditor(config.New(), testEnv())
			run(t, e, show)
			sameText(t, "Render of replayed show", config.Render(e.Work(), true), full)
			// and a parsed show gives the same too
			sameText(t, "Render(Parse(show))", config.Render(mustParse(t, show, nil), true), full)
		})
	}
}

func TestRenderShape(t *testing.T) {
	c := richConfig(t)
	full := config.Render(c, true)
	for _, want := range []string{
		"config system global\n    set hostname \"mg1\"\n",
		"    set ssl-versions tls1_2 tls1_3\n",
		"    set strong-crypto disable\n",
		"        set trusted-hosts 192.0.2.0/24 2001:db8::/32 198.51.100.7/32\n",
		"        set sshkey \"" + testAuthKey(t) + "\" \"" + otherAuthKey(t) + "\"\n",
		`        set comments "say \"hi\" \\ back slash  and  two  spaces"` + "\n",
		"    edit \"ro.user@example.com\"\n",
		"        set comments \"single \\\"quoted\\\"\"\n",
		"        set password ENC " + pwHash + "\n",
		"        set private-key ENC " + sealPrefix,
		"        set certificate \"-----BEGIN CERTIFICATE-----\nMIIB",
		"-----END CERTIFICATE-----\"\n",
		"    set include-hosts \"example.com\" \".example.org\" \"[mx.example.net]\" \"example.info\"\n",
		"    config host-protocol\n        edit \"example.com\"\n            set ssl-versions tls1_3\n        next\n",
		"            set ssl-versions tls1_0 tls1_1\n",
		"    end\nend\n",
		"config policy access-control receive\n    edit 1\n        set status disable\n",
		"        set sender-pattern \"^.*@example\\\\.com$\"\n",
		"        set sender-ip-mask 198.51.100.0/24\n",
		"        set tls-profile \"strict\"\n",
		"        set destination 0.0.0.0/0\n",
	} {
		if !strings.Contains(full, want) {
			t.Errorf("full configuration lacks %q", want)
		}
	}
	// The CRLF certificate was stored with LF only, and no text keeps
	// trailing line breaks.
	if strings.Contains(full, "\r") {
		t.Error("full configuration contains a carriage return")
	}
	for _, ca := range c.System.Certificate.CA {
		if ca.Certificate != testCertPEM {
			t.Errorf("ca certificate %q, want trailing newline trimmed", ca.Certificate)
		}
	}
	if got := c.System.Certificate.Remote[0].Certificate; got != testCertPEM {
		t.Errorf("remote certificate %q, want CRLF normalized", got)
	}
	if got := c.System.Admin[0].Comments; got != `say "hi" \ back slash  and  two  spaces` {
		t.Errorf("comments %q", got)
	}
	if got := c.Policy.AccessControl.Receive[2].SenderPattern; got != "" {
		t.Errorf("emptied sender-pattern is %q", got)
	}

	show := config.Render(c, false)
	for _, absent := range []string{"set operation-mode", "set admin-idle-timeout 15", "set trusted-hosts 0.0.0.0/0 ::/0", "config system global\n    set hostname \"mg1\"\n    set operation-mode"} {
		if strings.Contains(show, absent) {
			t.Errorf("show contains factory value %q", absent)
		}
	}
	for _, want := range []string{"set admin-idle-timeout 30", "    edit \"port2\"\n    next\n", "    edit \"opportunistic\"\n    next\n", "        set sender-pattern \"\"\n"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q", want)
		}
	}
	if strings.Contains(show, "config system dns\nend") || strings.Contains(config.Render(config.New(), false), "config") {
		t.Error("show prints sections without changes")
	}
}

// TestRenderEmptyOverDefault: a string emptied where the factory value is
// not empty must come back empty, not as the factory value.
func TestRenderEmptyOverDefault(t *testing.T) {
	text := `config system global
    set hostname ""
    set timezone ""
    set default-certificate ""
end
config policy access-control receive
    edit 7
        set sender-pattern ""
        set reverse-dns-pattern ""
    next
end
`
	c := mustParse(t, text, nil)
	if c.System.Global.Hostname != "" || c.System.Global.DefaultCertificate != "" || c.Policy.AccessControl.Receive[0].SenderPattern != "" {
		t.Fatalf("parsed %+v", c.System.Global)
	}
	for _, full := range []bool{true, false} {
		out := config.Render(c, full)
		c2 := mustParse(t, out, nil)
		sameText(t, "re-render", config.Render(c2, true), config.Render(c, true))
		e := config.NewEditor(config.New(), nil)
		run(t, e, out)
		sameText(t, "replayed", config.Render(e.Work(), true), config.Render(c, true))
	}
}

func TestRenderAt(t *testing.T) {
	c := richConfig(t)
	n := config.Lookup("system admin")
	got := config.RenderAt(c, []config.Frame{{Node: n, Key: "admin", InEntry: true}}, false)
	if !strings.HasPrefix(got, "config system admin\n    edit \"admin\"\n") || strings.Contains(got, "ro.user") || !strings.HasSuffix(got, "    next\nend\n") {
		t.Fatalf("RenderAt entry:\n%s", got)
	}
	st := config.Lookup("mailsetting starttls")
	hp := config.Lookup("mailsetting starttls host-protocol")
	got = config.RenderAt(c, []config.Frame{{Node: st}, {Node: hp}}, true)
	want := "config mailsetting starttls\n    config host-protocol\n"
	if !strings.HasPrefix(got, want) || strings.Contains(got, "fallback") {
		t.Fatalf("RenderAt nested table:\n%s", got)
	}
	got = config.RenderNode(c, config.Lookup("policy"), false)
	if !strings.HasPrefix(got, "config policy access-control receive\n") || !strings.Contains(got, "config policy access-control delivery\n") || strings.Contains(got, "system") {
		t.Fatalf("RenderNode group:\n%s", got)
	}
	if config.RenderNode(c, config.Root(), true) != config.Render(c, true) {
		t.Fatal("RenderNode(Root) differs from Render")
	}
}

func TestChangedPaths(t *testing.T) {
	a := config.Factory(config.FactoryOptions{})
	b := a.Clone()
	b.Mailsetting.StartTLS.HostProtocol = []config.HostProtocol{{Host: "example.com", SSLVersions: []string{"tls1_2"}}}
	b.System.Global.Hostname = "other"
	got := config.ChangedPaths(a, b)
	if len(got) != 2 || got[0] != "system global" || got[1] != "mailsetting starttls" {
		t.Fatalf("ChangedPaths = %q", got)
	}
	if got := config.ChangedPaths(a, a.Clone()); len(got) != 0 {
		t.Fatalf("no change reported as %q", got)
	}
}

// serverConfig has mailboxes and resource profiles (server mode).
func serverConfig(t testing.TB) *config.Config {
	o := factoryOpts(false)
	o.Mode = "server"
	e := config.NewEditor(config.Factory(o), testEnv())
	run(t, e, `
config profile resource
    edit staff
        set disk-quota 2048
        set email-retention 365
    next
    edit left
        set account-status disable
        set webmail-access disable
    next
end
config domain
    edit example.com
        config user mail
            edit alice
                set password "Alice-Mailbox-1"
                set displayname "Alice Liddell"
                set resource-profile staff
            next
            edit "o'brien"
                set status disable
                set password ENC `+pwHash+`
                set comments "left in June"
            next
        end
    next
end
`)
	if e.Depth() != 0 {
		t.Fatalf("script ends at depth %d", e.Depth())
	}
	if err := config.Validate(e.Work(), testEnv()); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return e.Work()
}
