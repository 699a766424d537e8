//go:build linux

package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTinyRun runs the harness in its smallest form, 200 messages of one
// case through both systems, so that it keeps working. It checks only
// that the report is well formed with non-zero figures: speed targets
// belong to make bench, not to timed unit tests.
func TestTinyRun(t *testing.T) {
	out := t.TempDir()
	c, err := parseCase("1k-10-plain")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := run(options{mode: "tiny", cases: []caseSpec{c}, systems: []string{"mailgate", "postfix"},
		messages: 200, maxSend: 15 * time.Second, out: out, log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(rep.path)
	if err != nil || string(saved) != rep.markdown {
		t.Fatalf("report not saved in %s: %v", out, err)
	}
	md := rep.markdown
	for _, want := range []string{"## End to end", "## Targets", "## Every pass", "## Method", "smtp-source", "Go client"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The case's row: 6 figures, each for mailgate, Postfix and the ratio.
	var row []string
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| `1k-10-plain` | ") {
			row = strings.Split(strings.Trim(line, "| "), " | ")
			break
		}
	}
	if len(row) != 1+6*3 {
		t.Fatalf("end-to-end row has %d cells, want 19:\n%s", len(row), md)
	}
	for i, cell := range row[1:] {
		v, err := strconv.ParseFloat(cell, 64)
		if err != nil || v <= 0 {
			t.Errorf("cell %d of the end-to-end row is %q, want a positive number", i+2, cell)
		}
	}
	for _, r := range rep.results {
		for _, p := range r.passes {
			if p.err != "" || p.messages != 200 {
				t.Errorf("%s %s: %d messages, error %q", r.system, p.tool, p.messages, p.err)
			}
		}
		if r.err != "" {
			t.Errorf("%s: %s", r.system, r.err)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}
}

func TestParseCase(t *testing.T) {
	c, err := parseCase("100k-100-tls")
	if err != nil || c != (caseSpec{size: 100 << 10, sessions: 100, tls: true}) || c.String() != "100k-100-tls" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"", "1k-10", "1-10-plain", "1k-0-plain", "1k-10-ssl", "xk-1-tls"} {
		if _, err := parseCase(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if cs, err := parseCases(fullCases); err != nil || len(cs) != 12 {
		t.Fatalf("full matrix: %d cases, %v", len(cs), err)
	}
}
