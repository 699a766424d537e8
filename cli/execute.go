package cli

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mailgate/admin"
	"mailgate/cert"
	"mailgate/config"
	"mailgate/config/fortimail"
	"mailgate/eventlog"
)

// spec is one word of an `execute` or `diagnose` command.
type spec struct {
	name, help string
	args       string // syntax of the arguments, for '?'
	sub        []spec
	run        func(s *Session, con Console, args []config.Token) error
	writes     bool // changes the appliance: refused to read-only admins
}

var executeSpecs, diagnoseSpecs []spec

func init() {
	executeSpecs = []spec{
		{name: "backup", help: "Back up.", sub: []spec{
			{name: "config", help: "Print the full configuration with its version header.", run: (*Session).backup},
		}},
		{name: "restore", help: "Restore.", sub: []spec{
			{name: "config", help: "Replace the configuration with a pasted backup.", run: (*Session).restore, writes: true},
			{name: "image", help: "Upgrade the firmware from an upgrade file (A/B, falls back if the new version does not come up).", args: "<url>", run: (*Session).restoreImage, writes: true},
		}},
		{name: "config", help: "Configuration revisions.", sub: []spec{
			{name: "list", help: "List the kept revisions.", run: (*Session).revList},
			{name: "diff", help: "Show what a revision changed.", args: "<revision id>", run: (*Session).revDiff},
			{name: "revert", help: "Commit the configuration of an earlier revision again.", args: "<revision id>", run: (*Session).revRevert, writes: true},
		}},
		{name: "factoryreset", help: "Reset the configuration to factory defaults and reboot.", run: (*Session).factoryReset, writes: true},
		{name: "reboot", help: "Restart the appliance.", run: (*Session).reboot, writes: true},
		{name: "certificate", help: "Certificates.", sub: []spec{
			{name: "local", help: "Server certificates.", sub: []spec{
				{name: "generate", help: "Issue a certificate from the device CA.", args: "<name> <common-name> [<subject-alt-name>...]", run: (*Session).certGenerate, writes: true},
				{name: "import", help: "Import a pasted PEM certificate chain and private key.", args: "<name>", run: (*Session).certImport, writes: true},
				{name: "import-pkcs12", help: "Import a pasted base64 PKCS#12 file (asks its password).", args: "<name>", run: (*Session).certImportPKCS12, writes: true},
			}},
			{name: "ca", help: "Trusted CA certificates.", sub: []spec{
				{name: "import", help: "Import a pasted PEM CA certificate.", args: "<name>", run: (*Session).caImport, writes: true},
			}},
		}},
	}
	diagnoseSpecs = []spec{
		{name: "log", help: "Logs.", sub: []spec{
			{name: "event", help: "Show the newest event log records.", args: "[<count>] [<text>]", run: (*Session).eventLog},
			{name: "history", help: "Show the newest history records (one per message and recipient).", args: "[<count>] [<text>|disposition=<d>]", run: (*Session).historyLog},
		}},
		{name: "mailqueue", help: "The mail queue.", sub: []spec{
			{name: "list", help: "List queued messages with their recipients' state.", run: (*Session).queueList},
			{name: "view", help: "Print a queued message as stored (redirect to download it).", args: "<id>", run: (*Session).queueView},
			{name: "retry", help: "Attempt delivery now.", args: "<id>|all", run: (*Session).queueRetry, writes: true},
			{name: "delete", help: "Delete a message from the queue.", args: "<id>", run: (*Session).queueDelete, writes: true},
		}},
		{name: "system", help: "The system.", sub: []spec{
			{name: "transparent", help: "Transparent mode's connection pick-up: kernel features, rules, counters, sessions.", run: (*Session).transparentStatus},
		}},
		{name: "certificate", help: "Describe a certificate.", sub: []spec{
			{name: "local", help: "A server certificate.", args: "<name>", run: (*Session).certInfo},
			{name: "ca", help: "A CA certificate.", args: "<name>", run: (*Session).caInfo},
		}},
	}
}

func findSpec(specs []spec, word string) (spec, bool) {
	names := make([]string, len(specs))
	for i, sp := range specs {
		names[i] = sp.name
	}
	name, ok := matchOne(word, names)
	if !ok {
		return spec{}, false
	}
	for _, sp := range specs {
		if sp.name == name {
			return sp, true
		}
	}
	return spec{}, false
}

func (s *Session) execute(con Console, args []config.Token) error {
	return s.runSpec(con, executeSpecs, args)
}

func (s *Session) diagnose(con Console, args []config.Token) error {
	return s.runSpec(con, diagnoseSpecs, args)
}

func (s *Session) runSpec(con Console, specs []spec, args []config.Token) error {
	for i, a := range args {
		sp, ok := findSpec(specs, a.Text)
		if !ok {
			return s.fail(con, parseError(a.Text))
		}
		if sp.run != nil {
			if sp.writes && s.readOnly {
				return s.fail(con, &config.Error{Code: -37, Msg: "permission denied", Detail: "the read_only_prof access profile cannot run this command"})
			}
			if s.editing() {
				return s.fail(con, &config.Error{Code: config.CodeParse, Msg: "command parse error before 'execute'", Detail: "finish the configuration block first (end or abort)"})
			}
			return sp.run(s, con, args[i+1:])
		}
		specs = sp.sub
	}
	last := ""
	if len(args) > 0 {
		last = args[len(args)-1].Text
	}
	return s.fail(con, &config.Error{Code: config.CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", last), Detail: "incomplete command: add one of " + specNames(specs)})
}

func specNames(specs []spec) string {
	var n []string
	for _, sp := range specs {
		n = append(n, sp.name)
	}
	return strings.Join(n, ", ")
}

func (s *Session) usage(con Console, args []config.Token, want int, syntax string) error {
	if len(args) == want {
		return nil
	}
	tok := ""
	if len(args) > want {
		tok = args[want].Text
	}
	return s.fail(con, &config.Error{Code: config.CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", tok), Detail: "usage: " + syntax})
}

func (s *Session) backup(con Console, args []config.Token) error {
	if err := s.usage(con, args, 0, "execute backup config"); err != nil {
		return err
	}
	c, _ := s.svc.Config()
	fmt.Fprint(con, admin.BackupHeader(c, s.user)+config.Render(c, true))
	return nil
}

func (s *Session) restore(con Console, args []config.Token) error {
	if err := s.usage(con, args, 0, "execute restore config"); err != nil {
		return err
	}
	return s.restoreFrom(con, "", true)
}

// restoreFrom reads a whole configuration text (after first, already read)
// and commits it as the new configuration.
func (s *Session) restoreFrom(con Console, first string, ask bool) error {
	if s.readOnly {
		return s.fail(con, &config.Error{Code: -37, Msg: "permission denied"})
	}
	rest, err := readBlock(con, "the configuration")
	if err != nil {
		return s.fail(con, err)
	}
	text := rest
	if first != "" {
		text = first + "\n" + rest
	}
	if fortimail.IsBackup(text) {
		return s.importFortiMail(con, text)
	}
	c, err := config.Parse(text, s.svc.Env())
	if err != nil {
		return s.fail(con, err)
	}
	if err := config.Validate(c, s.svc.Env()); err != nil {
		return s.fail(con, err)
	}
	if ask {
		if ok, err := s.confirm(con, "This operation will replace the current configuration."); !ok {
			return err
		}
	}
	if err := s.svc.Replace(s.user, "configuration restored", c); err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintln(con, "Configuration restored.")
	return nil
}

// importFortiMail imports a FortiMail backup as a migration: it prints
// the report of every line mailgate could not take and, once the admin
// confirms, replaces the configuration with the result.
func (s *Session) importFortiMail(con Console, text string) error {
	base, rev := s.svc.Config()
	c, rep, err := fortimail.Import(text, base, fortimail.Env{Config: s.svc.Env(), Factory: s.svc.Factory})
	fmt.Fprint(con, rep.String())
	if err != nil {
		if len(rep.Invalid) > 0 {
			return s.fail(con, &config.Error{Code: config.CodeInvalid, Msg: "the imported configuration is not valid; nothing was changed"})
		}
		return s.fail(con, err)
	}
	ok, err := s.confirm(con, "This operation will replace the current configuration with the imported one; this appliance's administrators and certificates are kept.")
	if !ok {
		if err == nil {
			fmt.Fprintln(con, "Nothing was imported.")
		}
		return err
	}
	if _, now := s.svc.Config(); now != rev {
		return s.fail(con, &config.Error{Code: config.CodeInvalid, Msg: "the configuration changed in another session; nothing was imported", Detail: "run the import again"})
	}
	if err := s.svc.Replace(s.user, "configuration imported from a FortiMail backup", c); err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintln(con, "Configuration imported from the FortiMail backup.")
	return nil
}

func (s *Session) revList(con Console, args []config.Token) error {
	if err := s.usage(con, args, 0, "execute config list"); err != nil {
		return err
	}
	revs, err := s.svc.Revisions()
	if err != nil {
		return s.fail(con, err)
	}
	_, cur := s.svc.Config()
	fmt.Fprintf(con, "%-6s %-19s %-16s %s\n", "ID", "TIME", "ADMIN", "CHANGE")
	for _, r := range revs {
		what := r.Comment
		mark := ""
		if r.ID == cur {
			mark = " (current)"
		}
		fmt.Fprintf(con, "%-6d %-19s %-16s %s%s\n", r.ID, r.Time.Local().Format("2006-01-02 15:04:05"), r.Admin, what, mark)
	}
	return nil
}

func (s *Session) revID(con Console, args []config.Token, syntax string) (uint64, error) {
	if err := s.usage(con, args, 1, syntax); err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(args[0].Text, 10, 64)
	if err != nil {
		return 0, s.fail(con, &config.Error{Code: config.CodeValue, Msg: fmt.Sprintf("value parse error before '%s'", args[0].Text), Detail: "a revision id is a number (see execute config list)"})
	}
	return id, nil
}

func (s *Session) revDiff(con Console, args []config.Token) error {
	id, err := s.revID(con, args, "execute config diff <revision id>")
	if err != nil {
		return err
	}
	r, err := s.svc.Revision(id)
	if err != nil {
		return s.fail(con, &config.Error{Code: config.CodeNotFound, Msg: "entry not found", Detail: err.Error()})
	}
	fmt.Fprint(con, r.Diff)
	return nil
}

func (s *Session) revRevert(con Console, args []config.Token) error {
	id, err := s.revID(con, args, "execute config revert <revision id>")
	if err != nil {
		return err
	}
	if _, err := s.svc.Revision(id); err != nil {
		return s.fail(con, &config.Error{Code: config.CodeNotFound, Msg: "entry not found", Detail: err.Error()})
	}
	if ok, err := s.confirm(con, fmt.Sprintf("This operation will replace the current configuration with revision %d.", id)); !ok {
		return err
	}
	if err := s.svc.Revert(s.user, id); err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintf(con, "Reverted to revision %d.\n", id)
	return nil
}

func (s *Session) factoryReset(con Console, args []config.Token) error {
	if err := s.usage(con, args, 0, "execute factoryreset"); err != nil {
		return err
	}
	if ok, err := s.confirm(con, "This operation will reset all settings to factory defaults!"); !ok {
		return err
	}
	if err := s.svc.FactoryReset(s.user); err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintln(con, "The configuration was reset to factory defaults. The system is rebooting.")
	s.exited = true
	go s.svc.Reboot()
	return nil
}

func (s *Session) reboot(con Console, args []config.Token) error {
	if err := s.usage(con, args, 0, "execute reboot"); err != nil {
		return err
	}
	if ok, err := s.confirm(con, "This operation will reboot the system !"); !ok {
		return err
	}
	s.svc.Event(eventlog.Notice, "system", s.user, "", "reboot requested")
	fmt.Fprintln(con, "The system is going down NOW !!")
	s.exited = true
	go s.svc.Reboot()
	return nil
}

func (s *Session) certGenerate(con Console, args []config.Token) error {
	if len(args) < 2 {
		return s.usage(con, args, 2, "execute certificate local generate <name> <common-name> [<subject-alt-name>...]")
	}
	var sans []string
	for _, a := range args[2:] {
		sans = append(sans, a.Text)
	}
	if err := s.svc.IssueCertificate(s.user, args[0].Text, args[1].Text, sans, 825); err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintf(con, "Certificate %q issued by the device CA.\n", args[0].Text)
	return nil
}

func (s *Session) certImport(con Console, args []config.Token) error {
	if err := s.usage(con, args, 1, "execute certificate local import <name>"); err != nil {
		return err
	}
	text, err := readBlock(con, "the PEM certificate chain and private key")
	if err != nil {
		return s.fail(con, err)
	}
	chain, key, err := cert.ParsePEMBundle([]byte(text))
	if err != nil {
		return s.fail(con, err)
	}
	return s.putCert(con, args[0].Text, chain, key)
}

func (s *Session) certImportPKCS12(con Console, args []config.Token) error {
	if err := s.usage(con, args, 1, "execute certificate local import-pkcs12 <name>"); err != nil {
		return err
	}
	pw, err := con.ReadPassword("PKCS#12 password: ")
	if err != nil {
		return s.fail(con, err)
	}
	text, err := readBlock(con, "the base64 PKCS#12 file")
	if err != nil {
		return s.fail(con, err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(text), ""))
	if err != nil {
		return s.fail(con, fmt.Errorf("not base64: %v", err))
	}
	chain, key, err := cert.ParsePKCS12(raw, pw)
	if err != nil {
		return s.fail(con, err)
	}
	return s.putCert(con, args[0].Text, chain, key)
}

func (s *Session) putCert(con Console, name string, chain, key []byte) error {
	if err := s.svc.PutCertificate(s.user, name, chain, key, "imported"); err != nil {
		return s.fail(con, err)
	}
	info, _ := cert.Describe(chain)
	fmt.Fprintf(con, "Certificate %q imported: %s, valid until %s.\n", name, info.Subject, info.NotAfter.UTC().Format(time.DateOnly))
	return nil
}

func (s *Session) caImport(con Console, args []config.Token) error {
	if err := s.usage(con, args, 1, "execute certificate ca import <name>"); err != nil {
		return err
	}
	text, err := readBlock(con, "the PEM CA certificate")
	if err != nil {
		return s.fail(con, err)
	}
	if err := s.svc.PutCACertificate(s.user, args[0].Text, []byte(text)); err != nil {
		return s.fail(con, err)
	}
	fmt.Fprintf(con, "CA certificate %q imported.\n", args[0].Text)
	return nil
}

func (s *Session) certInfo(con Console, args []config.Token) error {
	return s.describe(con, args, "system certificate local")
}

func (s *Session) caInfo(con Console, args []config.Token) error {
	return s.describe(con, args, "system certificate ca")
}

func (s *Session) describe(con Console, args []config.Token, path string) error {
	if err := s.usage(con, args, 1, "diagnose certificate local|ca <name>"); err != nil {
		return err
	}
	c, _ := s.svc.Config()
	var pemText string
	for _, lc := range c.System.Certificate.Local {
		if path == "system certificate local" && lc.Name == args[0].Text {
			pemText = lc.Certificate
		}
	}
	for _, ca := range c.System.Certificate.CA {
		if path == "system certificate ca" && ca.Name == args[0].Text {
			pemText = ca.Certificate
		}
	}
	if pemText == "" {
		return s.fail(con, &config.Error{Code: config.CodeNotFound, Msg: "entry not found"})
	}
	info, err := cert.Describe([]byte(pemText))
	if err != nil {
		return s.fail(con, err)
	}
	var sans []string
	sans = append(sans, info.DNSNames...)
	for _, ip := range info.IPs {
		sans = append(sans, ip.String())
	}
	fmt.Fprintf(con, "Subject:     %s\nIssuer:      %s\nNames:       %s\nValid from:  %s\nValid until: %s\nSHA-256:     %s\n",
		info.Subject, info.Issuer, strings.Join(sans, ", "), info.NotBefore.UTC().Format(time.RFC3339), info.NotAfter.UTC().Format(time.RFC3339), info.SHA256)
	return nil
}

func (s *Session) eventLog(con Console, args []config.Token) error {
	n, text, err := s.logArgs(con, args, "diagnose log event [<count>] [<text>]")
	if err != nil {
		return err
	}
	evs, err := s.svc.Log().Query(eventlog.Filter{Limit: n, Contains: text})
	if err != nil {
		return s.fail(con, err)
	}
	for _, e := range evs {
		fmt.Fprintln(con, eventlog.Format(e))
	}
	return nil
}

// status is `get system status`.
func (s *Session) status() string {
	var b strings.Builder
	for _, f := range s.svc.Status(time.Now()) {
		fmt.Fprintf(&b, "%-28s: %s\n", f.Name, f.Value)
	}
	return b.String()
}
