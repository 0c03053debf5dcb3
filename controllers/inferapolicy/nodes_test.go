package inferapolicy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
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

func TestDesiredMapping(t *testing.T) {
	const k = wellknown.PriorityMappingAnnotation
	a := tiering.Thresholds{Critical: 500_000, High: 50_000, Normal: 0, Low: -100}
	b := tiering.Thresholds{Critical: 900_000, High: 90_000, Normal: 0, Low: -100}
	val := func(th tiering.Thresholds, policy string) string {
		return tiering.NodeMapping{Thresholds: th, Policy: policy}.Marshal()
	}
	t0 := metav1.Now()
	t1 := metav1.NewTime(t0.Add(time.Minute))
	pol := func(name string, created metav1.Time, th *tiering.Thresholds, selector string) selection {
		s := selection{name: name, created: created, mapping: th}
		if selector != "" {
			s.selector = sel(t, selector)
		}
		return s
	}
	tests := map[string]struct {
		annotations map[string]string
		policies    []selection
		want        map[string]string
		winner      string
		overridden  map[string]string // policy → by
	}{
		"no policy, nothing":          {nil, nil, map[string]string{}, "", nil},
		"selected: written":           {nil, []selection{pol("p", t0, &a, "pool=gpu")}, map[string]string{k: val(a, "p")}, "p", nil},
		"no mapping: not written":     {nil, []selection{pol("p", t0, nil, "pool=gpu")}, map[string]string{}, "", nil},
		"not selected: not written":   {nil, []selection{pol("p", t0, &a, "pool=cpu")}, map[string]string{}, "", nil},
		"owned value removed":         {map[string]string{k: val(a, "gone")}, nil, map[string]string{}, "", nil},
		"owned value updated":         {map[string]string{k: val(a, "p")}, []selection{pol("p", t0, &b, "pool=gpu")}, map[string]string{k: val(b, "p")}, "p", nil},
		"oldest wins":                 {nil, []selection{pol("old", t0, &a, "pool=gpu"), pol("new", t1, &b, "pool=gpu")}, map[string]string{k: val(a, "old")}, "old", map[string]string{"new": "the older InferaPolicy old"}},
		"same mapping is no clash":    {nil, []selection{pol("old", t0, &a, "pool=gpu"), pol("new", t1, &a, "pool=gpu")}, map[string]string{k: val(a, "old")}, "old", map[string]string{}},
		"hand-set value kept":         {map[string]string{k: val(b, "")}, []selection{pol("p", t0, &a, "pool=gpu")}, map[string]string{k: val(b, "")}, "", map[string]string{"p": "a hand-set " + k}},
		"unreadable value kept":       {map[string]string{k: "garbage"}, []selection{pol("p", t0, &a, "pool=gpu")}, map[string]string{k: "garbage"}, "", map[string]string{"p": "a hand-set " + k}},
		"hand-set never removed":      {map[string]string{k: val(b, "")}, nil, map[string]string{k: val(b, "")}, "", nil},
		"invalid selector keeps own":  {map[string]string{k: val(a, "p")}, []selection{pol("p", t0, &a, "")}, map[string]string{k: val(a, "p")}, "p", nil},
		"invalid selector takes none": {nil, []selection{pol("p", t0, &a, "")}, map[string]string{}, "", nil},
		"deleting policy releases to the next": {map[string]string{k: val(a, "old")},
			[]selection{{name: "old", created: t0, mapping: &a, deleting: true, selector: sel(t, "pool=gpu")}, pol("new", t1, &b, "pool=gpu")},
			map[string]string{k: val(b, "new")}, "new", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"pool": "gpu"}, Annotations: tc.annotations}}
			patch, out := desiredMapping(node, tc.policies)
			got := apply(tc.annotations, patch)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if out.winner != tc.winner {
				t.Errorf("winner = %q, want %q", out.winner, tc.winner)
			}
			for p, wantBy := range tc.overridden {
				by, ok := out.overridden(p)
				if ok != (wantBy != "") || by != wantBy {
					t.Errorf("overridden(%s) = %q, %v; want %q", p, by, ok, wantBy)
				}
			}
			node.Annotations = got
			if p, _ := desiredMapping(node, tc.policies); len(p) > 0 {
				t.Errorf("not idempotent: second pass patches %v", p)
			}
		})
	}
}

func TestSortOldestFirst(t *testing.T) {
	t0 := metav1.Now()
	t1 := metav1.NewTime(t0.Add(time.Second))
	ps := []selection{{name: "c", created: t1}, {name: "b", created: t0}, {name: "a", created: t1}}
	sortOldestFirst(ps)
	if got := []string{ps[0].name, ps[1].name, ps[2].name}; !cmp.Equal(got, []string{"b", "a", "c"}) {
		t.Errorf("order = %v", got)
	}
}

func TestCompileRejectsBadMappingByField(t *testing.T) {
	p := &inferav1alpha1.InferaPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: inferav1alpha1.InferaPolicySpec{
		PriorityMapping: &inferav1alpha1.PriorityMapping{Critical: 10, High: 20, Normal: 0, Low: -1},
	}}
	s, selErr, mapErr := compile(p)
	if selErr != nil || mapErr == nil || s.mapping != nil {
		t.Fatalf("compile = %+v, %v, %v; want a mapping error and no mapping", s, selErr, mapErr)
	}
	if want := "spec.priorityMapping.high: 20 must be below critical (10)"; mapErr.Error() != want {
		t.Errorf("error = %q, want %q", mapErr, want)
	}
}
