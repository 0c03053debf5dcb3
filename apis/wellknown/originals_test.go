package wellknown

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseOriginalCPURequests(t *testing.T) {
	ok := map[string]map[string]int64{
		`{}`:                        {},
		`{"app":"2","init":"500m"}`: {"app": 2000, "init": 500},
		`{"a":"0"}`:                 {"a": 0},
	}
	for in, want := range ok {
		got, err := ParseOriginalCPURequests(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		milli := map[string]int64{}
		for k, q := range got {
			milli[k] = q.MilliValue()
		}
		if d := cmp.Diff(want, milli); d != "" {
			t.Errorf("%s (-want +got):\n%s", in, d)
		}
	}
	bad := map[string]string{
		`{nope`:            "not a JSON object",
		`null`:             "null instead",
		`["a"]`:            "not a JSON object",
		`{"a":1}`:          "not a JSON object", // numbers: the webhook writes strings
		`{"a":"lots"}`:     `container "a": "lots" is not a quantity`,
		`{"a":"-1"}`:       `container "a": negative request -1`,
		`{"Bad_Name":"1"}`: `container name "Bad_Name"`,
		`{"":"1"}`:         `container name ""`,
		`{"a":"` + strings.Repeat("9", maxOriginalsBytes) + `"}`: "bytes is more than",
	}
	for in, want := range bad {
		_, err := ParseOriginalCPURequests(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "annotation "+OriginalCPURequestsAnnotation+": ") {
			t.Errorf("%.40s: error %v, want one naming the annotation and saying %q", in, err, want)
		}
	}
}

func TestPodCPUSavings(t *testing.T) {
	c := func(name, req string) corev1.Container {
		ct := corev1.Container{Name: name}
		if req != "" {
			ct.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req)}
		}
		return ct
	}
	pod := func(annotation string, init []corev1.Container, cs ...corev1.Container) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: "p"}, Spec: corev1.PodSpec{InitContainers: init, Containers: cs}}
		if annotation != "" {
			p.Annotations = map[string]string{OriginalCPURequestsAnnotation: annotation}
		}
		return p
	}
	tests := map[string]struct {
		pod     *corev1.Pod
		want    CPUSavings
		has     bool
		wantErr string
	}{
		"no annotation":          {pod: pod("", nil, c("a", "1"))},
		"garbage names the pod":  {pod: pod("{nope", nil, c("a", "1")), has: true, wantErr: "pod batch/p: annotation " + OriginalCPURequestsAnnotation},
		"deflated app and init":  {pod: pod(`{"a":"2","i":"1"}`, []corev1.Container{c("i", "500m")}, c("a", "1")), has: true, want: CPUSavings{OriginalMilli: 3000, CurrentMilli: 1500, FreedMilli: 1500}},
		"dry run: nothing freed": {pod: pod(`{"a":"1"}`, nil, c("a", "1")), has: true, want: CPUSavings{OriginalMilli: 1000, CurrentMilli: 1000}},
		"unknown container listed, others counted": {pod: pod(`{"gone":"4","a":"1","b-gone":"1"}`, nil, c("a", "250m")), has: true,
			want: CPUSavings{OriginalMilli: 1000, CurrentMilli: 250, FreedMilli: 750, Unknown: []string{"b-gone", "gone"}}},
		"a raised request frees nothing, per container": {pod: pod(`{"a":"100m","b":"1"}`, nil, c("a", "1"), c("b", "400m")), has: true,
			want: CPUSavings{OriginalMilli: 1100, CurrentMilli: 1400, FreedMilli: 600}},
		"no current request counts as zero": {pod: pod(`{"a":"300m"}`, nil, c("a", "")), has: true, want: CPUSavings{OriginalMilli: 300, FreedMilli: 300}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, has, err := PodCPUSavings(tc.pod)
			if has != tc.has {
				t.Errorf("has = %v, want %v", has, tc.has)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("savings (-want +got):\n%s", d)
			}
			uerr := got.UnknownError(tc.pod)
			if (len(tc.want.Unknown) > 0) != (uerr != nil) || (uerr != nil && !errors.Is(uerr, ErrUnknownContainers)) {
				t.Errorf("UnknownError = %v", uerr)
			}
		})
	}
}

// FuzzParseOriginalCPURequests feeds arbitrary values of
// infera.io/original-cpu-requests to its one reader. Whatever it accepts
// renders with String and reads back equal; whatever it rejects is
// rejected with an error naming the annotation and no value.
func FuzzParseOriginalCPURequests(f *testing.F) {
	for _, s := range []string{`{}`, `{"app":"2","init":"500m"}`, `{"a":"1e3"}`, `{"a":"0.0001"}`, `null`, `{"a":1}`, `{"A":"1"}`, `{"a":"1Ki"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOriginalCPURequests(s)
		if err != nil {
			if o != nil || !strings.HasPrefix(err.Error(), "annotation "+OriginalCPURequestsAnnotation+": ") {
				t.Fatalf("rejection returned %v, error %v", o, err)
			}
			return
		}
		out := o.String()
		back, err := ParseOriginalCPURequests(out)
		if err != nil {
			t.Fatalf("cannot read our own rendering %q of %q: %v", out, s, err)
		}
		if len(back) != len(o) {
			t.Fatalf("round trip changed the entries: %v then %v", o, back)
		}
		for k, q := range o {
			if q.Sign() < 0 {
				t.Fatalf("accepted a negative request %s for %q", q.String(), k)
			}
			if b, ok := back[k]; !ok || b.Cmp(q) != 0 {
				t.Fatalf("round trip changed %q: %s then %s", k, q.String(), b.String())
			}
		}
		if again := back.String(); again != out {
			t.Fatalf("String is not stable: %q then %q", out, again)
		}
	})
}
