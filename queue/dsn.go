package queue

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// Delivery status notifications (RFC 3464): multipart/report with a
// human-readable part, a message/delivery-status part and the original
// headers as text/rfc822-headers. They are sent from the null sender to
// the original envelope sender, never for a message from the null sender.

const (
	maxDSNHeaders = 64 << 10 // original headers included in a DSN
	maxDiagLen    = 900      // keeps DSN lines under the 998-octet limit
)

// dsnRcpt is one recipient in a DSN.
type dsnRcpt struct {
	addr   string
	status string    // x.y.z
	remote string    // next hop, "" if none was reached
	code   int       // SMTP reply code, 0 if none
	diag   string    // the reply or the reason
	last   time.Time // last attempt
	until  time.Time // delayed: retried until
	reason string    // human-readable, when it differs from diag
}

func dsnFor(rc *prcpt, status string, last time.Time) dsnRcpt {
	return dsnRcpt{addr: rc.Addr, status: status, remote: rc.Host, code: rc.Code,
		diag: formatReply(rc.Code, rc.Enh, rc.Text), last: last}
}

// statusFor returns an enhanced status code of the given class ('4' or
// '5') for a reply's enhanced code.
func statusFor(class byte, enh string) string {
	if validEnhanced(enh) {
		if enh[0] == class {
			return enh
		}
		return string(class) + enh[1:]
	}
	return string(class) + ".0.0"
}

func validEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return d.Round(time.Second).String()
}

type dsnInput struct {
	id       string // the DSN's queue ID
	host     string
	from     string // From address ("": MAILER-DAEMON@host)
	fromName string // its display name ("": Mail Delivery System)
	orig     *message
	action   string // "failed" or "delayed"
	rcpts    []dsnRcpt
	headers  []byte // of the original message
	now      time.Time
}

// quoteDisplayName quotes a display name that is not a plain phrase
// (RFC 5322 atoms and spaces).
func quoteDisplayName(s string) string {
	for _, r := range s {
		if !(r == ' ' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
		}
	}
	return s
}

// clean makes s safe for a header field value.
func clean(s string) string {
	s = oneLine(s)
	if len(s) > maxDiagLen {
		s = s[:maxDiagLen]
	}
	return s
}

// buildDSN renders a DSN with CRLF line ends.
func buildDSN(in dsnInput) []byte {
	var rb [8]byte
	rand.Read(rb[:])
	boundary := "=_" + in.id + "." + hex.EncodeToString(rb[:])
	sender := clean(in.orig.p.Env.From)
	host := clean(in.host)
	date := in.now.Format(time.RFC1123Z)

	var b bytes.Buffer
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}
	subject := "Undelivered Mail Returned to Sender"
	if in.action == "delayed" {
		subject = "Delayed Mail (still being retried)"
	}
	line("Date: %s", date)
	from, name := clean(in.from), clean(in.fromName)
	if from == "" {
		from = "MAILER-DAEMON@" + host
	}
	if name == "" {
		name = "Mail Delivery System"
	}
	line("From: %s <%s>", quoteDisplayName(name), from)
	line("To: <%s>", sender)
	line("Subject: %s", subject)
	line("Message-ID: <%s.dsn@%s>", in.id, host)
	if mid := headerValue(in.headers, "Message-Id"); mid != "" {
		line("In-Reply-To: %s", clean(mid))
		line("References: %s", clean(mid))
	}
	line("Auto-Submitted: auto-replied")
	line("MIME-Version: 1.0")
	line("Content-Type: multipart/report; report-type=delivery-status;")
	line("\tboundary=\"%s\"", boundary)
	line("Content-Transfer-Encoding: 8bit")
	line("")
	line("This is a MIME-encapsulated message.")
	line("")

	// Human-readable part.
	line("--%s", boundary)
	line("Content-Description: Notification")
	line("Content-Type: text/plain; charset=utf-8")
	line("Content-Transfer-Encoding: 8bit")
	line("")
	line("This is the mail system at host %s.", host)
	line("")
	received := fromNano(in.orig.p.Received)
	if in.action == "delayed" {
		line("####################################################################")
		line("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #")
		line("####################################################################")
		line("")
		line("Your message could not be delivered for %s.", humanDuration(in.now.Sub(received)))
		if len(in.rcpts) > 0 && !in.rcpts[0].until.IsZero() {
			line("It will be retried until %s.", in.rcpts[0].until.Format(time.RFC1123Z))
		}
	} else {
		line("I'm sorry to have to inform you that your message could not")
		line("be delivered to one or more recipients. The headers of your")
		line("message are attached below.")
	}
	line("")
	for _, r := range in.rcpts {
		why := r.reason
		switch {
		case why != "":
		case r.remote != "" && r.code != 0:
			why = fmt.Sprintf("host %s said: %s", clean(r.remote), r.diag)
		case r.remote != "":
			why = fmt.Sprintf("%s (host %s)", r.diag, clean(r.remote))
		default:
			why = r.diag
		}
		line("<%s>: %s", clean(r.addr), clean(why))
	}
	line("")

	// Machine-readable part.
	line("--%s", boundary)
	line("Content-Description: Delivery report")
	line("Content-Type: message/delivery-status")
	line("")
	line("Reporting-MTA: dns; %s", host)
	line("X-Mailgate-Queue-ID: %s", in.orig.id)
	line("Arrival-Date: %s", received.Format(time.RFC1123Z))
	for _, r := range in.rcpts {
		line("")
		line("Final-Recipient: rfc822; %s", clean(r.addr))
		line("Action: %s", in.action)
		line("Status: %s", r.status)
		if r.remote != "" {
			line("Remote-MTA: dns; %s", clean(r.remote))
		}
		switch {
		case r.code != 0:
			line("Diagnostic-Code: smtp; %s", clean(r.diag))
		case r.diag != "":
			line("Diagnostic-Code: X-Mailgate; %s", clean(r.diag))
		}
		if !r.last.IsZero() {
			line("Last-Attempt-Date: %s", r.last.Format(time.RFC1123Z))
		}
		if in.action == "delayed" && !r.until.IsZero() {
			line("Will-Retry-Until: %s", r.until.Format(time.RFC1123Z))
		}
	}
	line("")

	// The original headers.
	line("--%s", boundary)
	line("Content-Description: Undelivered Message Headers")
	line("Content-Type: text/rfc822-headers")
	line("Content-Transfer-Encoding: 8bit")
	line("")
	b.Write(crlf(in.headers))
	line("")
	line("--%s--", boundary)
	return b.Bytes()
}

// crlf returns h with CRLF line ends, ending in CRLF.
func crlf(h []byte) []byte {
	if len(h) == 0 {
		return nil
	}
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(h, []byte("\n")) {
		l = bytes.TrimRight(l, "\r\n")
		out.Write(l)
		out.WriteString("\r\n")
	}
	b := out.Bytes()
	for bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		b = b[:len(b)-2]
	}
	return b
}

// readHeaders returns the header section of a stored message (up to
// maxDSNHeaders, cut at a line end).
func (q *Queue) readHeaders(m *message) []byte {
	r, err := q.openMsg(m)
	if err != nil {
		return nil
	}
	defer r.Close()
	br := bufio.NewReader(io.LimitReader(r, maxDSNHeaders))
	var out []byte
	for {
		ln, err := br.ReadSlice('\n')
		if len(ln) > 0 && (err == nil || err == io.EOF) {
			if len(bytes.TrimRight(ln, "\r\n")) == 0 {
				break
			}
			// A last line without its end is kept unless the limit cut it.
			if err == nil || len(out)+len(ln) < maxDSNHeaders {
				out = append(out, ln...)
			}
		}
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: skip the rest of it.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			break
		}
	}
	return out
}

// headerValue returns the first value of a header field in a header
// section ("" if absent).
func headerValue(h []byte, name string) string {
	lines := strings.Split(string(h), "\n")
	for i, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			continue
		}
		v = strings.TrimSpace(v)
		for _, c := range lines[i+1:] {
			if !strings.HasPrefix(c, " ") && !strings.HasPrefix(c, "\t") {
				break
			}
			v += " " + strings.TrimSpace(c)
		}
		return v
	}
	return ""
}
