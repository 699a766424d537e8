package config_test

import (
	"os"
	"strings"
	"testing"

	"mailgate/config"
)

// docs/fortimail-cli.md lists every path and attribute of the tree with
// its FortiMail counterpart; a setting it calls "mailgate only" is one
// whose help says FortiMail has no such setting (fm:"none"), and the other
// way round.
func TestFortiMailDocCoversTheTree(t *testing.T) {
	raw, err := os.ReadFile("../docs/fortimail-cli.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	parts := strings.Split(string(raw), "\n## `config ")
	for _, p := range parts[1:] {
		path, body, _ := strings.Cut(p, "`")
		sections[path] = body
	}
	config.Root().Walk(func(n *config.Node) {
		if n.Kind == config.Group {
			return
		}
		body, ok := sections[n.Path]
		if !ok {
			t.Errorf("docs/fortimail-cli.md has no section for config %s", n.Path)
			return
		}
		delete(sections, n.Path)
		only := n.MailgateOnly || (n.Parent != nil && n.Parent.MailgateOnly)
		for _, a := range n.Attrs {
			i := strings.Index(body, "\n| `"+a.Name+"` |")
			if i < 0 {
				t.Errorf("config %s: attribute %s is not in the table", n.Path, a.Name)
				continue
			}
			row, _, _ := strings.Cut(body[i+1:], "\n")
			cells := strings.Split(row, " | ")
			note := cells[len(cells)-1]
			if doc, tree := strings.HasPrefix(note, "mailgate only"), a.MailgateOnly || only; doc != tree {
				t.Errorf("config %s %s: the doc says mailgate only %v, the tree %v", n.Path, a.Name, doc, tree)
			}
		}
	})
	for p := range sections {
		t.Errorf("docs/fortimail-cli.md has a section for config %s, which the tree does not have", p)
	}
}
