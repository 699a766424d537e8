package mailstore

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseStructures(t *testing.T) {
	// A message/rfc822 attachment inside a digest default, a header-less
	// message and a multipart without parts.
	msg := "Subject: outer\r\nContent-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\n" +
		"Subject: inner\r\nFrom: x@y.z\r\n\r\ninner body\r\n--b--\r\n"
	p := Parse(strings.NewReader(msg))
	if p.Envelope.Subject != "outer" || len(p.Structure.Children) != 1 {
		t.Fatalf("digest %+v", p.Structure)
	}
	c := p.Structure.Children[0]
	if c.Type != "message" || c.Subtype != "rfc822" || c.Message == nil || c.Message.Subject != "inner" ||
		c.Inner == nil || c.Inner.Type != "text" || c.Inner.Size != int64(len("inner body")) {
		t.Fatalf("digest part %+v", c)
	}
	p = Parse(strings.NewReader("no header here"))
	if p.Structure.Type != "text" || p.Structure.Size != int64(len("no header here")) {
		t.Fatalf("header-less %+v", p.Structure)
	}
	p = Parse(strings.NewReader("Content-Type: multipart/mixed; boundary=q\r\n\r\nno parts at all\r\n"))
	if p.Structure.Type != "text" || len(p.Structure.Children) != 0 {
		t.Fatalf("empty multipart %+v", p.Structure)
	}
	p = Parse(strings.NewReader("To: undisclosed-recipients:;\r\nFrom: \"A, B\" <a@b.c>\r\nIn-Reply-To: <x@y> <z@w>\r\n\r\n"))
	if len(p.Envelope.From) != 1 || p.Envelope.From[0].Name != "A, B" || len(p.Envelope.InReplyTo) != 2 {
		t.Fatalf("envelope %+v", p.Envelope)
	}
	// Deep nesting stops at maxDepth without failing.
	var b strings.Builder
	for i := 0; i < 40; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n")
	}
	b.WriteString("\r\nleaf\r\n")
	p = Parse(strings.NewReader(b.String()))
	depth := 0
	for s := &p.Structure; len(s.Children) > 0; s = &s.Children[0] {
		depth++
	}
	if depth > maxDepth {
		t.Fatalf("depth %d", depth)
	}
}

// FuzzParse feeds arbitrary bytes to the envelope and structure parser: it
// must not panic, must read its input to the end, and its result must
// encode as the index stores it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"Subject: x\r\n\r\nbody",
		"From: a@b\r\nTo: c@d, \"E F\" <e@f>\r\nCc: group: g@h;\r\nContent-Type: multipart/alternative; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nA\r\n--x\r\nContent-Type: text/html\r\n\r\n<b>B</b>\r\n--x--\r\n",
		"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n",
		"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n",
		"Subject: =?utf-8?b?w6k=?= =?iso-8859-1?q?=E9?=\r\nDate: Mon, 2 Jan 2006 15:04:05 +0000\r\n\r\n",
		"Content-Type: text/plain; charset*=utf-8''%E2%82%AC\r\nContent-Disposition: attachment; filename*0=a; filename*1=b\r\n\r\n",
		"\r\n\r\n\r\n",
		"Bad header line\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		p := Parse(r)
		if r.Len() != 0 {
			t.Fatalf("%d octets left unread", r.Len())
		}
		if p.Structure.Size < 0 || p.Structure.Size > int64(len(data)) {
			t.Fatalf("size %d of %d octets", p.Structure.Size, len(data))
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Parsed
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
	})
}
