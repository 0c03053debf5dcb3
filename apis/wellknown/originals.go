package wellknown

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// maxOriginalsBytes bounds infera.io/original-cpu-requests. The webhook
// writes one short entry per container; 16 KiB is far more than any pod
// needs and keeps a hostile value from costing the readers anything.
const maxOriginalsBytes = 16 << 10

// OriginalCPURequests is the value of infera.io/original-cpu-requests:
// container name → the CPU request the overcommit webhook replaced.
type OriginalCPURequests map[string]resource.Quantity

// ParseOriginalCPURequests reads infera.io/original-cpu-requests: a JSON
// object of container name (a DNS label, as Kubernetes requires of container
// names) to a non-negative CPU quantity in a string, as the webhook writes
// it. Errors name the annotation and, where there is one, the container.
// It is the one reader of the annotation: the webhook (already deflated?),
// the OvercommitProfile controller (CPU freed) and the gateway (savings,
// explain-tier) all go through it.
func ParseOriginalCPURequests(v string) (OriginalCPURequests, error) {
	fail := func(format string, a ...any) (OriginalCPURequests, error) {
		return nil, fmt.Errorf("annotation %s: %s", OriginalCPURequestsAnnotation, fmt.Sprintf(format, a...))
	}
	if len(v) > maxOriginalsBytes {
		return fail("%d bytes is more than the %d allowed", len(v), maxOriginalsBytes)
	}
	var raw map[string]string
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return fail("not a JSON object of container name to CPU quantity string: %v", err)
	}
	if raw == nil {
		return fail("null instead of a JSON object of container name to CPU quantity string")
	}
	out := make(OriginalCPURequests, len(raw))
	for name, s := range raw {
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return fail("container name %q: %s", name, errs[0])
		}
		q, err := resource.ParseQuantity(s)
		if err != nil {
			return fail("container %q: %q is not a quantity: %v", name, s, err)
		}
		if q.Sign() < 0 {
			return fail("container %q: negative request %s", name, s)
		}
		out[name] = q
	}
	return out, nil
}

// String renders o as the annotation's value (keys sorted, quantities in
// their canonical form), the inverse of ParseOriginalCPURequests.
func (o OriginalCPURequests) String() string {
	m := make(map[string]string, len(o))
	for k, q := range o {
		m[k] = q.String()
	}
	b, _ := json.Marshal(m) // a map of strings always marshals
	return string(b)
}

// CPUSavings is what overcommit took off one pod's CPU requests.
type CPUSavings struct {
	// OriginalMilli and CurrentMilli sum, over the containers the
	// annotation names that the pod has, the request before deflation and
	// the request now (0 when a container has none).
	OriginalMilli, CurrentMilli int64
	// FreedMilli sums original minus current per container, never below 0
	// per container (an in-place resize may have raised one).
	FreedMilli int64
	// Unknown lists, sorted, the names the annotation gives that are no
	// container of the pod (a hand edit); they count for nothing.
	Unknown []string
}

// PodCPUSavings reads pod's infera.io/original-cpu-requests and compares it
// with the pod's current requests. ok is false when the pod has no such
// annotation; err is set when the annotation does not parse (and names the
// pod).
func PodCPUSavings(pod *corev1.Pod) (s CPUSavings, ok bool, err error) {
	v, has := pod.Annotations[OriginalCPURequestsAnnotation]
	if !has {
		return CPUSavings{}, false, nil
	}
	orig, err := ParseOriginalCPURequests(v)
	if err != nil {
		return CPUSavings{}, true, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	seen := map[string]bool{}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			o, named := orig[c.Name]
			if !named {
				continue
			}
			seen[c.Name] = true
			cur := c.Resources.Requests[corev1.ResourceCPU]
			s.OriginalMilli += o.MilliValue()
			s.CurrentMilli += cur.MilliValue()
			if d := o.MilliValue() - cur.MilliValue(); d > 0 {
				s.FreedMilli += d
			}
		}
	}
	for name := range orig {
		if !seen[name] {
			s.Unknown = append(s.Unknown, name)
		}
	}
	slices.Sort(s.Unknown)
	return s, true, nil
}

// ErrUnknownContainers is wrapped by UnknownError.
var ErrUnknownContainers = errors.New("names containers the pod does not have")

// UnknownError describes s.Unknown for pod as an error naming the pod and
// the annotation, or nil when every name is a container of the pod.
func (s CPUSavings) UnknownError(pod *corev1.Pod) error {
	if len(s.Unknown) == 0 {
		return nil
	}
	return fmt.Errorf("pod %s/%s: annotation %s %w: %q", pod.Namespace, pod.Name, OriginalCPURequestsAnnotation, ErrUnknownContainers, s.Unknown)
}
