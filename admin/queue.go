package admin

import (
	"errors"
	"io"

	"mailgate/queue"
)

// MailQueue is what admins do with the mail queue of the running mode.
type MailQueue interface {
	List() ([]queue.Message, error)
	Get(id string) (*queue.Message, error)
	Open(id string) (io.ReadCloser, int64, error)
	Retry(id string) error
	Delete(id string) error
}

// ErrNoQueue is returned when the running mode has no mail queue.
var ErrNoQueue = errors.New("no mail queue: the mail services are not running")

// SetQueue registers the mail queue of the running mode (nil: none).
func (s *Service) SetQueue(q MailQueue) {
	s.mu.Lock()
	s.queue = q
	s.mu.Unlock()
}

// Queue returns the mail queue of the running mode.
func (s *Service) Queue() (MailQueue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue == nil {
		return nil, ErrNoQueue
	}
	return s.queue, nil
}
