package writer

import "time"

// Kind says why a write happened.
type Kind string

// The kinds of audited writes.
const (
	// KindSet is a write asked for by Set or Apply.
	KindSet Kind = "set"
	// KindDrift re-asserts a value something else changed behind the
	// writer's back.
	KindDrift Kind = "drift"
	// KindRestore writes an original value back.
	KindRestore Kind = "restore"
)

// Record is one audited write attempt.
type Record struct {
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	Path string    `json:"path"`
	File string    `json:"file"`
	// Old is the value before the write, New the value read back after it
	// (or the value asked for, when the write failed).
	Old    string `json:"old"`
	New    string `json:"new"`
	Reason string `json:"reason"`
	// Err is set when the write failed.
	Err string `json:"err,omitempty"`
}

// ring is a bounded audit log; the oldest record is dropped first.
type ring struct {
	buf  []Record
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]Record, n)} }

func (r *ring) add(rec Record) {
	r.buf[r.next] = rec
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// records returns a copy, oldest first.
func (r *ring) records() []Record {
	if !r.full {
		return append([]Record(nil), r.buf[:r.next]...)
	}
	out := make([]Record, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
