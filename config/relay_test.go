package config_test

import (
	"strings"
	"testing"

	"mailgate/config"
	"mailgate/config/configtest"
)

func TestOpenRelayShapes(t *testing.T) {
	for _, tc := range configtest.RelayRuleShapes {
		c := mustParse(t, configtest.RelayShapeConfig(tc.Lines), testEnv())
		got := config.OpenRelayRules(c)
		if tc.Unsafe != (len(got) == 1) {
			t.Errorf("rule %q: unsafe %v, check says %q", tc.Lines, tc.Unsafe, got)
			continue
		}
		if !tc.Unsafe {
			continue
		}
		msg := got[0]
		for _, want := range []string{"policy access-control receive 1: open relay", "sender-ip-mask", "authenticated authenticated", "*@example.com"} {
			if !strings.Contains(msg, want) {
				t.Errorf("rule %q: message lacks %q: %s", tc.Lines, want, msg)
			}
		}
		// Validate refuses it, naming the rule.
		if err := config.Validate(c, testEnv()); err == nil || !strings.Contains(err.Error(), "receive 1: open relay") {
			t.Errorf("rule %q: Validate: %v", tc.Lines, err)
		}
	}
}

// Every rule is reported, and a rule behind an authenticated one is still
// found (the check does not rely on rule order).
func TestOpenRelayEveryRule(t *testing.T) {
	text := strings.TrimSuffix(configtest.RelayShapeConfig("set authenticated authenticated\nset action relay"), "end\n") +
		"    edit 7\n        set action relay\n    next\n    edit 9\n        set recipient-pattern *\n        set action safe-relay\n    next\nend\n"
	got := config.OpenRelayRules(mustParse(t, text, testEnv()))
	if len(got) != 2 || !strings.HasPrefix(got[0], "policy access-control receive 7:") || !strings.HasPrefix(got[1], "policy access-control receive 9:") {
		t.Fatalf("got %q", got)
	}
}
