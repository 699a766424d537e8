package config

import (
	"net/netip"
	"strconv"
	"strings"
)

// FormatVersion numbers the names of the configuration language. Format 1
// is the first release's (mailgate's own names); format 2 has FortiMail's
// names wherever FortiMail has the setting (docs/fortimail-cli.md); format
// 3 moves the queue schedule of `config system mailserver` into its
// nested table `config mail-queue`, entry default, as FortiMail has it. A
// backup names its format in its header (":format=3"); a backup without
// one is format 1. Migrate translates a text from an older format.
const FormatVersion = 3

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
// backup) from format from to the current one, one format after the
// other. Lines it does not rename pass through unchanged, comments and
// multi-line values included.
func Migrate(text string, from int) string {
	if from < 2 {
		text = migrate1(text)
	}
	if from < 3 {
		text = migrate2(text)
	}
	return text
}

// v2Queue are the attributes format 2 has directly in `config system
// mailserver` and format 3 in its `config mail-queue` entry default.
var v2Queue = map[string]bool{"queue-retry": true, "queue-warning": true, "queue-timeout": true}

// migrate2 translates a format 2 text to format 3: each run of queue-*
// lines of a `config system mailserver` block becomes a nested `config
// mail-queue` block that edits the entry default.
func migrate2(text string) string {
	var out strings.Builder
	var stack []string
	recs := records(text)
	queueLine := func(r record) bool {
		return len(r.toks) >= 2 && (r.toks[0].Text == "set" || r.toks[0].Text == "unset") && v2Queue[r.toks[1].Text]
	}
	for i := 0; i < len(recs); i++ {
		raw, toks := recs[i].raw, recs[i].toks
		if len(toks) == 0 || IsComment(toks) {
			out.WriteString(raw)
			continue
		}
		switch toks[0].Text {
		case "config":
			words := make([]string, 0, len(toks)-1)
			for _, t := range toks[1:] {
				words = append(words, t.Text)
			}
			stack = append(stack, strings.Join(words, " "))
		case "end":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case "set", "unset":
			if len(stack) != 1 || stack[0] != "system mailserver" || !queueLine(recs[i]) {
				break
			}
			indent := raw[:len(raw)-len(strings.TrimLeft(raw, " \t"))]
			out.WriteString(indent + "config mail-queue\n" + indent + "    edit \"default\"\n")
			for ; i < len(recs) && queueLine(recs[i]); i++ {
				out.WriteString(indent + "        " + strings.TrimRight(strings.TrimLeft(recs[i].raw, " \t"), "\n") + "\n")
			}
			i--
			out.WriteString(indent + "    next\n" + indent + "end\n")
			continue
		}
		out.WriteString(raw)
	}
	return out.String()
}

// migrate1 translates a format 1 text to format 2.
func migrate1(text string) string {
	type frame struct {
		path string
		ren  *blockRename
	}
	var (
		out    strings.Builder
		stack  []frame
		admins = map[string]*v1Admin{}
		// replaced holds the new text of lines of admin entries; an
		// empty one drops the line.
		replaced = map[int]string{}
		// Format 1 used every relay server it had; format 2 only with
		// relay-server-status enable.
		relays bool
	)
	recs := records(text)
	for i, r := range recs {
		raw, toks := r.raw, r.toks
		if n, ok := replaced[i]; ok {
			out.WriteString(n)
			continue
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
		inAdmin := len(stack) == 1 && stack[0].path == "system admin"
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
		case "end":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case "edit", "delete", "rename", "purge":
			if toks[0].Text == "edit" && len(stack) == 1 && stack[0].path == "mailsetting relayserver" {
				relays = true
			}
			if inAdmin {
				migrateAdmin(recs, i, admins, replaced)
			}
		case "set", "unset", "append":
			if len(stack) == 0 || len(toks) < 2 {
				break
			}
			if len(stack) == 1 && stack[0].path == "system interface" && toks[1].Text == "allowaccess" && !hasAttr(recs, i, "mailaccess") {
				raw = migrateAllowAccess(indent, toks, nl)
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

// hasAttr reports whether the entry of recs[at] sets attr in a later
// line: a text that has mailaccess is in format 2 already.
func hasAttr(recs []record, at int, attr string) bool {
	for _, r := range recs[at+1:] {
		if len(r.toks) == 0 || IsComment(r.toks) {
			continue
		}
		switch r.toks[0].Text {
		case "next", "end", "edit", "config":
			return false
		}
		if len(r.toks) > 1 && r.toks[1].Text == attr {
			return true
		}
	}
	return false
}

// v1MailAccess is what format 1's allowaccess smtp opened: every mail
// port, which format 2 lists in mailaccess.
const v1MailAccess = "smtp smtps imap imaps pop3 pop3s"

// migrateAllowAccess splits a format 1 allowaccess line of a system
// interface entry into allowaccess (ping, ssh, https) and mailaccess:
// every mail service with smtp, none without it.
func migrateAllowAccess(indent string, toks []Token, nl string) string {
	verb := toks[0].Text
	if verb == "unset" {
		return indent + "unset allowaccess\n" + indent + "unset mailaccess" + nl
	}
	var admin []string
	mail := ""
	for _, t := range toks[2:] {
		if t.Text == "smtp" {
			mail = v1MailAccess
		} else {
			admin = append(admin, t.Text)
		}
	}
	if verb == "append" {
		var out []string
		if len(admin) > 0 {
			out = append(out, indent+"append allowaccess "+strings.Join(admin, " "))
		}
		if mail != "" {
			out = append(out, indent+"append mailaccess "+mail)
		}
		if len(out) == 0 {
			return ""
		}
		return strings.Join(out, "\n") + nl
	}
	orNone := func(words string) string {
		if words == "" {
			return `""`
		}
		return words
	}
	return indent + "set allowaccess " + orNone(strings.Join(admin, " ")) + "\n" + indent + "set mailaccess " + orNone(mail) + nl
}

// A record is one logical line of a text: its physical lines (a quoted
// value may span several) and its words.
type record struct {
	raw  string
	toks []Token
}

func records(text string) []record {
	var recs []record
	physical := strings.SplitAfter(text, "\n")
	for i := 0; i < len(physical); i++ {
		raw := physical[i]
		toks, open := SplitLine(raw)
		for open && i+1 < len(physical) {
			i++
			raw += physical[i]
			toks, open = SplitLine(raw)
		}
		recs = append(recs, record{raw, toks})
	}
	return recs
}

// v1Admin is what the first release's separate attributes of one
// `config system admin` entry hold: ssh-public-key1..3 and trusthost1..3.
// Format 2 has one list for each, sshkey and trusted-hosts.
type v1Admin struct {
	keys, hosts [3]string
}

// v1AdminDefault is an entry as `edit` created it in the first release.
func v1AdminDefault() *v1Admin {
	return &v1Admin{hosts: [3]string{"0.0.0.0/0", "::/0", ""}}
}

// v1AdminSlot tells which old attribute name is: a key or a trusted host,
// and its number (0-2).
func v1AdminSlot(name string) (hosts bool, slot int, ok bool) {
	for i, n := range []string{"1", "2", "3"} {
		switch name {
		case "ssh-public-key" + n:
			return false, i, true
		case "trusthost" + n:
			return true, i, true
		}
	}
	return false, 0, false
}

// migrateAdmin translates the command at recs[at] of a first-release
// `config system admin` block. For `edit NAME` it follows the entry to its
// `next` as the first release read it: the entry starts from its values so
// far (from the factory values when the text creates it), each `set`
// (`append`) or `unset` of an old attribute changes its slot, an empty
// value empties it. The first old line of each kind is replaced by one
// `set sshkey ...` or `set trusted-hosts ...` with the non-empty slots in
// order, the later ones are dropped. The list thus replaces the factory
// value 0.0.0.0/0 ::/0 rather than adding to it, and holds exactly the
// networks the first release trusted; with none left it is unset, which
// is any address, as an entry without trusted hosts was. `delete`,
// `rename` and `purge` move or drop the entries' values.
func migrateAdmin(recs []record, at int, admins map[string]*v1Admin, replaced map[int]string) {
	toks := recs[at].toks
	switch toks[0].Text {
	case "purge":
		clear(admins)
		return
	case "delete":
		for _, t := range toks[1:] {
			delete(admins, t.Text)
		}
		return
	case "rename":
		if len(toks) == 4 && toks[2].Text == "to" {
			if a, ok := admins[toks[1].Text]; ok {
				delete(admins, toks[1].Text)
				admins[toks[3].Text] = a
			}
		}
		return
	}
	if len(toks) != 2 {
		return
	}
	a, ok := admins[toks[1].Text]
	if !ok {
		a = v1AdminDefault()
		admins[toks[1].Text] = a
	}
	first := [2]int{-1, -1} // the first line of keys, of hosts
	for i := at + 1; i < len(recs); i++ {
		t := recs[i].toks
		if len(t) == 0 || IsComment(t) {
			continue
		}
		if w := t[0].Text; w == "next" || w == "end" || w == "edit" || w == "config" {
			break
		}
		if len(t) < 2 || (t[0].Text != "set" && t[0].Text != "unset" && t[0].Text != "append") {
			continue
		}
		hosts, slot, ok := v1AdminSlot(t[1].Text)
		if !ok {
			continue
		}
		v := ""
		switch {
		case t[0].Text == "unset" && hosts:
			v = v1AdminDefault().hosts[slot]
		case t[0].Text != "unset":
			v = v1AdminValue(hosts, t[2:])
		}
		kind := 0
		if hosts {
			kind = 1
			a.hosts[slot] = v
		} else {
			a.keys[slot] = v
		}
		if first[kind] < 0 {
			first[kind] = i
		}
		replaced[i] = ""
	}
	for kind, i := range first {
		if i < 0 {
			continue
		}
		raw := recs[i].raw
		indent := raw[:len(raw)-len(strings.TrimLeft(raw, " \t"))]
		if kind == 0 {
			replaced[i] = indent + v1AdminList("sshkey", a.keys, false) + "\n"
		} else {
			replaced[i] = indent + v1AdminList("trusted-hosts", a.hosts, true) + "\n"
		}
	}
}

// v1AdminValue is the value of an old `set`: an empty word is empty, a
// network is in the canonical address/prefix form (the first release also
// took an IPv4 address and netmask). Anything else is kept as one element,
// which the current check refuses as the first release did.
func v1AdminValue(hosts bool, toks []Token) string {
	if len(toks) == 1 && toks[0].Text == "" {
		return ""
	}
	if hosts {
		if p, err := parsePrefix(toks); err == nil {
			return p
		}
	}
	words := make([]string, len(toks))
	for i, t := range toks {
		words[i] = t.Text
	}
	return strings.Join(words, " ")
}

// v1AdminList is the format 2 line for an entry's old slots.
func v1AdminList(name string, slots [3]string, hosts bool) string {
	var words []string
	seen := map[string]bool{}
	for _, v := range slots {
		if v == "" || seen[v] {
			continue
		}
		seen[v] = true
		if p, err := netip.ParsePrefix(v); hosts && err == nil && p.String() == v {
			words = append(words, v)
		} else {
			words = append(words, Quote(v))
		}
	}
	if len(words) == 0 {
		return "unset " + name
	}
	return "set " + name + " " + strings.Join(words, " ")
}
