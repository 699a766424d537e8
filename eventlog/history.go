package eventlog

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

const bucketHistory = "history"

// History is one record of the history log: what happened to one message
// for one recipient (accepted and delivered, bounced, rejected, ...).
type History struct {
	ID          uint64
	Time        time.Time
	SessionID   string
	MsgID       string
	ClientIP    string
	From, To    string
	Classifier  string // why: "Access Control Relay", "TLS Enforcement", "Relay Denied", ...
	Disposition string // what: "Delivered", "Bounced", "Reject", "Discard", "Temp Fail", "Deleted", ...
	TLS         string // inbound TLS ("TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits"), "" for plain text
	Status      string // the reply given or received
	Host        string // next hop for deliveries
	RelayTLS    string // TLS of the delivery to Host, "" for plain text
}

type historyRecord struct {
	Time        int64  `json:"t"`
	SessionID   string `json:"s,omitempty"`
	MsgID       string `json:"i,omitempty"`
	ClientIP    string `json:"c,omitempty"`
	From        string `json:"f"`
	To          string `json:"r"`
	Classifier  string `json:"k,omitempty"`
	Disposition string `json:"d"`
	TLS         string `json:"l,omitempty"`
	Status      string `json:"x,omitempty"`
	Host        string `json:"h,omitempty"`
	RelayTLS    string `json:"o,omitempty"`
}

type queuedHistory History

func (h *queuedHistory) encode(uint64) ([]byte, error) {
	return json.Marshal(historyRecord{Time: h.Time.UnixNano(), SessionID: h.SessionID, MsgID: h.MsgID,
		ClientIP: h.ClientIP, From: h.From, To: h.To, Classifier: h.Classifier, Disposition: h.Disposition,
		TLS: h.TLS, Status: h.Status, Host: h.Host, RelayTLS: h.RelayTLS})
}

// History queues a history record; like Log it never blocks.
func (l *Log) History(h History) {
	if h.Time.IsZero() {
		h.Time = time.Now()
	}
	h.ID = 0
	q := queuedHistory(h)
	l.w.enqueue(bucketHistory, &q)
}

// HistoryFilter selects history records.
type HistoryFilter struct {
	Since, Until time.Time
	Disposition  string // exact, case-insensitive ("" = all)
	Contains     string // case-insensitive substring of from, to, client, message id, classifier or status
	Limit        int    // newest N (0 = all)
}

func (f *HistoryFilter) match(h *History, contains string) bool {
	if !f.Since.IsZero() && h.Time.Before(f.Since) || !f.Until.IsZero() && !h.Time.Before(f.Until) {
		return false
	}
	if f.Disposition != "" && !strings.EqualFold(f.Disposition, h.Disposition) {
		return false
	}
	if contains == "" {
		return true
	}
	for _, v := range []string{h.From, h.To, h.ClientIP, h.MsgID, h.SessionID, h.Classifier, h.Status, h.Host} {
		if strings.Contains(strings.ToLower(v), contains) {
			return true
		}
	}
	return false
}

// QueryHistory returns committed history records matching f, oldest first
// (with a Limit: the newest Limit of them).
func (l *Log) QueryHistory(f HistoryFilter) ([]History, error) {
	contains := strings.ToLower(f.Contains)
	var out []History
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketHistory)).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var r historyRecord
			if len(k) != 8 || json.Unmarshal(v, &r) != nil {
				return fmt.Errorf("eventlog: bad history record %x", k)
			}
			h := History{ID: binary.BigEndian.Uint64(k), Time: time.Unix(0, r.Time), SessionID: r.SessionID, MsgID: r.MsgID,
				ClientIP: r.ClientIP, From: r.From, To: r.To, Classifier: r.Classifier, Disposition: r.Disposition,
				TLS: r.TLS, Status: r.Status, Host: r.Host, RelayTLS: r.RelayTLS}
			if !f.match(&h, contains) {
				continue
			}
			out = append(out, h)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// FormatHistory renders a history record as one line.
func FormatHistory(h History) string {
	var b strings.Builder
	b.WriteString(h.Time.Format("2006-01-02 15:04:05"))
	field := func(k, v string) {
		if v != "" {
			b.WriteString(" " + k + "=" + fieldValue(v))
		}
	}
	field("session", h.SessionID)
	field("id", h.MsgID)
	field("client", h.ClientIP)
	b.WriteString(" from=" + fieldValue("<"+h.From+">") + " to=" + fieldValue("<"+h.To+">"))
	field("classifier", h.Classifier)
	field("disposition", h.Disposition)
	tls := h.TLS
	if tls == "" {
		tls = "none"
	}
	field("tls", tls)
	field("relay", h.Host)
	if h.Host != "" {
		relayTLS := h.RelayTLS
		if relayTLS == "" {
			relayTLS = "none"
		}
		field("relay_tls", relayTLS)
	}
	if h.Status != "" {
		b.WriteString(" status=" + strconv.Quote(h.Status))
	}
	return b.String()
}
