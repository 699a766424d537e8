package config_test

import (
	"reflect"
	"slices"
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
config system admin
    edit "admin"
        set trusthost1 192.0.2.0/24
        set trusthost2 ::/0
        set access-profile super_admin_prof
    next
    edit "ops"
        set trusthost1 0.0.0.0/0
        set trusthost2 ::/0
        set trusthost3 ""
        set access-profile read_only_prof
    next
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

// The same configuration in format 2 names.
const v2Text = `#config-version=mailgate-v1.0.0:opmode=gateway:user=admin:format=2
config system global
    set hostname "mg1"
end
config system admin
    edit "admin"
        set trusted-hosts 192.0.2.0/24 ::/0
    next
    edit "ops"
        set access-profile read_only_prof
    next
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

// Format 2's queue schedule directly in system mailserver is format 3's
// mail-queue entry default; the other attributes of the block stay.
func TestFormat2QueueMovesToMailQueueDefault(t *testing.T) {
	c := mustParse(t, v2Text, testEnv())
	if q := c.System.Mailserver.MailQueue; len(q) != 1 || q[0] != (config.MailQueue{Name: "default", Retry: 20, Warning: 6, Timeout: 48, DSNTimeout: 5}) {
		t.Fatalf("mail-queue %+v", q)
	}
	if m := c.System.Mailserver; m.SMTPPort != 2525 || !m.RelayServerStatus {
		t.Fatalf("mailserver %+v", m)
	}
	got := config.Migrate("config system mailserver\n    set smtp-port 2525\n    set queue-retry 20\n    unset queue-warning\n"+
		"    set queue-timeout 48\n    set relay-server-status enable\nend\nconfig system global\n    set queue-retry x\nend\n", 2)
	want := "config system mailserver\n    set smtp-port 2525\n    config mail-queue\n        edit \"default\"\n" +
		"            set queue-retry 20\n            unset queue-warning\n            set queue-timeout 48\n        next\n    end\n" +
		"    set relay-server-status enable\nend\nconfig system global\n    set queue-retry x\nend\n"
	if got != want {
		t.Fatalf("migrated:\n%s", diffText(want, got))
	}
	// Without a default entry the schedule is the factory one.
	c = mustParse(t, "#config-version=mailgate-v1.0.0:format=2\nconfig system mailserver\n    set smtp-port 2525\nend\n", testEnv())
	if q := c.System.Mailserver.Queue(true); q.Retry != 15 || q.Timeout != 120 || q.Warning != 4 || q.DSNTimeout != 5 {
		t.Fatalf("schedule without entries: %+v", q)
	}
}

// Format 1's allowaccess smtp opened every mail port; format 2 lists them
// in mailaccess.
func TestOldAllowAccessSplits(t *testing.T) {
	old := "#config-version=mailgate-v0.7.0:opmode=gateway:user=admin\nconfig system interface\n" +
		"    edit \"port1\"\n        set allowaccess ping ssh https smtp\n    next\n" +
		"    edit \"port2\"\n        set allowaccess ssh\n    next\n" +
		"    edit \"port3\"\n        set allowaccess smtp\n    next\n" +
		"    edit \"port4\"\n    next\nend\n"
	c := mustParse(t, old, testEnv())
	for i, want := range [][2][]string{
		{{"ping", "ssh", "https"}, {"smtp", "smtps", "imap", "imaps", "pop3", "pop3s"}},
		{{"ssh"}, nil},
		{nil, {"smtp", "smtps", "imap", "imaps", "pop3", "pop3s"}},
		{{"ping", "ssh", "https"}, {"smtp", "smtps", "imap", "imaps", "pop3", "pop3s"}},
	} {
		ifc := c.System.Interface[i]
		if !slices.Equal(ifc.AllowAccess, want[0]) || !slices.Equal(ifc.MailAccess, want[1]) {
			t.Errorf("%s: allowaccess %q mailaccess %q, want %q %q", ifc.Name, ifc.AllowAccess, ifc.MailAccess, want[0], want[1])
		}
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

// v1AdminText is a first-release `config system admin` block with body as
// the entry "ops".
func v1AdminText(body ...string) string {
	text := "#config-version=mailgate-v0.7.0:opmode=gateway:user=admin\nconfig system admin\n    edit \"ops\"\n"
	for _, l := range body {
		text += "        " + l + "\n"
	}
	return text + "        set access-profile super_admin_prof\n    next\nend\n"
}

// The first release's ssh-public-key1..3 and trusthost1..3 become the
// lists sshkey and trusted-hosts, holding what the first release read
// from the text: an entry starts from its factory values (trusthost1
// 0.0.0.0/0, trusthost2 ::/0), and an empty value is dropped.
func TestFormat1AdminLists(t *testing.T) {
	k1, k2 := testAuthKey(t), otherAuthKey(t)
	anyAddr := []string{"0.0.0.0/0", "::/0"}
	for _, tc := range []struct {
		name      string
		body      []string
		keys      []string
		hosts     []string
		migrated  []string // lines of the migrated text
		isDefault bool     // trusted-hosts left at the factory value
	}{
		{"keys 1 and 3, two networks",
			[]string{`set ssh-public-key1 "` + k1 + `"`, `set ssh-public-key2 ""`, `set ssh-public-key3 "` + k2 + `"`,
				"set trusthost1 192.0.2.0/24", `set trusthost2 ""`, "set trusthost3 2001:db8::/32"},
			[]string{k1, k2}, []string{"192.0.2.0/24", "2001:db8::/32"},
			[]string{`        set sshkey "` + k1 + `" "` + k2 + `"`, "        set trusted-hosts 192.0.2.0/24 2001:db8::/32"}, false},
		// The factory entry as the first release's full configuration
		// printed it, and with its empty values spelled out.
		{"factory entry", []string{"set trusthost1 0.0.0.0/0", "set trusthost2 ::/0"}, nil, anyAddr,
			[]string{"        set trusted-hosts 0.0.0.0/0 ::/0"}, true},
		{"factory entry, empty values", []string{`set ssh-public-key1 ""`, `set ssh-public-key2 ""`, "set trusthost1 0.0.0.0/0", "set trusthost2 ::/0", `set trusthost3 ""`},
			nil, anyAddr, []string{"        unset sshkey", "        set trusted-hosts 0.0.0.0/0 ::/0"}, true},
		{"nothing set", nil, nil, anyAddr, nil, true},
		// The first release printed an emptied trusthost1/2 as unset,
		// which read back as the factory value.
		{"unset", []string{`set ssh-public-key2 "` + k2 + `"`, "unset trusthost1", "set trusthost2 2001:db8::/32", "unset trusthost3"},
			[]string{k2}, []string{"0.0.0.0/0", "2001:db8::/32"}, nil, false},
		{"netmask", []string{"set trusthost1 192.0.2.0 255.255.255.0", "set trusthost2 2001:DB8::1"},
			nil, []string{"192.0.2.0/24", "2001:db8::1/128"}, nil, false},
		// trusthost3 alone was added to the factory trusthost1 and 2:
		// any address, then as now.
		{"trusthost3 only", []string{"set trusthost3 198.51.100.0/24"}, nil, []string{"0.0.0.0/0", "::/0", "198.51.100.0/24"},
			[]string{"        set trusted-hosts 0.0.0.0/0 ::/0 198.51.100.0/24"}, false},
		{"trusthost3 only, others emptied", []string{`set trusthost1 ""`, `set trusthost2 ""`, "set trusthost3 198.51.100.0/24"},
			nil, []string{"198.51.100.0/24"}, nil, false},
		{"trusthost3 empty only", []string{`set trusthost3 ""`}, nil, anyAddr, nil, true},
		// No trusted host at all was any address; so is the factory list.
		{"all emptied", []string{`set trusthost1 ""`, `set trusthost2 ""`, `set trusthost3 ""`}, nil, anyAddr,
			[]string{"        unset trusted-hosts"}, true},
		{"same network twice", []string{"set trusthost1 192.0.2.0/24", "set trusthost2 \"\"", "set trusthost3 192.0.2.0 255.255.255.0"},
			nil, []string{"192.0.2.0/24"}, nil, false},
		{"later set wins", []string{"set trusthost1 192.0.2.0/24", "set trusthost2 \"\"", "set trusthost1 10.0.0.0/8", `set ssh-public-key1 "` + k1 + `"`, `set ssh-public-key1 "` + k2 + `"`},
			[]string{k2}, []string{"10.0.0.0/8"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := v1AdminText(tc.body...)
			migrated := config.Migrate(text, 1)
			for _, old := range []string{"ssh-public-key", "trusthost"} {
				if strings.Contains(migrated, old) {
					t.Errorf("migrated text keeps %s:\n%s", old, migrated)
				}
			}
			for _, l := range tc.migrated {
				if !strings.Contains(migrated, l+"\n") {
					t.Errorf("migrated text lacks %q:\n%s", l, migrated)
				}
			}
			c := mustParse(t, text, testEnv())
			ad := c.System.Admin[0]
			if !reflect.DeepEqual(ad.SSHKeys, tc.keys) {
				t.Errorf("sshkey %q, want %q", ad.SSHKeys, tc.keys)
			}
			if !reflect.DeepEqual(ad.TrustedHosts, tc.hosts) {
				t.Errorf("trusted-hosts %q, want %q", ad.TrustedHosts, tc.hosts)
			}
			if show := config.Render(c, false); strings.Contains(show, "trusted-hosts") == tc.isDefault {
				t.Errorf("show, trusted-hosts at the factory value %v:\n%s", tc.isDefault, show)
			}
		})
	}
}

// An entry's values carry over to a later edit of it, and follow rename
// and delete, as in the first release.
func TestFormat1AdminListsAcrossEdits(t *testing.T) {
	k1 := testAuthKey(t)
	text := `#config-version=mailgate-v0.7.0:opmode=gateway:user=admin
config system admin
    edit "ops"
        set ssh-public-key2 "` + k1 + `"
        set trusthost1 192.0.2.0/24
        unset trusthost2
    next
    edit "gone"
        set trusthost1 192.0.2.0/24
    next
    delete "gone"
    rename "ops" to "oncall"
end
config system admin
    edit "oncall"
        set trusthost2 ""
        set trusthost3 2001:db8::/32
    next
    edit "gone"
        set trusthost3 198.51.100.0/24
    next
end
`
	c := mustParse(t, text, testEnv())
	a := c.System.Admin
	if len(a) != 2 || a[0].Name != "oncall" || !reflect.DeepEqual(a[0].SSHKeys, []string{k1}) ||
		!reflect.DeepEqual(a[0].TrustedHosts, []string{"192.0.2.0/24", "2001:db8::/32"}) {
		t.Fatalf("oncall: %+v", a)
	}
	if a[1].Name != "gone" || !reflect.DeepEqual(a[1].TrustedHosts, []string{"0.0.0.0/0", "::/0", "198.51.100.0/24"}) {
		t.Fatalf("re-created entry: %+v", a[1])
	}
}

// What the first release refused is refused still, naming the value.
func TestFormat1AdminBadValues(t *testing.T) {
	for body, want := range map[string]string{
		"set trusthost1 192.0.2.0 255.0.255.0":  `"192.0.2.0 255.0.255.0" is not an IPv4 or IPv6 prefix`,
		"set trusthost3 xyz":                    `"xyz" is not an IPv4 or IPv6 prefix`,
		`set ssh-public-key1 "ssh-rsa garbage"`: "sshkey: not an SSH public key",
	} {
		_, err := config.Parse(v1AdminText(body), testEnv())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}
