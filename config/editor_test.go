package config_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"mailgate/config"
)

func newFactoryEditor() *config.Editor {
	return config.NewEditor(config.Factory(factoryOpts(false)), testEnv())
}

func TestAbbreviations(t *testing.T) {
	e := newFactoryEditor()
	mustExec(t, e, "conf sys glo")
	if e.Label() != "global" || e.Depth() != 1 {
		t.Fatalf("at %q depth %d", e.Label(), e.Depth())
	}
	mustExec(t, e, "set host mg1")
	mustExec(t, e, "set op server")
	mustExec(t, e, "set strong dis")
	mustExec(t, e, "set ssl tls1_3 tls1_1")
	mustExec(t, e, "set admin-i 60")
	if res := mustExec(t, e, "en"); res != config.Commit {
		t.Fatalf("end: %v", res)
	}
	g := e.Work().System.Global
	if g.Hostname != "mg1" || g.OperationMode != "server" || g.StrongCrypto || g.AdminIdleTimeout != 60 ||
		!reflect.DeepEqual(g.SSLVersions, []string{"tls1_1", "tls1_3"}) {
		t.Fatalf("global %+v", g)
	}

	// Abbreviated commands and paths elsewhere.
	e.Reset(e.Work())
	mustExec(t, e, "conf mail starttls")
	mustExec(t, e, "conf host")
	mustExec(t, e, "ed example.com")
	if e.Label() != "example.com" || e.Depth() != 2 {
		t.Fatalf("at %q depth %d", e.Label(), e.Depth())
	}
	mustExec(t, e, "set ssl tls1_3")
	mustExec(t, e, "n")
	mustExec(t, e, "end")
	if res := mustExec(t, e, "end"); res != config.Commit {
		t.Fatalf("end: %v", res)
	}
	if hp := e.Work().Mailsetting.StartTLS.HostProtocol; len(hp) != 1 || hp[0].Host != "example.com" || !reflect.DeepEqual(hp[0].SSLVersions, []string{"tls1_3"}) {
		t.Fatalf("host-protocol %+v", hp)
	}
}

func TestRefusedCommands(t *testing.T) {
	const (
		parse = config.CodeParse
		value = config.CodeValue
	)
	cases := []struct {
		name  string
		at    string // commands leading to the position
		line  string
		code  int
		msg   string
		inDet string // substring of the detail line
	}{
		{"ambiguous attribute", "config system global", "set s x", parse, "command parse error before 's'", ""},
		{"unknown attribute", "config system global", "set xyz 1", parse, "command parse error before 'xyz'", ""},
		{"ambiguous path", "", "config p", parse, "command parse error before 'p'", ""},
		{"ambiguous command", "config system admin", "e admin", parse, "command parse error before 'e'", ""},
		{"incomplete path", "", "config system", parse, "command parse error before 'system'", "incomplete path"},
		{"path with extra word", "", "config system global extra", parse, "command parse error before 'extra'", ""},
		{"config without path", "", "config", parse, "command parse error before ''", "config needs a path"},
		{"end outside block", "", "end", parse, "command parse error before 'end'", ""},
		{"set outside block", "", "set hostname x", parse, "command parse error before 'set'", ""},
		{"edit in section", "config system global", "edit x", parse, "command parse error before 'edit'", ""},
		{"next in section", "config system global", "next", parse, "command parse error before 'next'", ""},
		{"delete in section", "config system global", "delete x", parse, "command parse error before 'delete'", ""},
		{"set before edit", "config system admin", "set comments x", parse, "command parse error before 'set'", ""},
		{"next before edit", "config system admin", "next", parse, "command parse error before 'next'", ""},
		{"edit inside entry", "config system admin\nedit admin", "edit other", parse, "command parse error before 'edit'", ""},
		{"config in leaf section", "config system global", "config dns", parse, "command parse error before 'config'", ""},
		{"end with argument", "config system global", "end now", parse, "command parse error before 'now'", ""},
		{"next with argument", "config system admin\nedit admin", "next now", parse, "command parse error before 'now'", ""},
		{"set without name", "config system global", "set", parse, "command parse error before ''", "needs an attribute name"},
		{"set without value", "config system global", "set hostname", parse, "command parse error before ''", "value missing"},
		{"two words for one", "config system global", "set hostname a b", parse, "command parse error before 'b'", ""},
		{"unset with value", "config system global", "unset hostname x", parse, "command parse error before 'x'", ""},
		{"int out of range", "config system global", "set admin-idle-timeout 481", value, "value parse error before '481'", "admin-idle-timeout: 481 is out of range 1-480"},
		{"int zero", "config system global", "set port-ssh 0", value, "value parse error before '0'", "out of range 1-65535"},
		{"int not a number", "config system global", "set admin-idle-timeout xyz", value, "value parse error before 'xyz'", "not an integer"},
		{"enum", "config system global", "set operation-mode xyz", value, "value parse error before 'xyz'", "expected one of gateway, server, transparent"},
		{"bool", "config system global", "set strong-crypto xyz", value, "value parse error before 'xyz'", "enable or disable"},
		{"a FortiMail feature mailgate lacks", "config system global", "set tftp enable", value, "value parse error before 'enable'", "tftp: mailgate has no such feature; only disable"},
		{"an email address", "config system mailserver", "set dsn-sender-address postmaster", value, "value parse error before 'postmaster'", "not an email address"},
		{"enum list", "config system global", "set ssl-versions tls1_2 xyz", value, "value parse error before 'xyz'", ""},
		{"enum list ambiguous", "config system global", "set ssl-versions tls", value, "value parse error before 'tls'", ""},
		{"hostname", "config system global", "set hostname -bad-", value, "value parse error before '-bad-'", "not a valid DNS name"},
		{"timezone", "config system global", "set timezone Mars/Olympus", value, "value parse error before 'Mars/Olympus'", "unknown time zone"},
		{"ip", "config system dns", "set primary xyz", value, "value parse error before 'xyz'", "not an IP address"},
		{"ip out of range", "config system dns", "set primary 192.0.2.256", value, "value parse error before '192.0.2.256'", ""},
		{"ip with zone", "config system dns", "set primary fe80::1%eth0", value, "value parse error before 'fe80::1%eth0'", ""},
		{"prefix", "config system route\nedit 1", "set destination xyz", value, "value parse error before 'xyz'", "not an address/prefix"},
		{"prefix length", "config system route\nedit 1", "set destination 192.0.2.0/33", value, "value parse error before '192.0.2.0/33'", ""},
		{"noncontiguous mask", "config system route\nedit 1", "set destination 192.0.2.0 255.0.255.0", value, "value parse error before '192.0.2.0'", "255.0.255.0 is not a contiguous netmask"},
		{"mask for ipv6", "config system route\nedit 1", "set destination 2001:db8:: ffff::", value, "value parse error before '2001:db8::'", ""},
		{"prefix three words", "config system route\nedit 1", "set destination 192.0.2.0 255.255.255.0 x", value, "value parse error before '192.0.2.0'", "too many words"},
		{"trusted host", "config system admin\nedit admin", "set trusted-hosts 192.0.2.0/24 xyz", value, "value parse error before 'xyz'", `trusted-hosts: element "xyz" is not an IPv4 or IPv6 prefix`},
		{"trusted host length", "config system admin\nedit admin", "set trusted-hosts 192.0.2.0/33", value, "value parse error before '192.0.2.0/33'", `element "192.0.2.0/33"`},
		{"trusted host netmask", "config system admin\nedit admin", "set trusted-hosts 192.0.2.0 255.255.255.0", value, "value parse error before '255.255.255.0'", "is a netmask"},
		{"trusted host zone", "config system admin\nedit admin", "set trusted-hosts fe80::1%eth0", value, "value parse error before 'fe80::1%eth0'", "zone"},
		{"trusted host empty", "config system admin\nedit admin", `set trusted-hosts ""`, value, "value parse error before ''", "unset trusted-hosts"},
		{"append trusted host", "config system admin\nedit admin", "append trusted-hosts 10.0.0.0/8 10.0.0.0/40", value, "value parse error before '10.0.0.0/40'", ""},
		{"username", "config system admin", "edit \"bad name\"", value, "value parse error before 'bad name'", ""},
		{"empty key", "config system admin", `edit ""`, value, "value parse error before ''", "name is empty"},
		{"rule number", "config policy access-control receive", "edit 0", value, "value parse error before '0'", "numbered from 1"},
		{"rule number text", "config policy access-control receive", "edit first", value, "value parse error before 'first'", ""},
		{"domain name", "config domain", "edit exa_mple.com", value, "value parse error before 'exa_mple.com'", ""},
		{"objname quote", "config profile tls", `edit 'a"b'`, value, `value parse error before 'a"b'`, ""},
		{"line break in string", "config system admin\nedit admin", "set comments \"a\nb\"", value, "value parse error before 'a\nb'", "line breaks"},
		{"host pattern", "config mailsetting starttls", "set include-hosts example.com bad_host", value, "value parse error before 'bad_host'", ""},
		{"authkey", "config system admin\nedit admin", "set sshkey \"ssh-rsa garbage\"", value, "value parse error before 'ssh-rsa garbage'", "sshkey: not an SSH public key"},
		{"second authkey", "config system admin\nedit admin", "set sshkey \"" + testAuthKey(t) + "\" \"ssh-ed25519 AAAA\"", value, "value parse error before 'ssh-ed25519 AAAA'", "SSH public key"},
		{"append authkey", "config system admin\nedit admin", "append sshkey garbage", value, "value parse error before 'garbage'", "SSH public key"},
		{"empty authkey", "config system admin\nedit admin", `set sshkey ""`, value, "value parse error before ''", "unset sshkey"},
		{"missing reference", "config policy access-control receive\nedit 1", "set tls-profile missing", value, "value parse error before 'missing'", "entry not found in datasource profile tls"},
		{"missing certificate", "config system global", "set default-certificate nope", value, "value parse error before 'nope'", "entry not found in datasource system certificate local"},
		{"append to non-list", "config system global", "append hostname x", parse, "command parse error before 'hostname'", "not a list"},
		{"append nothing", "config mailsetting starttls", "append include-hosts", parse, "command parse error before ''", "value missing"},
		{"rename usage", "config profile tls", "rename a b", parse, "command parse error before 'b'", "usage"},
		{"move usage", "config policy access-control receive", "move 1 2", parse, "command parse error before ''", "usage"},
		{"move where", "config policy access-control receive", "move 1 beside 2", parse, "command parse error before 'beside'", ""},
		{"purge with argument", "config domain", "purge all", parse, "command parse error before 'all'", ""},
		{"delete nothing", "config domain", "delete", parse, "command parse error before ''", "delete needs"},
		{"delete missing", "config domain", "delete nowhere.example", config.CodeNotFound, "entry not found", ""},
		{"rename missing", "config profile tls", "rename nothing to other", config.CodeNotFound, "entry not found", ""},
		{"move missing", "config policy access-control receive", "move 1 before 2", config.CodeNotFound, "entry not found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newFactoryEditor()
			if tc.at != "" {
				run(t, e, tc.at)
			}
			before := config.Render(e.Work(), true)
			frames := e.Frames()
			ce := mustFail(t, e, tc.line, tc.code, tc.msg)
			if !strings.Contains(ce.Detail, tc.inDet) {
				t.Errorf("detail %q lacks %q", ce.Detail, tc.inDet)
			}
			if !strings.HasSuffix(ce.Error(), tc.msg) {
				t.Errorf("Error() = %q", ce.Error())
			}
			if got := config.Render(e.Work(), true); got != before {
				t.Errorf("refused command changed the tree at %s", diffText(got, before))
			}
			if !reflect.DeepEqual(e.Frames(), frames) {
				t.Errorf("refused command moved from %v to %v", frames, e.Frames())
			}
		})
	}
}

func TestAcceptedValues(t *testing.T) {
	cases := []struct {
		at, line string
		get      func(c *config.Config) any
		want     any
	}{
		{"config system admin\nedit admin", "set trusted-hosts 192.0.2.0/24", func(c *config.Config) any { return c.System.Admin[0].TrustedHosts }, []string{"192.0.2.0/24"}},
		{"config system admin\nedit admin", "set trusted-hosts 192.0.2.7 2001:DB8::/32 2001:db8::1", func(c *config.Config) any { return c.System.Admin[0].TrustedHosts }, []string{"192.0.2.7/32", "2001:db8::/32", "2001:db8::1/128"}},
		{"config system admin\nedit admin", "set trusted-hosts 0.0.0.0/0", func(c *config.Config) any { return c.System.Admin[0].TrustedHosts }, []string{"0.0.0.0/0"}},
		{"config system admin\nedit admin\nset trusted-hosts 192.0.2.0/24", "append trusted-hosts 10.0.0.0/8 192.0.2.0/24", func(c *config.Config) any { return c.System.Admin[0].TrustedHosts }, []string{"192.0.2.0/24", "10.0.0.0/8"}},
		{"config system admin\nedit admin\nset trusted-hosts 192.0.2.0/24", "unset trusted-hosts", func(c *config.Config) any { return c.System.Admin[0].TrustedHosts }, []string{"0.0.0.0/0", "::/0"}},
		{"config system admin\nedit admin", "set sshkey \"" + testAuthKey(t) + "\"", func(c *config.Config) any { return c.System.Admin[0].SSHKeys }, []string{testAuthKey(t)}},
		{"config system admin\nedit admin\nset sshkey \"" + testAuthKey(t) + "\"", "append sshkey \"" + otherAuthKey(t) + "\"", func(c *config.Config) any { return c.System.Admin[0].SSHKeys }, []string{testAuthKey(t), otherAuthKey(t)}},
		{"config system admin\nedit admin", "set sshkey \"" + testAuthKey(t) + "\" \"" + otherAuthKey(t) + "\"", func(c *config.Config) any { return c.System.Admin[0].SSHKeys }, []string{testAuthKey(t), otherAuthKey(t)}},
		{"config system admin\nedit admin\nset sshkey \"" + testAuthKey(t) + "\"", "unset sshkey", func(c *config.Config) any { return c.System.Admin[0].SSHKeys }, []string(nil)},
		{"config system dns", "set primary 2001:DB8:0::53", func(c *config.Config) any { return c.System.DNS.Primary }, "2001:db8::53"},
		{"config system global", "set port-ssh 65535", func(c *config.Config) any { return c.System.Global.PortSSH }, 65535},
		{"config system global", "set admin-idle-timeout +7", func(c *config.Config) any { return c.System.Global.AdminIdleTimeout }, 7},
		{"config system global", "set ssl-versions tls1_3 tls1_2 tls1_3", func(c *config.Config) any { return c.System.Global.SSLVersions }, []string{"tls1_2", "tls1_3"}},
		{"config system global", "set hostname mg1.example.com.", func(c *config.Config) any { return c.System.Global.Hostname }, "mg1.example.com."},
		{"config system global", `set hostname ""`, func(c *config.Config) any { return c.System.Global.Hostname }, ""},
		{"config system interface\nedit port1", "set allowaccess https ssh", func(c *config.Config) any { return c.System.Interface[0].AllowAccess }, []string{"ssh", "https"}},
		{"config mailsetting starttls", "set fallback next-retry-any", func(c *config.Config) any { return c.Mailsetting.StartTLS.Fallback }, "next-retry-any"},
		{"config mailsetting starttls", "set fallback next-retry", func(c *config.Config) any { return c.Mailsetting.StartTLS.Fallback }, "next-retry"},
		{"config mailsetting starttls", "set fallback n", func(c *config.Config) any { return c.Mailsetting.StartTLS.Fallback }, nil},
		{"config policy access-control receive\nedit 1", "set action safe", func(c *config.Config) any { return c.Policy.AccessControl.Receive[0].Action }, "safe"},
		{"config policy access-control receive\nedit 1", "set action safe-", func(c *config.Config) any { return c.Policy.AccessControl.Receive[0].Action }, "safe-relay"},
		{"config policy access-control receive\nedit 1", "set sender-pattern-type r", func(c *config.Config) any { return c.Policy.AccessControl.Receive[0].SenderPatternType }, "regexp"},
		{"config policy access-control receive\nedit 1", `set tls-profile ""`, func(c *config.Config) any { return c.Policy.AccessControl.Receive[0].TLSProfile }, ""},
		{"config policy access-control receive", "edit 007", func(c *config.Config) any { return c.Policy.AccessControl.Receive[0].ID }, 7},
	}
	for _, tc := range cases {
		t.Run(tc.line, func(t *testing.T) {
			e := newFactoryEditor()
			run(t, e, tc.at)
			_, err := exec(e, tc.line)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("accepted, want refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(e.Work()); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestEditCreatesWithDefaultsAndKeeps(t *testing.T) {
	e := newFactoryEditor()
	run(t, e, "config system admin\nedit ops")
	if e.Label() != "ops" {
		t.Fatalf("label %q", e.Label())
	}
	a := e.Work().System.Admin[1]
	if a.Name != "ops" || fmt.Sprint(a.TrustedHosts) != "[0.0.0.0/0 ::/0]" || a.SSHKeys != nil || a.AccessProfile != "super_admin_prof" || a.Password != "" {
		t.Fatalf("new entry %+v", a)
	}
	run(t, e, "set comments \"on call\"\nset trusted-hosts 192.0.2.0/24\nnext\nedit admin\nnext\nedit ops")
	admins := e.Work().System.Admin
	if len(admins) != 2 || admins[1].Comments != "on call" || fmt.Sprint(admins[1].TrustedHosts) != "[192.0.2.0/24]" {
		t.Fatalf("after re-edit %+v", admins)
	}
	run(t, e, "append trusted-hosts 2001:db8::/32\nunset trusted-hosts")
	if a := e.Work().System.Admin[1]; fmt.Sprint(a.TrustedHosts) != "[0.0.0.0/0 ::/0]" {
		t.Fatalf("after unset %+v", a)
	}
	// The commands offered follow the position.
	if got := strings.Join(e.Commands(), " "); got != "abort append end next set unset" {
		t.Fatalf("commands in entry: %s", got)
	}
	n, v := e.Current()
	if n.Path != "system admin" || v.FieldByName("Name").String() != "ops" {
		t.Fatalf("Current %s %v", n.Path, v)
	}
	run(t, e, "next")
	if got := strings.Join(e.Commands(), " "); got != "abort delete edit end move purge rename" {
		t.Fatalf("commands in table: %s", got)
	}
	if e.Label() != "admin" {
		t.Fatalf("label %q", e.Label())
	}
}

func TestDeleteRenameReferences(t *testing.T) {
	e := newFactoryEditor()
	run(t, e, `config profile tls
    edit strict
        set level secure
    next
    edit spare
    next
end
config policy access-control receive
    edit 1
        set tls-profile strict
    next
    edit 2
        set tls-profile strict
    next
end
config policy access-control delivery
    edit 1
        set tls-profile strict
    next
end`)
	run(t, e, "config profile tls")
	ce := mustFail(t, e, "delete strict", config.CodeInUse, "entry is in use")
	if !strings.Contains(ce.Detail, "3") {
		t.Errorf("detail %q does not count the references", ce.Detail)
	}
	mustFail(t, e, "purge", config.CodeInUse, "entry is in use")
	mustFail(t, e, "rename strict to spare", config.CodeValue, "value parse error before 'spare'")
	mustFail(t, e, `rename strict to "a\"b"`, config.CodeValue, `value parse error before 'a"b'`)
	mustExec(t, e, "rename strict to strict-v2")
	w := e.Work()
	if w.Profile.TLS[0].Name != "strict-v2" || w.Profile.TLS[0].Level != "secure" {
		t.Fatalf("renamed profile %+v", w.Profile.TLS[0])
	}
	for _, r := range w.Policy.AccessControl.Receive {
		if r.TLSProfile != "strict-v2" {
			t.Fatalf("receive rule %d still names %q", r.ID, r.TLSProfile)
		}
	}
	if w.Policy.AccessControl.Delivery[0].TLSProfile != "strict-v2" {
		t.Fatal("delivery rule not renamed")
	}
	mustExec(t, e, "delete spare")
	if len(e.Work().Profile.TLS) != 1 {
		t.Fatal("spare not deleted")
	}
	mustFail(t, e, "delete spare", config.CodeNotFound, "entry not found")
	run(t, e, "end")

	// The Factory certificate is named by default-certificate.
	run(t, e, "config system certificate local")
	mustFail(t, e, "delete Factory", config.CodeInUse, "entry is in use")
	mustExec(t, e, "rename Factory to device")
	run(t, e, "end")
	if g := e.Work().System.Global.DefaultCertificate; g != "device" {
		t.Fatalf("default-certificate %q", g)
	}

	// Numbered rules rename too.
	run(t, e, "config policy access-control receive\nrename 2 to 10\nend")
	if ids := ruleIDs(e.Work()); !reflect.DeepEqual(ids, []int{1, 10}) {
		t.Fatalf("rules %v", ids)
	}
	if err := config.Validate(e.Work(), nil); err != nil {
		t.Fatal(err)
	}
}

func ruleIDs(c *config.Config) []int {
	var ids []int
	for _, r := range c.Policy.AccessControl.Receive {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestMoveAndPurge(t *testing.T) {
	cases := []struct {
		moves string
		want  []int
	}{
		{"move 3 before 1", []int{3, 1, 2, 4}},
		{"move 1 after 4", []int{2, 3, 4, 1}},
		{"move 1 after 2", []int{2, 1, 3, 4}},
		{"move 4 before 2", []int{1, 4, 2, 3}},
		{"move 2 before 2", []int{1, 2, 3, 4}},
		{"move 2 a 3", []int{1, 3, 2, 4}},
		{"move 3 before 1\nmove 1 before 3", []int{1, 3, 2, 4}},
	}
	for _, tc := range cases {
		t.Run(tc.moves, func(t *testing.T) {
			e := newFactoryEditor()
			run(t, e, "config policy access-control receive\nedit 1\nnext\nedit 2\nnext\nedit 3\nnext\nedit 4\nnext\n"+tc.moves+"\nend")
			if got := ruleIDs(e.Work()); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("order %v, want %v", got, tc.want)
			}
			out := config.Render(e.Work(), true)
			sameText(t, "order survives a round trip", config.Render(mustParse(t, out, nil), true), out)
		})
	}

	e := newFactoryEditor()
	run(t, e, "config domain\nedit a.example\nnext\nedit b.example\nnext\npurge")
	if len(e.Work().Domain) != 0 {
		t.Fatal("purge left entries")
	}
	run(t, e, "edit c.example\nnext\nend")
	if len(e.Work().Domain) != 1 {
		t.Fatal("table unusable after purge")
	}
}

func TestAppend(t *testing.T) {
	e := newFactoryEditor()
	run(t, e, "config mailsetting starttls\nappend include-hosts a.example\nappend include-hosts b.example a.example .c.example")
	if got := e.Work().Mailsetting.StartTLS.IncludeHosts; !reflect.DeepEqual(got, []string{"a.example", "b.example", ".c.example"}) {
		t.Fatalf("include-hosts %q", got)
	}
	mustFail(t, e, "append include-hosts bad_name", config.CodeValue, "value parse error before 'bad_name'")
	run(t, e, "end\nconfig system interface\nedit port1\nset allowaccess ping\nappend allowaccess https ping")
	if got := e.Work().System.Interface[0].AllowAccess; !reflect.DeepEqual(got, []string{"ping", "https"}) {
		t.Fatalf("allowaccess %q", got)
	}
	mustFail(t, e, "append mode static", config.CodeParse, "command parse error before 'mode'")
}

func TestTextValues(t *testing.T) {
	e := newFactoryEditor()
	run(t, e, "config system certificate ca\nedit root")
	// Tokens as a terminal delivers a pasted CRLF certificate.
	toks := []config.Token{{Text: "set"}, {Text: "certificate"}, {Text: "line1\r\nline2\r\n\r\n  \n", Quoted: true}}
	if _, err := e.Exec(toks); err != nil {
		t.Fatal(err)
	}
	if got := e.Work().System.Certificate.CA[0].Certificate; got != "line1\nline2" {
		t.Fatalf("certificate %q", got)
	}
	toks[2].Text = "a\r\r\nb"
	if _, err := e.Exec(toks); err != nil {
		t.Fatal(err)
	}
	got := e.Work().System.Certificate.CA[0].Certificate
	out := config.Render(e.Work(), true)
	c2 := mustParse(t, out, nil)
	if got2 := c2.System.Certificate.CA[0].Certificate; got2 != got {
		t.Fatalf("certificate %q reads back as %q", got, got2)
	}
}

func TestAbort(t *testing.T) {
	base := config.Factory(factoryOpts(false))
	want := config.Render(base, true)
	e := config.NewEditor(base, testEnv())
	run(t, e, "config system global\nset hostname changed\nend\n")
	// A new block on the same editor, then abort from inside an entry.
	e.Reset(base)
	run(t, e, "config domain\nedit example.com\nset smtp-server 192.0.2.1")
	res := mustExec(t, e, "abort")
	if res != config.Aborted || e.Depth() != 0 || len(e.Ops()) != 0 {
		t.Fatalf("abort: %v depth %d ops %d", res, e.Depth(), len(e.Ops()))
	}
	sameText(t, "work after abort", config.Render(e.Work(), true), want)
	sameText(t, "base", config.Render(base, true), want)
}

func TestCommitLeavesBase(t *testing.T) {
	base := config.Factory(factoryOpts(false))
	want := config.Render(base, true)
	e := config.NewEditor(base, testEnv())
	if res := run(t, e, "config system global\nset hostname mg2\nend"); res != config.Commit {
		t.Fatalf("outermost end: %v", res)
	}
	if res := run(t, e, "config mailsetting starttls\nconfig host-protocol\nedit example.com\nnext\nend"); res != config.Continue {
		t.Fatalf("inner end: %v", res)
	}
	if res := run(t, e, "end"); res != config.Commit {
		t.Fatalf("outermost end: %v", res)
	}
	if e.Work().System.Global.Hostname != "mg2" || len(e.Work().Mailsetting.StartTLS.HostProtocol) != 1 {
		t.Fatal("work lacks the changes")
	}
	if len(e.Ops()) != 2 { // set hostname, edit example.com
		t.Fatalf("%d ops, want 2", len(e.Ops()))
	}
	sameText(t, "base after commit", config.Render(base, true), want)
}

// TestReplay: another admin committed between this block's start and its
// end; the block's operations apply on top of the newer tree.
func TestReplay(t *testing.T) {
	base := config.Factory(factoryOpts(false))
	e := config.NewEditor(base, testEnv())
	res := run(t, e, `config profile tls
    edit strict
        set level secure
    next
    rename strict to strict2
end
config policy access-control receive
    edit 1
        set tls-profile strict2
        set action relay
    next
    edit 2
    next
    move 2 before 1
end
config mailsetting starttls
    append include-hosts a.example
    config host-protocol
        edit .b.example
            set ssl-versions tls1_3
        next
    end
end
config system admin
    edit admin
        set comments "changed"
    next
end`)
	if res != config.Commit {
		t.Fatalf("block ends with %v", res)
	}

	other := config.NewEditor(base, testEnv())
	run(t, other, `config system global
    set hostname other
end
config mailsetting starttls
    set include-hosts z.example
end
config domain
    edit example.com
        set smtp-server 192.0.2.25
    next
end`)
	newer := other.Work()

	next := newer.Clone()
	if err := config.Replay(next, e.Ops()); err != nil {
		t.Fatal(err)
	}
	if next.System.Global.Hostname != "other" || len(next.Domain) != 1 {
		t.Fatal("replay lost the other admin's changes")
	}
	if !reflect.DeepEqual(next.Mailsetting.StartTLS.IncludeHosts, []string{"z.example", "a.example"}) {
		t.Fatalf("append replayed as %q", next.Mailsetting.StartTLS.IncludeHosts)
	}
	if ids := ruleIDs(next); !reflect.DeepEqual(ids, []int{2, 1}) || next.Policy.AccessControl.Receive[1].TLSProfile != "strict2" {
		t.Fatalf("rules %+v", next.Policy.AccessControl.Receive)
	}
	if next.System.Admin[0].Comments != "changed" || next.Profile.TLS[0].Level != "secure" {
		t.Fatal("replay lost this block's changes")
	}
	// Replaying on the original base gives exactly the working copy.
	again := base.Clone()
	if err := config.Replay(again, e.Ops()); err != nil {
		t.Fatal(err)
	}
	sameText(t, "replay on base", config.Render(again, true), config.Render(e.Work(), true))

	// When the other admin deleted the entry this block edits, replay fails
	// instead of recreating it silently.
	gone := config.NewEditor(base, nil)
	run(t, gone, "config system admin\nedit admin2\nnext\ndelete admin\nend")
	err := config.Replay(gone.Work().Clone(), e.Ops())
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Code != config.CodeNotFound {
		t.Fatalf("replay onto a tree without the entry: %v", err)
	}
}

func TestSchema(t *testing.T) {
	n := config.Lookup("mailsetting starttls host-protocol")
	if n == nil || n.Kind != config.Table || n.Key.Name != "host" || n.Parent.Path != "mailsetting starttls" {
		t.Fatalf("host-protocol node %+v", n)
	}
	if config.Lookup("policy access-control receive").IntKey != true {
		t.Fatal("receive rules are numbered")
	}
	if config.Lookup("system nothing") != nil || config.Lookup("") != config.Root() {
		t.Fatal("Lookup")
	}
	seen := map[string]bool{}
	config.Root().Walk(func(n *config.Node) {
		if seen[n.Path] {
			t.Errorf("duplicate path %q", n.Path)
		}
		seen[n.Path] = true
		if config.Lookup(n.Path) != n {
			t.Errorf("Lookup(%q) does not find the node", n.Path)
		}
		for _, a := range n.Attrs {
			if a.Help == "" {
				t.Errorf("%s %s has no help", n.Path, a.Name)
			}
			if a.Syntax() == "" {
				t.Errorf("%s %s has no syntax", n.Path, a.Name)
			}
			if a.Type == config.TRef && config.Lookup(a.Ref) == nil {
				t.Errorf("%s %s refers to unknown table %q", n.Path, a.Name, a.Ref)
			}
		}
	})
	if !seen["system global"] || !seen["policy access-control delivery"] {
		t.Fatal("Walk misses nodes")
	}
	if got := config.Lookup("system global").Attr("admin-idle-timeout").Syntax(); got != "<integer 1-480>" {
		t.Fatalf("syntax %q", got)
	}
}

func TestHasEntryAndKeys(t *testing.T) {
	c := richConfig(t)
	if !config.HasEntry(c, "profile tls", "strict") || config.HasEntry(c, "profile tls", "nope") || config.HasEntry(c, "system global", "x") || config.HasEntry(c, "nothing", "x") {
		t.Fatal("HasEntry")
	}
	n := config.Lookup("policy access-control receive")
	if got := config.Keys(config.TableValue(c, n), n); !reflect.DeepEqual(got, []string{"1", "2", "3"}) {
		t.Fatalf("Keys %v", got)
	}
	// Clone is deep: changing the copy leaves the original alone.
	cl := c.Clone()
	cl.Mailsetting.StartTLS.HostProtocol[0].SSLVersions[0] = "tls1_0"
	cl.System.Admin[0].Name = "x"
	if c.Mailsetting.StartTLS.HostProtocol[0].SSLVersions[0] != "tls1_3" || c.System.Admin[0].Name != "admin" {
		t.Fatal("Clone shares memory")
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ text, want string }{
		{"config system global\nset hostname x\n", "missing end"},
		{"config system global\nset hostname \"x\n", "unterminated quote"},
		{"config system global\nabort\n", "abort in a configuration text"},
		{"config system global\nset nothing 1\nend\n", "command 2 (set nothing 1)"},
		{"edit 1\n", "command parse error before 'edit'"},
	}
	for _, tc := range cases {
		_, err := config.Parse(tc.text, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.text, err, tc.want)
		}
	}
	// A text may name an entry before the block that creates it, and
	// comments and blank lines are ignored.
	c := mustParse(t, "#config-version=mailgate-dev:format=2\n\nconfig policy access-control receive\n    edit 1\n        set tls-profile later\n    next\nend\n# trailing\n", nil)
	if c.Policy.AccessControl.Receive[0].TLSProfile != "later" {
		t.Fatal("deferred reference lost")
	}
}
