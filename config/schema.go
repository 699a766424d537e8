package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// Kind tells what a schema node is.
type Kind int

// The node kinds.
const (
	Group   Kind = iota // only holds other nodes: "system", "policy access-control"
	Section             // one set of attributes: "system global"
	Table               // named entries: "system admin", "domain"
)

// Node is a group, section or table of the tree.
type Node struct {
	Name     string // last path word, e.g. "global"
	Path     string // full path, e.g. "system global"
	Kind     Kind
	Help     string
	Parent   *Node
	Children []*Node // sub-nodes: groups' members; nested sections and tables
	Attrs    []*Attr // attributes of a section or of a table's entries
	Key      *Attr   // table key
	IntKey   bool    // entries are numbered (rules)
	// MailgateOnly marks a block FortiMail does not have (fm:"none").
	MailgateOnly bool
	// Late sections render after every other top-level block: they name
	// entries of tables that come later in the tree (cfg:"name,late").
	Late  bool
	field []int
	elem  reflect.Type // section struct, or table entry struct
}

// MailgateOnlyHelp ends the help of settings FortiMail does not have.
const MailgateOnlyHelp = " (mailgate; FortiMail has no such setting)"

// help is a field's help, and whether FortiMail lacks the setting (tag
// fm:"none"; its help then says so).
func help(f reflect.StructField) (string, bool) {
	if f.Tag.Get("fm") == "none" {
		return f.Tag.Get("help") + MailgateOnlyHelp, true
	}
	return f.Tag.Get("help"), false
}

// AttrType is the value syntax of an attribute.
type AttrType int

// The attribute types.
const (
	TString AttrType = iota
	TText            // multi-line text (PEM)
	TInt
	TBool
	TEnum
	TEnumList
	TStringList
	TIP
	TPrefix
	TPassword // bcrypt hash, `set password ENC <hash>`
	TSecret   // sealed under the device key, `set private-key ENC <token>`
	TRef      // names an entry of another table
)

// Attr is one attribute of a section or entry.
type Attr struct {
	Name     string
	Help     string
	Type     AttrType
	Enum     []string
	Min, Max int
	Default  string // CLI syntax
	Ref      string // path of the referenced table
	Check    string // extra check name
	// MailgateOnly marks a setting FortiMail does not have (tag
	// fm:"none"); its help says so.
	MailgateOnly bool
	field        int
	goKind       reflect.Kind
	defOnce      sync.Once
	def          reflect.Value
}

var (
	schemaOnce sync.Once
	schemaRoot *Node
)

// Root returns the schema of the whole tree.
func Root() *Node {
	schemaOnce.Do(func() {
		schemaRoot = &Node{Kind: Group, elem: reflect.TypeOf(Config{})}
		buildChildren(schemaRoot, schemaRoot.elem)
	})
	return schemaRoot
}

func buildChildren(n *Node, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Tag.Get("cfg") == "" {
			continue
		}
		c := childNode(n, f, i)
		if c == nil {
			panic("config: attribute " + f.Name + " in group " + n.Path)
		}
		n.Children = append(n.Children, c)
	}
}

// childNode makes the node for a struct field that is a section, group or
// table, or returns nil when the field is an attribute.
func childNode(n *Node, f reflect.StructField, i int) *Node {
	name, opt, _ := strings.Cut(f.Tag.Get("cfg"), ",")
	c := &Node{Name: name, Parent: n, field: []int{i}}
	c.Help, c.MailgateOnly = help(f)
	c.Path = strings.TrimSpace(n.Path + " " + name)
	c.Late = opt == "late"
	switch {
	case f.Type.Kind() == reflect.Struct && opt == "group":
		c.Kind, c.elem = Group, f.Type
		buildChildren(c, f.Type)
	case f.Type.Kind() == reflect.Struct:
		c.Kind, c.elem = Section, f.Type
		buildAttrs(c, f.Type)
	case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
		c.Kind, c.elem = Table, f.Type.Elem()
		buildAttrs(c, c.elem)
		if c.Key == nil {
			panic("config: table " + c.Path + " has no key field")
		}
	default:
		return nil
	}
	return c
}

func buildAttrs(n *Node, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("cfg")
		if tag == "" {
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		if c := childNode(n, f, i); c != nil {
			n.Children = append(n.Children, c)
			continue
		}
		a := &Attr{Name: name, Default: f.Tag.Get("default"), Ref: f.Tag.Get("ref"), Check: f.Tag.Get("check"), field: i, goKind: f.Type.Kind()}
		a.Help, a.MailgateOnly = help(f)
		if e := f.Tag.Get("enum"); e != "" {
			a.Enum = strings.Split(e, "|")
		}
		switch f.Type.Kind() {
		case reflect.Int:
			a.Type = TInt
			a.Min, a.Max = 0, 1<<31-1
			if r := f.Tag.Get("range"); r != "" {
				lo, hi, _ := strings.Cut(r, "-")
				a.Min, _ = strconv.Atoi(lo)
				a.Max, _ = strconv.Atoi(hi)
			}
		case reflect.Bool:
			a.Type = TBool
		case reflect.Slice:
			a.Type = TStringList
			if a.Enum != nil {
				a.Type = TEnumList
			}
		case reflect.String:
			a.Type = TString
			if a.Enum != nil {
				a.Type = TEnum
			}
			switch f.Tag.Get("type") {
			case "text":
				a.Type = TText
			case "ip":
				a.Type = TIP
			case "prefix":
				a.Type = TPrefix
			case "password":
				a.Type = TPassword
			case "secret":
				a.Type = TSecret
			case "ref":
				a.Type = TRef
			}
		default:
			panic(fmt.Sprintf("config: unsupported field type %s for %s", f.Type, name))
		}
		if opt == "key" {
			n.Key = a
			n.IntKey = a.Type == TInt
			continue
		}
		n.Attrs = append(n.Attrs, a)
	}
}

// Child returns the sub-node named name (exact).
func (n *Node) Child(name string) *Node {
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Attr returns the attribute named name (exact).
func (n *Node) Attr(name string) *Attr {
	for _, a := range n.Attrs {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Lookup finds a node by its full path ("system certificate local").
func Lookup(path string) *Node {
	n := Root()
	for _, w := range strings.Fields(path) {
		if n = n.Child(w); n == nil {
			return nil
		}
	}
	return n
}

// Walk calls fn for every node below n, depth first, in tree order.
func (n *Node) Walk(fn func(*Node)) {
	for _, c := range n.Children {
		fn(c)
		c.Walk(fn)
	}
}

// Syntax describes the value an attribute takes, for '?' help.
func (a *Attr) Syntax() string {
	switch a.Type {
	case TInt:
		return fmt.Sprintf("<integer %d-%d>", a.Min, a.Max)
	case TBool:
		return "enable|disable"
	case TEnum:
		return strings.Join(a.Enum, "|")
	case TEnumList:
		return "{" + strings.Join(a.Enum, " ") + "}..."
	case TStringList:
		switch a.Check {
		case "prefix":
			return "<ip/prefix>..."
		case "authkey":
			return "<\"ssh public key\">..."
		}
		return "<string>..."
	case TIP:
		return "<ip address>"
	case TPrefix:
		return "<ip/prefix or ip netmask>"
	case TPassword:
		return "<password>"
	case TSecret:
		return "<secret>"
	case TRef:
		return "<" + a.Ref + " name>"
	case TText:
		return "<\"text\">"
	}
	return "<string>"
}
