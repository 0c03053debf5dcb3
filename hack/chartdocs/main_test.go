package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The chart's README is what the generator makes of values.yaml now.
func TestChartREADMEIsCurrent(t *testing.T) {
	dir := filepath.Join("..", "..", "charts", "temper")
	want, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("charts/temper/README.md is stale: run make chart-docs")
	}
}

func TestRows(t *testing.T) {
	rows, err := Rows([]byte(`
# -- The tag.
tag: ""
agent:
  # -- Run it.
  # Really.
  enabled: true
  # -- Requests.
  resources:
    cpu: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, r := range rows {
		got = append(got, r.Key+"|"+r.Type+"|"+r.Default+"|"+r.Description)
	}
	want := `tag|string|""|The tag.,agent.enabled|bool|true|Run it. Really.,agent.resources|object|{"cpu":1}|Requests.`
	if strings.Join(got, ",") != want {
		t.Errorf("rows\n got %s\nwant %s", strings.Join(got, ","), want)
	}

	_, err = Rows([]byte("agent:\n  enabled: true\n"))
	if err == nil || !strings.Contains(err.Error(), `line 2: agent.enabled has no "# --" comment`) {
		t.Errorf("undocumented value: err = %v", err)
	}
}
