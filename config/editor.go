package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Result tells the caller of Editor.Exec what a command did to the block.
type Result int

// Results of Editor.Exec.
const (
	Continue Result = iota // still inside a block (or nothing to do)
	Commit                 // the outermost `end`: commit Work() (or replay Ops())
	Aborted                // `abort`: the block was discarded
)

// Editor runs the block language of the configuration: config, edit, set,
// unset, append, next, end, abort, delete, rename, move, purge. The same
// editor parses saved configuration texts and runs the CLI, so what the
// CLI accepts and what a backup restores are one language. Changes go to
// a working copy; the outermost `end` hands the block to the caller to
// commit atomically.
type Editor struct {
	env   *Env
	base  *Config
	work  *Config
	stack []Frame
	ops   []Op
	// deferRefs leaves reference checks to Validate: a configuration text
	// may name an entry before the block that creates it.
	deferRefs bool
}

// Op is one recorded change, replayable onto another tree (when another
// session committed in between).
type Op struct {
	frames []Frame
	run    func(c *Config, v reflect.Value) error
}

// NewEditor starts an editor on a copy of base.
func NewEditor(base *Config, env *Env) *Editor {
	e := &Editor{env: env}
	e.Reset(base)
	return e
}

// Reset discards any block and starts again from base.
func (e *Editor) Reset(base *Config) {
	e.base, e.work, e.stack, e.ops = base, base.Clone(), nil, nil
}

// DeferReferences leaves the editor's reference checks to Validate, as
// Parse does: a configuration text may name an entry before the block
// that creates it.
func (e *Editor) DeferReferences() { e.deferRefs = true }

// Work is the working copy with the block's changes.
func (e *Editor) Work() *Config { return e.work }

// Ops are the block's changes in order.
func (e *Editor) Ops() []Op { return e.ops }

// Depth is the nesting level: 0 outside any `config` block.
func (e *Editor) Depth() int { return len(e.stack) }

// Frames is the current position.
func (e *Editor) Frames() []Frame { return append([]Frame(nil), e.stack...) }

// Label is the prompt label of the current position ("global", "admin",
// the key of the entry being edited), "" outside a block.
func (e *Editor) Label() string {
	if len(e.stack) == 0 {
		return ""
	}
	f := e.stack[len(e.stack)-1]
	if f.InEntry {
		return f.Key
	}
	return f.Node.Name
}

// Commands lists the commands valid at the current position.
func (e *Editor) Commands() []string {
	if len(e.stack) == 0 {
		return []string{"config"}
	}
	f := e.stack[len(e.stack)-1]
	switch {
	case f.Node.Kind == Table && !f.InEntry:
		return []string{"abort", "delete", "edit", "end", "move", "purge", "rename"}
	case f.InEntry:
		return withConfig(f.Node, []string{"abort", "append", "end", "next", "set", "unset"})
	}
	return withConfig(f.Node, []string{"abort", "append", "end", "set", "unset"})
}

func withConfig(n *Node, cmds []string) []string {
	if len(n.Children) > 0 {
		cmds = append(cmds, "config")
	}
	return cmds
}

// Current returns the schema node and value at the current position (the
// root when outside a block).
func (e *Editor) Current() (*Node, reflect.Value) {
	if len(e.stack) == 0 {
		return Root(), reflect.ValueOf(e.work).Elem()
	}
	v, _ := resolve(e.work, e.stack)
	return e.stack[len(e.stack)-1].Node, v
}

// Exec runs one command line (already split into words).
func (e *Editor) Exec(toks []Token) (Result, error) {
	if len(toks) == 0 || IsComment(toks) {
		return Continue, nil
	}
	cmd, ok := matchWord(toks[0].Text, e.Commands())
	if !ok {
		return Continue, parseErr(toks[0].Text)
	}
	args := toks[1:]
	switch cmd {
	case "config":
		return Continue, e.config(args)
	case "end":
		if len(args) > 0 {
			return Continue, parseErr(args[0].Text)
		}
		e.stack = e.stack[:len(e.stack)-1]
		if len(e.stack) == 0 {
			return Commit, nil
		}
		return Continue, nil
	case "next":
		if len(args) > 0 {
			return Continue, parseErr(args[0].Text)
		}
		f := &e.stack[len(e.stack)-1]
		f.InEntry, f.Key = false, ""
		return Continue, nil
	case "abort":
		e.Reset(e.base)
		return Aborted, nil
	case "set", "unset", "append":
		return Continue, e.setAttr(cmd, args)
	case "edit":
		return Continue, e.edit(args)
	case "delete":
		return Continue, e.delete(args)
	case "rename":
		return Continue, e.rename(args)
	case "move":
		return Continue, e.move(args)
	case "purge":
		return Continue, e.purge(args)
	}
	return Continue, parseErr(toks[0].Text)
}

// ResolvePath resolves the words of a `config`/`show` path from node from,
// with unique-prefix abbreviations, down to a section or table. rest are
// words left over after it (none for a well-formed `config`).
func ResolvePath(from *Node, words []Token) (n *Node, used int, err error) {
	n = from
	for i, w := range words {
		if n.Kind != Group && i > 0 {
			return n, i, nil
		}
		names := make([]string, len(n.Children))
		for j, c := range n.Children {
			names[j] = c.Name
		}
		name, ok := matchWord(w.Text, names)
		if !ok {
			return nil, i, parseErr(w.Text)
		}
		n = n.Child(name)
	}
	if n.Kind == Group {
		last := ""
		if len(words) > 0 {
			last = words[len(words)-1].Text
		}
		return nil, len(words), &Error{Code: CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", last), Detail: "incomplete path: add one of " + strings.Join(childNames(n), ", ")}
	}
	return n, len(words), nil
}

func childNames(n *Node) []string {
	var out []string
	for _, c := range n.Children {
		out = append(out, c.Name)
	}
	return out
}

func (e *Editor) config(args []Token) error {
	from := Root()
	if len(e.stack) > 0 {
		from = e.stack[len(e.stack)-1].Node
	}
	if len(args) == 0 {
		return &Error{Code: CodeParse, Msg: "command parse error before ''", Detail: "config needs a path"}
	}
	n, used, err := ResolvePath(from, args)
	if err != nil {
		return err
	}
	if used < len(args) {
		return parseErr(args[used].Text)
	}
	e.stack = append(e.stack, Frame{Node: n})
	return nil
}

// record applies an op to the working copy and keeps it for replay.
func (e *Editor) record(run func(c *Config, v reflect.Value) error) error {
	op := Op{frames: e.Frames(), run: run}
	if err := op.apply(e.work); err != nil {
		return err
	}
	e.ops = append(e.ops, op)
	return nil
}

func (op Op) apply(c *Config) error {
	v, err := resolve(c, op.frames)
	if err != nil {
		return err
	}
	return op.run(c, v)
}

// Replay applies ops to c in order.
func Replay(c *Config, ops []Op) error {
	for _, op := range ops {
		if err := op.apply(c); err != nil {
			return err
		}
	}
	return nil
}

func (e *Editor) attrNames(n *Node) []string {
	names := make([]string, len(n.Attrs))
	for i, a := range n.Attrs {
		names[i] = a.Name
	}
	return names
}

func (e *Editor) setAttr(cmd string, args []Token) error {
	n := e.stack[len(e.stack)-1].Node
	if len(args) == 0 {
		return &Error{Code: CodeParse, Msg: "command parse error before ''", Detail: cmd + " needs an attribute name"}
	}
	name, ok := matchWord(args[0].Text, e.attrNames(n))
	if !ok {
		return parseErr(args[0].Text)
	}
	a := n.Attr(name)
	var val reflect.Value
	switch cmd {
	case "unset":
		if len(args) > 1 {
			return parseErr(args[1].Text)
		}
		val = a.defaultValue()
	case "append":
		if a.Type != TStringList && a.Type != TEnumList {
			return &Error{Code: CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", args[0].Text), Detail: a.Name + " is not a list"}
		}
		fallthrough
	default:
		var err error
		if val, err = a.parse(args[1:], e.env); err != nil {
			return err
		}
		if a.Type == TRef && !e.deferRefs && val.String() != "" && !HasEntry(e.work, a.Ref, val.String()) {
			return &Error{Code: CodeValue, Msg: fmt.Sprintf("value parse error before '%s'", val.String()), Detail: "entry not found in datasource " + a.Ref}
		}
	}
	isAppend := cmd == "append"
	return e.record(func(c *Config, v reflect.Value) error {
		f := v.Field(a.field)
		if isAppend {
			merged := append(append([]string(nil), f.Interface().([]string)...), val.Interface().([]string)...)
			words := make([]Token, len(merged))
			for i, m := range merged {
				words[i] = Token{Text: m}
			}
			mv, err := a.parse(dedupe(words), e.env)
			if err != nil {
				return err
			}
			f.Set(mv)
			return nil
		}
		f.Set(copyValue(val))
		return nil
	})
}

func dedupe(toks []Token) []Token {
	seen := map[string]bool{}
	var out []Token
	for _, t := range toks {
		if !seen[t.Text] {
			seen[t.Text] = true
			out = append(out, t)
		}
	}
	return out
}

func (e *Editor) table() *Node {
	return e.stack[len(e.stack)-1].Node
}

// checkKey validates an entry name for table n.
func checkKey(n *Node, t Token) (string, error) {
	k := t.Text
	if k == "" {
		return "", valueErr(k, "%s: name is empty", n.Path)
	}
	if n.IntKey {
		i, err := strconv.Atoi(k)
		if err != nil || i < 1 || i > 1<<31-1 {
			return "", valueErr(k, "%s: entries are numbered from 1", n.Path)
		}
		return strconv.Itoa(i), nil
	}
	if err := n.Key.check(k); err != nil {
		return "", err
	}
	if len(n.Key.Enum) > 0 && !slices.Contains(n.Key.Enum, k) {
		return "", valueErr(k, "%s: the entries are %s", n.Path, strings.Join(n.Key.Enum, ", "))
	}
	if n.Key.Check == "" && (len(k) > 63 || strings.ContainsAny(k, "\"\\\n\r")) {
		return "", valueErr(k, "%s: invalid name", n.Path)
	}
	return k, nil
}

func oneArg(args []Token, what string) (Token, error) {
	if len(args) == 0 {
		return Token{}, &Error{Code: CodeParse, Msg: "command parse error before ''", Detail: what}
	}
	if len(args) > 1 {
		return Token{}, parseErr(args[1].Text)
	}
	return args[0], nil
}

func (e *Editor) edit(args []Token) error {
	n := e.table()
	t, err := oneArg(args, "edit needs an entry name")
	if err != nil {
		return err
	}
	key, err := checkKey(n, t)
	if err != nil {
		return err
	}
	// Editing an entry that exists must not recreate it with factory
	// values when replayed on a tree where another session deleted it.
	existed := false
	if tv, err := resolve(e.work, e.stack); err == nil {
		existed = findEntry(tv, n, key) >= 0
	}
	err = e.record(func(c *Config, v reflect.Value) error {
		if findEntry(v, n, key) >= 0 {
			return nil
		}
		if existed {
			return notFound("%s %q was deleted", n.Path, key)
		}
		entry := reflect.New(n.elem).Elem()
		setDefaults(entry, n)
		if n.IntKey {
			i, _ := strconv.Atoi(key)
			entry.Field(n.Key.field).SetInt(int64(i))
		} else {
			entry.Field(n.Key.field).SetString(key)
		}
		v.Set(reflect.Append(v, entry))
		return nil
	})
	if err != nil {
		return err
	}
	f := &e.stack[len(e.stack)-1]
	f.InEntry, f.Key = true, key
	return nil
}

func (e *Editor) delete(args []Token) error {
	n := e.table()
	t, err := oneArg(args, "delete needs an entry name")
	if err != nil {
		return err
	}
	key := normKey(n, t.Text)
	return e.record(func(c *Config, v reflect.Value) error {
		i := findEntry(v, n, key)
		if i < 0 {
			return notFound("entry not found in datasource")
		}
		if r := references(c, n, key); r > 0 {
			return &Error{Code: CodeInUse, Msg: "entry is in use", Detail: fmt.Sprintf("The entry is used by other %d entries", r)}
		}
		v.Set(reflect.AppendSlice(v.Slice(0, i), v.Slice(i+1, v.Len())))
		return nil
	})
}

func (e *Editor) rename(args []Token) error {
	n := e.table()
	if len(args) != 3 || args[1].Text != "to" {
		tok := ""
		if len(args) > 3 {
			tok = args[3].Text
		} else if len(args) >= 2 {
			tok = args[1].Text
		}
		return &Error{Code: CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", tok), Detail: "usage: rename <name> to <new name>"}
	}
	old := normKey(n, args[0].Text)
	nw, err := checkKey(n, args[2])
	if err != nil {
		return err
	}
	return e.record(func(c *Config, v reflect.Value) error {
		i := findEntry(v, n, old)
		if i < 0 {
			return notFound("entry not found in datasource")
		}
		if findEntry(v, n, nw) >= 0 {
			return valueErr(nw, "%s %q already exists", n.Path, nw)
		}
		if n.IntKey {
			k, _ := strconv.Atoi(nw)
			v.Index(i).Field(n.Key.field).SetInt(int64(k))
		} else {
			v.Index(i).Field(n.Key.field).SetString(nw)
		}
		renameReferences(c, n, old, nw)
		return nil
	})
}

func (e *Editor) move(args []Token) error {
	n := e.table()
	if len(args) != 3 {
		tok := ""
		if len(args) > 3 {
			tok = args[3].Text
		}
		return &Error{Code: CodeParse, Msg: fmt.Sprintf("command parse error before '%s'", tok), Detail: "usage: move <name> before|after <name>"}
	}
	where, ok := matchWord(args[1].Text, []string{"before", "after"})
	if !ok {
		return parseErr(args[1].Text)
	}
	a, b := normKey(n, args[0].Text), normKey(n, args[2].Text)
	return e.record(func(c *Config, v reflect.Value) error {
		i, j := findEntry(v, n, a), findEntry(v, n, b)
		if i < 0 || j < 0 {
			return notFound("entry not found in datasource")
		}
		if i == j {
			return nil
		}
		entry := reflect.New(n.elem).Elem()
		entry.Set(v.Index(i))
		rest := reflect.MakeSlice(v.Type(), 0, v.Len())
		for k := 0; k < v.Len(); k++ {
			if k != i {
				rest = reflect.Append(rest, v.Index(k))
			}
		}
		j = findEntry(rest, n, b)
		if where == "after" {
			j++
		}
		out := reflect.MakeSlice(v.Type(), 0, v.Len())
		out = reflect.AppendSlice(out, rest.Slice(0, j))
		out = reflect.Append(out, entry)
		out = reflect.AppendSlice(out, rest.Slice(j, rest.Len()))
		v.Set(out)
		return nil
	})
}

func (e *Editor) purge(args []Token) error {
	n := e.table()
	if len(args) > 0 {
		return parseErr(args[0].Text)
	}
	return e.record(func(c *Config, v reflect.Value) error {
		for _, k := range Keys(v, n) {
			if r := references(c, n, k); r > 0 {
				return &Error{Code: CodeInUse, Msg: "entry is in use", Detail: fmt.Sprintf("%q is used by other %d entries", k, r)}
			}
		}
		v.Set(reflect.Zero(v.Type()))
		return nil
	})
}

// Parse reads a configuration text (as `show full-configuration` prints it)
// into a new tree: sections start at their factory values and tables empty,
// so the text alone decides the result. Comment lines are ignored.
//
// A text that starts with a backup header of an older format
// (BackupFormat) is read in that format's names (Migrate).
func Parse(text string, env *Env) (*Config, error) {
	format, ok := BackupFormat(text)
	if !ok {
		return nil, &Error{Code: CodeParse, Msg: "command parse error before '#config-version='", Detail: "the backup header is not mailgate's"}
	}
	lines, err := Lines(Migrate(text, format))
	if err != nil {
		return nil, err
	}
	e := NewEditor(New(), env)
	e.deferRefs = true
	for i, l := range lines {
		res, err := e.Exec(l)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", lineText(i, l), err)
		}
		if res == Aborted {
			return nil, fmt.Errorf("%s: abort in a configuration text", lineText(i, l))
		}
		if res == Commit {
			e.base = e.work
		}
	}
	if e.Depth() != 0 {
		return nil, &Error{Code: CodeParse, Msg: "command parse error before ''", Detail: "configuration text ends inside a config block (missing end)"}
	}
	return e.work, nil
}

func lineText(i int, toks []Token) string {
	words := make([]string, 0, 3)
	for j, t := range toks {
		if j == 3 {
			break
		}
		words = append(words, t.Text)
	}
	return fmt.Sprintf("command %d (%s)", i+1, strings.Join(words, " "))
}

// Reopen pushes f back on the position stack: the CLI returns an admin to
// where `end` was typed when the block could not be committed.
func (e *Editor) Reopen(f Frame) { e.stack = append(e.stack, f) }

// normKey writes a numbered entry's key the way edit stores it ("01" is 1).
func normKey(n *Node, k string) string {
	if n.IntKey {
		if i, err := strconv.Atoi(k); err == nil {
			return strconv.Itoa(i)
		}
	}
	return k
}
