package queue

import (
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Message IDs are 12 characters of Crockford base32 (upper case) for 60
// bits: 32 bits of Unix seconds and a 28-bit counter that starts at a
// random value each second. They sort by time of arrival, and an ID is
// never smaller than one handed out before, in this run or (for the IDs
// still queued) a previous one.
const (
	idLen      = 12
	idCtrBits  = 28
	idAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)

type idGen struct {
	mu  sync.Mutex
	sec int64
	ctr uint32
}

func (g *idGen) next(now time.Time) string {
	g.mu.Lock()
	s := now.Unix()
	switch {
	case s > g.sec:
		g.sec = s
		g.ctr = rand.Uint32N(1 << (idCtrBits - 1))
	default:
		g.ctr++
		if g.ctr >= 1<<idCtrBits {
			g.sec++
			g.ctr = rand.Uint32N(1 << (idCtrBits - 1))
		}
	}
	v := uint64(uint32(g.sec))<<idCtrBits | uint64(g.ctr)
	g.mu.Unlock()
	var b [idLen]byte
	for i := idLen - 1; i >= 0; i-- {
		b[i] = idAlphabet[v&31]
		v >>= 5
	}
	return string(b[:])
}

// observe makes later IDs larger than id.
func (g *idGen) observe(id string) {
	v, ok := parseID(id)
	if !ok {
		return
	}
	s, c := int64(v>>idCtrBits), uint32(v&(1<<idCtrBits-1))
	g.mu.Lock()
	if s > g.sec || (s == g.sec && c > g.ctr) {
		g.sec, g.ctr = s, c
	}
	g.mu.Unlock()
}

func parseID(id string) (uint64, bool) {
	if len(id) != idLen {
		return 0, false
	}
	var v uint64
	for i := 0; i < idLen; i++ {
		k := strings.IndexByte(idAlphabet, id[i])
		if k < 0 {
			return 0, false
		}
		v = v<<5 | uint64(k)
	}
	return v, true
}

// normID accepts IDs typed in lower case.
func normID(id string) string { return strings.ToUpper(strings.TrimSpace(id)) }
