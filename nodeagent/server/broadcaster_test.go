package server

import (
	"context"
	"testing"
	"time"
)

func TestBroadcasterDropsForFullSubscriberAndReportsIt(t *testing.T) {
	now := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	b := NewBroadcaster(BroadcasterOptions{Now: func() time.Time { return now }})
	slow, cancelSlow := b.Subscribe(t.Context(), 2)
	defer cancelSlow()
	fast, cancelFast := b.Subscribe(t.Context(), 100)
	defer cancelFast()

	for range 5 {
		b.Publish(Event{Type: EventDriftReasserted})
	}
	if st := b.Stats(); st.MaxBuffered != 5 || st.Buffered != 7 || st.Dropped != 3 || st.Published != 5 || st.Subscribers != 2 {
		t.Fatalf("stats after 5 events (slow buffer 2) = %+v, want MaxBuffered 5, Buffered 7, Dropped 3, Published 5, Subscribers 2", st)
	}
	for want := uint64(1); want <= 2; want++ {
		ev := <-slow
		if ev.Sequence != want || ev.Dropped != 0 || !ev.Time.Equal(now) {
			t.Fatalf("slow subscriber got %+v, want sequence %d, dropped 0, time %s", ev, want, now)
		}
	}
	b.Publish(Event{Type: EventLintViolation})
	ev := <-slow
	if ev.Sequence != 6 || ev.Dropped != 3 || ev.Type != EventLintViolation {
		t.Fatalf("slow subscriber got sequence %d dropped %d type %d after the gap, want 6, 3, %d", ev.Sequence, ev.Dropped, ev.Type, EventLintViolation)
	}
	for want := uint64(1); want <= 6; want++ {
		if ev := <-fast; ev.Sequence != want || ev.Dropped != 0 {
			t.Fatalf("fast subscriber got sequence %d dropped %d, want %d and 0", ev.Sequence, ev.Dropped, want)
		}
	}
}

func TestBroadcasterSubscriptionEnds(t *testing.T) {
	b := NewBroadcaster(BroadcasterOptions{MaxSubscribers: 2})

	ch1, cancel1 := b.Subscribe(t.Context(), 1)
	ctx, cancelCtx := context.WithCancel(t.Context())
	ch2, cancel2 := b.Subscribe(ctx, 1)
	defer cancel2()

	over, cancelOver := b.Subscribe(t.Context(), 1)
	defer cancelOver()
	if _, ok := <-over; ok {
		t.Fatal("a subscription over MaxSubscribers delivered an event, want a closed channel")
	}

	cancel1()
	cancel1() // idempotent
	if _, ok := <-ch1; ok {
		t.Fatal("channel open after cancel")
	}
	cancelCtx()
	for ev := range ch2 { // ends when the context's AfterFunc closes it
		t.Fatalf("got %+v, nothing was published", ev)
	}
	if st := b.Stats(); st.Subscribers != 0 {
		t.Fatalf("%d subscribers after both ended, want 0", st.Subscribers)
	}
	b.Publish(Event{Type: EventSafeModeEntered}) // no subscriber: must not panic on a closed channel
}

func TestBroadcasterClampsBuffer(t *testing.T) {
	b := NewBroadcaster(BroadcasterOptions{})
	for _, tc := range []struct{ ask, want int }{{0, DefaultSubscriberBuffer}, {-5, DefaultSubscriberBuffer}, {1 << 30, MaxSubscriberBuffer}, {3, 3}} {
		ch, cancel := b.Subscribe(t.Context(), tc.ask)
		if got := cap(ch); got != tc.want {
			t.Errorf("Subscribe(buffer %d) has capacity %d, want %d", tc.ask, got, tc.want)
		}
		cancel()
	}
}
