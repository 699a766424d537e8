package config

import (
	"reflect"
	"strconv"
)

// New returns a tree with every section at its factory values and every
// table empty: the base a full configuration text is applied to.
func New() *Config {
	c := &Config{}
	setDefaults(reflect.ValueOf(c).Elem(), Root())
	return c
}

// setDefaults sets the attributes of a section or entry struct v (and of
// its nested sections) to their defaults.
func setDefaults(v reflect.Value, n *Node) {
	for _, a := range n.Attrs {
		v.Field(a.field).Set(a.defaultValue())
	}
	for _, c := range n.Children {
		switch c.Kind {
		case Group, Section:
			setDefaults(v.Field(c.field[0]), c)
		case Table:
			v.Field(c.field[0]).Set(reflect.Zero(v.Field(c.field[0]).Type()))
		}
	}
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	out := &Config{}
	deepCopy(reflect.ValueOf(out).Elem(), reflect.ValueOf(c).Elem())
	return out
}

func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Struct:
		for i := 0; i < src.NumField(); i++ {
			deepCopy(dst.Field(i), src.Field(i))
		}
	case reflect.Slice:
		if src.IsNil() {
			dst.Set(reflect.Zero(src.Type()))
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := 0; i < src.Len(); i++ {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	default:
		dst.Set(src)
	}
}

// Frame is one level of a position in the tree: a section, a table, or
// (InEntry) one entry of a table.
type Frame struct {
	Node    *Node
	Key     string
	InEntry bool
}

// keyString renders an entry's key as text.
func keyString(n *Node, entry reflect.Value) string {
	k := entry.Field(n.Key.field)
	if n.IntKey {
		return strconv.Itoa(int(k.Int()))
	}
	return k.String()
}

// findEntry returns the index of the entry with key, or -1.
func findEntry(table reflect.Value, n *Node, key string) int {
	for i := 0; i < table.Len(); i++ {
		if keyString(n, table.Index(i)) == key {
			return i
		}
	}
	return -1
}

// Keys lists the keys of a table value.
func Keys(table reflect.Value, n *Node) []string {
	out := make([]string, table.Len())
	for i := range out {
		out[i] = keyString(n, table.Index(i))
	}
	return out
}

// resolve walks frames from the root of c. It returns the value of the
// last frame: the section struct, the table slice, or the entry struct.
func resolve(c *Config, frames []Frame) (reflect.Value, error) {
	v := reflect.ValueOf(c).Elem()
	at := Root()
	for _, f := range frames {
		var chain []*Node
		for n := f.Node; n != at; n = n.Parent {
			if n == nil {
				return reflect.Value{}, notFound("%s is not below %s", f.Node.Path, at.Path)
			}
			chain = append([]*Node{n}, chain...)
		}
		for _, n := range chain {
			v = v.Field(n.field[0])
		}
		if f.InEntry {
			i := findEntry(v, f.Node, f.Key)
			if i < 0 {
				return reflect.Value{}, notFound("%s %q was deleted", f.Node.Path, f.Key)
			}
			v = v.Index(i)
		}
		at = f.Node
	}
	return v, nil
}

// TableValue returns the slice value of a table that is not nested in an
// entry (e.g. "profile tls").
func TableValue(c *Config, n *Node) reflect.Value {
	v, _ := resolve(c, []Frame{{Node: n}})
	return v
}

// HasEntry reports whether the top-level table at path has an entry key.
func HasEntry(c *Config, path, key string) bool {
	n := Lookup(path)
	return n != nil && n.Kind == Table && findEntry(TableValue(c, n), n, key) >= 0
}

// visit calls fn for every section struct and every entry struct of the
// tree, with the node it belongs to.
func visit(v reflect.Value, n *Node, fn func(n *Node, v reflect.Value)) {
	for _, c := range n.Children {
		cv := v.Field(c.field[0])
		switch c.Kind {
		case Group:
			visit(cv, c, fn)
		case Section:
			fn(c, cv)
			visit(cv, c, fn)
		case Table:
			for i := 0; i < cv.Len(); i++ {
				fn(c, cv.Index(i))
				visit(cv.Index(i), c, fn)
			}
		}
	}
}

// references counts the attributes in c that name entry key of table.
func references(c *Config, table *Node, key string) int {
	n := 0
	visit(reflect.ValueOf(c).Elem(), Root(), func(node *Node, v reflect.Value) {
		for _, a := range node.Attrs {
			if a.Type == TRef && a.Ref == table.Path && v.Field(a.field).String() == key {
				n++
			}
		}
	})
	return n
}

// renameReferences points every reference to old at new.
func renameReferences(c *Config, table *Node, old, new string) {
	visit(reflect.ValueOf(c).Elem(), Root(), func(node *Node, v reflect.Value) {
		for _, a := range node.Attrs {
			if a.Type == TRef && a.Ref == table.Path && v.Field(a.field).String() == old {
				v.Field(a.field).SetString(new)
			}
		}
	})
}

// setDefaultsOf sets the factory values of a new entry of the table at path.
func setDefaultsOf(entry any, path string) {
	setDefaults(reflect.ValueOf(entry).Elem(), Lookup(path))
}
