package mailstore

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode headers in any charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Envelope is what IMAP's ENVELOPE reports of a message's header: decoded
// text (UTF-8), addresses split into their parts. Sender and ReplyTo are
// From when the header has none (RFC 3501, 7.4.2).
type Envelope struct {
	Date      time.Time `json:"date,omitzero"`
	Subject   string    `json:"subject,omitempty"`
	From      []Address `json:"from,omitempty"`
	Sender    []Address `json:"sender,omitempty"`
	ReplyTo   []Address `json:"replyTo,omitempty"`
	To        []Address `json:"to,omitempty"`
	Cc        []Address `json:"cc,omitempty"`
	Bcc       []Address `json:"bcc,omitempty"`
	InReplyTo []string  `json:"inReplyTo,omitempty"` // message IDs without angle brackets
	MessageID string    `json:"messageID,omitempty"` // without angle brackets
}

// Address is one mailbox of an address list.
type Address struct {
	Name    string `json:"name,omitempty"` // display name, decoded
	Mailbox string `json:"mailbox"`        // local part
	Host    string `json:"host"`           // domain
}

// Part is one node of a message's MIME structure, what IMAP's
// BODYSTRUCTURE reports. Sizes and line counts are of the part's body as
// stored (still transfer-encoded), in octets of the stored file.
type Part struct {
	Type        string            `json:"type"`    // lower case: "text", "multipart", ...
	Subtype     string            `json:"subtype"` // lower case: "plain", "mixed", ...
	Params      map[string]string `json:"params,omitempty"`
	ID          string            `json:"id,omitempty"`
	Description string            `json:"description,omitempty"`
	Encoding    string            `json:"encoding,omitempty"` // Content-Transfer-Encoding, lower case
	Size        int64             `json:"size"`
	Lines       int64             `json:"lines"` // newlines in the body
	// Disposition and its parameters, Language and Location are the
	// extension data of both single and multipart bodies.
	Disposition       string            `json:"disposition,omitempty"`
	DispositionParams map[string]string `json:"dispositionParams,omitempty"`
	Language          []string          `json:"language,omitempty"`
	Location          string            `json:"location,omitempty"`
	MD5               string            `json:"md5,omitempty"`

	Children []Part `json:"children,omitempty"` // of a multipart
	// Of a message/rfc822 (or message/global) part: the enclosed
	// message's envelope and structure.
	Message *Envelope `json:"message,omitempty"`
	Inner   *Part     `json:"inner,omitempty"`
}

// Parsed is what the store caches of a message at delivery.
type Parsed struct {
	Envelope  Envelope `json:"envelope"`
	Structure Part     `json:"structure"`
}

// Limits of the structure parser: deeper or wider structures are counted
// as the body of the part at the limit.
const (
	maxDepth = 16
	maxParts = 1000
)

// Parse reads a message (header and body) and returns its envelope and
// MIME structure. It never fails: what cannot be parsed is reported as
// well as can be (a header that does not parse gives an empty envelope, a
// broken multipart its children up to the break). It reads r to its end.
func Parse(r io.Reader) *Parsed {
	cr := &countReader{r: r}
	br := bufio.NewReader(cr)
	p := &Parsed{}
	h, err := textproto.ReadHeader(br)
	if err != nil {
		// Not a header we can read: one text/plain body, as IMAP servers
		// report a message without a header.
		rest := &countReader{r: br}
		io.Copy(io.Discard, rest)
		p.Structure = Part{Type: "text", Subtype: "plain", Params: map[string]string{"charset": "us-ascii"},
			Size: cr.n, Lines: cr.lines}
		return p
	}
	p.Envelope = extractEnvelope(h)
	budget := maxParts
	p.Structure = extractPart(h, br, 0, &budget, "")
	io.Copy(io.Discard, br)
	return p
}

var newline = []byte{'\n'}

// countReader counts the octets and newlines it reads.
type countReader struct {
	r     io.Reader
	n     int64
	lines int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.lines += int64(bytes.Count(p[:n], newline))
	return n, err
}

func extractPart(raw textproto.Header, r io.Reader, depth int, budget *int, parentType string) Part {
	h := gomessage.Header{Header: raw}
	mediaType, params, err := h.ContentType()
	switch {
	case !raw.Has("Content-Type") && parentType == "multipart/digest":
		mediaType, params = "message/rfc822", nil
	case !raw.Has("Content-Type") || err != nil || !strings.Contains(mediaType, "/"):
		mediaType, params = "text/plain", map[string]string{"charset": "us-ascii"}
	}
	typ, sub, _ := strings.Cut(strings.ToLower(mediaType), "/")
	p := Part{
		Type:        typ,
		Subtype:     sub,
		Params:      nonEmpty(params),
		ID:          headerText(raw, "Content-Id"),
		Description: decodedText(h, "Content-Description"),
		Encoding:    strings.ToLower(headerText(raw, "Content-Transfer-Encoding")),
		Location:    headerText(raw, "Content-Location"),
		MD5:         headerText(raw, "Content-Md5"),
		Language:    language(raw),
	}
	if disp, dp, err := h.ContentDisposition(); err == nil && disp != "" {
		p.Disposition, p.DispositionParams = strings.ToLower(disp), nonEmpty(dp)
	}
	*budget--
	cr := &countReader{r: r}
	switch {
	case typ == "multipart" && depth < maxDepth && *budget > 0 && params["boundary"] != "":
		mr := textproto.NewMultipartReader(cr, params["boundary"])
		for *budget > 0 {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			p.Children = append(p.Children, extractPart(part.Header, part, depth+1, budget, typ+"/"+sub))
		}
	case (typ == "message" && (sub == "rfc822" || sub == "global")) && depth < maxDepth && *budget > 0:
		br := bufio.NewReader(cr)
		inner, err := textproto.ReadHeader(br)
		if err == nil {
			env := extractEnvelope(inner)
			ip := extractPart(inner, br, depth+1, budget, "")
			p.Message, p.Inner = &env, &ip
		}
		io.Copy(io.Discard, br)
	}
	io.Copy(io.Discard, cr)
	p.Size, p.Lines = cr.n, cr.lines
	if typ == "multipart" && len(p.Children) == 0 {
		// A multipart without parts is not one IMAP can describe: report
		// its body as text.
		p.Type, p.Subtype = "text", "plain"
	}
	return p
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func headerText(h textproto.Header, k string) string {
	return strings.TrimSpace(h.Get(k))
}

func decodedText(h gomessage.Header, k string) string {
	s, err := h.Text(k)
	if err != nil {
		return strings.TrimSpace(h.Get(k))
	}
	return strings.TrimSpace(s)
}

func language(h textproto.Header) []string {
	v := h.Get("Content-Language")
	if v == "" {
		return nil
	}
	var l []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l = append(l, s)
		}
	}
	return l
}

func extractEnvelope(raw textproto.Header) Envelope {
	h := mail.Header{Header: gomessage.Header{Header: raw}}
	var e Envelope
	if d, err := h.Date(); err == nil {
		e.Date = d
	}
	e.Subject = decodedText(h.Header, "Subject")
	e.From = addresses(h, "From")
	e.Sender = addresses(h, "Sender")
	e.ReplyTo = addresses(h, "Reply-To")
	e.To = addresses(h, "To")
	e.Cc = addresses(h, "Cc")
	e.Bcc = addresses(h, "Bcc")
	if len(e.Sender) == 0 {
		e.Sender = e.From
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = e.From
	}
	if ids, err := h.MsgIDList("In-Reply-To"); err == nil {
		e.InReplyTo = ids
	}
	if id, err := h.MessageID(); err == nil {
		e.MessageID = id
	}
	return e
}

func addresses(h mail.Header, k string) []Address {
	if !h.Has(k) {
		return nil
	}
	list, err := h.AddressList(k)
	if err != nil {
		return nil
	}
	var out []Address
	for _, a := range list {
		if a == nil {
			continue
		}
		i := strings.LastIndexByte(a.Address, '@')
		if i < 0 {
			out = append(out, Address{Name: a.Name, Mailbox: a.Address})
			continue
		}
		out = append(out, Address{Name: a.Name, Mailbox: a.Address[:i], Host: a.Address[i+1:]})
	}
	return out
}
