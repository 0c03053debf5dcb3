package tiersched

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/enforcement"
)

// recordingCover stands in for the cgroup backend: it records what the
// tier scheduler's backend asks of its cover (the cgroup backend's own
// enforcement is tested in nodeagent/enforcement/cgroup).
type recordingCover struct {
	enforcement.ObserveOnly
	mu                 sync.Mutex
	applies, standDown int
}

func (c *recordingCover) Apply(context.Context, []enforcement.Pod, enforcement.Machine) (enforcement.Applied, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applies++
	return enforcement.Applied{}, nil
}

func (c *recordingCover) StandDown(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.standDown++
	return nil
}

func (c *recordingCover) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applies, c.standDown
}

// A node where the object does not load (here: a load that fails on cue):
// the cover enforces, once per change rather than once per poll, the
// status says why, the backoff doubles, and safe mode stands the cover
// down and stops the retries.
func TestEnforcerCoversWhenTheSchedulerCannotAttach(t *testing.T) {
	var mu sync.Mutex
	var loads []time.Time
	cover := &recordingCover{}
	e := NewEnforcer(EnforcerOptions{
		Cover: cover, Log: testr.New(t), Poll: 5 * time.Millisecond,
		RetryInitial: 40 * time.Millisecond, RetryMax: 80 * time.Millisecond,
		Load: func(Tunables) (*Scheduler, error) {
			mu.Lock()
			defer mu.Unlock()
			loads = append(loads, time.Now())
			return nil, errors.New("verifier says no")
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pods := []enforcement.Pod{{Name: "ns/p", Tier: wellknown.TierCritical}}
	if _, err := e.Apply(ctx, pods, enforcement.Machine{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(loads)
		mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d load attempts in 10 s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := e.Report()
	if r.Verified || !strings.Contains(r.Status, "verifier says no") || !strings.Contains(r.Status, "cgroup backend covering") {
		t.Errorf("Report() = %+v, want degraded naming the load error and the cover", r)
	}
	if applies, _ := cover.counts(); applies != 1 {
		t.Errorf("cover applied %d times over several polls, want once (the pods did not change)", applies)
	}
	mu.Lock()
	if gap1, gap2 := loads[1].Sub(loads[0]), loads[2].Sub(loads[1]); gap2 < gap1 || gap1 < 40*time.Millisecond {
		t.Errorf("retry gaps %s then %s, want at least 40 ms and not shrinking", gap1, gap2)
	}
	mu.Unlock()
	if _, err := e.Apply(ctx, pods, enforcement.Machine{}); err != nil {
		t.Fatal(err)
	}
	if applies, _ := cover.counts(); applies != 2 {
		t.Errorf("cover applied %d times after a second apply, want 2", applies)
	}
	if err := e.StandDown(ctx); err != nil {
		t.Fatal(err)
	}
	_, downs := cover.counts()
	mu.Lock()
	before := len(loads)
	mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	after := len(loads)
	mu.Unlock()
	if downs != 1 || after != before {
		t.Errorf("after StandDown: cover stood down %d times, %d more load attempts; want 1 and none", downs, after-before)
	}
}
