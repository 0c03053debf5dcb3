package cgroup

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// schedAttr is the kernel's struct sched_attr up to SCHED_ATTR_SIZE_VER0
// (48 bytes): without the utilization clamps, which the kernel then leaves
// as they are. For the fair policies sched_runtime is the EEVDF slice
// (kernel ≥ 6.12): 0 asks for the default (sysctl base slice), anything
// else sets a custom slice, clamped by the kernel to 0.1–100 ms.
type schedAttr struct {
	Size     uint32
	Policy   uint32
	Flags    uint64
	Nice     int32
	Priority uint32
	Runtime  uint64
	Deadline uint64
	Period   uint64
}

const (
	schedAttrSize = 48
	// Policies of the fair class (SCHED_NORMAL, SCHED_BATCH, SCHED_IDLE).
	schedNormal = 0
	schedBatch  = 3
	schedIdle   = 5
	// schedFlagResetOnFork is SCHED_FLAG_RESET_ON_FORK: kept as found.
	schedFlagResetOnFork = 0x01
)

func fairPolicy(p uint32) bool { return p == schedNormal || p == schedBatch || p == schedIdle }

// threadSched is what the kernel says about one thread's fair-class
// scheduling: policy, nice, reset-on-fork and the slice in force.
type threadSched struct {
	Policy      uint32
	Nice        int32
	ResetOnFork bool
	SliceNS     uint64
}

// getSched reads a thread's attributes with sched_getattr (tid 0: the
// calling thread).
func getSched(tid int) (threadSched, error) {
	var a schedAttr
	_, _, e := syscall.Syscall6(unix.SYS_SCHED_GETATTR, uintptr(tid), uintptr(unsafe.Pointer(&a)), schedAttrSize, 0, 0, 0)
	if e != 0 {
		return threadSched{}, fmt.Errorf("failed to read the scheduling attributes of thread %d: %w", tid, e)
	}
	return threadSched{Policy: a.Policy, Nice: a.Nice, ResetOnFork: a.Flags&schedFlagResetOnFork != 0, SliceNS: a.Runtime}, nil
}

// setSched writes a thread's fair-class attributes with sched_setattr;
// sliceNS 0 asks for the default slice.
func setSched(tid int, s threadSched) error {
	if !fairPolicy(s.Policy) {
		return fmt.Errorf("thread %d: policy %d is not a fair-class policy", tid, s.Policy)
	}
	a := schedAttr{Size: schedAttrSize, Policy: s.Policy, Nice: s.Nice, Runtime: s.SliceNS}
	if s.ResetOnFork {
		a.Flags |= schedFlagResetOnFork
	}
	_, _, e := syscall.Syscall(unix.SYS_SCHED_SETATTR, uintptr(tid), uintptr(unsafe.Pointer(&a)), 0)
	if e != 0 {
		return fmt.Errorf("failed to set the scheduling attributes of thread %d: %w", tid, e)
	}
	return nil
}

// errThreadGone is a thread that exited between listing and writing.
var errThreadGone = errors.New("thread exited")

func isGone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, errThreadGone)
}

// probeSlice finds out, on a thread of its own, whether the kernel takes a
// custom EEVDF slice: it sets one, reads it back and resets the default.
// It returns the default (base) slice the kernel reports, or why custom
// slices are unavailable (a kernel before 6.12 ignores sched_runtime for
// the fair class and reads back the base slice, or 0 before 6.6).
func probeSlice() (baseNS uint64, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The probe changes this thread's attributes; never hand it back
		// to the Go scheduler with them (the locked thread exits with the
		// goroutine).
		runtime.LockOSThread()
		cur, gerr := getSched(0)
		if gerr != nil {
			err = gerr
			return
		}
		if !fairPolicy(cur.Policy) {
			err = fmt.Errorf("the probing thread runs policy %d, not a fair one", cur.Policy)
			return
		}
		const probe = 1_700_000 // 1.7 ms: not a default anywhere
		want := cur
		want.SliceNS = probe
		if serr := setSched(0, want); serr != nil {
			err = serr
			return
		}
		got, gerr := getSched(0)
		want.SliceNS = 0
		if rerr := setSched(0, want); rerr != nil && gerr == nil {
			gerr = rerr
		}
		if gerr != nil {
			err = gerr
			return
		}
		if got.SliceNS != probe {
			err = fmt.Errorf("the kernel does not take a custom EEVDF slice (set %d ns, read back %d ns; needs Linux ≥ 6.12)", probe, got.SliceNS)
			return
		}
		base, gerr := getSched(0)
		if gerr != nil {
			err = gerr
			return
		}
		baseNS = base.SliceNS
	}()
	<-done
	return baseNS, err
}
