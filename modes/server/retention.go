package server

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/mailstore"
)

// retentionEvery is how often the email retention of the resource
// profiles is applied (and once at start).
const retentionEvery = time.Hour

// retentionDays maps every mail account whose resource profile sets an
// email retention to its number of days.
func retentionDays(c *config.Config) map[string]int {
	days := map[string]int{}
	for _, p := range c.Profile.Resource {
		if p.EmailRetention <= 0 {
			continue
		}
		for _, d := range c.Domain {
			for _, u := range d.User.Mail {
				if u.ResourceProfile == p.Name {
					days[u.Name+"@"+d.Name] = p.EmailRetention
				}
			}
		}
	}
	return days
}

// expired is the set of msgs whose internal date is before cutoff.
func expired(msgs []mailstore.Message, cutoff time.Time) mailstore.UIDSet {
	var set mailstore.UIDSet
	for _, m := range msgs {
		if m.Date.Before(cutoff) {
			set = append(set, mailstore.UIDRange{Start: m.UID, Stop: m.UID})
		}
	}
	return set
}

// sweepRetention deletes, in every folder of the accounts of c that have
// an email retention, the messages received more than that many days
// before now. It returns how many it deleted.
func (m *Mode) sweepRetention(c *config.Config, now time.Time) (int, error) {
	days := retentionDays(c)
	accounts := make([]string, 0, len(days))
	for a := range days {
		accounts = append(accounts, a)
	}
	sort.Strings(accounts)
	var errs []error
	total := 0
	for _, name := range accounts {
		if !m.store.Exists(name) {
			continue
		}
		n, err := m.sweepAccount(name, now.AddDate(0, 0, -days[name]))
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("email retention of %s: %w", name, err))
		}
		if n > 0 {
			m.svc.Log().Log(eventlog.Event{Level: eventlog.Notice, Subsystem: "mailbox",
				Message: fmt.Sprintf("email retention: deleted %d messages of %s older than %d days", n, name, days[name])})
		}
	}
	return total, errors.Join(errs...)
}

func (m *Mode) sweepAccount(name string, cutoff time.Time) (int, error) {
	a, err := m.store.Account(name)
	if err != nil {
		return 0, err
	}
	boxes, err := a.Mailboxes()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range boxes {
		msgs, err := a.Fetch(b.Name, mailstore.AllUIDs, mailstore.FetchOptions{})
		if err != nil {
			return n, err
		}
		set := expired(msgs, cutoff)
		if len(set) == 0 {
			continue
		}
		if _, _, err := a.Store(b.Name, set, mailstore.FlagUpdate{Mode: mailstore.StoreAdd, Flags: mailstore.FlagDeleted}); err != nil {
			return n, err
		}
		gone, err := a.Expunge(b.Name, set)
		n += len(gone)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// retention applies the email retention at start and every
// retentionEvery until stop is closed.
func (m *Mode) retention(stop <-chan struct{}) {
	t := time.NewTicker(retentionEvery)
	defer t.Stop()
	for {
		if _, err := m.sweepRetention(m.cfg(), time.Now()); err != nil && !errors.Is(err, mailstore.ErrClosed) {
			m.svc.Log().Log(eventlog.Event{Level: eventlog.Warning, Subsystem: "mailbox", Message: err.Error()})
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
