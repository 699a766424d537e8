// Package fortimail imports the configuration backup of a FortiMail unit
// as a migration: the backup's blocks run through mailgate's editor on
// this appliance's factory configuration, keeping the appliance's own
// administrators and certificates, and every line the editor cannot take
// is reported with its line number instead of failing the whole import.
package fortimail

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"mailgate/cert"
	"mailgate/config"
)

const header = "#config-version="

// firstLine is the first non-blank line of text.
func firstLine(text string) string {
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// IsBackup reports whether text is a FortiMail backup: its first line is
// a `#config-version=` header with a FortiMail firmware tag (FE…).
func IsBackup(text string) bool {
	return strings.HasPrefix(firstLine(text), header+"FE")
}

// Firmware is the firmware tag of a FortiMail backup's header
// ("FEVM64-7.04-FW-build0310-230929"), "" when text is not one.
func Firmware(text string) string {
	if !IsBackup(text) {
		return ""
	}
	tag, _, _ := strings.Cut(strings.TrimPrefix(firstLine(text), header), ":")
	return tag
}

// Env is what an import needs from the appliance.
type Env struct {
	Config *config.Env
	// Factory is the appliance's factory configuration of an operation
	// mode (admin.Service.Factory); nil is config.Factory without
	// certificates.
	Factory func(mode string) *config.Config
}

// Item is one reported line (or range of lines) of the backup.
type Item struct {
	Line, End int    // line numbers of the backup; End is Line for one line
	Text      string // the command, without secret values
	Reason    string
}

// Lines is "line 12" or "lines 12-30".
func (it Item) Lines() string {
	if it.End > it.Line {
		return fmt.Sprintf("lines %d-%d", it.Line, it.End)
	}
	return fmt.Sprintf("line %d", it.Line)
}

func (it Item) String() string {
	return it.Lines() + ": " + it.Text + ": " + it.Reason
}

// Report is what an import did with each line of the backup.
type Report struct {
	Firmware string // the backup's firmware tag
	Mapped   int    // lines taken as they are
	// NotSupported are paths and attributes mailgate does not have.
	NotSupported []Item
	// UnknownValues are values mailgate does not take.
	UnknownValues []Item
	// SetAgain are secrets a backup cannot carry over (encrypted
	// passwords and private keys), to be set again on this appliance.
	SetAgain []Item
	// Dropped are whole entries not imported.
	Dropped []Item
	// Invalid says why the result was refused (config.Validate); nothing
	// may be applied when it is not empty.
	Invalid []string
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Summary is the report's one-line count.
func (r *Report) Summary() string {
	return fmt.Sprintf("FortiMail backup %s: %s mapped, %d not supported, %s, %d to set again, %s dropped.",
		r.Firmware, plural(r.Mapped, "line", "lines"), len(r.NotSupported),
		plural(len(r.UnknownValues), "unknown value", "unknown values"), len(r.SetAgain),
		plural(len(r.Dropped), "entry", "entries"))
}

// Section is one titled list of the report.
type Section struct {
	Title string
	Items []Item
}

// Sections are the report's non-empty lists in the order they are shown.
func (r *Report) Sections() []Section {
	var out []Section
	for _, s := range []Section{
		{"Not supported (skipped)", r.NotSupported},
		{"Unknown values (skipped)", r.UnknownValues},
		{"Set again (secrets a backup cannot carry over)", r.SetAgain},
		{"Dropped entries", r.Dropped},
	} {
		if len(s.Items) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// String is the report as the CLI prints it.
func (r *Report) String() string {
	var b strings.Builder
	b.WriteString(r.Summary() + "\n")
	for _, s := range r.Sections() {
		b.WriteString(s.Title + ":\n")
		for _, it := range s.Items {
			b.WriteString("  " + it.String() + "\n")
		}
	}
	if len(r.Invalid) > 0 {
		b.WriteString("The imported configuration is not valid; nothing can be applied:\n")
		for _, p := range r.Invalid {
			b.WriteString("  " + p + "\n")
		}
	}
	return b.String()
}

// line is one logical line of the backup.
type line struct {
	n    int // first physical line, from 1
	end  int // last physical line (a quoted value may span several)
	toks []config.Token
}

// split reads text into its logical command lines, comments and blank
// lines left out.
func split(text string) ([]line, error) {
	var out []line
	physical := strings.Split(text, "\n")
	for i := 0; i < len(physical); i++ {
		start := i
		raw := strings.TrimSuffix(physical[i], "\r")
		toks, open := config.SplitLine(raw)
		for open && i+1 < len(physical) {
			i++
			raw += "\n" + strings.TrimSuffix(physical[i], "\r")
			toks, open = config.SplitLine(raw)
		}
		if open {
			return nil, fmt.Errorf("line %d: unterminated quote", start+1)
		}
		if len(toks) == 0 || config.IsComment(toks) {
			continue
		}
		out = append(out, line{n: start + 1, end: i + 1, toks: toks})
	}
	return out, nil
}

// Import reads a FortiMail backup onto base, the appliance's current
// configuration. The result starts from the factory configuration of
// base's operation mode and keeps what belongs to this appliance: every
// administrator of base, its Factory certificate and default certificate
// (unless the backup imports another with its key and names it), its
// host name unless the backup sets one. The backup's blocks then run
// through the configuration editor line by line, as config.Parse does;
// what the editor refuses is skipped and reported. The result passes
// config.Validate, or err says why and result is nil. base is not
// changed.
func Import(text string, base *config.Config, env Env) (result *config.Config, report Report, err error) {
	report.Firmware = Firmware(text)
	if report.Firmware == "" {
		return nil, report, errors.New("not a FortiMail backup: the first line is not #config-version=FE…")
	}
	lines, err := split(text)
	if err != nil {
		return nil, report, err
	}
	im := &importer{lines: lines, base: base, env: env, rep: &report}
	ed := config.NewEditor(im.start(), env.Config)
	ed.DeferReferences()
	for i := 0; i < len(lines); {
		before := ed.Work().Clone()
		j := im.matchEnd(i)
		im.run(ed, i, j+1, im.rep)
		if ed.Depth() > 0 {
			report.NotSupported = append(report.NotSupported, im.item(i, j, "the backup ends inside this block (no end); the block is not imported"))
			ed.Reset(before)
			ed.DeferReferences()
		}
		i = j + 1
	}
	result = ed.Work()
	im.keepDefaultCertificate(result)
	im.noAdminWithoutPassword(result)
	if err := config.Validate(result, env.Config); err != nil {
		var ve config.ValidationError
		if errors.As(err, &ve) {
			report.Invalid = append([]string(nil), ve...)
		} else {
			report.Invalid = []string{err.Error()}
		}
		return nil, report, err
	}
	return result, report, nil
}

type importer struct {
	lines []line
	base  *config.Config
	env   Env
	rep   *Report
	// adminLine holds the first and last line of each imported
	// administrator's entry, adminLines how many lines it mapped.
	adminLine  map[string][2]int
	adminLines map[string]int
	// certLine is the index of the line that set default-certificate.
	certLine int
	certSet  bool
}

// start is the factory configuration of base's mode with base's
// administrators, certificates in use and host name.
func (im *importer) start() *config.Config {
	keep := im.base.Clone()
	mode := keep.System.Global.OperationMode
	var c *config.Config
	if im.env.Factory != nil {
		c = im.env.Factory(mode).Clone()
	} else {
		c = config.Factory(config.FactoryOptions{Mode: mode})
	}
	c.System.Admin = keep.System.Admin
	g, kg := &c.System.Global, keep.System.Global
	c.System.Certificate.Local = nil
	for _, lc := range keep.System.Certificate.Local {
		if lc.Name == cert.FactoryName || lc.Name == kg.DefaultCertificate {
			c.System.Certificate.Local = append(c.System.Certificate.Local, lc)
		}
	}
	g.DefaultCertificate, g.Hostname = kg.DefaultCertificate, kg.Hostname
	return c
}

// noAdminWithoutPassword removes an imported administrator left without
// a password (set to "" or unset): it would log in with an empty one.
func (im *importer) noAdminWithoutPassword(c *config.Config) {
	c.System.Admin = slices.DeleteFunc(c.System.Admin, func(a config.Admin) bool {
		if a.Password != "" || slices.ContainsFunc(im.base.System.Admin, func(b config.Admin) bool { return b.Name == a.Name }) {
			return false
		}
		at := im.adminLine[a.Name]
		im.rep.Mapped -= im.adminLines[a.Name]
		im.rep.SetAgain = append(im.rep.SetAgain, im.item(at[0], at[1], fmt.Sprintf("administrator %q is not created: it has no password; create it with a password (config system admin, edit %s, set password)", a.Name, a.Name)))
		return true
	})
}

// keepDefaultCertificate puts back base's default certificate when the
// backup names one it did not import with its key.
func (im *importer) keepDefaultCertificate(c *config.Config) {
	name := c.System.Global.DefaultCertificate
	if slices.ContainsFunc(c.System.Certificate.Local, func(lc config.LocalCert) bool { return lc.Name == name }) {
		return
	}
	keep := im.base.System.Global.DefaultCertificate
	c.System.Global.DefaultCertificate = keep
	if im.certSet {
		im.rep.Mapped--
		im.rep.UnknownValues = append(im.rep.UnknownValues, im.item(im.certLine, im.certLine,
			fmt.Sprintf("certificate %q is not imported with its private key; this appliance's default-certificate %q is kept", name, keep)))
	}
}

// text is a line's command for the report: its first words, a secret's
// value left out.
func (im *importer) text(i int) string {
	toks := im.lines[i].toks
	var words []string
	for j, t := range toks {
		if j == 2 && t.Text == "ENC" && !t.Quoted {
			words = append(words, "ENC …")
			break
		}
		if j == 2 && secretName(toks[1].Text) {
			words = append(words, "…")
			break
		}
		if j == 4 {
			words = append(words, "…")
			break
		}
		w := t.Text
		if strings.ContainsAny(w, "\n") || len(w) > 40 {
			w = strings.SplitN(w, "\n", 2)[0]
			if len(w) > 40 {
				w = w[:40]
			}
			w += "…"
		}
		if t.Quoted || strings.ContainsAny(w, " \t") {
			w = config.Quote(w)
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// secretName is an attribute whose value the report must not show.
func secretName(attr string) bool {
	return strings.Contains(attr, "password") || strings.Contains(attr, "private-key") || strings.Contains(attr, "secret") || attr == "psk"
}

// item reports lines i..j (indexes into im.lines).
func (im *importer) item(i, j int, reason string) Item {
	return Item{Line: im.lines[i].n, End: im.lines[j].end, Text: im.text(i), Reason: reason}
}

func word(l line) string {
	if l.toks[0].Quoted {
		return ""
	}
	return l.toks[0].Text
}

// matchEnd is the index of the `end` of the `config` at i (the last line
// when it has none); i itself when the line is no `config`.
func (im *importer) matchEnd(i int) int {
	if word(im.lines[i]) != "config" {
		return i
	}
	depth := 0
	for k := i + 1; k < len(im.lines); k++ {
		switch word(im.lines[k]) {
		case "config":
			depth++
		case "end":
			if depth == 0 {
				return k
			}
			depth--
		}
	}
	return len(im.lines) - 1
}

// matchNext is the index of the last line of the entry whose `edit` is at
// i: its `next`, or the line before the table's `end` or the next `edit`.
func (im *importer) matchNext(i int) int {
	depth := 0
	for k := i + 1; k < len(im.lines); k++ {
		switch word(im.lines[k]) {
		case "config":
			depth++
		case "end":
			if depth == 0 {
				return k - 1
			}
			depth--
		case "next":
			if depth == 0 {
				return k
			}
		case "edit":
			if depth == 0 {
				return k - 1
			}
		}
	}
	return len(im.lines) - 1
}

// reason words an editor's refusal for the report.
func reason(err error) string {
	var ce *config.Error
	if errors.As(err, &ce) && ce.Detail != "" {
		return ce.Detail + " (" + ce.Msg + ")"
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// reasonAt words the refusal of line k at node: a command parse error
// without an explanation is a word mailgate does not have there. The
// value of a secret attribute is never repeated.
func (im *importer) reasonAt(node *config.Node, k int, err error) string {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return reason(err)
	}
	toks := im.lines[k].toks
	if len(toks) > 1 && secretName(toks[1].Text) {
		if ce.Detail != "" {
			return ce.Detail
		}
		return "the value is refused"
	}
	if ce.Code == config.CodeParse && ce.Detail == "" && node != nil && node != config.Root() {
		return "mailgate's " + node.Path + " has no such setting (" + ce.Msg + ")"
	}
	return reason(err)
}

// refuse files a refused line under not supported (the editor's command
// parse errors: no such path or attribute) or unknown values.
func refuse(rep *Report, it Item, err error) {
	var ce *config.Error
	if errors.As(err, &ce) && ce.Code == config.CodeParse {
		rep.NotSupported = append(rep.NotSupported, it)
	} else {
		rep.UnknownValues = append(rep.UnknownValues, it)
	}
}

// isSecret is a `set ATTR ENC …` line: FortiMail's encrypted passwords and
// private keys, sealed under that unit's key.
func isSecret(l line) bool {
	return word(l) == "set" && len(l.toks) > 2 && l.toks[2].Text == "ENC" && !l.toks[2].Quoted
}

// run executes lines from..to-1 on ed, filing each outcome in rep. It
// returns how many lines (or nested blocks) failed.
func (im *importer) run(ed *config.Editor, from, to int, rep *Report) (failed int) {
	for k := from; k < to; k++ {
		l := im.lines[k]
		node, _ := ed.Current()
		inTable := ed.Depth() > 0 && node.Kind == config.Table && !ed.Frames()[ed.Depth()-1].InEntry
		switch w := word(l); {
		case w == "config":
			m := im.matchEnd(k)
			if _, err := ed.Exec(l.toks); err != nil {
				it := im.item(k, m, "mailgate has no such block; "+reason(err))
				if ed.Depth() > 0 {
					it.Reason = "mailgate has no such block here; " + reason(err)
				}
				rep.NotSupported = append(rep.NotSupported, it)
				failed++
				k = m
				continue
			}
			rep.Mapped++
			failed += im.run(ed, k+1, min(m+1, to), rep)
			k = m
		case w == "edit" && inTable:
			m := min(im.matchNext(k), to-1)
			failed += im.entry(ed, node, k, m, rep)
			k = m
		case w == "abort" || w == "delete" || w == "purge" || w == "rename":
			rep.NotSupported = append(rep.NotSupported, im.item(k, k, "an import creates entries on the factory configuration; "+w+" is not imported"))
			failed++
		case isSecret(l):
			rep.SetAgain = append(rep.SetAgain, im.item(k, k, "encrypted under the FortiMail unit's key; set it again on this appliance"))
		case node.Path == "system mailserver" && w == "set" && len(l.toks) >= 2 && isQueueSetting(l.toks[1].Text):
			// FortiMail lists the deferred queue's settings also directly
			// in system mailserver: they are its default queue.
			if err := defaultQueue(ed, l.toks); err != nil {
				refuse(rep, im.item(k, k, im.reasonAt(node, k, err)), err)
				failed++
				continue
			}
			rep.Mapped++
		default:
			if r, ok := im.special(ed, node, k); !ok {
				rep.UnknownValues = append(rep.UnknownValues, im.item(k, k, r))
				failed++
				continue
			}
			if _, err := ed.Exec(l.toks); err != nil {
				refuse(rep, im.item(k, k, im.reasonAt(node, k, err)), err)
				failed++
				continue
			}
			rep.Mapped++
		}
	}
	return failed
}

func isQueueSetting(attr string) bool {
	switch attr {
	case "queue-retry", "queue-warning", "queue-timeout", "queue-dsn-timeout":
		return true
	}
	return false
}

// defaultQueue runs set on the entry default of system mailserver's
// mail-queue, and comes back to system mailserver.
func defaultQueue(ed *config.Editor, set []config.Token) error {
	for _, l := range []string{"config mail-queue", "edit default"} {
		toks, _ := config.SplitLine(l)
		if _, err := ed.Exec(toks); err != nil {
			return err
		}
	}
	_, err := ed.Exec(set)
	for _, l := range []string{"next", "end"} {
		toks, _ := config.SplitLine(l)
		ed.Exec(toks)
	}
	return err
}

// special checks the settings of system global that belong to this
// appliance; ok false refuses line k with reason r.
func (im *importer) special(ed *config.Editor, node *config.Node, k int) (r string, ok bool) {
	l := im.lines[k]
	if node.Path != "system global" || word(l) != "set" || len(l.toks) < 3 {
		return "", true
	}
	attr, _ := matchOne(l.toks[1].Text, node)
	switch attr {
	case "operation-mode":
		mode, have := l.toks[2].Text, im.base.System.Global.OperationMode
		if m := config.Matches(mode, node.Attr(attr).Enum); len(m) == 1 {
			mode = m[0]
		}
		if mode != have {
			return fmt.Sprintf("the backup is of %s mode and this appliance is in %s mode; switch the mode first (config system global, set operation-mode %s), then import", mode, have, mode), false
		}
	case "default-certificate":
		im.certLine, im.certSet = k, true
	}
	return "", true
}

// matchOne resolves an abbreviated attribute name of node.
func matchOne(w string, node *config.Node) (string, bool) {
	names := make([]string, len(node.Attrs))
	for i, a := range node.Attrs {
		names[i] = a.Name
	}
	if m := config.Matches(w, names); len(m) == 1 {
		return m[0], true
	}
	return "", false
}

// wholeEntries are the tables whose entries are imported whole or not at
// all: a rule without one of its conditions could match more than
// intended, an administrator without its trusted hosts could log in from
// anywhere, a certificate is nothing without its key.
var wholeEntries = map[string]string{
	"policy access-control receive":  "a rule without one of its conditions could match more than intended",
	"policy access-control delivery": "a rule without one of its conditions could match more than intended",
	"system admin":                   "an administrator is imported with all its settings or not at all",
	"system certificate local":       "a certificate is imported with all its settings or not at all",
}

// entry runs the entry of table node whose lines are k (its edit) to m.
func (im *importer) entry(ed *config.Editor, node *config.Node, k, m int, rep *Report) int {
	key := im.lines[k].toks
	name := ""
	if len(key) == 2 {
		name = key[1].Text
	}
	switch node.Path {
	case "system admin":
		if slices.ContainsFunc(im.base.System.Admin, func(a config.Admin) bool { return a.Name == name }) {
			rep.Dropped = append(rep.Dropped, im.item(k, m, fmt.Sprintf("administrator %q of this appliance is kept as it is", name)))
			return 0
		}
		if at, lost := im.lostSecret(k, m, "password"); lost {
			rep.SetAgain = append(rep.SetAgain, im.item(at, at, fmt.Sprintf("administrator %q is not created: its password cannot be carried over; create it with a new password (config system admin, edit %s, set password)", name, name)))
			return 0
		}
	case "system certificate local":
		if name == cert.FactoryName {
			rep.Dropped = append(rep.Dropped, im.item(k, m, "this appliance's Factory certificate is kept"))
			return 0
		}
		if at, lost := im.lostSecret(k, m, "private-key"); lost {
			rep.SetAgain = append(rep.SetAgain, im.item(at, at, fmt.Sprintf("certificate %q is not imported: its private key cannot be carried over; import it again (execute certificate local import %s)", name, name)))
			return 0
		}
	}
	why, whole := wholeEntries[node.Path]
	if !whole {
		if _, err := ed.Exec(im.lines[k].toks); err != nil {
			refuse(rep, im.item(k, m, reason(err)+"; the entry is skipped"), err)
			return 1
		}
		rep.Mapped++
		return im.run(ed, k+1, m+1, rep)
	}
	// On a copy: a failed line drops the entry.
	trial := fork(ed, im.env.Config)
	var tr Report
	failed := 0
	if _, err := trial.Exec(im.lines[k].toks); err != nil {
		refuse(&tr, im.item(k, k, reason(err)), err)
		failed = 1
	} else {
		tr.Mapped++
		failed = im.run(trial, k+1, m+1, &tr)
	}
	rep.NotSupported = append(rep.NotSupported, tr.NotSupported...)
	rep.UnknownValues = append(rep.UnknownValues, tr.UnknownValues...)
	rep.SetAgain = append(rep.SetAgain, tr.SetAgain...)
	rep.Dropped = append(rep.Dropped, tr.Dropped...)
	if failed > 0 {
		rep.Dropped = append(rep.Dropped, im.item(k, m, fmt.Sprintf("%s %s dropped whole: %s failed; %s", node.Path, name, plural(failed, "line", "lines"), why)))
		return 0
	}
	rep.Mapped += tr.Mapped
	if node.Path == "system admin" {
		if im.adminLine == nil {
			im.adminLine, im.adminLines = map[string][2]int{}, map[string]int{}
		}
		im.adminLine[name], im.adminLines[name] = [2]int{k, m}, tr.Mapped
	}
	*ed = *trial
	return 0
}

// find is the index of the line of k..m that sets attr at the entry's
// own level, -1 when none does.
func (im *importer) find(k, m int, attr string) int {
	depth := 0
	for i := k + 1; i <= m; i++ {
		l := im.lines[i]
		switch word(l) {
		case "config":
			depth++
		case "end":
			depth--
		case "set":
			if depth == 0 && len(l.toks) > 1 && l.toks[1].Text == attr {
				return i
			}
		}
	}
	return -1
}

// lostSecret reports whether the entry k..m has no usable attr (missing,
// or encrypted by FortiMail), and the line to report it at: attr's, or
// the entry's own when it is missing.
func (im *importer) lostSecret(k, m int, attr string) (at int, lost bool) {
	i := im.find(k, m, attr)
	if i < 0 {
		return k, true
	}
	return i, isSecret(im.lines[i])
}

// fork is a new editor on a copy of ed's working configuration, at ed's
// position.
func fork(ed *config.Editor, env *config.Env) *config.Editor {
	f := config.NewEditor(ed.Work(), env)
	f.DeferReferences()
	parent := ""
	for _, fr := range ed.Frames() {
		rel := strings.TrimPrefix(fr.Node.Path, parent)
		var toks []config.Token
		for _, w := range append([]string{"config"}, strings.Fields(rel)...) {
			toks = append(toks, config.Token{Text: w})
		}
		if _, err := f.Exec(toks); err != nil {
			panic(fmt.Sprintf("fortimail: cannot reopen %s: %v", fr.Node.Path, err))
		}
		if fr.InEntry {
			if _, err := f.Exec([]config.Token{{Text: "edit"}, {Text: fr.Key}}); err != nil {
				panic(fmt.Sprintf("fortimail: cannot reopen %s %s: %v", fr.Node.Path, fr.Key, err))
			}
		}
		parent = fr.Node.Path + " "
	}
	return f
}
