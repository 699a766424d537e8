package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// loc is where a message body is stored: in a journal segment or in a
// body file of its own, with its length and CRC-32C.
type loc struct {
	seg uint32
	off int64
	n   int64
	crc uint32
}

const locLen = 24

func (l loc) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, l.seg)
	b = binary.LittleEndian.AppendUint64(b, uint64(l.off))
	b = binary.LittleEndian.AppendUint64(b, uint64(l.n))
	return binary.LittleEndian.AppendUint32(b, l.crc)
}

func decodeLoc(b []byte) (loc, error) {
	if len(b) < locLen {
		return loc{}, errors.New("short location")
	}
	return loc{
		seg: binary.LittleEndian.Uint32(b),
		off: int64(binary.LittleEndian.Uint64(b[4:])),
		n:   int64(binary.LittleEndian.Uint64(b[12:])),
		crc: binary.LittleEndian.Uint32(b[20:]),
	}, nil
}

// A message's state as stored: in the index, a value is the body location
// followed by this structure in JSON (see encodeValue). Times are Unix
// nanoseconds, 0 for none. The size of the message is the length of its
// body.
type pmsg struct {
	Env      Envelope `json:"env"`
	Received int64    `json:"rcvd"`
	Dead     bool     `json:"dead,omitempty"`
	Rcpts    []prcpt  `json:"rcpts"`
}

type prcpt struct {
	Addr     string `json:"a"`
	State    string `json:"s"`
	Attempts int    `json:"n,omitempty"`
	First    int64  `json:"f,omitempty"`
	Last     int64  `json:"l,omitempty"`
	Next     int64  `json:"x,omitempty"`
	Err      string `json:"e,omitempty"`  // last reply or reason, formatted
	Code     int    `json:"c,omitempty"`  // last SMTP reply code, 0 when none
	Enh      string `json:"en,omitempty"` // last enhanced status code
	Text     string `json:"t,omitempty"`  // last reply text or reason
	Host     string `json:"h,omitempty"`  // next hop of the last attempt
	TLS      string `json:"tls,omitempty"`
	Plain    bool   `json:"p,omitempty"` // next attempt in plain text
	Warned   bool   `json:"w,omitempty"` // delay notification sent
}

func (r *prcpt) final() bool { return r.State == StateDelivered || r.State == StateBounced }

func encodeValue(l loc, p *pmsg) ([]byte, error) {
	j, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return append(l.append(make([]byte, 0, locLen+len(j))), j...), nil
}

func encodeMeta(p *pmsg) ([]byte, error) { return json.Marshal(p) }

func decodeValue(v []byte) (loc, *pmsg, error) {
	l, err := decodeLoc(v)
	if err != nil {
		return loc{}, nil, err
	}
	p := new(pmsg)
	if err := json.Unmarshal(v[locLen:], p); err != nil {
		return loc{}, nil, fmt.Errorf("message state: %w", err)
	}
	return l, p, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// message is a queued message in memory. The fields are guarded by
// Queue.mu.
type message struct {
	id      string
	loc     loc
	p       pmsg
	busy    []bool // recipient has a job waiting or running
	due     int64  // heap key: the earliest NextAttempt of an idle pending recipient
	hidx    int    // index in the heap, -1 when not in it
	deleted bool
}

func newMessage(id string, l loc, p *pmsg) *message {
	return &message{id: id, loc: l, p: *p, busy: make([]bool, len(p.Rcpts)), hidx: -1}
}

// value encodes the message's current state for the journal and index.
func (m *message) value() []byte {
	v, err := encodeValue(m.loc, &m.p)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	return v
}

// done reports whether no recipient is left to deliver.
func (m *message) done() bool {
	for i := range m.p.Rcpts {
		if !m.p.Rcpts[i].final() {
			return false
		}
	}
	return true
}

// lastAttempt is when a recipient of m was last attempted (when m was
// received if none was).
func (m *message) lastAttempt() time.Time {
	last := m.p.Received
	for _, r := range m.p.Rcpts {
		last = max(last, r.Last)
	}
	return fromNano(last)
}

func (m *message) export() Message {
	out := Message{
		ID:       m.id,
		From:     m.p.Env.From,
		Size:     m.loc.n,
		Received: fromNano(m.p.Received),
		Env:      m.p.Env,
		Dead:     m.p.Dead,
	}
	out.Env.Recipients = append([]string(nil), m.p.Env.Recipients...)
	out.Recipients = make([]Recipient, len(m.p.Rcpts))
	for i, r := range m.p.Rcpts {
		out.Recipients[i] = Recipient{
			Addr:         r.Addr,
			State:        r.State,
			Attempts:     r.Attempts,
			FirstAttempt: fromNano(r.First),
			LastAttempt:  fromNano(r.Last),
			NextAttempt:  fromNano(r.Next),
			LastError:    r.Err,
			PreferPlain:  r.Plain,
			Warned:       r.Warned,
		}
		if r.final() {
			out.Recipients[i].NextAttempt = time.Time{}
		}
	}
	return out
}

// domainOf returns the lower-case domain of an address ("" without one).
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], ">"))
}

// formatReply renders a result as "550 5.1.1 text" (or the text alone).
func formatReply(code int, enh, text string) string {
	text = oneLine(text)
	var b strings.Builder
	if code != 0 {
		fmt.Fprintf(&b, "%d", code)
	}
	if enh != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(enh)
	}
	if text != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(text)
	}
	return b.String()
}

// oneLine folds a multi-line reply into one line without control
// characters.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\t\x00") {
		return s
	}
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' })
	s = strings.Join(f, " ")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
