package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// threadWant is what a tier asks of each of a pod's threads, beyond its
// cgroups: a custom EEVDF slice (lever 1) and the SCHED_IDLE policy
// (lever 2, background threads).
type threadWant struct {
	// SliceNS is the custom slice; 0 leaves the thread's slice as found.
	SliceNS uint64
	// Idle moves a SCHED_NORMAL or SCHED_BATCH thread to SCHED_IDLE.
	Idle bool
}

func (w threadWant) zero() bool { return w == threadWant{} }

// threadSetter sets and restores per-thread scheduling attributes. Thread
// attributes are not cgroup files, so the cgroup writer does not hold
// them: the setter keeps each thread's original (policy, nice, slice and
// whether that slice was the default) in memory and writes it back on
// restore. A thread keeps its attributes across an agent crash; the next
// agent adopts threads whose attributes match what it would set, treating
// them as defaulted (slice 0, the policy the kubelet's runtime gives:
// SCHED_NORMAL), which is what a pod's threads start with.
type threadSetter struct {
	// baseNS is the kernel's default slice (what a thread with no custom
	// slice reads back).
	baseNS uint64
	// orig are the attributes found on the threads this setter changed.
	orig map[int]threadOrig
	get  func(tid int) (threadSched, error)
	set  func(tid int, s threadSched) error
}

type threadOrig struct {
	sched threadSched
	// defaultSlice: the thread had no custom slice (restore writes 0).
	defaultSlice bool
	want         threadWant
}

func newThreadSetter(baseNS uint64) *threadSetter {
	return &threadSetter{baseNS: baseNS, orig: map[int]threadOrig{}, get: getSched, set: setSched}
}

// threadResult counts what one apply did.
type threadResult struct {
	Set, Restored, Gone, Skipped int
}

// apply gives every thread in want its attributes and restores those it
// changed before that are no longer wanted. Threads of other classes
// (real-time, deadline) are skipped: the kernel would not apply a fair
// slice to them, and their owners chose them.
func (ts *threadSetter) apply(want map[int]threadWant) (threadResult, error) {
	var res threadResult
	var errs []error
	for tid, o := range ts.orig {
		if w, ok := want[tid]; ok && w == o.want {
			continue
		}
		if err := ts.restoreOne(tid, o); err != nil && !isGone(err) {
			errs = append(errs, err)
		} else if err == nil {
			res.Restored++
		} else {
			res.Gone++
		}
		delete(ts.orig, tid)
	}
	tids := make([]int, 0, len(want))
	for tid := range want {
		tids = append(tids, tid)
	}
	sort.Ints(tids)
	for _, tid := range tids {
		w := want[tid]
		if _, ok := ts.orig[tid]; ok || w.zero() {
			continue
		}
		cur, err := ts.get(tid)
		if err != nil {
			if isGone(err) {
				res.Gone++
				continue
			}
			errs = append(errs, err)
			continue
		}
		if !fairPolicy(cur.Policy) {
			res.Skipped++
			continue
		}
		o := threadOrig{sched: cur, defaultSlice: cur.SliceNS == ts.baseNS, want: w}
		if w.SliceNS != 0 && cur.SliceNS == w.SliceNS {
			// Adopted from an agent that crashed: the value is ours.
			o.defaultSlice = true
		}
		next := cur
		if w.SliceNS != 0 {
			next.SliceNS = w.SliceNS
		} else if o.defaultSlice {
			next.SliceNS = 0
		}
		if w.Idle {
			if cur.Policy == schedIdle {
				o.sched.Policy = schedNormal // adopted, as above
			}
			next.Policy = schedIdle
		}
		if err := ts.set(tid, next); err != nil {
			if isGone(err) {
				res.Gone++
				continue
			}
			errs = append(errs, err)
			continue
		}
		ts.orig[tid] = o
		res.Set++
	}
	return res, errors.Join(errs...)
}

func (ts *threadSetter) restoreOne(tid int, o threadOrig) error {
	s := o.sched
	if o.defaultSlice {
		s.SliceNS = 0
	}
	return ts.set(tid, s)
}

// restoreAll writes every original back; exited threads are forgotten.
func (ts *threadSetter) restoreAll() (threadResult, error) {
	return ts.apply(nil)
}

// listThreads appends the thread ids of a cgroup directory: `tasks` on
// cgroup v1, `cgroup.threads` on v2. A directory that vanished lists
// nothing.
func listThreads(dir string, dst []int) ([]int, error) {
	var f *os.File
	var err error
	for _, name := range []string{"tasks", "cgroup.threads"} {
		f, err = os.Open(filepath.Join(dir, name))
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return dst, nil
	}
	if err != nil {
		return dst, fmt.Errorf("failed to list the threads of %s: %w", dir, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" {
			continue
		}
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			return dst, fmt.Errorf("failed to parse thread id %q in %s", l, dir)
		}
		dst = append(dst, n)
	}
	if err := sc.Err(); err != nil {
		return dst, fmt.Errorf("failed to list the threads of %s: %w", dir, err)
	}
	return dst, nil
}

// ResetSlices gives every thread under the cgroup directory dir (and its
// descendants) that holds exactly the custom slice sliceNS the default
// slice back: what `infera-agent --restore` does for the short-slice lever,
// which keeps no record on disk (a thread's attributes die with it). It
// returns how many threads it reset; threads that exit meanwhile are
// skipped.
func ResetSlices(dir string, sliceNS uint64) (int, error) {
	n := 0
	var errs []error
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		tids, err := listThreads(p, nil)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		for _, tid := range tids {
			s, err := getSched(tid)
			if err != nil || !fairPolicy(s.Policy) || s.SliceNS != sliceNS {
				continue
			}
			s.SliceNS = 0
			if err := setSched(tid, s); err != nil {
				if !isGone(err) {
					errs = append(errs, err)
				}
				continue
			}
			n++
		}
		return nil
	})
	return n, errors.Join(err, errors.Join(errs...))
}
