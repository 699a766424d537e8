// Package configtest builds configurations for tests from CLI text, as an
// administrator would type it.
package configtest

import (
	"testing"

	"mailgate/config"
)

// Apply runs the CLI configuration text (config … / set … / end) on c and
// returns the committed result; a failing line or text that ends inside a
// block fails the test.
func Apply(t testing.TB, c *config.Config, text string) *config.Config {
	t.Helper()
	lines, err := config.Lines(text)
	if err != nil {
		t.Fatal(err)
	}
	e := config.NewEditor(c, nil)
	for _, l := range lines {
		res, err := e.Exec(l)
		if err != nil {
			t.Fatalf("%v: %v", l, err)
		}
		if res == config.Commit {
			c = e.Work()
			e.Reset(c)
		}
	}
	if e.Depth() != 0 {
		t.Fatal("configuration text ends inside a block")
	}
	return c
}
