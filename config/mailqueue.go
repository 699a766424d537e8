package config

import (
	"fmt"
	"time"
)

// The entries of `config system mailserver` / `config mail-queue`.
const (
	QueueDefault  = "default"
	QueueIncoming = "incoming" // mail to protected domains
	QueueOutgoing = "outgoing" // mail to every other domain
)

// Queue returns the schedule for mail to a protected domain (incoming)
// or to any other domain: the entry of that direction, else the default
// entry, else the factory values of an entry.
func (m *Mailserver) Queue(incoming bool) MailQueue {
	dir := QueueOutgoing
	if incoming {
		dir = QueueIncoming
	}
	var def *MailQueue
	for i := range m.MailQueue {
		switch m.MailQueue[i].Name {
		case dir:
			return m.MailQueue[i]
		case QueueDefault:
			def = &m.MailQueue[i]
		}
	}
	if def != nil {
		return *def
	}
	q := MailQueue{Name: QueueDefault}
	setDefaultsOf(&q, "system mailserver mail-queue")
	return q
}

// RetryInterval, WarningAfter, MaxAge and DSNMaxAge are the entry's
// values as durations (DSNMaxAge 0: one attempt).
func (q MailQueue) RetryInterval() time.Duration { return time.Duration(q.Retry) * time.Minute }
func (q MailQueue) WarningAfter() time.Duration  { return time.Duration(q.Warning) * time.Hour }
func (q MailQueue) MaxAge() time.Duration        { return time.Duration(q.Timeout) * time.Hour }
func (q MailQueue) DSNMaxAge() time.Duration     { return time.Duration(q.DSNTimeout) * 24 * time.Hour }

// validateMailQueue checks each schedule of system mailserver mail-queue:
// the delay notification comes before the deadline, and the STARTTLS
// fallback has the attempts it needs.
func validateMailQueue(c *Config, add func(format string, args ...any)) {
	for _, q := range c.System.Mailserver.MailQueue {
		at := fmt.Sprintf("system mailserver mail-queue %q", q.Name)
		if q.Warning >= q.Timeout && q.Warning != 0 {
			add("%s: queue-warning (%dh) must be shorter than queue-timeout (%dh)", at, q.Warning, q.Timeout)
		}
		if msg := retryBudget(c.Mailsetting.StartTLS.Fallback, q.RetryInterval(), q.MaxAge()); msg != "" {
			add("%s: %s", at, msg)
		}
	}
}
