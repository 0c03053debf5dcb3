package main

import "time"

// schedule is an open-loop send schedule: request i is due at
// start + i·interval, whatever happened to earlier requests, and its
// latency counts from that due time. A sender that falls behind sends late
// requests at once, and their wait counts as latency, so a stalled server
// cannot slow the load down and hide its own stall (coordinated omission).
type schedule struct {
	start    time.Time
	interval time.Duration
}

// newSchedule sends at rate requests per second from start.
func newSchedule(start time.Time, rate float64) schedule {
	return schedule{start: start, interval: time.Duration(float64(time.Second) / rate)}
}

// due is when request i is meant to be sent.
func (s schedule) due(i int64) time.Time {
	return s.start.Add(time.Duration(i) * s.interval)
}

// count is how many requests are due within d of the start.
func (s schedule) count(d time.Duration) int64 {
	if d <= 0 || s.interval <= 0 {
		return 0
	}
	return int64((d-1)/s.interval) + 1
}

// conn is the connection request i goes on: round robin.
func (s schedule) conn(i int64, conns int) int { return int(i % int64(conns)) }
