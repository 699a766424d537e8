package config

import "testing"

func TestMailName(t *testing.T) {
	for _, c := range []struct{ host, domain, want string }{
		{"", "", "mailgate"},
		{"gw", "", "gw"},
		{"gw", "example.com", "gw.example.com"},
		{"gw", "example.com.", "gw.example.com"},
		{"", "example.com", "mailgate.example.com"},
		{"gw.corp.example", "example.com", "gw.corp.example"},
	} {
		g := Global{Hostname: c.host, LocalDomainName: c.domain}
		if got := g.MailName(); got != c.want {
			t.Errorf("hostname %q, local-domain-name %q: %q, want %q", c.host, c.domain, got, c.want)
		}
	}
	if got := New().System.Global.MailName(); got != "mailgate" {
		t.Errorf("default configuration: %q", got)
	}
}
