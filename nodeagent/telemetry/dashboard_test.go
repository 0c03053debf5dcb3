package telemetry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard in config/grafana queries only metrics the agent
// exports, so a renamed metric cannot leave a silently empty panel.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "grafana", "infera-node-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard has no uid or panels")
	}

	dir := t.TempDir()
	pod := filepath.Join(dir, "pod")
	write(t, pod, "cpu.stat", "usage_usec 1\nnr_throttled 1\nthrottled_usec 1\n")
	write(t, pod, "cpu.pressure", "some avg10=0 avg60=0 avg300=0 total=1\nfull avg10=0 avg60=0 avg300=0 total=1\n")
	write(t, filepath.Join(dir, "proc", "pressure"), "cpu", "some avg10=0 avg60=0 avg300=0 total=1\n")
	m, err := New(Options{Snapshot: func() Snapshot { return fullSnapshot(pod) }, ProcRoot: filepath.Join(dir, "proc")})
	if err != nil {
		t.Fatal(err)
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exported[f.GetName()+s] = true
			}
		}
	}
	name := regexp.MustCompile(`infera_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				if !exported[n] {
					t.Errorf("panel %q queries %s, which the agent does not export (exported: %s)", p.Title, n, strings.Join(keys(exported), ", "))
				}
			}
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
