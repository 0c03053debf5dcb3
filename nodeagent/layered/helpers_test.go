package layered

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/layered/scxschema"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// QoS classes as the kubelet's cgroup naming knows them.
const (
	guaranteed = "guaranteed"
	burstable  = "burstable"
	bestEffort = "besteffort"
)

// uid returns a deterministic pod UID.
func uid(i int) string { return fmt.Sprintf("%08x-aaaa-4bbb-8ccc-%012x", i, i) }

// systemdPath is the kubelet's pod cgroup with the systemd driver.
func systemdPath(qos string, i int) string {
	u := strings.ReplaceAll(uid(i), "-", "_")
	if qos == guaranteed {
		return "kubepods.slice/kubepods-pod" + u + ".slice"
	}
	return "kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + u + ".slice"
}

// cgroupfsPath is the kubelet's pod cgroup with the cgroupfs driver.
func cgroupfsPath(qos string, i int) string {
	if qos == guaranteed {
		return "kubepods/pod" + uid(i)
	}
	return "kubepods/" + qos + "/pod" + uid(i)
}

// pod builds a systemd-driver pod; i makes its UID.
func pod(name string, t wellknown.Tier, qos string, i int, req, lim int64) Pod {
	return Pod{Name: name, Tier: t, CgroupPath: systemdPath(qos, i), RequestMilli: req, LimitMilli: lim}
}

// validator is the strict schema the repository embeds plus the code
// checks; scxschema's tests prove the embedded copy equals the schema the
// project tracks whenever that outside copy is present.
var (
	validatorOnce sync.Once
	validatorV    *scxschema.Validator
	validatorErr  error
)

func validator(t testing.TB) *scxschema.Validator {
	t.Helper()
	validatorOnce.Do(func() { validatorV, validatorErr = scxschema.New() })
	if validatorErr != nil {
		t.Fatalf("failed to load the embedded schema: %v", validatorErr)
	}
	return validatorV
}

// checkConfig validates a generated config with the strict schema and the
// code checks, then with the rules FORMAT.md §15 sets for our generator
// beyond them: ASCII names of at most 63 bytes, no template or cpuset, only
// CgroupPrefix and PcommPrefix matches, cgroup prefixes ending at a "/" or a
// "pod" boundary, and summaries that agree with the layers.
func checkConfig(t *testing.T, node Node, res *Result) {
	t.Helper()
	if err := validator(t).Validate(res.Config); err != nil {
		t.Fatalf("generated config is invalid: %v\n%s", err, res.Config)
	}
	var layers []map[string]any
	if err := json.Unmarshal(res.Config, &layers); err != nil {
		t.Fatal(err)
	}
	if len(layers) != len(res.Layers) {
		t.Fatalf("%d layers but %d summaries", len(layers), len(res.Layers))
	}
	for i, l := range layers {
		name, _ := l["name"].(string)
		if len(name) > 63 || !printableASCII(name) || name != res.Layers[i].Name {
			t.Errorf("layer %d: name %q (summary %q) must be ASCII, at most 63 bytes and match the summary", i, name, res.Layers[i].Name)
		}
		for _, banned := range []string{"template", "cpuset"} {
			if _, ok := l[banned]; ok {
				t.Errorf("layer %q has %q", name, banned)
			}
		}
		matches, _ := l["matches"].([]any)
		if len(matches) != res.Layers[i].Matches {
			t.Errorf("layer %q: %d OR blocks, summary says %d", name, len(matches), res.Layers[i].Matches)
		}
		for _, b := range matches {
			for _, c := range b.([]any) {
				for k, v := range c.(map[string]any) {
					s, _ := v.(string)
					switch k {
					case "CgroupPrefix":
						if !strings.HasSuffix(s, "/") && !strings.HasSuffix(s, "pod") {
							t.Errorf("layer %q: CgroupPrefix %q ends mid-name", name, s)
						}
					case "PcommPrefix":
					default:
						t.Errorf("layer %q uses %s; the generator sticks to CgroupPrefix and PcommPrefix", name, k)
					}
				}
			}
		}
		kind := l["kind"].(map[string]any)
		if _, ok := kind[string(res.Layers[i].Kind)]; !ok {
			t.Errorf("layer %q: kind %v, summary says %s", name, kind, res.Layers[i].Kind)
		}
		if mx := res.Layers[i].MaxCPUs; mx > node.CPUs {
			t.Errorf("layer %q: cpus_range max %d is more than the node's %d CPUs", name, mx, node.CPUs)
		}
	}
	last := res.Layers[len(res.Layers)-1]
	if last.Name != catchAllName || last.Tier != "" || last.Kind != KindOpen {
		t.Errorf("last layer is %+v, want the Open catch-all", last)
	}
}

// task is a thread to place: its cgroup path as scx_layered sees it and its
// thread-group leader's comm.
type task struct {
	cgroup string
	pcomm  string
}

// rules are the matches of a config's layers, in file order.
type rules []struct {
	Matches [][]map[string]string `json:"matches"`
}

func parseRules(t *testing.T, config []byte) rules {
	t.Helper()
	var r rules
	if err := json.Unmarshal(config, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// place does what scx_layered does with a task: the first layer, in file
// order, with an OR block whose conditions all hold. It knows the match
// kinds the generator emits and fails the test on any other.
func place(t *testing.T, layers rules, tk task) int {
	t.Helper()
	for i, l := range layers {
		for _, block := range l.Matches {
			all := true
			for _, cond := range block {
				for k, v := range cond {
					switch k {
					case "CgroupPrefix":
						all = all && strings.HasPrefix(tk.cgroup, v)
					case "PcommPrefix":
						all = all && strings.HasPrefix(tk.pcomm, v)
					default:
						t.Fatalf("place: unknown match %s", k)
					}
				}
			}
			if all {
				return i
			}
		}
	}
	t.Fatalf("task %+v matches no layer: scx_layered would be ejected", tk)
	return -1
}

// containerTask is a thread of one of pod's containers.
func containerTask(p Pod, id int) task {
	return task{cgroup: strings.Trim(p.CgroupPath, "/") + fmt.Sprintf("/cri-containerd-%064x.scope/", id), pcomm: "app"}
}

// checkPlacement places a container thread of every pod and checks that it
// lands in a layer of the pod's tier (skipped pods in the catch-all), and
// that threads outside pods land in the catch-all or, for the agent and
// scx_layered (systemComms), the system layer.
func checkPlacement(t *testing.T, pods []Pod, systemComms []string, res *Result) {
	t.Helper()
	layers := parseRules(t, res.Config)
	skipped := map[string]bool{}
	for _, s := range res.Skipped {
		skipped[s.Name] = true
	}
	counts := make([]int, len(res.Layers))
	for i, p := range pods {
		if skipped[p.Name] {
			continue
		}
		l := place(t, layers, containerTask(p, i))
		counts[l]++
		if got := res.Layers[l].Tier; got != p.Tier {
			t.Errorf("pod %s (%s, %s) lands in layer %q of tier %q", p.Name, p.Tier, p.CgroupPath, res.Layers[l].Name, got)
		}
	}
	for i, l := range res.Layers {
		if l.Tier != "" && counts[i] != l.Pods {
			t.Errorf("layer %q: %d pods land there, the summary says %d", l.Name, counts[i], l.Pods)
		}
	}
	last := len(res.Layers) - 1
	for _, tk := range []task{
		{cgroup: "system.slice/kubelet.service/", pcomm: "kubelet"},
		{cgroup: "/", pcomm: "systemd"},
		{cgroup: "kubepods.slice/", pcomm: "conmon"},
	} {
		if l := place(t, layers, tk); l != last {
			t.Errorf("%+v lands in %q, want the catch-all", tk, res.Layers[l].Name)
		}
	}
	for _, comm := range systemComms {
		if l := place(t, layers, task{cgroup: "system.slice/" + comm + ".service/", pcomm: comm}); res.Layers[l].Tier != wellknown.TierSystem {
			t.Errorf("threads of %s land in %q, want the system layer", comm, res.Layers[l].Name)
		}
	}
}

// checkUnknownPodsAreSafe: a pod the agent does not know yet may be caught
// by a QoS prefix, but only into normal, low or background, never into a
// protected layer or the critical fence.
func checkUnknownPodsAreSafe(t *testing.T, res *Result) {
	t.Helper()
	layers := parseRules(t, res.Config)
	for _, qos := range []string{guaranteed, burstable, bestEffort} {
		for _, path := range []string{systemdPath(qos, 1_000_000), cgroupfsPath(qos, 1_000_000)} {
			l := place(t, layers, containerTask(Pod{CgroupPath: path}, 0))
			if tier := res.Layers[l].Tier; tier != "" && !slices.Contains([]wellknown.Tier{wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground}, tier) {
				t.Errorf("an unknown %s pod lands in layer %q (tier %s)", qos, res.Layers[l].Name, tier)
			}
		}
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("failed to read golden file (run go test ./nodeagent/scx -update to create it): %v", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs; if intended, rerun with -update and review the diff.\n--- got\n%s", path, got)
	}
}

// summaryJSON renders everything in a Result but the config.
func summaryJSON(t *testing.T, res *Result) []byte {
	t.Helper()
	b, err := json.MarshalIndent(struct {
		FencedCPUs  int            `json:"fencedCPUs"`
		FencedMilli int64          `json:"fencedMilli"`
		Demotion    *Demotion      `json:"demotion,omitempty"`
		Skipped     []SkippedPod   `json:"skipped,omitempty"`
		Layers      []LayerSummary `json:"layers"`
	}{res.FencedCPUs, res.FencedMilli, res.Demotion, res.Skipped, res.Layers}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}
