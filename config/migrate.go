package config

import (
	"strconv"
	"strings"
)

// FormatVersion numbers the names of the configuration language. Format 1
// is the first release's (mailgate's own names); format 2 has FortiMail's
// names wherever FortiMail has the setting (docs/fortimail-cli.md). A
// backup names its format in its header (":format=2"); a backup without
// one is format 1. Migrate translates a text from an older format.
const FormatVersion = 2

// A blockRename moves a block of an older format to its current path,
// with its attributes' and values' new spellings.
type blockRename struct {
	from, to string
	attrs    map[string]string            // old attribute → new
	values   map[string]map[string]string // new attribute → old value → new
}

// v1Renames are the changes from format 1 to 2.
var v1Renames = []blockRename{
	{from: "mailsetting mail-server-settings", to: "system mailserver", attrs: map[string]string{
		"smtps-status": "smtps-tls-status", "smtp-msa-status": "smtp-msa", "max-connections": "smtp-max-connections",
	}},
	{from: "mailsetting queue", to: "system mailserver", attrs: map[string]string{
		"retry-interval": "queue-retry", "warning-time": "queue-warning", "max-time": "queue-timeout",
	}},
	{from: "mailsetting relayserver", to: "mailsetting relay-host-list", attrs: map[string]string{
		"server": "host-name", "port": "host-port", "smtps": "use-smtps",
	}},
	{from: "policy access-control receive", to: "policy access-control receive", attrs: map[string]string{
		"comments": "comment",
	}, values: map[string]map[string]string{
		"authenticated": {"yes": "authenticated", "no": "not-authenticated"},
	}},
	{from: "policy access-control delivery", to: "policy access-control delivery", attrs: map[string]string{
		"destination-ip-mask": "destination", "comments": "comment",
	}},
}

// BackupFormat reads the format of a text from its backup header
// ("#config-version=…:format=N" on the first line). A text without the
// header is in the current format: it is what `show full-configuration`
// prints. ok is false for a header of another product.
func BackupFormat(text string) (format int, ok bool) {
	first, _, _ := strings.Cut(text, "\n")
	rest, found := strings.CutPrefix(strings.TrimSpace(first), "#config-version=")
	if !found {
		return FormatVersion, true
	}
	if !strings.HasPrefix(rest, "mailgate-") {
		return 0, false
	}
	for _, f := range strings.Split(rest, ":") {
		if v, found := strings.CutPrefix(f, "format="); found {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return 0, false
			}
			return n, true
		}
	}
	return 1, true
}

// Migrate translates a configuration text (as Render printed it, or a
// backup) from format from to the current one. Lines it does not rename
// pass through unchanged, comments and multi-line values included.
func Migrate(text string, from int) string {
	if from >= FormatVersion {
		return text
	}
	type frame struct {
		path string
		ren  *blockRename
	}
	var (
		out   strings.Builder
		stack []frame
		// Format 1 used every relay server it had; format 2 only with
		// relay-server-status enable.
		relays bool
	)
	physical := strings.SplitAfter(text, "\n")
	for i := 0; i < len(physical); i++ {
		raw := physical[i]
		toks, open := SplitLine(raw)
		for open && i+1 < len(physical) {
			i++
			raw += physical[i]
			toks, open = SplitLine(raw)
		}
		if len(toks) == 0 || IsComment(toks) {
			out.WriteString(raw)
			continue
		}
		indent := raw[:len(raw)-len(strings.TrimLeft(raw, " \t"))]
		nl := ""
		if strings.HasSuffix(raw, "\n") {
			nl = "\n"
		}
		switch toks[0].Text {
		case "config":
			words := make([]string, 0, len(toks)-1)
			for _, t := range toks[1:] {
				words = append(words, t.Text)
			}
			path := strings.Join(words, " ")
			if len(stack) > 0 {
				path = stack[len(stack)-1].path + " " + path
			}
			f := frame{path: path}
			for j := range v1Renames {
				if v1Renames[j].from == path {
					f.ren = &v1Renames[j]
					if len(stack) == 0 {
						raw = indent + "config " + f.ren.to + nl
					}
				}
			}
			stack = append(stack, f)
		case "edit":
			if len(stack) == 1 && stack[0].path == "mailsetting relayserver" {
				relays = true
			}
		case "end":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case "set", "unset", "append":
			if len(stack) == 0 || len(toks) < 2 {
				break
			}
			ren := stack[len(stack)-1].ren
			if ren == nil {
				break
			}
			attr := toks[1].Text
			if n, ok := ren.attrs[attr]; ok {
				rest := strings.TrimPrefix(strings.TrimLeft(raw, " \t"), toks[0].Text)
				rest = strings.TrimPrefix(strings.TrimLeft(rest, " \t"), attr)
				raw = indent + toks[0].Text + " " + n + rest
				attr = n
			}
			if vals, ok := ren.values[attr]; ok && len(toks) == 3 {
				if n, ok := vals[toks[2].Text]; ok {
					raw = indent + toks[0].Text + " " + attr + " " + n + nl
				}
			}
		}
		out.WriteString(raw)
	}
	if relays {
		if !strings.HasSuffix(out.String(), "\n") {
			out.WriteByte('\n')
		}
		out.WriteString("config system mailserver\n    set relay-server-status enable\nend\n")
	}
	return out.String()
}
