package cgroup

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeThreads is a kernel's view of thread attributes for the setter's
// logic; the real kernel is TestPrivilegedThreadLevers.
type fakeThreads struct {
	base    uint64
	threads map[int]threadSched
}

func (f *fakeThreads) get(tid int) (threadSched, error) {
	s, ok := f.threads[tid]
	if !ok {
		return threadSched{}, fmt.Errorf("thread %d: %w", tid, syscall.ESRCH)
	}
	return s, nil
}

func (f *fakeThreads) set(tid int, s threadSched) error {
	if _, ok := f.threads[tid]; !ok {
		return fmt.Errorf("thread %d: %w", tid, syscall.ESRCH)
	}
	if s.SliceNS == 0 {
		s.SliceNS = f.base
	}
	f.threads[tid] = s
	return nil
}

func TestThreadSetter(t *testing.T) {
	const base = 2_800_000
	f := &fakeThreads{base: base, threads: map[int]threadSched{
		1: {Policy: schedNormal, SliceNS: base},
		2: {Policy: schedBatch, Nice: 5, SliceNS: base, ResetOnFork: true},
		3: {Policy: 1 /* SCHED_FIFO */},
		4: {Policy: schedNormal, SliceNS: 4_000_000}, // the owner's custom slice
		5: {Policy: schedNormal, SliceNS: 500_000},   // ours, from a crashed agent
	}}
	orig := map[int]threadSched{}
	for k, v := range f.threads {
		orig[k] = v
	}
	ts := newThreadSetter(base)
	ts.get, ts.set = f.get, f.set
	slice := threadWant{SliceNS: 500_000}
	res, err := ts.apply(map[int]threadWant{1: slice, 2: {Idle: true}, 3: slice, 4: slice, 5: slice, 9: slice})
	if err != nil {
		t.Fatal(err)
	}
	if want := (threadResult{Set: 4, Skipped: 1, Gone: 1}); res != want {
		t.Errorf("apply() = %+v, want %+v", res, want)
	}
	want := map[int]threadSched{
		1: {Policy: schedNormal, SliceNS: 500_000},
		2: {Policy: schedIdle, Nice: 5, SliceNS: base, ResetOnFork: true},
		3: {Policy: 1},
		4: {Policy: schedNormal, SliceNS: 500_000},
		5: {Policy: schedNormal, SliceNS: 500_000},
	}
	if diff := cmp.Diff(want, f.threads); diff != "" {
		t.Errorf("after apply (-want +got):\n%s", diff)
	}
	// Thread 1 leaves the critical tier: only it goes back.
	if res, err := ts.apply(map[int]threadWant{2: {Idle: true}, 4: slice, 5: slice}); err != nil || res.Restored != 1 {
		t.Errorf("second apply() = %+v, %v; want 1 restored", res, err)
	}
	if got := f.threads[1]; got != orig[1] {
		t.Errorf("thread 1 = %+v, want %+v", got, orig[1])
	}
	// Thread 5 exits; restoring it is not an error.
	delete(f.threads, 5)
	if _, err := ts.restoreAll(); err != nil {
		t.Fatal(err)
	}
	delete(orig, 5)
	// Thread 5 was adopted as defaulted; the rest are as found.
	if diff := cmp.Diff(orig, f.threads); diff != "" {
		t.Errorf("after restoreAll (-found +got):\n%s", diff)
	}
	if len(ts.orig) != 0 {
		t.Errorf("the setter still holds %d threads", len(ts.orig))
	}
}

func TestNoSliceReported(t *testing.T) {
	b := &Backend{levers: Levers{}.withDefaults(), probeSlice: func() (uint64, error) {
		return 0, errors.New("the kernel does not take a custom EEVDF slice")
	}}
	var rep Report
	if err := b.applyThreads(Plan{}, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.NoSlice == "" || len(rep.Notes) != 1 {
		t.Errorf("report = %+v; want the missing slice said", rep)
	}
	// Levers off: no probe, nothing said.
	b = &Backend{levers: Levers{CriticalSlice: -1}.withDefaults(), probeSlice: func() (uint64, error) {
		t.Fatal("probed with every thread lever off")
		return 0, nil
	}}
	rep = Report{}
	if err := b.applyThreads(Plan{}, &rep); err != nil || rep.NoSlice != "" {
		t.Errorf("levers off: %+v, %v", rep, err)
	}
}
