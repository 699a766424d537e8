package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"mailgate/config"
	"mailgate/eventlog"
)

func (s *Session) queueList(con Console, args []config.Token) error {
	if err := s.usage(con, args, 0, "diagnose mailqueue list"); err != nil {
		return err
	}
	q, err := s.svc.Queue()
	if err != nil {
		return s.fail(con, err)
	}
	msgs, err := q.List()
	if err != nil {
		return s.fail(con, err)
	}
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format("01-02 15:04:05")
	}
	for _, m := range msgs {
		dead := ""
		if m.Dead {
			dead = " DEAD"
		}
		from := m.From
		if from == "" {
			from = "<>"
		}
		fmt.Fprintf(con, "%s%s  %d bytes  received %s  from %s\n", m.ID, dead, m.Size, stamp(m.Received), from)
		for _, r := range m.Recipients {
			fmt.Fprintf(con, "    %-32s %-9s attempts=%d first=%s last=%s next=%s\n", r.Addr, r.State, r.Attempts,
				stamp(r.FirstAttempt), stamp(r.LastAttempt), stamp(r.NextAttempt))
			if r.LastError != "" {
				fmt.Fprintf(con, "        reason: %s\n", r.LastError)
			}
		}
	}
	fmt.Fprintf(con, "%d message(s) in the queue\n", len(msgs))
	return nil
}

func (s *Session) queueView(con Console, args []config.Token) error {
	if err := s.usage(con, args, 1, "diagnose mailqueue view <id>"); err != nil {
		return err
	}
	q, err := s.svc.Queue()
	if err != nil {
		return s.fail(con, err)
	}
	r, _, err := q.Open(args[0].Text)
	if err != nil {
		return s.fail(con, &config.Error{Code: config.CodeNotFound, Msg: "entry not found", Detail: err.Error()})
	}
	defer r.Close()
	// The message goes out as stored (CRLF), so that
	// `ssh admin@host 'diagnose mailqueue view ID' > msg.eml` downloads it.
	_, err = io.Copy(con, r)
	return err
}

func (s *Session) queueRetry(con Console, args []config.Token) error {
	if err := s.usage(con, args, 1, "diagnose mailqueue retry <id>|all"); err != nil {
		return err
	}
	q, err := s.svc.Queue()
	if err != nil {
		return s.fail(con, err)
	}
	id := args[0].Text
	if id == "all" {
		id = ""
	}
	if err := q.Retry(id); err != nil {
		return s.fail(con, err)
	}
	s.svc.Event(eventlog.Notice, "queue", s.user, "", "retry requested for "+args[0].Text)
	fmt.Fprintln(con, "Scheduled for delivery now.")
	return nil
}

func (s *Session) queueDelete(con Console, args []config.Token) error {
	if err := s.usage(con, args, 1, "diagnose mailqueue delete <id>"); err != nil {
		return err
	}
	q, err := s.svc.Queue()
	if err != nil {
		return s.fail(con, err)
	}
	if err := q.Delete(args[0].Text); err != nil {
		return s.fail(con, &config.Error{Code: config.CodeNotFound, Msg: "entry not found", Detail: err.Error()})
	}
	s.svc.Event(eventlog.Notice, "queue", s.user, "", "message "+args[0].Text+" deleted from the queue")
	fmt.Fprintf(con, "Message %s deleted.\n", args[0].Text)
	return nil
}

// logArgs reads "[<count>] [<text>]".
func (s *Session) logArgs(con Console, args []config.Token, syntax string) (int, string, error) {
	n := 50
	if len(args) > 0 {
		if v, err := strconv.Atoi(args[0].Text); err == nil && v > 0 {
			n = v
			args = args[1:]
		}
	}
	if len(args) > 1 {
		return 0, "", s.usage(con, args, 1, syntax)
	}
	text := ""
	if len(args) == 1 {
		text = args[0].Text
	}
	return n, text, nil
}

func (s *Session) historyLog(con Console, args []config.Token) error {
	n, text, err := s.logArgs(con, args, "diagnose log history [<count>] [<text>]")
	if err != nil {
		return err
	}
	f := eventlog.HistoryFilter{Limit: n}
	if d, ok := strings.CutPrefix(text, "disposition="); ok {
		f.Disposition = d
	} else {
		f.Contains = text
	}
	hs, err := s.svc.Log().QueryHistory(f)
	if err != nil {
		return s.fail(con, err)
	}
	for _, h := range hs {
		fmt.Fprintln(con, eventlog.FormatHistory(h))
	}
	return nil
}
