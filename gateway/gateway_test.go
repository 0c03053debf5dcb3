package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

func TestPage(t *testing.T) {
	_, _, next, err := page(2, "", "f", 5)
	if err != nil || next == "" {
		t.Fatalf("page 1: %q %v", next, err)
	}
	var got []int
	tok := ""
	for {
		s, e, n, err := page(2, tok, "f", 5)
		if err != nil {
			t.Fatal(err)
		}
		for i := s; i < e; i++ {
			got = append(got, i)
		}
		if n == "" {
			break
		}
		tok = n
	}
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4}, got); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		size  int32
		token string
		want  string
	}{{-1, "", "page_size"}, {1, "!!", "page_token: malformed"}, {1, next, ""}} {
		_, _, _, err := page(c.size, c.token, "g", 5)
		if c.want == "" {
			c.want = "other filters"
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("page(%d, %q) = %v, want an error with %q", c.size, c.token, err, c.want)
		}
	}
	if s, e, _, _ := page(1000, "", "", 2000); s != 0 || e != maxPageSize {
		t.Errorf("page_size 1000 gave [%d,%d), want capped at %d", s, e, maxPageSize)
	}
}

func TestNodeView(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	load := func(ts time.Time) string {
		return `{"v":1,"ts":"` + ts.Format(time.RFC3339) + `","gen":3,"backend":"scx_layered","allocatableMilli":8000,"fencedMilli":4000,"tiers":{"critical":{"pods":2,"requestMilli":4000,"limitMilli":4000}}}`
	}
	cases := []struct {
		name            string
		ann             map[string]string
		state, loadErr  string
		fresh, safeMode bool
	}{
		{"fresh", map[string]string{"infera.io/agent-status": "enforcing/scx_layered", "infera.io/tier-load": load(now.Add(-time.Minute))}, "enforcing", "", true, false},
		{"stale", map[string]string{"infera.io/agent-status": "degraded: scx exited", "infera.io/tier-load": load(now.Add(-time.Hour))}, "degraded", "stale", false, false},
		{"malformed", map[string]string{"infera.io/agent-status": "safe-mode", "infera.io/safe-mode-requested": "true", "infera.io/tier-load": "{"}, "safe-mode", "invalid JSON", false, true},
		{"absent", nil, "unknown", "absent", false, false},
	}
	for _, c := range cases {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: c.name, Annotations: c.ann}}
		v := nodeView(n, nil, now, 3*time.Minute)
		if v.AgentState != c.state || v.TierLoadFresh != c.fresh || v.SafeModeRequested != c.safeMode || !strings.Contains(v.TierLoadError, c.loadErr) {
			t.Errorf("%s: view = %v", c.name, v)
		}
		if c.fresh && (v.FencedMilli != 4000 || v.Generation != 3 || v.Tiers[0].Tier != "critical" || v.Tiers[0].Pods != 2 || len(v.Tiers) != 5) {
			t.Errorf("%s: tiers = %v", c.name, v.Tiers)
		}
	}
}

func TestAuditorRing(t *testing.T) {
	var buf bytes.Buffer
	a := NewAuditor(&buf, 3)
	for i := range 5 {
		ev := &auditv1.Event{AuditID: types.UID(string(rune('a' + i))), Verb: "get"}
		if err := a.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, e := range a.Recent() {
		ids = append(ids, string(e.AuditID))
	}
	if diff := cmp.Diff([]string{"e", "d", "c"}, ids); diff != "" {
		t.Errorf("ring (-want +got):\n%s", diff)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d audit lines, want 5", len(lines))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["auditID"] != "a" {
		t.Errorf("first line %q: %v", lines[0], err)
	}
}

func TestBroadcasterDrops(t *testing.T) {
	b := newBroadcaster(time.Now)
	s, err := b.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	for range streamBuffer + 3 {
		b.publish(&inferav1.ClusterEvent{Type: "Action"})
	}
	for range streamBuffer {
		<-s.ch
	}
	b.publish(&inferav1.ClusterEvent{Type: "Action"})
	if ev := <-s.ch; ev.Dropped != 3 || ev.Sequence != streamBuffer+4 {
		t.Errorf("after an overflow: dropped=%d sequence=%d, want 3 and %d", ev.Dropped, ev.Sequence, streamBuffer+4)
	}
	for range maxStreams - 1 {
		if _, err := b.subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.subscribe(); err == nil {
		t.Errorf("subscriber %d accepted, want the cap of %d", maxStreams+1, maxStreams)
	}
}
