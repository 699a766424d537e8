package config_test

import (
	"strings"
	"testing"

	"mailgate/config"
)

// v1Backup is a backup in the first release's names, as that release
// wrote it (header without a format).
const v1Backup = `#config-version=mailgate-v0.7.0:opmode=gateway:user=admin
config system global
    set hostname "mg1"
end
config mailsetting mail-server-settings
    set smtp-port 2525
    set smtps-status disable
    set smtp-msa-status disable
    set max-connections 900
    set max-connections-per-ip 30
end
config mailsetting relayserver
    edit "smart"
        set server "relay.example.net"
        set port 587
        set smtps enable
        set auth-status enable
        set auth-username "relay user"
    next
end
config mailsetting queue
    set retry-interval 20
    set warning-time 6
    set max-time 48
end
config domain
    edit "example.com"
        set smtp-server "192.0.2.25"
        set smtps enable
        set comments "set server x"
    next
end
config policy access-control receive
    edit 1
        set authenticated yes
        set action relay
    next
    edit 2
        set authenticated no
        set recipient-pattern "*@example.com"
        set action receive
    next
    edit 3
        set authenticated any
        set action reject
        set comments "last"
    next
end
config policy access-control delivery
    edit 1
        set recipient-pattern "*@partner.example"
        set destination-ip-mask 203.0.113.0/24
        set comments "partner"
    next
end
`

// The same configuration in the current names.
const v2Text = `config system global
    set hostname "mg1"
end
config system mailserver
    set smtp-port 2525
    set smtps-tls-status disable
    set smtp-msa disable
    set smtp-max-connections 900
    set max-connections-per-ip 30
    set queue-retry 20
    set queue-warning 6
    set queue-timeout 48
    set relay-server-status enable
end
config mailsetting relay-host-list
    edit "smart"
        set host-name "relay.example.net"
        set host-port 587
        set use-smtps enable
        set auth-status enable
        set auth-username "relay user"
    next
end
config domain
    edit "example.com"
        set smtp-server "192.0.2.25"
        set smtps enable
        set comments "set server x"
    next
end
config policy access-control receive
    edit 1
        set authenticated authenticated
        set action relay
    next
    edit 2
        set authenticated not-authenticated
        set recipient-pattern "*@example.com"
        set action receive
    next
    edit 3
        set authenticated any
        set action reject
        set comment "last"
    next
end
config policy access-control delivery
    edit 1
        set recipient-pattern "*@partner.example"
        set destination 203.0.113.0/24
        set comment "partner"
    next
end
`

func TestOldBackupReadInNewNames(t *testing.T) {
	old := mustParse(t, v1Backup, testEnv())
	now := mustParse(t, v2Text, testEnv())
	sameText(t, "v1 backup", config.Render(old, true), config.Render(now, true))
	if r := old.Policy.AccessControl.Receive; r[0].Authenticated != "authenticated" || r[1].Authenticated != "not-authenticated" {
		t.Fatalf("authenticated values: %q %q", r[0].Authenticated, r[1].Authenticated)
	}
	// Attribute names are renamed only in the blocks that renamed them:
	// the domain keeps smtps, a comment keeps its text.
	if !old.Domain[0].SMTPS || old.Domain[0].Comments != "set server x" {
		t.Fatalf("domain: %+v", old.Domain[0])
	}
}

func TestBackupFormat(t *testing.T) {
	for _, tc := range []struct {
		text   string
		format int
		ok     bool
	}{
		{v1Backup, 1, true},
		{"#config-version=mailgate-dev:opmode=gateway:user=admin:format=2\nconfig system dns\nend\n", 2, true},
		{"#config-version=mailgate-dev:format=x\n", 0, false},
		{"config system global\nend\n", config.FormatVersion, true},
		{"", config.FormatVersion, true},
		{"#config-version=FEVM64-7.04-FW-build0310-230929:opmode=0:vdom=0:user=admin\n", 0, false},
	} {
		f, ok := config.BackupFormat(tc.text)
		if f != tc.format || ok != tc.ok {
			t.Errorf("%.50q: format %d %v, want %d %v", tc.text, f, ok, tc.format, tc.ok)
		}
	}
	if _, err := config.Parse("#config-version=FEVM64-7.04-FW-build0310:opmode=0\nconfig system global\nend\n", testEnv()); err == nil ||
		!strings.Contains(err.Error(), "not mailgate's") {
		t.Fatalf("foreign header: %v", err)
	}
}

// A text in the current names passes Migrate unchanged, multi-line
// values and comments included; so does every rendered configuration.
func TestMigrateLeavesCurrentNames(t *testing.T) {
	text := config.Render(richConfig(t), true)
	if got := config.Migrate(text, config.FormatVersion); got != text {
		t.Fatal("Migrate from the current format changed the text")
	}
	if got := config.Migrate(text, 1); got != text {
		t.Fatalf("Migrate from format 1 changed a text in the current names:\n%s", diffText(text, got))
	}
	multi := "# comment\nconfig system certificate ca\n    edit \"x\"\n        set certificate \"-----BEGIN\nset server y\n\"\n    next\nend\n"
	if got := config.Migrate(multi, 1); got != multi {
		t.Fatalf("multi-line value changed:\n%s", got)
	}
}
