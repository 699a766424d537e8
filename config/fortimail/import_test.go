package fortimail_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"mailgate/admin"
	"mailgate/admin/admintest"
	"mailgate/config"
	"mailgate/config/fortimail"
)

const header = "#config-version=FEVM64-7.04-FW-build0310-230929:opmode=0:vdom=0:user=admin\n"

// device is an appliance whose admin has a password and a hostname.
func device(t *testing.T) (*admin.Service, fortimail.Env) {
	t.Helper()
	svc, _ := admintest.Open(t, t.TempDir(), nil)
	if err := svc.SetPassword("admin", "admin", "Gate#Keeper2026"); err != nil {
		t.Fatal(err)
	}
	err := svc.Update("admin", "", func(c *config.Config) error {
		c.System.Global.Hostname = "mg1"
		c.Domain = append(c.Domain, config.Domain{Name: "old.example"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, fortimail.Env{Config: svc.Env(), Factory: svc.Factory}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineOf is the number of the first line of text that holds s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("no line holds %q", s)
	return 0
}

func has(items []fortimail.Item, line int, reason string) bool {
	return slices.ContainsFunc(items, func(it fortimail.Item) bool { return it.Line == line && strings.Contains(it.Reason, reason) })
}

func TestIsBackup(t *testing.T) {
	for text, want := range map[string]bool{
		header + "config system global\nend\n":    true,
		"\n" + header:                             true,
		"#config-version=FE-anything\n":           true,
		"#config-version=mailgate-1.0:format=2\n": false,
		"config system global\nend\n":             false,
		"#config-version=FGVM64-7.2\n":            false,
	} {
		if got := fortimail.IsBackup(text); got != want {
			t.Errorf("IsBackup(%q) = %v", text, got)
		}
	}
	if got := fortimail.Firmware(header); got != "FEVM64-7.04-FW-build0310-230929" {
		t.Errorf("Firmware = %q", got)
	}
}

// A small FortiMail backup: its header, an encrypted password, a block
// mailgate does not have, a value it does not take, a receive rule with a
// condition it does not have, and administrators.
func TestImportBackup(t *testing.T) {
	svc, env := device(t)
	base, _ := svc.Config()
	before := config.Render(base, true)
	text := read(t, "testdata/backup.conf")
	c, rep, err := fortimail.Import(text, base, env)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.String())
	}
	t.Log(rep.String())
	if config.Render(base, true) != before {
		t.Fatal("Import changed base")
	}
	if rep.Firmware != "FEVM64-7.04-FW-build0310-230929" || rep.Mapped == 0 {
		t.Errorf("report %+v", rep)
	}
	antispam := lineOf(t, text, "config antispam settings")
	if !slices.ContainsFunc(rep.NotSupported, func(it fortimail.Item) bool {
		return it.Line == antispam && it.End == antispam+3 && strings.Contains(it.Reason, "no such block")
	}) {
		t.Errorf("the antispam block is not reported once with its lines: %v", rep.NotSupported)
	}
	for _, it := range rep.NotSupported {
		if it.Line > antispam && it.Line <= antispam+3 {
			t.Errorf("a line of an unsupported block is reported on its own: %v", it)
		}
	}
	if !has(rep.UnknownValues, lineOf(t, text, "set level ultra"), "expected one of") {
		t.Errorf("unknown value not reported: %v", rep.UnknownValues)
	}
	if !has(rep.NotSupported, lineOf(t, text, "sender-geoip"), "has no such setting") {
		t.Errorf("unsupported condition not reported: %v", rep.NotSupported)
	}
	if !has(rep.Dropped, lineOf(t, text, "edit 2"), "dropped whole") {
		t.Errorf("receive rule 2 not dropped: %v", rep.Dropped)
	}
	if !has(rep.SetAgain, lineOf(t, text, "AK1b3Bz"), `administrator "ops" is not created`) {
		t.Errorf("ops not listed as set again: %v", rep.SetAgain)
	}
	if !has(rep.SetAgain, lineOf(t, text, "auth-password ENC"), "set it again") {
		t.Errorf("relay password not listed as set again: %v", rep.SetAgain)
	}
	if !has(rep.Dropped, lineOf(t, text, `edit "admin"`), "of this appliance is kept") {
		t.Errorf("the backup's admin entry is not reported as kept: %v", rep.Dropped)
	}
	out := rep.String()
	if strings.Contains(out, "AK1") || strings.Contains(out, "Wm9y") {
		t.Errorf("the report shows an encrypted value:\n%s", out)
	}
	if !strings.HasPrefix(out, "FortiMail backup FEVM64-7.04-FW-build0310-230929: ") {
		t.Errorf("summary:\n%s", out)
	}

	// The administrators and certificates of the appliance, as they were.
	if !reflect.DeepEqual(c.System.Admin, base.System.Admin) {
		t.Errorf("admins changed: %+v", c.System.Admin)
	}
	if !slices.Equal(c.System.Certificate.Local, base.System.Certificate.Local) || c.System.Global.DefaultCertificate != "Factory" {
		t.Errorf("certificates changed")
	}
	g := c.System.Global
	if g.Hostname != "mg1" || g.LocalDomainName != "" || g.AdminIdleTimeout != 15 {
		t.Errorf("global %+v", g)
	}
	// Started from the factory configuration: the old domain is gone.
	var domains []string
	for _, d := range c.Domain {
		domains = append(domains, d.Name)
	}
	if !slices.Equal(domains, []string{"example.com"}) {
		t.Errorf("domains %v", domains)
	}
	var rules []int
	for _, r := range c.Policy.AccessControl.Receive {
		rules = append(rules, r.ID)
	}
	if !slices.Equal(rules, []int{1, 3}) {
		t.Errorf("receive rules %v", rules)
	}
	if r := c.Mailsetting.RelayServer; len(r) != 1 || r[0].Server != "smarthost.example.net" || r[0].AuthPassword != "" {
		t.Errorf("relay host %+v", r)
	}
	if c.System.DNS.Primary != "192.0.2.53" {
		t.Errorf("dns %+v", c.System.DNS)
	}
	if err := config.Validate(c, svc.Env()); err != nil {
		t.Fatal(err)
	}
}

// The FortiMail-syntax reference configuration, with a header: what
// mailgate does not have is reported line by line, a nested block it does
// not have is skipped to its end, and the result is refused with the
// reasons Validate gives.
func TestImportReferenceConfiguration(t *testing.T) {
	svc, env := device(t)
	base, _ := svc.Config()
	text := header + read(t, "../testdata/fortimail-gateway.conf")
	c, rep, err := fortimail.Import(text, base, env)
	if err == nil || c != nil {
		t.Fatalf("the reference configuration validates as it is:\n%s", rep.String())
	}
	for _, want := range []string{`domain "example.com": relay-type host needs smtp-server`, `domain "example.org": relay-type host needs smtp-server`} {
		if !slices.ContainsFunc(rep.Invalid, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("invalid reasons lack %q: %v", want, rep.Invalid)
		}
	}
	if !strings.Contains(rep.String(), "not valid; nothing can be applied") {
		t.Errorf("report:\n%s", rep.String())
	}
	if len(rep.NotSupported) != 0 {
		t.Errorf("the reference configuration has unsupported lines: %v", rep.NotSupported)
	}
	for _, line := range []string{"set mtu 1500", `set interface "port1"`, "set deadmail-expiry 7"} {
		if has(rep.NotSupported, lineOf(t, text, line), "") {
			t.Errorf("%s reported as not supported: %v", line, rep.NotSupported)
		}
	}

	// With what Validate asks for, it imports, the nested mail-queue
	// block included, and the queue settings FortiMail also lists directly
	// in system mailserver go to its default queue.
	text += `config system mailserver
    set queue-retry 30
    set queue-warning 300
end
config domain
    edit "example.com"
        set smtp-server 192.0.2.25
    next
    edit "example.org"
        set smtp-server 192.0.2.26
    next
end
`
	c, rep, err = fortimail.Import(text, base, env)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.String())
	}
	if m := c.System.Mailserver; len(m.MailQueue) != 1 || m.MailQueue[0] != (config.MailQueue{Name: "default", Timeout: 120, DSNTimeout: 5, Warning: 4, Retry: 30}) ||
		m.DeadmailExpiry != 7 || m.SMTPMSAPort != 587 || m.RelayServerName != "isp-relay" {
		t.Errorf("mailserver %+v", m)
	}
	if !has(rep.UnknownValues, lineOf(t, text, "set queue-warning 300"), "") && !has(rep.NotSupported, lineOf(t, text, "set queue-warning 300"), "") {
		t.Errorf("queue-warning 300 (over its range) is not reported: %s", rep.String())
	}
	if i, r := c.System.Interface, c.System.Route; len(i) == 0 || i[0].MTU != 1500 || len(r) != 1 || r[0].Interface != "port1" {
		t.Errorf("interfaces %+v, routes %+v", i, r)
	}
	if g := c.System.Global; g.Hostname != "fml-gw01" || g.PortSSH != 22 {
		t.Errorf("global %+v", g)
	}
	if len(c.Policy.AccessControl.Receive) != 5 || len(c.Policy.AccessControl.Delivery) != 1 {
		t.Errorf("rules %+v", c.Policy.AccessControl)
	}
	// The appliance's administrator as it was, and the backup's mailops
	// (its password given in clear, strong enough) with its key and
	// trusted hosts.
	if a := c.System.Admin; len(a) != 2 || !reflect.DeepEqual(a[0], base.System.Admin[0]) || a[1].Name != "mailops" ||
		!reflect.DeepEqual(a[1].TrustedHosts, []string{"192.0.2.0/24"}) || len(a[1].SSHKeys) != 1 {
		t.Errorf("admins %+v", c.System.Admin)
	}
}

// A backup whose rules make an open relay is refused as a whole.
func TestImportOpenRelayRefused(t *testing.T) {
	svc, env := device(t)
	base, _ := svc.Config()
	text := header + "config policy access-control receive\n    edit 1\n        set action relay\n    next\nend\n"
	c, rep, err := fortimail.Import(text, base, env)
	if err == nil || c != nil || len(rep.Invalid) == 0 || !strings.Contains(strings.Join(rep.Invalid, "\n"), "open relay") {
		t.Fatalf("open relay imported: %v\n%s", err, rep.String())
	}
}

// Settings that belong to this appliance: the operation mode, and a
// default certificate the backup could not bring with its key.
func TestImportKeepsDeviceSettings(t *testing.T) {
	svc, env := device(t)
	base, _ := svc.Config()
	text := header + `config system certificate local
    edit "Factory"
        set private-key ENC QUJD
    next
    edit "mail"
        set certificate "-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----"
        set private-key ENC REVG
    next
end
config system admin
    edit "blank"
        set password "Str0ng#Secret1"
        unset password
    next
end
config system global
    set operation-mode server
    set default-certificate "mail"
    set hostname "fml2"
end
`
	c, rep, err := fortimail.Import(text, base, env)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.String())
	}
	if !has(rep.UnknownValues, lineOf(t, text, "operation-mode"), "switch the mode first") ||
		!has(rep.UnknownValues, lineOf(t, text, "default-certificate"), `default-certificate "Factory" is kept`) ||
		!has(rep.SetAgain, lineOf(t, text, "REVG"), `certificate "mail" is not imported`) ||
		!has(rep.Dropped, lineOf(t, text, `edit "Factory"`), "Factory certificate is kept") ||
		!has(rep.SetAgain, lineOf(t, text, `edit "blank"`), `administrator "blank" is not created: it has no password`) {
		t.Errorf("report:\n%s", rep.String())
	}
	g := c.System.Global
	if g.OperationMode != "gateway" || g.DefaultCertificate != "Factory" || g.Hostname != "fml2" {
		t.Errorf("global %+v", g)
	}
	if !slices.Equal(c.System.Certificate.Local, base.System.Certificate.Local) {
		t.Errorf("certificates %+v", c.System.Certificate.Local)
	}
	if !reflect.DeepEqual(c.System.Admin, base.System.Admin) {
		t.Errorf("admins %+v", c.System.Admin)
	}
}

func TestImportNotFortiMail(t *testing.T) {
	svc, env := device(t)
	base, _ := svc.Config()
	for _, text := range []string{"config system global\nend\n", "#config-version=mailgate-1:format=2\n"} {
		if _, _, err := fortimail.Import(text, base, env); err == nil {
			t.Errorf("%q imported", text)
		}
	}
	if _, _, err := fortimail.Import(header+"config system global\n    set hostname \"x\nend\n", base, env); err == nil {
		t.Error("unterminated quote imported")
	}
}
