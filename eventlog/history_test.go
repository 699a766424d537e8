package eventlog

import (
	"strings"
	"testing"
	"time"
)

func TestHistoryRecordsAndFilters(t *testing.T) {
	l, err := OpenBounded(t.TempDir(), 100, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i, d := range []string{"Delivered", "Reject", "Delivered", "Bounced", "Delivered", "Reject", "Delivered"} {
		l.History(History{Time: base.Add(time.Duration(i) * time.Minute), SessionID: "s1", MsgID: "M" + string(rune('A'+i)),
			ClientIP: "192.0.2.7", From: "a@example.org", To: "b@example.com", Classifier: "Protected Domain",
			Disposition: d, TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits", Status: "250 2.0.0 Ok", Host: "mx[192.0.2.25]:25"})
	}
	l.Log(Event{Level: Notice, Message: "not history"})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	all, err := l.QueryHistory(HistoryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || all[0].MsgID != "MC" || all[4].MsgID != "MG" {
		t.Fatalf("bounded history: %d records, first %q", len(all), all[0].MsgID)
	}
	rej, _ := l.QueryHistory(HistoryFilter{Disposition: "reject"})
	if len(rej) != 1 || rej[0].MsgID != "MF" {
		t.Fatalf("disposition filter: %+v", rej)
	}
	last, _ := l.QueryHistory(HistoryFilter{Limit: 2, Contains: "EXAMPLE.COM"})
	if len(last) != 2 || last[1].MsgID != "MG" {
		t.Fatalf("limit: %+v", last)
	}
	line := FormatHistory(all[0])
	for _, want := range []string{"session=s1", "id=MC", "client=192.0.2.7", "from=<a@example.org>", "disposition=Delivered", `tls="TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits"`, `status="250 2.0.0 Ok"`} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	evs, _ := l.Query(Filter{})
	if len(evs) != 1 {
		t.Fatalf("history records leaked into events: %d", len(evs))
	}
}
