package server

import (
	"context"
	"sync"
	"time"
)

// Broadcaster defaults.
const (
	// DefaultSubscriberBuffer is the buffer of a subscription asked with
	// buffer <= 0.
	DefaultSubscriberBuffer = 256
	// MaxSubscriberBuffer caps the buffer one subscription may ask for.
	MaxSubscriberBuffer = 4096
	// DefaultMaxSubscribers caps concurrent subscriptions.
	DefaultMaxSubscribers = 64
)

// BroadcasterOptions configures a Broadcaster.
type BroadcasterOptions struct {
	// Now stamps events published without a Time; time.Now when nil.
	Now func() time.Time
	// MaxSubscribers caps concurrent subscriptions: a Subscribe over the
	// cap returns an already closed channel. DefaultMaxSubscribers when 0.
	MaxSubscribers int
}

// Broadcaster fans the agent's events out to subscribers. Publish never
// blocks: each subscriber has a bounded buffer, and an event that does not
// fit is dropped for that subscriber only and counted in the Dropped field
// of the next event it receives. Memory is bounded by MaxSubscribers times
// the largest buffer. Safe for concurrent use; the zero value is not usable,
// use NewBroadcaster.
type Broadcaster struct {
	now     func() time.Time
	maxSubs int

	mu        sync.Mutex
	seq       uint64
	subs      map[*subscriber]struct{}
	published uint64
	dropped   uint64
}

type subscriber struct {
	ch      chan Event
	pending uint64 // events lost since the last one delivered
	closed  bool
}

// NewBroadcaster returns a Broadcaster with no subscribers.
func NewBroadcaster(o BroadcasterOptions) *Broadcaster {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSubscribers <= 0 {
		o.MaxSubscribers = DefaultMaxSubscribers
	}
	return &Broadcaster{now: o.Now, maxSubs: o.MaxSubscribers, subs: map[*subscriber]struct{}{}}
}

// Publish numbers ev, stamps its time if unset and offers it to every
// subscriber without blocking. Events are delivered to each subscriber in
// publish order.
func (b *Broadcaster) Publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	b.published++
	ev.Sequence = b.seq
	if ev.Time.IsZero() {
		ev.Time = b.now()
	}
	for s := range b.subs {
		e := ev
		e.Dropped = s.pending
		select {
		case s.ch <- e:
			s.pending = 0
		default:
			s.pending++
			b.dropped++
		}
	}
}

// Subscribe registers a subscriber with room for buffer events (clamped to
// 1..MaxSubscriberBuffer; DefaultSubscriberBuffer when <= 0). The channel
// is closed when cancel is called or ctx ends. Over MaxSubscribers the
// returned channel is already closed. It implements Agent.Subscribe.
func (b *Broadcaster) Subscribe(ctx context.Context, buffer int) (<-chan Event, func()) {
	switch {
	case buffer <= 0:
		buffer = DefaultSubscriberBuffer
	case buffer > MaxSubscriberBuffer:
		buffer = MaxSubscriberBuffer
	}
	b.mu.Lock()
	if len(b.subs) >= b.maxSubs {
		b.mu.Unlock()
		ch := make(chan Event)
		close(ch)
		return ch, func() {}
	}
	s := &subscriber{ch: make(chan Event, buffer)}
	b.subs[s] = struct{}{}
	b.mu.Unlock()

	var once sync.Once
	end := func() { once.Do(func() { b.remove(s) }) }
	stop := context.AfterFunc(ctx, end)
	return s.ch, func() {
		stop()
		end()
	}
}

func (b *Broadcaster) remove(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	delete(b.subs, s)
	close(s.ch)
}

// BroadcasterStats is a snapshot of a Broadcaster's counters.
type BroadcasterStats struct {
	// Subscribers is the number of live subscriptions.
	Subscribers int
	// Buffered is the number of events waiting in all subscribers' buffers.
	Buffered int
	// MaxBuffered is the most events waiting in one subscriber's buffer.
	MaxBuffered int
	// Published counts Publish calls.
	Published uint64
	// Dropped counts events dropped for a full subscriber, summed over
	// subscribers.
	Dropped uint64
}

// Stats returns the current counters.
func (b *Broadcaster) Stats() BroadcasterStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := BroadcasterStats{Subscribers: len(b.subs), Published: b.published, Dropped: b.dropped}
	for s := range b.subs {
		n := len(s.ch)
		st.Buffered += n
		st.MaxBuffered = max(st.MaxBuffered, n)
	}
	return st
}
