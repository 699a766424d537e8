package mailstore

import (
	"context"
	"errors"
)

// ErrOverflow is returned by Take and Wait when a subscriber fell so far
// behind that changes were dropped: it has to read the state again.
var ErrOverflow = errors.New("mailstore: change feed overflow")

// maxPending is the number of changes a subscription holds before it
// overflows.
const maxPending = 10000

// Subscription receives an account's committed changes in commit order.
// A change is queued before the call that made it returns.
type Subscription struct {
	a     *Account
	ready chan struct{}
	q     []Change
	err   error
}

// Subscribe registers a subscriber for the account's changes from now on.
// Close it when done.
func (a *Account) Subscribe() *Subscription {
	s := &Subscription{a: a, ready: make(chan struct{}, 1)}
	a.subMu.Lock()
	if a.subs == nil {
		s.err = ErrClosed
		signal(s.ready)
	} else {
		a.subs[s] = struct{}{}
	}
	a.subMu.Unlock()
	return s
}

// publish queues committed changes for every subscriber. The committer
// calls it once per commit, so subscribers see commit order.
func (a *Account) publish(changes []Change) {
	a.subMu.Lock()
	defer a.subMu.Unlock()
	for s := range a.subs {
		if s.err != nil {
			continue
		}
		if len(s.q)+len(changes) > maxPending {
			s.q = nil
			s.err = ErrOverflow
		} else {
			s.q = append(s.q, changes...)
		}
		signal(s.ready)
	}
}

// Ready is signalled when changes (or an error) are waiting for Take.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the changes queued so far (none when there are none), or
// the error that ended the subscription (ErrOverflow, ErrClosed).
func (s *Subscription) Take() ([]Change, error) {
	s.a.subMu.Lock()
	defer s.a.subMu.Unlock()
	q := s.q
	s.q = nil
	if len(q) == 0 && s.err != nil {
		return nil, s.err
	}
	return q, nil
}

// Wait blocks until changes are queued, and returns them.
func (s *Subscription) Wait(ctx context.Context) ([]Change, error) {
	for {
		q, err := s.Take()
		if len(q) > 0 || err != nil {
			return q, err
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.a.subMu.Lock()
	defer s.a.subMu.Unlock()
	s.closeLocked(ErrClosed)
	delete(s.a.subs, s)
}

func (s *Subscription) closeLocked(err error) {
	if s.err == nil {
		s.err = err
	}
	s.q = nil
	signal(s.ready)
}
