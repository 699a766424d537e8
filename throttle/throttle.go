// Package throttle counts failed logins and locks out what fails too
// often: an address, a user name. Admin logins (admin) and mail users'
// logins (mailauth) use it.
//
// threshold failures within Window lock a key out for the lockout given
// to Fail; each further lockout of the same key doubles it, up to
// MaxLockout (or the given lockout, if longer). The doubling decays after
// a quiet period as long as the longest lockout.
package throttle

import (
	"sync"
	"time"
)

// Defaults of the lockout.
const (
	Window     = 5 * time.Minute
	MaxLockout = 15 * time.Minute
	maxKeys    = 4096 // keys kept before old ones are pruned
)

// Lockout is the failure count of keys. The zero value is ready.
type Lockout[K comparable] struct {
	mu   sync.Mutex
	keys map[K]*state
}

type state struct {
	fails []time.Time // failures inside the window
	until time.Time   // locked out until
	level int         // lockouts so far (decays after a quiet period)
}

// Locked reports whether key is locked out at now.
func (t *Lockout[K]) Locked(key K, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.keys[key]
	return st != nil && now.Before(st.until)
}

// Fail records a failure of key and returns the lockout duration when
// this failure starts a lockout (0 otherwise).
func (t *Lockout[K]) Fail(key K, now time.Time, threshold int, lockout time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keys == nil {
		t.keys = map[K]*state{}
	}
	st := t.keys[key]
	if st == nil {
		if len(t.keys) >= maxKeys {
			t.pruneLocked(now)
		}
		st = &state{}
		t.keys[key] = st
	}
	if now.Before(st.until) {
		return 0
	}
	longest := max(MaxLockout, lockout)
	if st.level > 0 && now.Sub(st.until) > longest {
		st.level = 0
	}
	kept := st.fails[:0]
	for _, f := range st.fails {
		if now.Sub(f) < Window {
			kept = append(kept, f)
		}
	}
	st.fails = append(kept, now)
	if len(st.fails) < max(threshold, 1) {
		return 0
	}
	st.fails = nil
	st.level++
	d := max(lockout, time.Second)
	for i := 1; i < st.level && d < longest; i++ {
		d *= 2
	}
	d = min(d, longest)
	st.until = now.Add(d)
	return d
}

// Success forgets the failures of key; the lockout level is kept (it
// decays after a quiet period) so that a shared address does not shorten
// an attacker's lockouts.
func (t *Lockout[K]) Success(key K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.keys[key]; st != nil {
		st.fails = nil
		if st.level == 0 {
			delete(t.keys, key)
		}
	}
}

func (t *Lockout[K]) pruneLocked(now time.Time) {
	for k, st := range t.keys {
		recent := len(st.fails) > 0 && now.Sub(st.fails[len(st.fails)-1]) < Window
		if !recent && now.Sub(st.until) > MaxLockout {
			delete(t.keys, k)
		}
	}
}
