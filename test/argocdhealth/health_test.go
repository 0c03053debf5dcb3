package argocdhealth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/infera-io/temper/test/envtest"
)

// kinds are the custom resources that ship a health check.
var kinds = []string{"InferaPolicy", "NodeQoSReport", "OvercommitProfile"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestFixtures runs each kind's health_test.yaml, Argo CD's fixture format,
// against its script.
func TestFixtures(t *testing.T) {
	root := repoRoot(t)
	for _, kind := range kinds {
		dir := filepath.Dir(ScriptPath(root, "infera.io", kind))
		b, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var suite struct {
			Tests []struct {
				HealthStatus Status `json:"healthStatus"`
				InputPath    string `json:"inputPath"`
			} `json:"tests"`
		}
		if err := yaml.UnmarshalStrict(b, &suite); err != nil {
			t.Fatalf("%s/health_test.yaml: %v", kind, err)
		}
		seen := map[string]bool{}
		for _, tc := range suite.Tests {
			t.Run(kind+"/"+tc.InputPath, func(t *testing.T) {
				in, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
				if err != nil {
					t.Fatal(err)
				}
				var obj map[string]any
				if err := yaml.Unmarshal(in, &obj); err != nil {
					t.Fatal(err)
				}
				got, err := RunFile(ScriptPath(root, "infera.io", kind), obj)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.HealthStatus, got); diff != "" {
					t.Errorf("health (-want +got):\n%s", diff)
				}
				seen[got.Status] = true
			})
		}
		for _, s := range []string{"Healthy", "Progressing", "Degraded"} {
			if !seen[s] {
				t.Errorf("%s: no fixture yields %s", kind, s)
			}
		}
	}
}

// TestScriptsAgree: the kinds share one script; only the kind in the first
// comment line differs.
func TestScriptsAgree(t *testing.T) {
	root := repoRoot(t)
	var first string
	for _, kind := range kinds {
		b, err := os.ReadFile(ScriptPath(root, "infera.io", kind))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), kind, "KIND", 1)
		if first == "" {
			first = s
			continue
		}
		if diff := cmp.Diff(first, s); diff != "" {
			t.Errorf("%s's health.lua differs from %s's (-first +this):\n%s", kind, kinds[0], diff)
		}
	}
}

// TestArgoCDConfigMapCarriesTheScripts: the generated argocd-cm snippet
// holds each script verbatim under the key Argo CD reads.
func TestArgoCDConfigMapCarriesTheScripts(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "config", "argocd", "argocd-cm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Name != "argocd-cm" || len(cm.Data) != len(kinds) {
		t.Errorf("ConfigMap %s has %d keys, want argocd-cm with %d", cm.Name, len(cm.Data), len(kinds))
	}
	for _, kind := range kinds {
		src, err := os.ReadFile(ScriptPath(root, "infera.io", kind))
		if err != nil {
			t.Fatal(err)
		}
		key := "resource.customizations.health.infera.io_" + kind
		if diff := cmp.Diff(string(src), cm.Data[key]); diff != "" {
			t.Errorf("%s differs from %s/health.lua (run make manifests) (-file +configmap):\n%s", key, kind, diff)
		}
	}
}

// TestRunRejectsWhatArgoCDWould: a script error or an unknown status is an
// error, not a silent Unknown.
func TestRunRejectsWhatArgoCDWould(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"name": "x"}}
	if _, err := Run(`return {status="Fine"}`, obj); err == nil {
		t.Error("unknown status accepted")
	}
	if _, err := Run(`error("boom")`, obj); err == nil {
		t.Error("script error accepted")
	}
	// Argo CD does not open the string library.
	if _, err := Run(`return {status=string.upper("healthy")}`, obj); err == nil {
		t.Error("string library is open; Argo CD does not open it")
	}
	if st, err := Run(`return {status="Healthy", message=obj.metadata.name}`, obj); err != nil || st.Message != "x" {
		t.Errorf("Run = %+v, %v", st, err)
	}
}
