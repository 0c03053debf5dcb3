package layered

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/apis/wellknown"
)

const (
	system     = wellknown.TierSystem
	critical   = wellknown.TierCritical
	high       = wellknown.TierHigh
	normal     = wellknown.TierNormal
	low        = wellknown.TierLow
	background = wellknown.TierBackground
)

// smtCores pairs CPU i with CPU i+n/2, the usual x86 numbering.
func smtCores(n int) [][]int {
	var cores [][]int
	for i := 0; i < n/2; i++ {
		cores = append(cores, []int{i, i + n/2})
	}
	return cores
}

// mixedPods is a small node with every tier and QoS class, systemd driver.
func mixedPods() []Pod { return mixedPodsWith(systemdPath) }

func mixedPodsWith(path func(qos string, i int) string) []Pod {
	p := func(name string, t wellknown.Tier, qos string, i int, req, lim int64) Pod {
		return Pod{Name: name, Tier: t, CgroupPath: path(qos, i), RequestMilli: req, LimitMilli: lim}
	}
	return []Pod{
		p("kube-system/kube-proxy-x1", system, burstable, 1, 100, 0),
		p("infera-system/infera-agent-a1", system, burstable, 2, 50, 200),
		p("prod/db-0", critical, guaranteed, 3, 1500, 1500),
		p("prod/api-7d9", critical, guaranteed, 4, 1000, 1000),
		p("prod/cache-0", high, burstable, 5, 500, 0),
		p("prod/search-1", high, guaranteed, 6, 2000, 2000),
		p("web/frontend-1", normal, burstable, 7, 250, 1000),
		p("web/frontend-2", normal, burstable, 8, 250, 1000),
		p("web/worker-1", normal, guaranteed, 9, 1000, 1000),
		p("web/report-1", low, burstable, 10, 100, 0),
		p("batch/etl-1", background, bestEffort, 11, 0, 0),
		p("batch/etl-2", background, bestEffort, 12, 0, 0),
		p("batch/crawl-1", background, burstable, 13, 100, 0),
	}
}

// pods250 is a full node: mostly normal and background by QoS class, with
// the other tiers mixed into every QoS group.
func pods250() []Pod {
	var ps []Pod
	add := func(n int, t wellknown.Tier, qos string, req, lim int64) {
		for range n {
			i := len(ps) + 1
			ps = append(ps, pod(fmt.Sprintf("ns%d/%s-%s-%d", i%7, t, qos, i), t, qos, i, req, lim))
		}
	}
	add(4, system, burstable, 100, 0)
	add(2, system, bestEffort, 0, 0)
	add(6, critical, guaranteed, 1000, 1000)
	add(12, high, guaranteed, 500, 500)
	add(10, high, burstable, 250, 0)
	add(60, normal, guaranteed, 200, 200)
	add(90, normal, burstable, 100, 400)
	add(10, low, burstable, 100, 0)
	add(6, low, bestEffort, 0, 0)
	add(4, background, burstable, 50, 0)
	add(46, background, bestEffort, 0, 0)
	return ps
}

type genCase struct {
	node Node
	pods []Pod
	opts func(*Options)
}

func genCases() map[string]genCase {
	var allBackground []Pod
	for i := range 20 {
		allBackground = append(allBackground, pod(fmt.Sprintf("batch/job-%02d", i), background, bestEffort, i, 0, 0))
	}
	var manyCritical []Pod
	for i := range 40 {
		manyCritical = append(manyCritical, pod(fmt.Sprintf("prod/shard-%02d", i), critical, guaranteed, i, 100, 100))
	}
	return map[string]genCase{
		"empty-node": {node: Node{CPUs: 4}},
		"mixed-node": {node: Node{CPUs: 16}, pods: mixedPods()},
		"250-pods":   {node: Node{CPUs: 64, Cores: smtCores(64)}, pods: pods250()},
		"critical-over-capacity": {node: Node{CPUs: 4}, pods: []Pod{
			pod("prod/db-0", critical, guaranteed, 1, 2000, 2000),
			pod("prod/db-1", critical, guaranteed, 2, 1000, 1000),
			pod("web/frontend", normal, burstable, 3, 500, 0),
		}},
		"all-background": {node: Node{CPUs: 8}, pods: allBackground},
		"smt-node": {node: Node{CPUs: 8, Cores: smtCores(8)}, pods: []Pod{
			pod("prod/db-0", critical, guaranteed, 1, 1500, 1500),
			pod("prod/cache-0", high, burstable, 2, 500, 0),
			pod("web/frontend", normal, burstable, 3, 250, 0),
		}},
		"smt-node-shared-siblings": {node: Node{CPUs: 8, Cores: smtCores(8)}, pods: []Pod{
			pod("prod/db-0", critical, guaranteed, 1, 1500, 1500),
		}, opts: func(o *Options) { o.ExclusiveCores = false }},
		"cgroupfs-driver":   {node: Node{CPUs: 16}, pods: mixedPodsWith(cgroupfsPath)},
		"too-many-critical": {node: Node{CPUs: 96}, pods: manyCritical},
		"critical-without-requests": {node: Node{CPUs: 8}, pods: []Pod{
			pod("prod/besteffort-critical", critical, bestEffort, 1, 0, 0),
		}},
		"custom-slices": {node: Node{CPUs: 8}, pods: mixedPods(), opts: func(o *Options) {
			o.Slices = map[wellknown.Tier]time.Duration{system: 2 * time.Millisecond, background: 50 * time.Millisecond}
			o.SystemCores, o.MinSharedCores = 2, 2
			o.SystemComms = []string{"my-agent"}
		}},
		"bad-pods-are-skipped": {node: Node{CPUs: 8}, pods: []Pod{
			pod("ok/normal", normal, burstable, 1, 100, 0),
			{Name: "bad/no-path", Tier: normal},
			{Name: "bad/tier", Tier: "gold", CgroupPath: systemdPath(burstable, 2)},
			{Name: "bad/dotdot", Tier: normal, CgroupPath: "kubepods.slice/../etc"},
			{Name: "bad/space", Tier: normal, CgroupPath: "kubepods.slice/a pod"},
			{Name: "bad/negative", Tier: high, CgroupPath: systemdPath(burstable, 3), RequestMilli: -1},
			{Name: "bad/nested", Tier: critical, CgroupPath: systemdPath(burstable, 1) + "/inner", RequestMilli: 1000},
			{Name: "zz/duplicate", Tier: background, CgroupPath: "/" + systemdPath(burstable, 1) + "/"},
			{Name: "bad/long", Tier: low, CgroupPath: "kubepods.slice/" + strings.Repeat("x", 4090)},
		}},
	}
}

// TestGenerateGolden: each case's config and summary are golden files, and
// every generated config is schema-valid and places every pod in its tier.
func TestGenerateGolden(t *testing.T) {
	for name, tc := range genCases() {
		t.Run(name, func(t *testing.T) {
			opts := DefaultOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			res, err := Generate(tc.node, tc.pods, opts)
			if err != nil {
				t.Fatalf("Generate() = %v", err)
			}
			checkConfig(t, tc.node, res)
			checkPlacement(t, tc.pods, opts.SystemComms, res)
			checkUnknownPodsAreSafe(t, res)
			golden(t, name+".layered.json", res.Config)
			golden(t, name+".summary.json", summaryJSON(t, res))
		})
	}
}

func layerNames(res *Result) []string {
	var names []string
	for _, l := range res.Layers {
		names = append(names, l.Name+"/"+string(l.Kind))
	}
	return names
}

// TestGenerateLayers states the rules of DESIGN.md §2 on the golden cases,
// so a golden update that breaks them still fails.
func TestGenerateLayers(t *testing.T) {
	tests := map[string]struct {
		layers      []string
		fencedCPUs  int
		demotion    DemotionCause
		minCritical int
	}{
		"empty-node": {layers: []string{"system/Grouped", "catch-all/Open"}},
		// normal comes last so it can take the burstable and guaranteed
		// prefixes: 5 blocks instead of 6 in tier order.
		"mixed-node":             {layers: []string{"system/Grouped", "critical/Confined", "high/Grouped", "low/Open", "background/Open", "normal/Grouped", "catch-all/Open"}, fencedCPUs: 3},
		"critical-over-capacity": {layers: []string{"system/Grouped", "critical/Grouped", "normal/Grouped", "catch-all/Open"}, demotion: DemotionCapacity},
		"all-background":         {layers: []string{"system/Grouped", "background/Open", "catch-all/Open"}},
		// 1500m with exclusive cores: 2 physical cores, 4 logical CPUs.
		"smt-node": {layers: []string{"system/Grouped", "critical/Confined", "high/Grouped", "normal/Grouped", "catch-all/Open"}, fencedCPUs: 4},
		// Without exclusive: 1500m fits in 1 core of 2 threads.
		"smt-node-shared-siblings":  {layers: []string{"system/Grouped", "critical/Confined", "catch-all/Open"}, fencedCPUs: 2},
		"too-many-critical":         {layers: []string{"system/Grouped", "critical-1/Grouped", "critical-2/Grouped", "catch-all/Open"}, demotion: DemotionTooManyPods},
		"critical-without-requests": {layers: []string{"system/Grouped", "critical/Grouped", "catch-all/Open"}, demotion: DemotionNoRequests},
	}
	cases := genCases()
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			tc := cases[name]
			opts := DefaultOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			res, err := Generate(tc.node, tc.pods, opts)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want.layers, layerNames(res)); d != "" {
				t.Errorf("layers (-want +got):\n%s", d)
			}
			if res.FencedCPUs != want.fencedCPUs || res.FencedMilli != int64(want.fencedCPUs)*1000 {
				t.Errorf("fenced %d CPUs / %dm, want %d", res.FencedCPUs, res.FencedMilli, want.fencedCPUs)
			}
			var cause DemotionCause
			if res.Demotion != nil {
				cause = res.Demotion.Cause
			}
			if cause != want.demotion {
				t.Errorf("demotion %v, want %q", res.Demotion, want.demotion)
			}
			for _, l := range res.Layers {
				if l.Tier == critical && l.Kind == KindConfined && (l.MinCPUs != want.fencedCPUs || l.MaxCPUs != want.fencedCPUs) {
					t.Errorf("fenced layer owns [%d, %d] CPUs, want exactly %d", l.MinCPUs, l.MaxCPUs, want.fencedCPUs)
				}
			}
		})
	}
}

// TestGenerate250PodsUseQoSPrefixes: on a typical full node the QoS groups
// collapse into prefixes, so the config stays small.
func TestGenerate250PodsUseQoSPrefixes(t *testing.T) {
	res, err := Generate(Node{CPUs: 64, Cores: smtCores(64)}, pods250(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	total, prefixes := 0, 0
	for _, l := range res.Layers {
		total += l.Matches
		prefixes += len(l.GroupPrefixes)
	}
	if len(res.Layers) > 8 || total > 100 || prefixes < 3 {
		t.Errorf("250 pods took %d layers, %d blocks, %d prefixes; want ≤ 8 layers, ≤ 100 blocks, ≥ 3 prefixes", len(res.Layers), total, prefixes)
	}
}

// TestGenerateAnyDistributionOf250Pods: whatever the tiers, QoS classes and
// drivers of 250 pods, the config fits scx_layered's limits, is valid, and
// places every pod in its tier.
func TestGenerateAnyDistributionOf250Pods(t *testing.T) {
	tiers := wellknown.AllTiers()
	qoses := []string{guaranteed, burstable, bestEffort}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, seed*7+1))
		// Skew some runs towards a few tiers, the hardest case for prefixes.
		weights := make([]int, len(tiers))
		for i := range weights {
			weights[i] = rng.IntN(10)
		}
		weights[rng.IntN(len(weights))] += 5
		pick := func() wellknown.Tier {
			sum := 0
			for _, w := range weights {
				sum += w
			}
			n := rng.IntN(sum)
			for i, w := range weights {
				if n < w {
					return tiers[i]
				}
				n -= w
			}
			return tiers[len(tiers)-1]
		}
		var ps []Pod
		for i := range 250 {
			q := qoses[rng.IntN(len(qoses))]
			path := systemdPath(q, i)
			if seed%3 == 0 {
				path = cgroupfsPath(q, i)
			}
			ps = append(ps, Pod{Name: fmt.Sprintf("ns/p%03d", i), Tier: pick(), CgroupPath: path, RequestMilli: int64(rng.IntN(2000)), LimitMilli: int64(rng.IntN(2) * 2000)})
		}
		node := Node{CPUs: 2 + 2*rng.IntN(64)}
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			res, err := Generate(node, ps, DefaultOptions())
			if err != nil {
				t.Fatalf("Generate() = %v", err)
			}
			checkConfig(t, node, res)
			checkPlacement(t, ps, DefaultOptions().SystemComms, res)
			checkUnknownPodsAreSafe(t, res)
		})
	}
}

// TestGenerateWorstCase250: 250 pods that no prefix can help (every pod in
// a protected tier, or alone in its group) and whose tiers each overflow
// one layer by a little still fit in 16 layers.
func TestGenerateWorstCase250(t *testing.T) {
	var ps []Pod
	add := func(n int, tier wellknown.Tier) {
		for range n {
			i := len(ps)
			ps = append(ps, Pod{Name: fmt.Sprintf("ns/p%03d", i), Tier: tier, CgroupPath: fmt.Sprintf("kubepods.slice/x%03d.slice/kubepods-pod%s.slice", i, uid(i)), RequestMilli: 100})
		}
	}
	add(31, system) // + 2 name rules: 33 blocks
	add(33, critical)
	add(33, high)
	add(51, normal)
	add(51, low)
	add(51, background)
	node := Node{CPUs: 128}
	res, err := Generate(node, ps, DefaultOptions())
	if err != nil {
		t.Fatalf("Generate() = %v", err)
	}
	if len(res.Layers) != 13 {
		t.Errorf("%d layers, want 2 per tier plus the catch-all: %v", len(res.Layers), layerNames(res))
	}
	checkConfig(t, node, res)
	checkPlacement(t, ps, DefaultOptions().SystemComms, res)
}

func TestGenerateTooManyLayers(t *testing.T) {
	var ps []Pod
	for i := range 16 * 32 {
		ps = append(ps, Pod{Name: fmt.Sprintf("ns/p%03d", i), Tier: high, CgroupPath: systemdPath(burstable, i)})
	}
	_, err := Generate(Node{CPUs: 8}, ps, DefaultOptions())
	if !errors.Is(err, ErrTooManyLayers) {
		t.Fatalf("Generate(512 high pods) = %v, want ErrTooManyLayers", err)
	}
	if want := "512 pods need 18 layers, more than 16"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// TestGenerateIsDeterministic: the agent compares bytes to decide whether
// to restart scx_layered, so input order must not matter.
func TestGenerateIsDeterministic(t *testing.T) {
	ps := pods250()
	node := Node{CPUs: 64, Cores: smtCores(64)}
	first, err := Generate(node, ps, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := slices.Clone(ps)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, err := Generate(node, shuffled, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		if string(again.Config) != string(first.Config) {
			t.Fatal("a shuffled pod list gives a different config")
		}
		if d := cmp.Diff(first, again); d != "" {
			t.Fatalf("a shuffled pod list gives a different result (-first +again):\n%s", d)
		}
	}
}

// TestGeneratePodJoiningAPrefixNeedsNoRestart: a new pod of the tier that
// holds its QoS group's prefix does not change the config, so it costs no
// scheduler restart; one that must be listed does.
func TestGeneratePodJoiningAPrefixNeedsNoRestart(t *testing.T) {
	node := Node{CPUs: 16}
	before, err := Generate(node, mixedPods(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	joined := append(mixedPods(), pod("batch/etl-3", background, bestEffort, 99, 0, 0))
	after, err := Generate(node, joined, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if string(before.Config) != string(after.Config) {
		t.Errorf("a new best-effort background pod changed the config:\n%s", after.Config)
	}
	listed := append(mixedPods(), pod("prod/api-2", high, bestEffort, 98, 0, 0))
	changed, err := Generate(node, listed, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if string(before.Config) == string(changed.Config) {
		t.Error("a new high pod did not change the config")
	}
	checkPlacement(t, listed, DefaultOptions().SystemComms, changed)
}

func TestGenerateRejectsBadNodeAndOptions(t *testing.T) {
	tests := map[string]struct {
		node    Node
		opts    func(*Options)
		wantErr string
	}{
		"no CPUs":               {node: Node{}, wantErr: "node has 0 CPUs; want 1 to 512"},
		"too many CPUs":         {node: Node{CPUs: 513}, wantErr: "node has 513 CPUs; want 1 to 512"},
		"CPU outside the range": {node: Node{CPUs: 2, Cores: [][]int{{0, 2}}}, wantErr: "core 0 lists CPU 2, outside 0..1"},
		"CPU in two cores":      {node: Node{CPUs: 2, Cores: [][]int{{0, 1}, {1}}}, wantErr: "CPU 1 is in more than one core"},
		"CPU in no core":        {node: Node{CPUs: 3, Cores: [][]int{{0, 1}}}, wantErr: "CPU 2 is in no core"},
		"empty core":            {node: Node{CPUs: 1, Cores: [][]int{{0}, {}}}, wantErr: "core 1 has no CPUs"},
		"slice too short": {node: Node{CPUs: 4}, opts: func(o *Options) { o.Slices[low] = time.Microsecond },
			wantErr: "slice of tier low: 1µs is out of range [100µs, 1s]"},
		"slice for an unknown tier": {node: Node{CPUs: 4}, opts: func(o *Options) { o.Slices["gold"] = time.Millisecond },
			wantErr: `slice for unknown tier "gold"`},
		"negative cores": {node: Node{CPUs: 4}, opts: func(o *Options) { o.MinSharedCores = -1 },
			wantErr: "system cores (1) and minimum shared cores (-1) must not be negative"},
		"comm too long": {node: Node{CPUs: 4}, opts: func(o *Options) { o.SystemComms = []string{"infera-agent-long"} },
			wantErr: `system comm "infera-agent-long": want 1 to 15 printable ASCII bytes`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := DefaultOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, err := Generate(tc.node, nil, opts)
			if err == nil || !strings.HasSuffix(err.Error(), tc.wantErr) {
				t.Errorf("Generate() = %v, want …%q", err, tc.wantErr)
			}
		})
	}
}

// TestFenceBoundary: critical is fenced exactly while cores + system +
// shared pool fit, and demoted one millicore later.
func TestFenceBoundary(t *testing.T) {
	node := Node{CPUs: 8} // 8 cores: 6 fenceable with the defaults
	for _, tc := range []struct {
		req       int64
		fenced    int
		demotedTo bool
	}{
		{req: 1, fenced: 1},
		{req: 1000, fenced: 1},
		{req: 1001, fenced: 2},
		{req: 6000, fenced: 6},
		{req: 6001, demotedTo: true},
	} {
		res, err := Generate(node, []Pod{pod("p/c", critical, guaranteed, 1, tc.req, tc.req)}, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Demotion != nil; got != tc.demotedTo || res.FencedCPUs != tc.fenced {
			t.Errorf("request %dm: fenced %d, demoted %v; want fenced %d, demoted %v", tc.req, res.FencedCPUs, res.Demotion, tc.fenced, tc.demotedTo)
		}
		if res.Demotion != nil && (res.Demotion.WantCores != 7 || res.Demotion.FenceableCores != 6) {
			t.Errorf("request %dm: demotion %+v, want 7 wanted and 6 fenceable cores", tc.req, res.Demotion)
		}
	}
}

// TestTinyNodeKeepsASharedCore: on a one-core node the system layer must not
// own the only core (it is protected, so nothing else could run).
func TestTinyNodeKeepsASharedCore(t *testing.T) {
	res, err := Generate(Node{CPUs: 1}, []Pod{pod("a/b", normal, burstable, 1, 100, 0)}, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if sys := res.Layers[0]; sys.Tier != system || sys.MinCPUs != 0 {
		t.Errorf("system layer on a 1-CPU node: %+v, want no reserved CPU", sys)
	}
}
