// Package cli is the appliance's command line: the FortiOS-style command
// language (config/edit/set/next/end, show, get, execute, diagnose) and
// the SSH server administrators reach it through.
package cli

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"mailgate/admin"
	"mailgate/config"
)

// Session interprets the command language for one administrator.
type Session struct {
	svc      *admin.Service
	user     string
	readOnly bool
	ed       *config.Editor
	baseRev  uint64
	exited   bool
	// Without a terminal a block in which a command failed is dropped at
	// its end: failed counts the block's failed commands, skip is the
	// depth of a nested (or outermost) config that failed, whose lines up
	// to its end are not run.
	failed int
	skip   int
}

// NewSession starts an interpreter for user on svc.
func NewSession(svc *admin.Service, user string, readOnly bool) *Session {
	return &Session{svc: svc, user: user, readOnly: readOnly}
}

var _ Interpreter = (*Session)(nil)

// ErrCommand marks a command that failed; its message was already printed.
var ErrCommand = errors.New("command failed")

// Exited reports whether the session ended (exit, reboot).
func (s *Session) Exited() bool { return s.exited }

// Close abandons an open configuration block.
func (s *Session) Close() { s.ed = nil }

func (s *Session) editing() bool { return s.ed != nil && s.ed.Depth() > 0 }

// Prompt is "HOST # " or "HOST (label) # ".
func (s *Session) Prompt() string {
	c, _ := s.svc.Config()
	host := c.System.Global.Hostname
	if s.editing() {
		return host + " (" + s.ed.Label() + ") # "
	}
	return host + " # "
}

// topCommands are the commands outside any block, with their help.
var topCommands = map[string]string{
	"config":   "Configure an object.",
	"show":     "Show the configuration (full-configuration: with factory values).",
	"get":      "Show settings and status.",
	"execute":  "Run an operation (backup, restore, reboot, certificates, revisions).",
	"diagnose": "Diagnostics (logs).",
	"exit":     "End the session.",
}

var blockHelp = map[string]string{
	"set": "Set an attribute.", "unset": "Reset an attribute to its factory value.",
	"append": "Add values to a list.", "next": "Finish this entry.", "end": "Finish and save the block.",
	"abort": "Leave the block without saving.", "edit": "Edit or create an entry.", "delete": "Delete an entry.",
	"rename": "Rename an entry: rename A to B.", "move": "Reorder: move A before|after B.",
	"purge": "Delete every entry.", "config": "Configure a nested object.", "show": "Show this object.",
	"get": "Show this object with every value.",
}

func (s *Session) commands() []string {
	if !s.editing() {
		out := make([]string, 0, len(topCommands))
		for c := range topCommands {
			out = append(out, c)
		}
		sort.Strings(out)
		return out
	}
	out := append(s.ed.Commands(), "get", "show")
	sort.Strings(out)
	return out
}

// Run executes one input line.
func (s *Session) Run(line string, con Console) error {
	err := s.run(line, con)
	if err == nil || con.Interactive() {
		return err
	}
	if toks, _ := config.SplitLine(line); s.skip == 0 && len(toks) > 0 {
		if w, _ := matchOne(toks[0].Text, blockWords); w == "config" {
			// Its lines would land in the enclosing object.
			s.skip = 1
			fmt.Fprintln(con, "The lines up to this config's end are skipped.")
		}
	}
	if s.editing() || s.skip > 0 {
		s.failed++
	}
	return err
}

// blockWords are the commands of the block language, for finding the end
// of a block whose lines are skipped.
var blockWords = []string{"abort", "append", "config", "delete", "edit", "end", "get", "move", "next", "purge", "rename", "set", "show", "unset"}

// skipLine passes over a line inside a config that failed in a script,
// keeping count of nested config and end; at the end of the outermost
// block the block is dropped.
func (s *Session) skipLine(con Console, toks []config.Token) error {
	switch w, _ := matchOne(toks[0].Text, blockWords); w {
	case "config":
		s.skip++
	case "end":
		s.skip--
	}
	if s.skip == 0 && !s.editing() {
		return s.drop(con)
	}
	return nil
}

// drop discards a script's block in which commands failed.
func (s *Session) drop(con Console) error {
	fmt.Fprintf(con, "%d command(s) failed in this config block; nothing of the block was committed.\n", s.failed)
	if s.ed != nil {
		cur, _ := s.svc.Config()
		s.ed.Reset(cur)
	}
	s.failed, s.skip = 0, 0
	return ErrCommand
}

func (s *Session) run(line string, con Console) error {
	toks, open := config.SplitLine(line)
	for open {
		more, err := con.ReadLine("")
		if err != nil {
			return s.fail(con, &config.Error{Code: config.CodeParse, Msg: "command parse error before ''", Detail: "unterminated quote"})
		}
		line += "\n" + more
		toks, open = config.SplitLine(line)
	}
	if len(toks) == 0 {
		return nil
	}
	if s.skip > 0 && !config.IsComment(toks) {
		return s.skipLine(con, toks)
	}
	if config.IsComment(toks) {
		if strings.HasPrefix(toks[0].Text, "#config-version=") && !s.editing() {
			return s.restoreFrom(con, line, false)
		}
		return nil
	}
	cmd, ok := matchOne(toks[0].Text, s.commands())
	if !ok {
		return s.fail(con, parseError(toks[0].Text))
	}
	switch cmd {
	case "show", "get":
		return s.show(con, cmd, toks[1:])
	case "execute":
		return s.execute(con, toks[1:])
	case "diagnose":
		return s.diagnose(con, toks[1:])
	case "exit":
		s.exited = true
		return nil
	}
	return s.block(con, cmd, toks)
}

// block runs a command of the configuration language.
func (s *Session) block(con Console, cmd string, toks []config.Token) error {
	if s.readOnly {
		return s.fail(con, &config.Error{Code: -37, Msg: "permission denied", Detail: "the read_only_prof access profile cannot change the configuration"})
	}
	if !s.editing() {
		cur, rev := s.svc.Config()
		if s.ed == nil {
			s.ed = config.NewEditor(cur, s.svc.Env())
		} else {
			s.ed.Reset(cur)
		}
		s.baseRev = rev
		s.failed, s.skip = 0, 0
	}
	if cmd == "purge" && con.Interactive() {
		if ok, err := s.confirm(con, "This operation will clear all table!"); !ok {
			return err
		}
	}
	toks[0].Text = cmd
	before := s.ed.Frames()
	res, err := s.ed.Exec(toks)
	if err != nil {
		return s.fail(con, err)
	}
	switch {
	case res == config.Aborted:
		s.failed = 0
	case res != config.Commit:
	case s.failed > 0:
		return s.drop(con)
	default:
		return s.commit(con, before)
	}
	return nil
}

// commit saves a finished block; on failure an interactive admin is put
// back where `end` was typed to fix the block, a script's block is dropped.
func (s *Session) commit(con Console, before []config.Frame) error {
	base, _ := s.svc.Config()
	work := s.ed.Work()
	var err error
	if mode := work.System.Global.OperationMode; mode != base.System.Global.OperationMode {
		if ok, err := s.confirm(con, "This operation will change the operation mode to "+mode+" and reset the configuration to factory defaults."); !ok {
			fmt.Fprintln(con, "Operation mode unchanged; the block was discarded.")
			return err
		}
		err = s.svc.SwitchMode(s.user, mode, work)
	} else {
		err = s.svc.Commit(s.user, s.baseRev, work, s.ed.Ops())
	}
	if err == nil {
		return nil
	}
	if con.Interactive() {
		for _, f := range before {
			s.ed.Reopen(f)
		}
		fmt.Fprintln(con, "The block was not saved; fix it and end again, or abort.")
	}
	return s.fail(con, err)
}

// fail prints err the way FortiOS does and returns ErrCommand.
func (s *Session) fail(con Console, err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		fmt.Fprintln(con, err.Error())
		fmt.Fprintf(con, "Command fail. Return code %d\n", ce.Code)
	} else {
		fmt.Fprintln(con, err.Error())
		fmt.Fprintf(con, "Command fail. Return code %d\n", config.CodeInvalid)
	}
	return ErrCommand
}

func parseError(tok string) error {
	return &config.Error{Code: config.CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", tok)}
}

// matchOne resolves an abbreviation against choices.
func matchOne(word string, choices []string) (string, bool) {
	m := config.Matches(word, choices)
	if len(m) == 1 {
		return m[0], true
	}
	return "", false
}

// confirm asks a y/n question. It returns true for y/yes; for n/no (and
// at the end of the input) it returns false and a nil error, so the
// command ends quietly. Without a PTY the answer is the next input line;
// when that line is not an answer it is put back for the interpreter, the
// command is not done and the error (already printed) makes a script's
// exit status non-zero.
func (s *Session) confirm(con Console, what string) (bool, error) {
	fmt.Fprintln(con, what)
	ans, err := con.ReadLine("Do you want to continue? (y/n)")
	if err != nil {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(ans)) {
	case "y", "yes":
		return true, nil
	case "n", "no":
		return false, nil
	}
	if con.Interactive() {
		return false, nil
	}
	if u, ok := con.(LineUnreader); ok {
		u.Unread(ans)
	}
	return false, s.fail(con, &config.Error{Code: config.CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", ans),
		Detail: "the line after a command that asks must be its answer, y or n; the command was not done"})
}

// show implements `show [full-configuration] [PATH [KEY]]` and `get`.
func (s *Session) show(con Console, cmd string, args []config.Token) error {
	full := cmd == "get"
	if len(args) > 0 && !args[0].Quoted {
		if w, ok := matchOne(args[0].Text, []string{"full-configuration"}); ok && w == "full-configuration" {
			full = true
			args = args[1:]
		}
	}
	c, _ := s.svc.Config()
	if s.editing() {
		if len(args) > 0 {
			return s.fail(con, parseError(args[0].Text))
		}
		if cmd == "get" {
			fmt.Fprint(con, config.RenderGet(s.ed.Work(), s.ed.Frames()))
			return nil
		}
		fmt.Fprint(con, config.RenderAt(s.ed.Work(), s.ed.Frames(), full))
		return nil
	}
	if len(args) == 0 {
		if cmd == "get" {
			return s.fail(con, &config.Error{Code: config.CodeParse, Msg: "command parse error before ''", Detail: "get needs a path, e.g. get system status"})
		}
		fmt.Fprint(con, config.Render(c, full))
		return nil
	}
	if cmd == "get" {
		if w, ok := matchOne(args[0].Text, []string{"system"}); ok && w == "system" && len(args) == 2 {
			if st, ok := matchOne(args[1].Text, []string{"status", "global", "admin", "dns", "interface", "route", "certificate"}); ok && st == "status" {
				fmt.Fprint(con, s.status())
				return nil
			}
		}
	}
	n, used, err := config.ResolvePath(config.Root(), args)
	if err != nil {
		return s.fail(con, err)
	}
	frames := []config.Frame{{Node: n}}
	if rest := args[used:]; len(rest) > 0 {
		if n.Kind != config.Table || len(rest) > 1 {
			return s.fail(con, parseError(rest[0].Text))
		}
		if !config.HasEntry(c, n.Path, rest[0].Text) {
			return s.fail(con, &config.Error{Code: config.CodeNotFound, Msg: "entry not found"})
		}
		frames[0].InEntry, frames[0].Key = true, rest[0].Text
	}
	if n.Parent != config.Root() && n.Parent.Kind != config.Group {
		return s.fail(con, parseError(args[0].Text))
	}
	if cmd == "get" {
		fmt.Fprint(con, config.RenderGet(c, frames))
		return nil
	}
	fmt.Fprint(con, config.RenderAt(c, frames, full))
	return nil
}

// Help is the text printed when '?' is typed after line.
func (s *Session) Help(line string) string {
	cands, syntax := s.candidates(line)
	var b strings.Builder
	if syntax != "" {
		b.WriteString(syntax + "\n")
	}
	width := 0
	for _, c := range cands {
		width = max(width, len(c.word))
	}
	for _, c := range cands {
		fmt.Fprintf(&b, "%-*s  %s\n", width, c.word, c.help)
	}
	if b.Len() == 0 {
		b.WriteString("<Enter>\n")
	}
	return b.String()
}

// Complete completes the last word of line for the tab key.
func (s *Session) Complete(line string) (string, []string) {
	cands, _ := s.candidates(line)
	toks, _ := config.SplitLine(line)
	partial := ""
	if len(toks) > 0 && !strings.HasSuffix(line, " ") {
		partial = toks[len(toks)-1].Text
	}
	var words []string
	for _, c := range cands {
		if !strings.HasPrefix(c.word, "<") {
			words = append(words, c.word)
		}
	}
	if len(words) == 0 {
		return line, nil
	}
	prefix := words[0]
	for _, w := range words[1:] {
		for !strings.HasPrefix(w, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	base := line[:len(line)-len(partial)]
	if len(words) == 1 {
		return base + words[0] + " ", nil
	}
	if len(prefix) > len(partial) {
		return base + prefix, nil
	}
	return line, words
}

type cand struct{ word, help string }

// candidates lists what may follow line (filtered by the partial last
// word), and a syntax line for a value position.
func (s *Session) candidates(line string) ([]cand, string) {
	toks, _ := config.SplitLine(line)
	partial := ""
	if len(toks) > 0 && !strings.HasSuffix(line, " ") {
		partial = toks[len(toks)-1].Text
		toks = toks[:len(toks)-1]
	}
	filter := func(cs []cand) []cand {
		var out []cand
		for _, c := range cs {
			if strings.HasPrefix(c.word, partial) || strings.HasPrefix(c.word, "<") {
				out = append(out, c)
			}
		}
		return out
	}
	if len(toks) == 0 {
		var cs []cand
		for _, c := range s.commands() {
			h := topCommands[c]
			if s.editing() || h == "" {
				h = blockHelp[c]
			}
			cs = append(cs, cand{c, h})
		}
		return filter(cs), ""
	}
	cmd, ok := matchOne(toks[0].Text, s.commands())
	if !ok {
		return nil, ""
	}
	args := toks[1:]
	switch cmd {
	case "config", "show", "get":
		from := config.Root()
		if s.editing() {
			if cmd != "config" {
				return nil, ""
			}
			from, _ = s.ed.Current()
		}
		if cmd != "config" && len(args) == 0 {
			extra := []cand{{"full-configuration", "Include factory values."}}
			if cmd == "get" {
				extra = nil
			}
			return filter(append(extra, nodeCands(from)...)), ""
		}
		if len(args) > 0 && args[0].Text == "full-configuration" {
			args = args[1:]
		}
		n := from
		for _, a := range args {
			name, ok := matchOne(a.Text, childNames(n))
			if !ok {
				return nil, ""
			}
			n = n.Child(name)
		}
		if n.Kind == config.Group || n == from {
			return filter(nodeCands(n)), ""
		}
		return nil, ""
	case "set", "unset", "append":
		n, v := s.ed.Current()
		if len(args) == 0 {
			var cs []cand
			for _, a := range n.Attrs {
				cs = append(cs, cand{a.Name, a.Help + " " + a.Syntax()})
			}
			return filter(cs), ""
		}
		name, ok := matchOne(args[0].Text, attrNames(n))
		if !ok || cmd == "unset" {
			return nil, ""
		}
		a := n.Attr(name)
		cur := config.RenderAt(s.ed.Work(), s.ed.Frames(), true)
		_ = v
		syntax := fmt.Sprintf("%s  %s  %s", a.Name, a.Syntax(), a.Help)
		if line := currentValue(cur, a.Name); line != "" {
			syntax += "\ncurrent: " + line
		}
		var cs []cand
		switch a.Type {
		case config.TEnum, config.TEnumList:
			for _, e := range a.Enum {
				cs = append(cs, cand{e, ""})
			}
		case config.TBool:
			cs = []cand{{"enable", ""}, {"disable", ""}}
		case config.TRef:
			if rn := config.Lookup(a.Ref); rn != nil {
				for _, k := range config.Keys(config.TableValue(s.ed.Work(), rn), rn) {
					cs = append(cs, cand{k, a.Ref})
				}
			}
		}
		return filter(cs), syntax
	case "edit", "delete", "rename", "move":
		n, v := s.ed.Current()
		if len(args) > 0 && cmd == "edit" || len(args) > 2 {
			return nil, ""
		}
		if cmd == "rename" && len(args) == 1 {
			return filter([]cand{{"to", ""}}), ""
		}
		if cmd == "move" && len(args) == 1 {
			return filter([]cand{{"before", ""}, {"after", ""}}), ""
		}
		var cs []cand
		if v.Kind() == reflect.Slice {
			for _, k := range config.Keys(v, n) {
				cs = append(cs, cand{k, "existing entry"})
			}
		}
		if cmd == "edit" {
			cs = append(cs, cand{"<name>", "a new entry"})
		}
		return filter(cs), ""
	case "execute", "diagnose":
		specs := executeSpecs
		if cmd == "diagnose" {
			specs = diagnoseSpecs
		}
		for _, a := range args {
			sp, ok := findSpec(specs, a.Text)
			if !ok {
				return nil, ""
			}
			if len(sp.sub) == 0 {
				return nil, sp.args
			}
			specs = sp.sub
		}
		var cs []cand
		for _, sp := range specs {
			cs = append(cs, cand{sp.name, sp.help})
		}
		return filter(cs), ""
	}
	return nil, ""
}

func nodeCands(n *config.Node) []cand {
	var cs []cand
	for _, c := range n.Children {
		h := c.Help
		if h == "" && c.Kind == config.Group {
			h = "(" + strings.Join(childNames(c), ", ") + ")"
		}
		cs = append(cs, cand{c.Name, h})
	}
	return cs
}

func childNames(n *config.Node) []string {
	out := make([]string, len(n.Children))
	for i, c := range n.Children {
		out[i] = c.Name
	}
	return out
}

func attrNames(n *config.Node) []string {
	out := make([]string, len(n.Attrs))
	for i, a := range n.Attrs {
		out[i] = a.Name
	}
	return out
}

// currentValue finds `set NAME value` in a rendered block.
func currentValue(block, name string) string {
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "set "+name+" ") {
			return strings.TrimPrefix(l, "set "+name+" ")
		}
	}
	return ""
}

// readBlock reads pasted lines until a line holding only "." or the end of
// input.
func readBlock(con Console, what string) (string, error) {
	if con.Interactive() {
		fmt.Fprintf(con, "Paste %s, then a line with a single '.' (or Ctrl-D):\n", what)
	}
	var b strings.Builder
	for {
		l, err := con.ReadLine("")
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if strings.TrimSpace(l) == "." {
			break
		}
		b.WriteString(strings.TrimSuffix(l, "\r"))
		b.WriteByte('\n')
	}
	return b.String(), nil
}
