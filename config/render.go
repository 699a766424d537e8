package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Render prints the configuration as FortiOS-style blocks. full prints
// every attribute (`show full-configuration`); otherwise only what differs
// from the factory values (`show`). Parse(Render(c, true)) reproduces c,
// and rendering that again gives the same bytes.
func Render(c *Config, full bool) string {
	return RenderAt(c, nil, full)
}

// RenderAt prints only the part of the tree at frames (a section, a table,
// or one entry of a table), wrapped in the `config` lines that lead to it.
func RenderAt(c *Config, frames []Frame, full bool) string {
	r := &renderer{full: full, focus: frames}
	r.children(reflect.ValueOf(c).Elem(), Root(), 0, 0)
	if len(frames) == 0 {
		r.late = true
		r.children(reflect.ValueOf(c).Elem(), Root(), 0, 0)
	}
	return r.b.String()
}

// RenderNode prints one top-level section or table.
func RenderNode(c *Config, n *Node, full bool) string {
	if n == Root() {
		return Render(c, full)
	}
	if n.Kind == Group {
		var b strings.Builder
		for _, ch := range n.Children {
			b.WriteString(RenderNode(c, ch, full))
		}
		return b.String()
	}
	return RenderAt(c, []Frame{{Node: n}}, full)
}

type renderer struct {
	b     strings.Builder
	full  bool
	focus []Frame
	late  bool // the pass over the Late top-level blocks
}

func (r *renderer) line(indent int, s string) {
	r.b.WriteString(strings.Repeat("    ", indent))
	r.b.WriteString(s)
	r.b.WriteByte('\n')
}

// focusAt returns the focus frame for depth (nil when there is none left).
func (r *renderer) focusAt(depth int) *Frame {
	if depth < len(r.focus) {
		return &r.focus[depth]
	}
	return nil
}

// children renders the sections and tables below n (value v). depth counts
// the frames already matched against the focus.
func (r *renderer) children(v reflect.Value, n *Node, indent, depth int) {
	f := r.focusAt(depth)
	for _, c := range n.Children {
		if f != nil && !isAncestorOrSelf(c, f.Node) {
			continue
		}
		if f == nil && indent == 0 && c.Kind != Group && c.Late != r.late {
			continue
		}
		cv := v.Field(c.field[0])
		switch c.Kind {
		case Group:
			r.children(cv, c, indent, depth)
		case Section:
			r.section(cv, c, indent, depth+1)
		case Table:
			r.table(cv, c, indent, depth+1)
		}
	}
}

func isAncestorOrSelf(a, n *Node) bool {
	for ; n != nil; n = n.Parent {
		if n == a {
			return true
		}
	}
	return false
}

// label is the path a `config` line names: the full path at top level,
// the path below the section or entry it is nested in otherwise
// ("profile authentication smtp" inside a domain entry).
func label(n *Node) string {
	words := []string{n.Name}
	for p := n.Parent; p != nil; p = p.Parent {
		if p.Kind != Group {
			return strings.Join(words, " ")
		}
		if p.Name != "" {
			words = append([]string{p.Name}, words...)
		}
	}
	return n.Path
}

func (r *renderer) section(v reflect.Value, n *Node, indent, depth int) {
	body := &renderer{full: r.full, focus: r.focus}
	if len(r.focus) <= depth { // not only the way to a nested table
		body.attrs(v, n, indent+1)
	}
	body.children(v, n, indent+1, depth)
	if body.b.Len() == 0 && !r.full && len(r.focus) < depth {
		return
	}
	r.line(indent, "config "+label(n))
	r.b.WriteString(body.b.String())
	r.line(indent, "end")
}

func (r *renderer) table(v reflect.Value, n *Node, indent, depth int) {
	f := r.focusAt(depth - 1)
	var body strings.Builder
	for i := 0; i < v.Len(); i++ {
		ev := v.Index(i)
		key := keyString(n, ev)
		if f != nil && f.Node == n && f.InEntry && f.Key != key {
			continue
		}
		e := &renderer{full: r.full, focus: r.focus}
		if n.IntKey {
			e.line(indent+1, "edit "+key)
		} else {
			e.line(indent+1, "edit "+Quote(key))
		}
		e.attrs(ev, n, indent+2)
		e.children(ev, n, indent+2, depth)
		e.line(indent+1, "next")
		body.WriteString(e.b.String())
	}
	if body.Len() == 0 && !r.full && len(r.focus) < depth {
		return
	}
	r.line(indent, "config "+label(n))
	r.b.WriteString(body.String())
	r.line(indent, "end")
}

// attrs renders the attributes of a section or entry. A value equal to the
// factory value is left out of `show`. An empty string whose factory value
// is not empty is rendered as `set NAME ""`: `unset` would bring back the
// factory value. Values of other types cannot be set empty; for them
// `unset` is the nearest the language has.
func (r *renderer) attrs(v reflect.Value, n *Node, indent int) {
	for _, a := range n.Attrs {
		val, ok := a.format(v.Field(a.field))
		def, defOK := a.format(a.defaultValue())
		if !r.full && ok == defOK && val == def {
			continue
		}
		switch {
		case ok:
			r.line(indent, "set "+a.Name+" "+val)
		case defOK && (a.Type == TString || a.Type == TText || a.Type == TRef || a.Type == TEnumList):
			r.line(indent, "set "+a.Name+` ""`)
		case defOK:
			r.line(indent, "unset "+a.Name)
		}
	}
}

// RenderGet prints the position at frames the way FortiOS `get` does: a
// section or entry as "name : value" lines, a table as its entry names.
func RenderGet(c *Config, frames []Frame) string {
	v, err := resolve(c, frames)
	if err != nil || len(frames) == 0 {
		return ""
	}
	f := frames[len(frames)-1]
	n := f.Node
	var b strings.Builder
	if n.Kind == Table && !f.InEntry {
		for _, k := range Keys(v, n) {
			if n.IntKey {
				b.WriteString("== [ " + k + " ]\n")
			} else {
				b.WriteString("== [ " + Quote(k) + " ]\n")
			}
		}
		return b.String()
	}
	width := 0
	names := []string{}
	if n.Kind == Table {
		names = append(names, n.Key.Name)
	}
	for _, a := range n.Attrs {
		names = append(names, a.Name)
	}
	for _, nm := range names {
		width = max(width, len(nm))
	}
	if n.Kind == Table {
		fmt.Fprintf(&b, "%-*s : %s\n", width, n.Key.Name, keyString(n, v))
	}
	for _, a := range n.Attrs {
		val, ok := a.format(v.Field(a.field))
		switch {
		case !ok:
			val = ""
		case a.Type == TPassword || a.Type == TSecret:
			val = "*"
		case a.Type != TStringList:
			if s, open := SplitLine(val); !open && len(s) == 1 && a.Type != TEnumList {
				val = s[0].Text
			}
		}
		if a.Type == TText && val != "" {
			val = "(" + strconv.Itoa(strings.Count(val, "\n")+1) + " lines)"
		}
		fmt.Fprintf(&b, "%-*s : %s\n", width, a.Name, val)
	}
	for _, ch := range n.Children {
		fmt.Fprintf(&b, "%-*s : (config %s)\n", width, ch.Name, ch.Name)
	}
	return b.String()
}

// ChangedPaths lists the top-level sections and tables ("system global",
// "domain") whose content differs between a and b.
func ChangedPaths(a, b *Config) []string {
	var out []string
	Root().Walk(func(n *Node) {
		if n.Kind == Group || !isTopLevel(n) {
			return
		}
		if RenderNode(a, n, true) != RenderNode(b, n, true) {
			out = append(out, n.Path)
		}
	})
	return out
}

func isTopLevel(n *Node) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if p.Kind != Group {
			return false
		}
	}
	return true
}
