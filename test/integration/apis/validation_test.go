package apis

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
)

func decode(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatalf("failed to decode YAML: %v\n%s", err, doc)
	}
	return u
}

func cleanup(t *testing.T, obj client.Object) {
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
}

func TestSamplesAreAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(env.Root, "config", "samples", "infera_*.yaml"))
	if err != nil || len(files) != 3 {
		t.Fatalf("want the 3 samples in config/samples, got %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			u := decode(t, string(b))
			if err := env.Client.Create(context.Background(), u); err != nil {
				t.Fatalf("sample rejected: %v", err)
			}
			cleanup(t, u)
		})
	}
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	const ocpHead = "apiVersion: infera.io/v1alpha1\nkind: OvercommitProfile\nmetadata: {name: bad}\n"
	const ipolHead = "apiVersion: infera.io/v1alpha1\nkind: InferaPolicy\nmetadata: {name: bad}\n"
	cases := map[string]struct {
		doc  string
		want []string // substrings of the API server's message
	}{
		"ratio zero": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, ratios: [{tier: low, ratio: 0}]}",
			want: []string{"spec.ratios[0].ratio", "should be greater than 0"},
		},
		"ratio above one": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, ratios: [{tier: low, ratio: 1.5}]}",
			want: []string{"spec.ratios[0].ratio", "should be less than or equal to 1"},
		},
		"negative ratio": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, ratios: [{tier: normal, ratio: 0.5}, {tier: background, ratio: -0.1}]}",
			want: []string{"spec.ratios[1].ratio", "should be greater than 0"},
		},
		"ratio as a string": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, ratios: [{tier: low, ratio: \"half\"}]}",
			want: []string{"spec.ratios[0].ratio", "must be of type number"},
		},
		"unknown tier": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, ratios: [{tier: gold, ratio: 0.5}]}",
			want: []string{"spec.ratios[0].tier", `Unsupported value: "gold"`},
		},
		"critical tier is never deflated": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, ratios: [{tier: critical, ratio: 0.5}]}",
			want: []string{"spec.ratios[0].tier", `Unsupported value: "critical"`},
		},
		"tier listed twice": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, ratios: [{tier: low, ratio: 0.5}, {tier: low, ratio: 0.4}]}",
			want: []string{"spec.ratios[1]", "Duplicate value"},
		},
		"negative floor": {
			doc:  ocpHead + "spec: {namespaceSelector: {}, floorMilli: -5}",
			want: []string{"spec.floorMilli", "should be greater than or equal to 0"},
		},
		"missing namespace selector": {
			doc:  ocpHead + "spec: {floorMilli: 10}",
			want: []string{"spec.namespaceSelector", "Required value"},
		},
		"selector with a bogus operator": {
			doc:  ocpHead + "spec: {namespaceSelector: {matchExpressions: [{key: team, operator: Maybe, values: [a]}]}}",
			want: []string{"spec.namespaceSelector", "operator must be one of In, NotIn, Exists, DoesNotExist"},
		},
		"thresholds out of order": {
			doc:  ipolHead + "spec: {nodeSelector: {}, priorityMapping: {critical: 1000, high: 5000, normal: 0, low: -100}}",
			want: []string{"spec.priorityMapping", "thresholds must be strictly decreasing: critical > high > normal > low"},
		},
		"equal thresholds": {
			doc:  ipolHead + "spec: {nodeSelector: {}, priorityMapping: {normal: -100, low: -100}}",
			want: []string{"spec.priorityMapping", "strictly decreasing"},
		},
		"threshold out of order against a default": {
			doc:  ipolHead + "spec: {nodeSelector: {}, priorityMapping: {low: 5}}",
			want: []string{"spec.priorityMapping", "strictly decreasing"},
		},
		"critical threshold in the system range": {
			doc:  ipolHead + "spec: {nodeSelector: {}, priorityMapping: {critical: 2000000000}}",
			want: []string{"spec.priorityMapping.critical", "should be less than or equal to 1999999999"},
		},
		"missing node selector": {
			doc:  ipolHead + "spec: {safeMode: true}",
			want: []string{"spec.nodeSelector", "Required value"},
		},
		"safe mode as a string": {
			doc:  ipolHead + "spec: {nodeSelector: {}, safeMode: \"yes\"}",
			want: []string{"spec.safeMode", "must be of type boolean"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			u := decode(t, tc.doc)
			err := env.Client.Create(context.Background(), u)
			if err == nil {
				cleanup(t, u)
				t.Fatalf("object was accepted; want rejection mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDefaultsAreApplied(t *testing.T) {
	ctx := context.Background()
	ocp := decode(t, "apiVersion: infera.io/v1alpha1\nkind: OvercommitProfile\nmetadata: {name: defaults}\nspec: {namespaceSelector: {}}")
	if err := env.Client.Create(ctx, ocp); err != nil {
		t.Fatal(err)
	}
	cleanup(t, ocp)
	var gotOCP inferav1alpha1.OvercommitProfile
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "defaults"}, &gotOCP); err != nil {
		t.Fatal(err)
	}
	wantSpec := inferav1alpha1.OvercommitProfileSpec{
		Ratios: []inferav1alpha1.TierRatio{
			{Tier: "normal", Ratio: 0.75}, {Tier: "low", Ratio: 0.5}, {Tier: "background", Ratio: 0.25},
		},
		FloorMilli: 25,
	}
	if diff := cmp.Diff(wantSpec, gotOCP.Spec); diff != "" {
		t.Errorf("OvercommitProfile defaults (-want +got):\n%s", diff)
	}

	ipol := decode(t, "apiVersion: infera.io/v1alpha1\nkind: InferaPolicy\nmetadata: {name: defaults}\nspec: {nodeSelector: {}, priorityMapping: {high: 50000}}")
	if err := env.Client.Create(ctx, ipol); err != nil {
		t.Fatal(err)
	}
	cleanup(t, ipol)
	var gotPol inferav1alpha1.InferaPolicy
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "defaults"}, &gotPol); err != nil {
		t.Fatal(err)
	}
	wantPol := inferav1alpha1.InferaPolicySpec{
		PriorityMapping: &inferav1alpha1.PriorityMapping{Critical: 1_000_000, High: 50_000, Normal: 0, Low: -100},
	}
	if diff := cmp.Diff(wantPol, gotPol.Spec); diff != "" {
		t.Errorf("InferaPolicy defaults (-want +got):\n%s", diff)
	}
	if gotPol.Spec.SafeMode {
		t.Errorf("safeMode defaulted to true")
	}
}
