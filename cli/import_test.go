package cli

import (
	"bufio"
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"mailgate/eventlog"
)

func fortiMailBackup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../config/fortimail/testdata/backup.conf")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A FortiMail backup piped over SSH (its header line starts it) is
// imported after the report, once the next line after its "." answers y.
func TestImportFortiMailPiped(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	if err := svc.SetPassword("admin", "admin", "Gate#Keeper2026"); err != nil {
		t.Fatal(err)
	}
	before, rev := svc.Config()
	id, fp := svc.Identity(), svc.FactoryFingerprint()
	backup := fortiMailBackup(t)

	pipe := func(answer string) string {
		var buf bytes.Buffer
		con := &sshPlain{out: &buf, sc: bufio.NewScanner(strings.NewReader(backup + ".\n" + answer + "\n"))}
		for {
			l, err := con.ReadLine("")
			if err != nil {
				break
			}
			s.Run(l, con)
		}
		return buf.String()
	}

	out := pipe("n")
	for _, want := range []string{
		"FortiMail backup FEVM64-7.04-FW-build0310-230929: ", "Not supported (skipped):", "config antispam settings",
		"Unknown values (skipped):", "set level ultra", "Set again", `administrator "ops" is not created`,
		"Dropped entries:", "policy access-control receive 2 dropped whole", "Do you want to continue? (y/n)", "Nothing was imported.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, now := svc.Config(); now != rev {
		t.Fatal("answered n, the configuration changed")
	}

	out = pipe("y")
	if !strings.Contains(out, "Configuration imported from the FortiMail backup.") {
		t.Fatalf("output:\n%s", out)
	}
	c, _ := svc.Config()
	if len(c.Domain) != 1 || c.Domain[0].Name != "example.com" || len(c.Policy.AccessControl.Receive) != 2 {
		t.Fatalf("imported %+v %+v", c.Domain, c.Policy.AccessControl.Receive)
	}
	if !reflect.DeepEqual(c.System.Admin, before.System.Admin) {
		t.Fatalf("admins changed: %+v", c.System.Admin)
	}
	if svc.Identity() != id || svc.FactoryFingerprint() != fp {
		t.Fatal("the device identity changed")
	}
	svc.Log().Flush()
	evs, _ := svc.Log().Query(eventlog.Filter{Contains: "FortiMail"})
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "configuration imported from a FortiMail backup") {
		t.Fatalf("event log: %+v", evs)
	}
}

// execute restore config recognises a pasted FortiMail backup.
func TestImportFortiMailPasted(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	paste := strings.Split(strings.TrimSuffix(fortiMailBackup(t), "\n"), "\n")

	con.in = append(append([]string{}, paste...), ".", "n")
	out := mustRun(t, s, con, "execute restore config")
	if !strings.Contains(out, "Paste the configuration") || !strings.Contains(out, "line 13: set password ENC …") || !strings.Contains(out, "Nothing was imported.") {
		t.Fatalf("output:\n%s", out)
	}
	if c, _ := svc.Config(); len(c.Domain) != 0 {
		t.Fatal("answered n, imported")
	}
	con.in = append(append([]string{}, paste...), ".", "y")
	if out := mustRun(t, s, con, "execute restore config"); !strings.Contains(out, "Configuration imported") {
		t.Fatalf("output:\n%s", out)
	}
	if c, _ := svc.Config(); len(c.Domain) != 1 || c.System.DNS.Primary != "192.0.2.53" {
		t.Fatal("not imported")
	}

	// A backup whose result is not valid is refused before the question.
	con.in = []string{paste[0], "config policy access-control receive", "edit 1", "set action relay", "next", "end", ".", "y"}
	out = run(t, s, con, "execute restore config")
	if !strings.Contains(out, "not valid") || strings.Contains(out, "Do you want to continue") {
		t.Fatalf("output:\n%s", out)
	}
}
