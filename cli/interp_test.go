package cli

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailgate/admin"
	"mailgate/admin/admintest"
	"mailgate/cert"
	"mailgate/config"
)

// scriptConsole feeds queued input lines and collects output.
type scriptConsole struct {
	out         bytes.Buffer
	in          []string
	interactive bool
}

func (c *scriptConsole) Write(p []byte) (int, error) { return c.out.Write(p) }

// ReadLine writes a non-empty prompt to the output, as both real consoles
// do, and returns the next queued line.
func (c *scriptConsole) ReadLine(prompt string) (string, error) {
	if prompt != "" {
		fmt.Fprintln(&c.out, prompt)
	}
	if len(c.in) == 0 {
		return "", io.EOF
	}
	l := c.in[0]
	c.in = c.in[1:]
	return l, nil
}
func (c *scriptConsole) Unread(l string)                       { c.in = append([]string{l}, c.in...) }
func (c *scriptConsole) ReadPassword(p string) (string, error) { return c.ReadLine(p) }
func (c *scriptConsole) Interactive() bool                     { return c.interactive }

func openService(t testing.TB, dir string) *admin.Service {
	t.Helper()
	svc, _ := admintest.Open(t, dir, nil)
	return svc
}

// run executes lines in one session and returns the output; it fails the
// test when a line's error state differs from wantErr.
func run(t *testing.T, s *Session, con *scriptConsole, lines ...string) string {
	t.Helper()
	con.out.Reset()
	for _, l := range lines {
		if err := s.Run(l, con); err != nil && !errors.Is(err, ErrCommand) {
			t.Fatalf("%q: unexpected error type %v", l, err)
		}
	}
	return con.out.String()
}

func mustRun(t *testing.T, s *Session, con *scriptConsole, lines ...string) string {
	t.Helper()
	con.out.Reset()
	for _, l := range lines {
		if err := s.Run(l, con); err != nil {
			t.Fatalf("%q failed:\n%s", l, con.out.String())
		}
	}
	return con.out.String()
}

func TestTour(t *testing.T) {
	dir := t.TempDir()
	svc := openService(t, dir)
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	mustRun(t, s, con,
		"conf sys glo", "set host mg1", "set local-domain-name example.com", "end",
		"config domain", "edit example.com", "set smtp-server 192.0.2.25", "next", "end",
		"config profile tls", "edit Angou", "set level encrypt", "set action tempfail",
		"set check-encryption-strength enable", "set encryption-strength 256", "next", "end",
		"config policy access-control receive", "edit 1", "set recipient-pattern *@example.com",
		"set tls-profile Angou", "set action relay", "next", "end")
	if p := s.Prompt(); p != "mg1 # " {
		t.Fatalf("prompt %q", p)
	}
	full := mustRun(t, s, con, "show full-configuration")
	for _, want := range []string{`set hostname "mg1"`, `edit "example.com"`, `set smtp-server "192.0.2.25"`,
		`set tls-profile "Angou"`, "set action relay", `set recipient-pattern "*@example.com"`, "set level encrypt",
		"set private-key ENC "} {
		if !strings.Contains(full, want) {
			t.Errorf("show full-configuration lacks %q", want)
		}
	}
	// The committed configuration renders as show full-configuration
	// printed it (TestREADMEWalkthroughWithOpenSSH restarts the process and
	// compares the text).
	c, _ := svc.Config()
	if got := config.Render(c, true); got != full {
		t.Fatalf("rendered configuration differs from show full-configuration")
	}
	revs, _ := svc.Revisions()
	if len(revs) < 5 {
		t.Fatalf("want a revision per committed block, got %d", len(revs))
	}
}

// Renaming the appliance re-issues the Factory certificate for the new
// names in the same revision; the listeners' store serves it at once.
func TestFactoryCertificateFollowsNames(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	served := func() *x509.Certificate {
		t.Helper()
		c, err := svc.Certificates().Get().Lookup("")
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	if leaf := served(); leaf.Subject.CommonName != "mailgate" {
		t.Fatalf("first-boot Factory CN %q", leaf.Subject.CommonName)
	}
	mustRun(t, s, con, "config system global", "set hostname mg1", "set local-domain-name example.com", "end")
	leaf := served()
	if leaf.Subject.CommonName != "mg1" || !slices.Contains(leaf.DNSNames, "mg1.example.com") {
		t.Fatalf("after the rename: CN %q, names %q", leaf.Subject.CommonName, leaf.DNSNames)
	}
	fp, _ := cert.Fingerprint(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	if out := mustRun(t, s, con, "get system status"); !strings.Contains(out, fp) {
		t.Fatalf("get system status does not show the served Factory certificate %s:\n%s", fp, out)
	}
	revs, _ := svc.Revisions()
	if got := revs[0].Comment; !strings.Contains(got, "system global") || !strings.Contains(got, "system certificate local") {
		t.Fatalf("revision comment %q: the rename and the certificate are one change", got)
	}

	// A certificate the admin issued as Factory stays as it is.
	mustRun(t, s, con, "execute certificate local generate Factory mail.example.com")
	mustRun(t, s, con, "config system global", "set hostname mg2", "end")
	if leaf := served(); leaf.Subject.CommonName != "mail.example.com" {
		t.Fatalf("admin's certificate replaced: CN %q", leaf.Subject.CommonName)
	}
}

func TestErrorsAreFortiOSLike(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	cases := []struct {
		lines []string
		want  string
	}{
		{[]string{"frobnicate"}, "command parse error before 'frobnicate'\nCommand fail. Return code -61"},
		{[]string{"config system global", "set admin-idle-timeout 999"}, "admin-idle-timeout: 999 is out of range 1-480\nvalue parse error before '999'\nCommand fail. Return code -651"},
		{[]string{"set operation-mode xyz"}, "value parse error before 'xyz'"},
		{[]string{"set nosuch 1"}, "command parse error before 'nosuch'"},
		{[]string{"abort", "config policy access-control receive", "edit 1", "set tls-profile missing"}, "entry not found in datasource profile tls\nvalue parse error before 'missing'"},
		{[]string{"abort", "config domain", "delete nosuch"}, "entry not found"},
		{[]string{"abort", "show system nosuch"}, "command parse error before 'nosuch'"},
		{[]string{"execute frob"}, "command parse error before 'frob'"},
		{[]string{"execute config diff 9999"}, "revision 9999 not found"},
	}
	for _, tc := range cases {
		out := run(t, s, con, tc.lines...)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%v: output\n%s\nlacks\n%s", tc.lines, out, tc.want)
		}
	}
}

func TestBlockIsAtomicAndAbortable(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	mustRun(t, s, con, "config system global", "set hostname half")
	if c, _ := svc.Config(); c.System.Global.Hostname != "mailgate" {
		t.Fatal("a change inside an open block is already committed")
	}
	if p := s.Prompt(); p != "mailgate (global) # " {
		t.Fatalf("prompt %q", p)
	}
	mustRun(t, s, con, "abort")
	if c, _ := svc.Config(); c.System.Global.Hostname != "mailgate" {
		t.Fatal("abort committed")
	}
	// Another session commits in between: both changes survive.
	other := NewSession(svc, "admin", false)
	mustRun(t, s, con, "config system global", "set hostname one")
	mustRun(t, other, &scriptConsole{}, "config system dns", "set primary 192.0.2.53", "end")
	mustRun(t, s, con, "end")
	c, _ := svc.Config()
	if c.System.Global.Hostname != "one" || c.System.DNS.Primary != "192.0.2.53" {
		t.Fatalf("lost a concurrent change: %q %q", c.System.Global.Hostname, c.System.DNS.Primary)
	}
}

func TestInvalidBlockStaysOpenInteractively(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	out := run(t, s, con, "config domain", "edit example.org", "end")
	if !strings.Contains(out, "relay-type host needs smtp-server") {
		t.Fatalf("no validation message:\n%s", out)
	}
	if !s.editing() {
		t.Fatal("the block was dropped instead of reopened")
	}
	if p := s.Prompt(); p != "mailgate (example.org) # " {
		t.Fatalf("reopened at %q", p)
	}
	mustRun(t, s, con, "set smtp-server mail.example.org", "end")
	if c, _ := svc.Config(); len(c.Domain) != 1 {
		t.Fatal("fixed block not committed")
	}
}

func TestOperationModeSwitchAsks(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	mustRun(t, s, con, "config domain", "edit example.com", "set smtp-server 192.0.2.25", "end")
	con.in = []string{"n"}
	out := mustRun(t, s, con, "config system global", "set operation-mode server", "end")
	if !strings.Contains(out, "Do you want to continue? (y/n)") || !strings.Contains(out, "reset the configuration to factory defaults") {
		t.Fatalf("no confirmation:\n%s", out)
	}
	if c, _ := svc.Config(); c.System.Global.OperationMode != "gateway" {
		t.Fatal("mode switched on 'n'")
	}
	con.in = []string{"y"}
	mustRun(t, s, con, "config system global", "set operation-mode server", "end")
	c, _ := svc.Config()
	if c.System.Global.OperationMode != "server" || len(c.Domain) != 0 || len(c.System.Admin) != 1 {
		t.Fatalf("mode switch: mode %s, %d domains, %d admins", c.System.Global.OperationMode, len(c.Domain), len(c.System.Admin))
	}
}

// In a script (no PTY) the line after a command that asks is its answer.
// A line that is not y or n is not taken as "no": it is put back and run
// as the next command, and the command that asked fails, so the script's
// exit status says so.
func TestConfirmInScript(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	// The plain console of an SSH session without a PTY, reading the
	// script as runPlain does: commands and answers come from one input.
	var buf bytes.Buffer
	script := "config system global\nset operation-mode server\nend\nconfig system dns\nset primary 192.0.2.53\nend\n"
	con := &sshPlain{out: &buf, sc: bufio.NewScanner(strings.NewReader(script))}
	var failed []string
	for {
		l, err := con.ReadLine("")
		if err != nil {
			break
		}
		if s.Run(l, con) != nil {
			failed = append(failed, l)
		}
	}
	out := buf.String()
	if len(failed) != 1 || failed[0] != "end" {
		t.Fatalf("failed commands %q, want only the first end:\n%s", failed, out)
	}
	if !strings.Contains(out, "Do you want to continue? (y/n)") || !strings.Contains(out, "command parse error before 'config system dns'") {
		t.Fatalf("output:\n%s", out)
	}
	c, _ := svc.Config()
	if c.System.Global.OperationMode != "gateway" {
		t.Fatalf("mode %s: a non-answer switched it", c.System.Global.OperationMode)
	}
	if c.System.DNS.Primary != "192.0.2.53" {
		t.Fatalf("dns %q: the line after the question was lost", c.System.DNS.Primary)
	}

	// An explicit answer on the next line is taken.
	answer := &scriptConsole{in: []string{"n"}}
	mustRun(t, s, answer, "execute factoryreset")
	if !strings.Contains(answer.out.String(), "Do you want to continue? (y/n)") {
		t.Fatalf("factoryreset did not ask:\n%s", answer.out.String())
	}
	if c, _ := svc.Config(); c.System.DNS.Primary != "192.0.2.53" {
		t.Fatal("factoryreset done on 'n'")
	}
}

func TestBackupRestoreRevert(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	mustRun(t, s, con, "config system global", "set hostname before", "end")
	backup := mustRun(t, s, con, "execute backup config")
	if !strings.HasPrefix(backup, "#config-version=mailgate-") {
		t.Fatalf("backup header: %q", backup[:40])
	}
	mustRun(t, s, con, "config system global", "set hostname after", "end",
		"config domain", "edit example.net", "set smtp-server 192.0.2.9", "end")
	// Piped restore: the header line makes the rest one replacement.
	lines := strings.Split(strings.TrimSuffix(backup, "\n"), "\n")
	plain := &scriptConsole{in: lines[1:]}
	if err := s.Run(lines[0], plain); err != nil {
		t.Fatalf("restore: %s", plain.out.String())
	}
	c, _ := svc.Config()
	if c.System.Global.Hostname != "before" || len(c.Domain) != 0 {
		t.Fatalf("restore gave hostname %q, %d domains", c.System.Global.Hostname, len(c.Domain))
	}
	if got := mustRun(t, s, con, "show full-configuration"); !strings.HasSuffix(backup, "\n"+got) {
		t.Fatal("restored configuration does not render as the backup did")
	}
	// Revert to the revision with "after".
	revs, _ := svc.Revisions()
	var afterID string
	for _, r := range revs {
		full, _ := svc.Revision(r.ID)
		if strings.Contains(full.Text, `"example.net"`) {
			afterID = strconv.FormatUint(r.ID, 10)
			break
		}
	}
	con.in = []string{"y"}
	mustRun(t, s, con, "execute config revert "+afterID)
	if c, _ := svc.Config(); c.System.Global.Hostname != "after" || len(c.Domain) != 1 {
		t.Fatal("revert did not bring back the revision")
	}
	if out := mustRun(t, s, con, "execute config list"); !strings.Contains(out, "revert to revision "+afterID) {
		t.Fatalf("list:\n%s", out)
	}
}

// execute restore config takes the configuration pasted after it, up to a
// line with a single '.', and asks before it replaces anything.
func TestRestorePasted(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	mustRun(t, s, con, "config system global", "set hostname pasted", "end")
	saved := mustRun(t, s, con, "show full-configuration")
	mustRun(t, s, con, "config system global", "set hostname other", "end",
		"config domain", "edit example.net", "set smtp-server 192.0.2.9", "end")
	changed := mustRun(t, s, con, "show full-configuration")
	paste := strings.Split(strings.TrimSuffix(saved, "\n"), "\n")

	// Answered no: nothing changes.
	con.in = append(append([]string{}, paste...), ".", "n")
	out := mustRun(t, s, con, "execute restore config")
	if !strings.Contains(out, "Paste the configuration") || !strings.Contains(out, "Do you want to continue? (y/n)") {
		t.Fatalf("restore did not prompt:\n%s", out)
	}
	if got := mustRun(t, s, con, "show full-configuration"); got != changed {
		t.Fatal("restore answered 'n' changed the configuration")
	}

	// Text that does not parse is refused before the question.
	con.in = []string{"config system global", "set hostname", "end", ".", "y"}
	if out := run(t, s, con, "execute restore config"); !strings.Contains(out, "Command fail") {
		t.Fatalf("bad paste accepted:\n%s", out)
	}
	if got := mustRun(t, s, con, "show full-configuration"); got != changed {
		t.Fatal("a refused restore changed the configuration")
	}

	// Answered yes: the pasted text is the configuration, byte for byte.
	con.in = append(append([]string{}, paste...), ".", "y")
	if out := mustRun(t, s, con, "execute restore config"); !strings.Contains(out, "Configuration restored.") {
		t.Fatalf("restore:\n%s", out)
	}
	if got := mustRun(t, s, con, "show full-configuration"); got != saved {
		t.Fatalf("restored configuration renders differently:\n%s", got)
	}
}

func TestReadOnlyAdmin(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "viewer", true)
	con := &scriptConsole{}
	out := run(t, s, con, "config system global", "end")
	if !strings.Contains(out, "permission denied") || !strings.Contains(out, "nothing of the block was committed") {
		t.Fatalf("read-only admin could configure:\n%s", out)
	}
	out = run(t, s, con, "execute factoryreset")
	if !strings.Contains(out, "permission denied") {
		t.Fatalf("read-only admin could reset:\n%s", out)
	}
	mustRun(t, s, con, "show", "get system status", "execute backup config")
}

func TestHelpAndCompletion(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	if h := s.Help(""); !strings.Contains(h, "config") || !strings.Contains(h, "execute") {
		t.Fatalf("top help:\n%s", h)
	}
	if h := s.Help("config sys"); !strings.Contains(h, "system") {
		t.Fatalf("path help:\n%s", h)
	}
	if h := s.Help("config system "); !strings.Contains(h, "global") || !strings.Contains(h, "certificate") {
		t.Fatalf("path help:\n%s", h)
	}
	mustRun(t, s, con, "config system global")
	if h := s.Help("set "); !strings.Contains(h, "admin-idle-timeout") || !strings.Contains(h, "<integer 1-480>") {
		t.Fatalf("set help:\n%s", h)
	}
	if h := s.Help("set operation-mode "); !strings.Contains(h, "transparent") || !strings.Contains(h, "current: gateway") {
		t.Fatalf("value help:\n%s", h)
	}
	if l, _ := s.Complete("set host"); l != "set hostname " {
		t.Fatalf("completion %q", l)
	}
	if l, c := s.Complete("set s"); l != "set s" || len(c) < 2 {
		t.Fatalf("ambiguous completion %q %v", l, c)
	}
	if l, _ := s.Complete("set strong-crypto d"); l != "set strong-crypto disable " {
		t.Fatalf("value completion %q", l)
	}
	mustRun(t, s, con, "abort")
	if l, _ := s.Complete("exe back"); l != "exe backup " {
		t.Fatalf("execute completion %q", l)
	}
}

func TestMultiLineCertificateImport(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	mustRun(t, s, con, "execute certificate local generate web mail.example.com mail.example.com")
	c, _ := svc.Config()
	var certPEM string
	for _, lc := range c.System.Certificate.Local {
		if lc.Name == "web" {
			certPEM = lc.Certificate
		}
	}
	if certPEM == "" {
		t.Fatal("generated certificate missing")
	}
	out := mustRun(t, s, con, "diagnose certificate local web")
	if !strings.Contains(out, "mail.example.com") {
		t.Fatalf("describe:\n%s", out)
	}
	// A certificate pasted as a quoted multi-line value of `set certificate`
	// (the form show full-configuration prints) is read across lines.
	first := strings.SplitN(certPEM, "\n", 2)
	con.in = strings.Split(first[1]+`"`, "\n")
	mustRun(t, s, con, "config system certificate ca", "edit copy", `set certificate "`+first[0], "end")
	c, _ = svc.Config()
	if len(c.System.Certificate.CA) != 1 || c.System.Certificate.CA[0].Certificate != certPEM {
		t.Fatal("multi-line value not read back exactly")
	}
}

func TestGetShowsAttributeValues(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	out := mustRun(t, s, con, "get system global")
	for _, want := range []string{"hostname                  : mailgate", "strong-crypto             : enable", "ssl-versions              : tls1_2 tls1_3", "admin-lockout-threshold   : 4", "pre-login-banner          : \n"} {
		if !strings.Contains(out, want) {
			t.Errorf("get system global lacks %q:\n%s", want, out)
		}
	}
	if out = mustRun(t, s, con, "get system admin"); out != "== [ \"admin\" ]\n" {
		t.Errorf("get system admin: %q", out)
	}
	mustRun(t, s, con, "config system admin", "edit admin", "set password Str0ng#Secret")
	if out = mustRun(t, s, con, "get"); !strings.Contains(out, "password       : *\n") || strings.Contains(out, "$2") ||
		!strings.Contains(out, "trusted-hosts  : 0.0.0.0/0 ::/0\n") {
		t.Errorf("get inside an entry shows the password hash:\n%s", out)
	}
	mustRun(t, s, con, "abort")
	if out = mustRun(t, s, con, "get system status"); !strings.Contains(out, "Factory certificate SHA-256") {
		t.Errorf("status:\n%s", out)
	}
}

func TestCACertificateImportReplacesByName(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	con := &scriptConsole{interactive: true}
	id := svc.Identity()
	for i := 0; i < 2; i++ {
		pemText := string(id.CACertPEM)
		if i == 1 {
			pemText = string(id.FactoryCertPEM) // a different certificate under the same name
		}
		con.in = append(strings.Split(strings.TrimSpace(pemText), "\n"), ".")
		mustRun(t, s, con, "execute certificate ca import partner")
	}
	c, _ := svc.Config()
	if len(c.System.Certificate.CA) != 1 || c.System.Certificate.CA[0].Certificate != strings.TrimSpace(string(id.FactoryCertPEM)) {
		t.Fatalf("CA import did not replace the entry by name: %d entries", len(c.System.Certificate.CA))
	}
}

// script runs lines as a piped script does and returns the output and the
// lines that failed.
func script(s *Session, lines ...string) (string, []string) {
	con := &scriptConsole{}
	var failed []string
	for _, l := range lines {
		if s.Run(l, con) != nil {
			failed = append(failed, l)
		}
	}
	return con.out.String(), failed
}

func TestScriptBlockWithFailureIsDropped(t *testing.T) {
	svc := openService(t, t.TempDir())
	s := NewSession(svc, "admin", false)
	const dropped = "1 command(s) failed in this config block; nothing of the block was committed."

	// A refused line in a receive rule: nothing of that block, the next
	// block from a clean state.
	out, failed := script(s, "config domain", "edit example.com", "set smtp-server 192.0.2.25", "next", "end",
		"config policy access-control receive", "edit 1", "set recipient-pattern *", "set authenticated yse", "set action relay", "next", "end",
		"config system dns", "set primary 192.0.2.53", "end")
	if !slices.Equal(failed, []string{"set authenticated yse", "end"}) || !strings.Contains(out, dropped) {
		t.Fatalf("failed %q:\n%s", failed, out)
	}
	c, _ := svc.Config()
	if len(c.Policy.AccessControl.Receive) != 0 || c.System.DNS.Primary != "192.0.2.53" || len(c.Domain) != 1 {
		t.Fatalf("receive rules %+v, dns %q, domains %d", c.Policy.AccessControl.Receive, c.System.DNS.Primary, len(c.Domain))
	}

	// A nested config that fails: its lines are not run on the parent.
	out, failed = script(s, "config mailsetting starttls", "set helo-name mx.example.com", "config host-protcol", "edit mx.example.net",
		"set fallback next-retry", "config nested", "set x", "end", "next", "end", "set exclude-hosts example.net", "end")
	if !slices.Equal(failed, []string{"config host-protcol", "end"}) || !strings.Contains(out, "skipped") || !strings.Contains(out, dropped) {
		t.Fatalf("failed %q:\n%s", failed, out)
	}
	if c, _ := svc.Config(); c.Mailsetting.StartTLS.Fallback != "plain" || c.Mailsetting.StartTLS.HeloName != "" || len(c.Mailsetting.StartTLS.ExcludeHosts) != 0 {
		t.Fatalf("starttls changed: %+v", c.Mailsetting.StartTLS)
	}

	// The same in a section that has no nested blocks at all.
	out, failed = script(s, "config system dns", "config mail-queue", "edit default", "set primary 192.0.2.1", "next", "end",
		"set primary 192.0.2.2", "end")
	if !slices.Equal(failed, []string{"config mail-queue", "end"}) || !strings.Contains(out, dropped) {
		t.Fatalf("failed %q:\n%s", failed, out)
	}
	if c, _ := svc.Config(); c.System.DNS.Primary != "192.0.2.53" {
		t.Fatalf("dns primary %q", c.System.DNS.Primary)
	}

	// An outermost config that fails: its block is passed over to its end.
	out, failed = script(s, "config sytem dns", "set primary 192.0.2.99", "end", "config system global", "set hostname after", "end")
	if !slices.Equal(failed, []string{"config sytem dns", "end"}) || !strings.Contains(out, dropped) {
		t.Fatalf("failed %q:\n%s", failed, out)
	}
	if c, _ := svc.Config(); c.System.DNS.Primary != "192.0.2.53" || c.System.Global.Hostname != "after" {
		t.Fatalf("dns %q hostname %q", c.System.DNS.Primary, c.System.Global.Hostname)
	}

	// Several failures are counted; abort clears them.
	out, _ = script(s, "config system global", "set hostname", "set nosuch 1", "set timezone Europe/Berlin", "end")
	if !strings.Contains(out, "2 command(s) failed") {
		t.Fatalf("count:\n%s", out)
	}
	_, failed = script(s, "config system global", "set nosuch 1", "abort", "config system global", "set timezone Europe/Berlin", "end")
	if c, _ := svc.Config(); len(failed) != 1 || c.System.Global.Timezone != "Europe/Berlin" {
		t.Fatalf("after abort: failed %q, timezone %q", failed, c.System.Global.Timezone)
	}

	// Interactively a refused line leaves the rest of the block to commit.
	con := &scriptConsole{interactive: true}
	run(t, s, con, "config system global", "set hostname bad_name!", "set hostname inter", "end")
	if c, _ := svc.Config(); c.System.Global.Hostname != "inter" {
		t.Fatalf("interactive block: hostname %q\n%s", c.System.Global.Hostname, con.out.String())
	}
}
