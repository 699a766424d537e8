package admin

import "errors"

// Interception is the state of transparent mode's connection pick-up,
// for `diagnose system transparent`.
type Interception interface {
	Status() (string, error)
}

// ErrNoInterception is returned when transparent mode is not running.
var ErrNoInterception = errors.New("transparent mode is not running: no connections are picked up")

// SetInterception registers the running transparent mode (nil: none).
func (s *Service) SetInterception(i Interception) {
	s.mu.Lock()
	s.interception = i
	s.mu.Unlock()
}

// Interception returns the running transparent mode's pick-up.
func (s *Service) Interception() (Interception, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interception == nil {
		return nil, ErrNoInterception
	}
	return s.interception, nil
}
