package inferapolicy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/infera-io/temper/apis/wellknown"
)

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDesiredAnnotations(t *testing.T) {
	const v, o = wellknown.SafeModeRequestedAnnotation, wellknown.SafeModeOwnerAnnotation
	gpu := func(name string, safe bool) selection {
		return selection{name: name, safeMode: safe, selector: sel(t, "pool=gpu")}
	}
	tests := map[string]struct {
		annotations map[string]string
		policies    []selection
		want        map[string]string
	}{
		"selected: set and owned":         {nil, []selection{gpu("a", true)}, map[string]string{v: "true", o: "a"}},
		"several owners, sorted":          {nil, []selection{gpu("b", true), gpu("a", true)}, map[string]string{v: "true", o: "a,b"}},
		"safeMode false does not ask":     {nil, []selection{gpu("a", false)}, map[string]string{}},
		"deleting policy does not ask":    {map[string]string{v: "true", o: "a"}, []selection{{name: "a", safeMode: true, deleting: true, selector: sel(t, "pool=gpu")}}, map[string]string{}},
		"hand-set value is not adopted":   {map[string]string{v: "true"}, []selection{gpu("a", true)}, map[string]string{v: "true"}},
		"hand-set value is never removed": {map[string]string{v: "true", "x": "y"}, nil, map[string]string{v: "true", "x": "y"}},
		"owned value is removed":          {map[string]string{v: "true", o: "a"}, nil, map[string]string{}},
		"one owner left keeps it":         {map[string]string{v: "true", o: "a,b"}, []selection{gpu("b", true)}, map[string]string{v: "true", o: "b"}},
		"operator changed our value":      {map[string]string{v: "false", o: "a"}, nil, map[string]string{v: "false"}},
		"not selected":                    {nil, []selection{{name: "a", safeMode: true, selector: sel(t, "pool=cpu")}}, map[string]string{}},
		"invalid selector keeps its own":  {map[string]string{v: "true", o: "a"}, []selection{{name: "a", safeMode: true}}, map[string]string{v: "true", o: "a"}},
		"invalid selector takes no more":  {nil, []selection{{name: "a", safeMode: true}}, map[string]string{}},
		"explicit false is overridden":    {map[string]string{v: "false"}, []selection{gpu("a", true)}, map[string]string{v: "true", o: "a"}},
		"stray owner key without value":   {map[string]string{o: ""}, nil, map[string]string{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"pool": "gpu"}, Annotations: tc.annotations}}
			patch, changed := desiredAnnotations(node, tc.policies)
			got := apply(tc.annotations, patch)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if changed != !cmp.Equal(tc.annotations, got, cmp.Comparer(func(a, b map[string]string) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })) {
				t.Errorf("changed = %v for %v → %v", changed, tc.annotations, got)
			}
			// Applying again is a no-op.
			node.Annotations = got
			if p, again := desiredAnnotations(node, tc.policies); again {
				t.Errorf("not idempotent: second pass patches %v", p)
			}
		})
	}
}
