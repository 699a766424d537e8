package main

import (
	"os"
	"strings"
	"testing"
)

// A FortiMail backup piped over OpenSSH is imported after its report and
// a y on the line after its ".": the imported names are in the
// configuration, the admin logs in with the same password and the
// Factory certificate is the same.
func TestImportFortiMailBackupOverOpenSSH(t *testing.T) {
	a := startFresh(t)
	raw, err := os.ReadFile("../../config/fortimail/testdata/backup.conf")
	if err != nil {
		t.Fatal(err)
	}
	backup := string(raw)
	status, code := a.ssh(newPassword, "", "admin@127.0.0.1", "get system status")
	if code != 0 || factoryLine(status) == "" {
		t.Fatalf("get system status: %d\n%s", code, status)
	}
	before, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration")

	// Answered n: the report, nothing changed.
	out, code := a.ssh(newPassword, backup+".\nn\n", "admin@127.0.0.1")
	if code != 0 || !strings.Contains(out, "Do you want to continue? (y/n)") || !strings.Contains(out, "Nothing was imported.") {
		t.Fatalf("import answered n: %d\n%s", code, out)
	}
	if now, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration"); now != before {
		t.Fatal("answered n, the configuration changed")
	}

	out, code = a.ssh(newPassword, backup+".\ny\n", "admin@127.0.0.1")
	if code != 0 {
		t.Fatalf("import: %d\n%s", code, out)
	}
	for _, want := range []string{
		"FortiMail backup FEVM64-7.04-FW-build0310-230929: ",
		"Not supported (skipped):", "config antispam settings: mailgate has no such block",
		"Unknown values (skipped):", "line 41: set level ultra",
		"Set again (secrets a backup cannot carry over):", `line 13: set password ENC …: administrator "ops" is not created`,
		"Dropped entries:", "policy access-control receive 2 dropped whole",
		"Configuration imported from the FortiMail backup.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}

	// The same password still logs in; the imported names are there.
	full, code := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration")
	if code != 0 {
		t.Fatalf("login after the import: %d\n%s", code, full)
	}
	for _, want := range []string{`edit "example.com"`, `set smtp-server "192.0.2.25"`, `edit "tls-secure"`, `set tls-profile "tls-secure"`,
		`set primary 192.0.2.53`, `edit "isp-relay"`, `set host-name "smarthost.example.net"`, "set admin-idle-timeout 15"} {
		if !strings.Contains(full, want) {
			t.Errorf("show full-configuration lacks %q", want)
		}
	}
	if strings.Contains(full, `edit "ops"`) || strings.Contains(full, `set sender-pattern "*@example.com"`) {
		t.Errorf("an entry that was not to be imported is there:\n%s", full)
	}
	after, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "get system status")
	if factoryLine(after) != factoryLine(status) {
		t.Fatalf("the Factory certificate changed:\n%s\n%s", status, after)
	}
	events, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "diagnose log event 50 FortiMail")
	if n := strings.Count(events, "configuration imported from a FortiMail backup"); n != 1 {
		t.Fatalf("event log has %d import lines:\n%s", n, events)
	}
}
