package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"mailgate/config"
)

func TestValidateFactory(t *testing.T) {
	for _, mode := range []string{"", "gateway", "server", "transparent"} {
		for _, dev := range []bool{false, true} {
			o := factoryOpts(dev)
			o.Mode = mode
			env := testEnv()
			env.CheckCert = func(chain, key []byte) error {
				if string(chain) != testCertPEM || string(key) != testKeyPEM {
					return fmt.Errorf("certificate and key do not match")
				}
				return nil
			}
			if err := config.Validate(config.Factory(o), env); err != nil {
				t.Errorf("Factory(mode %q, dev %v): %v", mode, dev, err)
			}
		}
	}
	if err := config.Validate(richConfig(t), testEnv()); err != nil {
		t.Errorf("rich configuration: %v", err)
	}
	// Without its certificate the factory default names a missing entry.
	err := config.Validate(config.Factory(config.FactoryOptions{}), nil)
	if err == nil || !strings.Contains(err.Error(), `system global: system certificate local "Factory" does not exist`) {
		t.Errorf("Factory without certificate: %v", err)
	}
}

func TestValidateCollects(t *testing.T) {
	text := `config system global
    set port-ssh 22
    set default-certificate "gone"
end
config system interface
    edit port1
        set mode static
    next
end
config system route
    edit 4
        set destination 198.51.100.0/24
    next
end
config system certificate local
    edit nokey
        set certificate "pem"
    next
    edit nocert
    next
end
config system mailserver
    set smtp-port 22
    set smtps-port 443
    set smtp-msa disable
    set smtp-msa-port 443
end
config mailsetting relay-host-list
    edit smart
    next
end
config system mailserver
    config mail-queue
        edit default
            set queue-warning 48
            set queue-timeout 24
        next
        edit incoming
            set queue-warning 10
            set queue-timeout 10
        next
    end
end
config domain
    edit example.com
        set relay-type host
    next
    edit example.org
        set relay-type mx-lookup
    next
end
config profile tls
    edit p
        set check-ca-name enable
        set check-cert-subject enable
    next
end
config policy access-control receive
    edit 1
        set tls-profile missing
    next
    edit 2
        set tls-profile p
    next
end
config policy access-control delivery
    edit 3
        set tls-profile "also missing"
    next
end
`
	c := mustParse(t, text, nil)
	err := config.Validate(c, nil)
	var ve config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate: %v", err)
	}
	want := []string{
		`system global: system certificate local "gone" does not exist`,
		`policy access-control receive "1": profile tls "missing" does not exist`,
		`policy access-control delivery "3": profile tls "also missing" does not exist`,
		`system admin: at least one administrator with access-profile super_admin_prof is required`,
		`system interface "port1": static mode needs ip`,
		`system route 4: gateway must be set`,
		`system certificate local "nokey": private-key must be set`,
		`system certificate local "nocert": certificate must be set`,
		`domain "example.com": relay-type host needs smtp-server`,
		`profile tls "p": check-ca-name needs ca-name`,
		`profile tls "p": check-cert-subject needs cert-subject`,
		`mailsetting relay-host-list "smart": host-name must be set`,
		`system mailserver mail-queue "default": queue-warning (48h) must be shorter than queue-timeout (24h)`,
		`system mailserver mail-queue "incoming": queue-warning (10h) must be shorter than queue-timeout (10h)`,
		`port 22 is used by [smtp-port system global port-ssh]`,
		`port 443 is used by [smtps-port system global port-https]`,
	}
	for _, w := range want {
		if !contains(ve, w) {
			t.Errorf("missing problem %q", w)
		}
	}
	if len(ve) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ve), len(want), err)
	}
	if contains(ve, "example.org") || contains(ve, `"2"`) || contains(ve, "port 587") {
		t.Errorf("reports valid parts:\n%v", err)
	}
	if !strings.HasPrefix(err.Error(), "configuration is invalid:\n  ") {
		t.Errorf("Error() = %q", err.Error())
	}
	// The same text is refused the same way every time (sorted output).
	for i := 0; i < 5; i++ {
		if again := config.Validate(c, nil); again.Error() != err.Error() {
			t.Fatalf("Validate is not deterministic:\n%v\n%v", again, err)
		}
	}
}

func contains(ve config.ValidationError, sub string) bool {
	for _, p := range ve {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

func TestValidatePorts(t *testing.T) {
	cases := []struct {
		name   string
		script string
		clash  string // "" when valid
	}{
		{"smtps disabled frees its port", "config system mailserver\nset smtps-tls-status disable\nset smtps-port 22\nend", ""},
		{"smtps enabled", "config system mailserver\nset smtps-port 22\nend", "port 22 is used by [smtps-port system global port-ssh]"},
		{"msa", "config system mailserver\nset smtp-msa-port 25\nend", "port 25 is used by [smtp-msa-port smtp-port]"},
		{"ssh and https", "config system global\nset port-https 22\nend", "port 22 is used by [system global port-https system global port-ssh]"},
		{"pop3 ignored in gateway mode", "config system mailserver\nset pop3-port 25\nend", ""},
		{"pop3 in server mode", "config system global\nset operation-mode server\nend\nconfig system mailserver\nset pop3-port 25\nend", "port 25 is used by [pop3-port smtp-port]"},
		{"pop3 and imap in server mode", "config system global\nset operation-mode server\nend\nconfig system mailserver\nset pop3-port 143\nend", "port 143 is used by [imap-port pop3-port]"},
		{"three on one port", "config system global\nset operation-mode server\nend\nconfig system mailserver\nset pop3s-port 993\nset smtps-port 993\nend", "port 993 is used by [imaps-port pop3s-port smtps-port]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := config.NewEditor(config.Factory(factoryOpts(false)), nil)
			run(t, e, tc.script)
			err := config.Validate(e.Work(), nil)
			switch {
			case tc.clash == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.clash != "" && (err == nil || !strings.Contains(err.Error(), tc.clash)):
				t.Fatalf("Validate: %v, want %q", err, tc.clash)
			}
		})
	}
}

func TestValidateCheckCert(t *testing.T) {
	env := testEnv()
	env.CheckCert = func(chain, key []byte) error { return errors.New("key does not match") }
	err := config.Validate(config.Factory(factoryOpts(false)), env)
	if err == nil || !strings.Contains(err.Error(), `system certificate local "Factory": key does not match`) {
		t.Fatalf("Validate: %v", err)
	}
	o := factoryOpts(false)
	o.FactoryKeySealed = "sealed elsewhere"
	env.CheckCert = func(chain, key []byte) error { return nil }
	err = config.Validate(config.Factory(o), env)
	if err == nil || !strings.Contains(err.Error(), `system certificate local "Factory": not sealed by this device`) {
		t.Fatalf("Validate: %v", err)
	}
}

func TestSwitchMode(t *testing.T) {
	old := richConfig(t)
	c := config.SwitchMode(old, "server")
	if c.System.Global.OperationMode != "server" || c.System.Global.Hostname != "mg1" || c.System.Global.PortHTTPS != 8443 {
		t.Fatalf("global %+v", c.System.Global)
	}
	if len(c.System.Admin) != 2 || len(c.Domain) != 0 || len(c.Profile.TLS) != 0 || len(c.Policy.AccessControl.Receive) != 0 {
		t.Fatal("SwitchMode kept or lost the wrong tables")
	}
	if c.System.Mailserver.SMTPPort != 2525 || c.Mailsetting.StartTLS.Fallback != "plain" {
		t.Fatal("SwitchMode mail settings")
	}
	c.System.Admin[0].Name = "changed"
	if old.System.Admin[0].Name != "admin" {
		t.Fatal("SwitchMode shares memory with the old tree")
	}
	if err := config.Validate(c, testEnv()); err != nil {
		t.Fatal(err)
	}
}

// The alternating fallback modes accept any budget that gives 3 attempts
// on the queue's real schedule (first retry after 5 minutes, one last
// attempt at queue-timeout): queue-timeout 1h with queue-retry 30m gives 4 (0,
// 5m, 35m, 1h), and even the longest interval gives 3 (0, 5m, 1h).
func TestValidateRetryBudget(t *testing.T) {
	for _, f := range []string{"next-retry", "next-retry-any"} {
		for _, q := range []struct{ maxTime, interval int }{{1, 30}, {1, 20}, {1, 60}, {1, 1440}, {2, 1440}, {120, 15}} {
			c := config.Factory(factoryOpts(false))
			c.Mailsetting.StartTLS.Fallback = f
			mq := &c.System.Mailserver.MailQueue[0]
			mq.Timeout, mq.Retry = q.maxTime, q.interval
			if q.maxTime <= mq.Warning {
				mq.Warning = 0
			}
			if err := config.Validate(c, testEnv()); err != nil {
				t.Errorf("fallback %s, queue-timeout %dh, queue-retry %dm: %v", f, q.maxTime, q.interval, err)
			}
		}
	}
}

func TestValidateLoginBanners(t *testing.T) {
	cases := []struct {
		name    string
		script  string
		problem string // "" when valid
	}{
		{"off without text", "config system global\nend", ""},
		{"text without banner", "config system global\nset pre-login-banner-message \"Authorised use only.\"\nend", ""},
		{"pre-login with the factory text", "config system global\nset pre-login-banner admin\nend", ""},
		{"pre-login without text", "config system global\nset pre-login-banner admin\nset pre-login-banner-message \"\"\nend",
			"system global: pre-login-banner admin needs a pre-login-banner-message"},
		{"pre-login with blank text", "config system global\nset pre-login-banner admin\nset pre-login-banner-message \"  \"\nend",
			"system global: pre-login-banner admin needs a pre-login-banner-message"},
		{"post-login without text", "config system global\nset post-login-banner admin\nset post-login-banner-message \"\"\nset pre-login-banner-message \"only the other one\"\nend",
			"system global: post-login-banner admin needs a post-login-banner-message"},
		{"both with text", "config system global\nset pre-login-banner admin\nset pre-login-banner-message \"Line one\nLine two\"\n" +
			"set post-login-banner admin\nset post-login-banner-message \"Welcome.\"\nend", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := config.NewEditor(config.Factory(factoryOpts(false)), nil)
			run(t, e, tc.script)
			err := config.Validate(e.Work(), nil)
			switch {
			case tc.problem == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
				t.Fatalf("Validate: %v, want %q", err, tc.problem)
			}
		})
	}
	// The texts are shown only where the banner is enabled.
	e := config.NewEditor(config.Factory(factoryOpts(false)), nil)
	run(t, e, "config system global\nset pre-login-banner-message \"Line one\nLine two\"\nset post-login-banner admin\nset post-login-banner-message \"Welcome.\"\nend")
	g := &e.Work().System.Global
	if got := g.AdminPreLoginBanner(); got != "" {
		t.Errorf("pre-login banner while off: %q", got)
	}
	if got := g.AdminPostLoginBanner(); got != "Welcome." {
		t.Errorf("post-login banner: %q", got)
	}
	g.PreLoginBanner = []string{"admin"}
	if got := g.AdminPreLoginBanner(); got != "Line one\nLine two" {
		t.Errorf("pre-login banner: %q", got)
	}
}

// Mailboxes exist only in server mode, where a domain needs no server of
// its own; their names are local parts, unique whatever the case.
func TestValidateMailUsers(t *testing.T) {
	c := serverConfig(t)
	c.Domain[0].User.Mail = append(c.Domain[0].User.Mail, config.MailUser{Name: "ALICE", Status: true, Type: "local"})
	err := config.Validate(c, testEnv())
	if err == nil || !strings.Contains(err.Error(), `domain "example.com": user mail "alice" and "ALICE" differ only in case`) {
		t.Errorf("case duplicate: %v", err)
	}
	c = serverConfig(t)
	c.System.Global.OperationMode = "gateway"
	c.Domain[0].SMTPServer = "192.0.2.25"
	err = config.Validate(c, testEnv())
	if err == nil || !strings.Contains(err.Error(), `domain "example.com": config user mail holds mailboxes, which only server mode has (operation-mode is gateway)`) {
		t.Errorf("mailboxes in gateway mode: %v", err)
	}
	e := config.NewEditor(serverConfig(t), testEnv())
	run(t, e, "config domain\nedit example.com\nconfig user mail")
	for _, bad := range []string{"edit .alice", "edit al..ice", "edit alice@example.com", `edit "al ice"`, "edit " + strings.Repeat("a", 65)} {
		if _, err := exec(e, bad); err == nil || !strings.Contains(err.Error()+fmt.Sprint(errors.Unwrap(err)), "value parse error") {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Code != config.CodeValue {
				t.Errorf("%s: %v, want a value parse error", bad, err)
			}
		}
	}
	for _, good := range []string{"edit bob.smith", `edit "o'neil+tag"`, "edit a_b-c"} {
		if _, err := exec(e, good); err != nil {
			t.Errorf("%s: %v", good, err)
		}
		exec(e, "next")
	}
}

// The network settings: a route names an existing interface, its gateway
// is of the destination's family and, on a static interface, in that
// interface's network; one route per destination; IPv6 needs mtu 1280.
func TestValidateNetwork(t *testing.T) {
	text := `config system interface
    edit port1
        set mode static
        set ip 192.0.2.10/24
        set mtu 1400
    next
    edit port2
        set mode static
        set ip 2001:db8::10/64
        set mtu 1000
    next
    edit port3
    next
end
config system route
    edit 1
        set gateway 192.0.2.1
        set interface port1
    next
    edit 2
        set destination 198.51.100.0/24
        set gateway 198.51.100.1
        set interface port1
    next
    edit 3
        set destination 0.0.0.0/0
        set gateway 192.0.2.254
    next
    edit 4
        set destination 2001:db8:1::/48
        set gateway 192.0.2.1
    next
    edit 5
        set destination 203.0.113.0/24
        set gateway 203.0.113.1
        set interface port3
    next
end
`
	c := mustParse(t, text, nil)
	c.System.Route = append(c.System.Route, config.Route{ID: 6, Destination: "198.51.100.0/24", Gateway: "192.0.2.1", Interface: "port9"})
	var ve config.ValidationError
	if err := config.Validate(c, nil); !errors.As(err, &ve) {
		t.Fatalf("Validate: %v", err)
	}
	want := []string{
		`system interface "port2": the IPv6 address 2001:db8::10/64 needs mtu 1280 or more (mtu is 1000)`,
		`system route 2: gateway 198.51.100.1 is not in the network of interface port1 (192.0.2.0/24)`,
		`system route 3: destination 0.0.0.0/0 is already route 1's`,
		`system route 4: gateway 192.0.2.1 and destination 2001:db8:1::/48 are not of one address family`,
		`system route 6: destination 198.51.100.0/24 is already route 2's`,
		`system route "6": system interface "port9" does not exist`,
	}
	for _, w := range want {
		if !contains(ve, w) {
			t.Errorf("missing problem %q in\n%v", w, ve)
		}
	}
	// Route 1 (gateway in port1's network) and route 5 (a DHCP interface:
	// not checkable) pass.
	if contains(ve, "system route 1:") || contains(ve, "system route 5:") {
		t.Errorf("reports valid routes:\n%v", ve)
	}
}
