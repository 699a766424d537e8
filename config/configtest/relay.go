package configtest

import "strings"

// RelayRuleShapes are receive rules (the lines inside `edit 1`) with
// whether the open-relay check must refuse them, for a configuration whose
// protected domains are example.com and example.org. Both the check (package config)
// and the matcher (package policy) are tested with them.
var RelayRuleShapes = []struct {
	Lines  string
	Unsafe bool
}{
	// Any client, any recipient.
	{"set action relay", true},
	{"set action safe-relay", true},
	{"set authenticated not-authenticated\nset action relay", true},
	{"set sender-ip-mask 0.0.0.0/0\nset action relay", true},
	{"set sender-ip-mask ::/0\nset action relay", true},
	{"set sender-ip-mask 0.0.0.0/1\nset action relay", true},
	{"set sender-ip-mask 64.0.0.0/7\nset action relay", true},
	{"set sender-ip-mask 2000::/3\nset action relay", true},
	{"set sender-ip-mask ::ffff:0.0.0.0/97\nset action relay", true},
	// The sender and the reverse DNS name are the client's choice.
	{"set sender-pattern *@example.com\nset action relay", true},
	{"set reverse-dns-pattern *.example.com\nset action relay", true},
	{"set tls-profile strict\nset action relay", true},
	// Recipient patterns that reach other domains.
	{"set recipient-pattern *example.com\nset action relay", true},
	{"set recipient-pattern *@*example.com\nset action relay", true},
	{"set recipient-pattern *@*.example.com\nset action relay", true},
	{"set recipient-pattern *@example.co?\nset action relay", true},
	{"set recipient-pattern *@example.com*\nset action relay", true},
	{"set recipient-pattern *@example.com.\nset action relay", false},
	{"set recipient-pattern *@elsewhere.test\nset action relay", true},
	{"set recipient-pattern victim@elsewhere.test\nset action relay", true},
	{"set recipient-pattern *@[192.0.2.1]\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern @example\\\\.com\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern @example\\\\.com$\nset action relay", false},
	{"set recipient-pattern-type regexp\nset recipient-pattern .*@example.com$\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern ^postmaster@\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern (?m)@example\\\\.com$\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern @example\\\\.(com|net)$\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern @example\\\\.com$|@elsewhere\\\\.test$\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern .*\nset action relay", true},
	{"set recipient-pattern-type regexp\nset recipient-pattern example\\\\.com$\nset action relay", true},

	// Safe: authenticated clients only.
	{"set authenticated authenticated\nset action relay", false},
	{"set authenticated authenticated\nset action safe-relay", false},
	// Safe: a client network.
	{"set sender-ip-mask 192.0.2.0/24\nset action relay", false},
	{"set sender-ip-mask 192.0.2.10 255.255.255.255\nset action relay", false},
	{"set sender-ip-mask 10.0.0.0/8\nset action relay", false},
	{"set sender-ip-mask 2001:db8::/32\nset action relay", false},
	{"set sender-ip-mask 2001:db8::/16\nset action relay", false},
	// Safe: protected recipients only.
	{"set recipient-pattern *@example.com\nset action relay", false},
	{"set recipient-pattern *@EXAMPLE.org\nset action safe-relay", false},
	{"set recipient-pattern postmaster@example.com\nset action relay", false},
	{"set recipient-pattern ?*@example.com\nset action relay", false},
	{"set recipient-pattern-type regexp\nset recipient-pattern ^[a-z]+@example\\\\.com$\nset action relay", false},
	{"set recipient-pattern-type regexp\nset recipient-pattern @(example\\\\.com|example\\\\.org)$\nset action relay", false},
	{"set recipient-pattern-type regexp\nset recipient-pattern ^sales@example\\\\.com$|^info@example\\\\.org\\\\z\nset action relay", false},
	{"set recipient-pattern-type regexp\nset recipient-pattern @EXAMPLE[.]COM$\nset action relay", false},
	// Safe: actions that do not relay, and disabled rules.
	{"set action receive", false},
	{"set action safe", false},
	{"set action discard", false},
	{"set action reject", false},
	{"set status disable\nset action relay", false},
	{"", false},
}

// RelayShapeConfig is the configuration text with one rule of a shape.
func RelayShapeConfig(lines string) string {
	var b strings.Builder
	b.WriteString("config domain\n    edit example.com\n        set smtp-server 192.0.2.25\n    next\n" +
		"    edit example.org.\n        set smtp-server 192.0.2.26\n    next\nend\n" +
		"config profile tls\n    edit strict\n        set level encrypt\n    next\nend\n" +
		"config policy access-control receive\n    edit 1\n")
	for _, l := range strings.Split(lines, "\n") {
		if l != "" {
			b.WriteString("        " + l + "\n")
		}
	}
	b.WriteString("    next\nend\n")
	return b.String()
}
