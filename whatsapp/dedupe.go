package whatsapp

import (
	"sync"
	"time"
)

// ttlMap is a bounded map whose entries expire a fixed TTL after their
// first write. Entries are kept in write order in a FIFO, which with one TTL is also
// expiry order, so pruning pops from the front: amortized O(1) per write, no
// timer goroutine. When full, the oldest entry is evicted. Not safe for
// concurrent use by itself: eventFilter holds the lock.
type ttlMap struct {
	ttl   time.Duration
	max   int
	items map[string]ttlItem
	fifo  []ttlRef // insertion order, one ref per entry
	head  int
	gen   uint64
}

type ttlItem struct {
	val     int64
	expires time.Time
	gen     uint64
}

type ttlRef struct {
	key string
	gen uint64
}

func newTTLMap(ttl time.Duration, max int) *ttlMap {
	return &ttlMap{ttl: ttl, max: max, items: make(map[string]ttlItem)}
}

// get returns the live value of key.
func (m *ttlMap) get(key string, now time.Time) (int64, bool) {
	it, ok := m.items[key]
	if !ok || !now.Before(it.expires) {
		return 0, false
	}
	return it.val, true
}

// set writes key. A new key lives for the TTL from now; overwriting a live
// key keeps its expiry, so the FIFO holds exactly one ref per entry and the
// map never exceeds max.
func (m *ttlMap) set(key string, val int64, now time.Time) {
	m.prune(now)
	if it, ok := m.items[key]; ok {
		it.val = val
		m.items[key] = it
		return
	}
	for len(m.items) >= m.max && m.popFront() {
	}
	m.gen++
	m.items[key] = ttlItem{val: val, expires: now.Add(m.ttl), gen: m.gen}
	m.fifo = append(m.fifo, ttlRef{key: key, gen: m.gen})
}

// prune drops expired entries from the front of the FIFO.
func (m *ttlMap) prune(now time.Time) {
	for m.head < len(m.fifo) {
		ref := m.fifo[m.head]
		it, ok := m.items[ref.key]
		if ok && it.gen == ref.gen && now.Before(it.expires) {
			break // the oldest live entry has not expired: nothing behind it has
		}
		m.popFront()
	}
}

// popFront removes the oldest FIFO ref and its entry.
// It reports whether anything was left to pop.
func (m *ttlMap) popFront() bool {
	if m.head >= len(m.fifo) {
		return false
	}
	ref := m.fifo[m.head]
	m.fifo[m.head] = ttlRef{}
	m.head++
	if it, ok := m.items[ref.key]; ok && it.gen == ref.gen {
		delete(m.items, ref.key)
	}
	// Compact once the dead prefix is at least half the slice.
	if m.head >= 64 && m.head*2 >= len(m.fifo) {
		n := copy(m.fifo, m.fifo[m.head:])
		clear(m.fifo[n:])
		m.fifo = m.fifo[:n]
		m.head = 0
	}
	return true
}

func (m *ttlMap) len() int { return len(m.items) }

// filterVerdict is what eventFilter decides for one webhook event.
type filterVerdict int

const (
	verdictNew filterVerdict = iota
	verdictDuplicate
	verdictStale
)

// eventFilter drops repeated and out-of-order webhook events. It is safe for
// concurrent use.
//
//   - duplicate: the same (call id, event) was seen within the TTL;
//   - stale: the event's timestamp is older than the newest event already
//     seen for the same call. A terminate is never stale: losing it would
//     leave a call up that Meta has ended.
type eventFilter struct {
	mu     sync.Mutex
	now    func() time.Time
	seen   *ttlMap // callID + "\x00" + event
	newest *ttlMap // callID → unix nanoseconds of the newest event
}

const defaultDedupeMax = 100_000

func newEventFilter(ttl time.Duration, max int, now func() time.Time) *eventFilter {
	if now == nil {
		now = time.Now
	}
	return &eventFilter{now: now, seen: newTTLMap(ttl, max), newest: newTTLMap(ttl, max)}
}

// check records one call event and says whether to dispatch it. A zero ts
// takes no part in the staleness rule.
func (f *eventFilter) check(callID, event string, ts time.Time, neverStale bool) filterVerdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	key := callID + "\x00" + event
	if _, dup := f.seen.get(key, now); dup {
		return verdictDuplicate
	}
	if !ts.IsZero() {
		t := ts.UnixNano()
		newest, ok := f.newest.get(callID, now)
		if ok && t < newest && !neverStale {
			return verdictStale
		}
		if !ok || t > newest {
			newest = t
		}
		f.newest.set(callID, newest, now)
	}
	f.seen.set(key, 0, now)
	return verdictNew
}

// size reports the number of live keys (for tests).
func (f *eventFilter) size() (seen, newest int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen.len(), f.newest.len()
}
