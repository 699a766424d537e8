package queue

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"testing"
)

// parsedDSN is a delivery status notification taken apart.
type parsedDSN struct {
	job     Job
	hdr     mail.Header
	text    string                 // human-readable part
	status  textproto.MIMEHeader   // per-message fields
	rcpts   []textproto.MIMEHeader // per-recipient fields
	headers string                 // text/rfc822-headers part
}

func (d *parsedDSN) action() string { return d.rcpts[0].Get("Action") }

// lastDSN parses the last DSN the fake Deliverer was given.
func lastDSN(t *testing.T, dlv *fakeDeliverer) *parsedDSN {
	t.Helper()
	var a *attempt
	as := dlv.attempts()
	for i := range as {
		if as[i].job.From == "" {
			a = &as[i]
		}
	}
	if a == nil {
		t.Fatal("no DSN was delivered")
	}
	d, err := parseDSN(a.body)
	if err != nil {
		t.Fatalf("parsing the DSN: %v\n%s", err, a.body)
	}
	d.job = a.job
	return d
}

func parseDSN(b []byte) (*parsedDSN, error) {
	if bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) {
		return nil, errBareLF
	}
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	d := &parsedDSN{hdr: m.Header}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		return nil, err
	}
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return nil, errShape("content type " + mt + " " + params["report-type"])
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		body, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		switch ct {
		case "text/plain":
			d.text = string(body)
		case "message/delivery-status":
			tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
			for {
				h, err := tr.ReadMIMEHeader()
				if len(h) > 0 {
					if d.status == nil {
						d.status = h
					} else {
						d.rcpts = append(d.rcpts, h)
					}
				}
				if err != nil {
					break
				}
			}
		case "text/rfc822-headers":
			d.headers = string(body)
		}
	}
	if len(types) != 3 || types[0] != "text/plain" || types[1] != "message/delivery-status" || types[2] != "text/rfc822-headers" {
		return nil, errShape("parts " + joinStrings(types))
	}
	if d.status == nil || len(d.rcpts) == 0 {
		return nil, errShape("no delivery status fields")
	}
	return d, nil
}

type errShape string

func (e errShape) Error() string { return "DSN: " + string(e) }

var errBareLF = errShape("bare LF")

func joinStrings(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(x)
	}
	return b.String()
}
