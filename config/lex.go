package config

import (
	"strings"
)

// Token is one word of a command line.
type Token struct {
	Text   string
	Quoted bool // any part was quoted: "" is an empty value, not nothing
}

// SplitLine splits one command line into words. Double and single quotes
// group words and may span lines (certificates); a backslash escapes the
// next character inside double quotes and outside quotes. open reports a
// quote still open at the end: the caller appends the next physical line
// (with "\n") and splits again.
func SplitLine(s string) (toks []Token, open bool) {
	var cur strings.Builder
	inWord, quoted := false, false
	var quote byte
	flush := func() {
		if inWord {
			toks = append(toks, Token{Text: cur.String(), Quoted: quoted})
		}
		cur.Reset()
		inWord, quoted = false, false
	}
	// Bytes, not runes: every special character is ASCII, and other bytes
	// (invalid UTF-8 too) pass through unchanged, as Quote promises.
	rs := []byte(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(rs) && (rs[i+1] == '"' || rs[i+1] == '\\') {
				i++
				cur.WriteByte(rs[i])
			} else {
				cur.WriteByte(r)
			}
		case r == '"' || r == '\'':
			quote, inWord, quoted = r, true, true
		case r == ' ' || r == '\t' || r == '\r' || r == '\n':
			flush()
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteByte(rs[i])
			inWord = true
		default:
			cur.WriteByte(r)
			inWord = true
		}
	}
	if quote != 0 {
		return toks, true
	}
	flush()
	return toks, false
}

// Lines splits a configuration text into logical command lines, joining
// physical lines while a quote is open. Blank lines are dropped; comment
// lines (starting with '#') are kept so callers can see headers.
func Lines(text string) ([][]Token, error) {
	var out [][]Token
	var pending string
	var pendingLine int
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if pending != "" {
			line = pending + "\n" + line
		} else {
			pendingLine = i + 1
		}
		toks, open := SplitLine(line)
		if open {
			pending = line
			continue
		}
		pending = ""
		if len(toks) > 0 {
			out = append(out, toks)
		}
	}
	if pending != "" {
		return out, &Error{Code: CodeParse, Msg: "unterminated quote", Detail: lineRef(pendingLine)}
	}
	return out, nil
}

// Quote renders s as a double-quoted word that SplitLine reads back as s.
func Quote(s string) string {
	return `"` + quoteReplacer.Replace(s) + `"`
}

var quoteReplacer = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// IsComment reports whether a line is a comment ("#...").
func IsComment(toks []Token) bool {
	return len(toks) > 0 && !toks[0].Quoted && strings.HasPrefix(toks[0].Text, "#")
}
