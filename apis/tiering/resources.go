package tiering

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// MaxCPUMilli bounds any CPU quantity this package accepts: 1,000,000 cores.
// Anything larger is absurd input; it is reported and treated as unset, and
// sums saturate at this value, so one broken pod cannot overflow a node's
// sums.
const MaxCPUMilli int64 = 1_000_000_000

// CPU is a pod's effective CPU, in millicores, as the scheduler and the
// kubelet account it.
type CPU struct {
	// RequestMilli: the pod-level CPU request if set; otherwise the larger
	// of the sum over app containers and restartable (sidecar) init
	// containers and the largest plain init container with the sidecars
	// started before it; plus pod overhead.
	RequestMilli int64
	// LimitMilli: the same for limits, plus overhead. 0 means unlimited:
	// the pod has no pod-level CPU limit and some container (app, sidecar
	// or plain init) has no positive CPU limit, which is exactly when the
	// kubelet leaves the pod cgroup without a CPU quota.
	LimitMilli int64
	// Findings name the fields whose quantities were negative or absurd.
	// Such a quantity is treated as unset.
	Findings []Finding
}

// cpuSum accumulates one set of containers.
type cpuSum struct {
	req, lim  int64
	unlimited bool
}

// PodCPU returns the pod's effective CPU request and limit.
func PodCPU(pod *corev1.Pod) CPU {
	var out CPU
	// get returns a CPU quantity in millis; ok is false when it is unset or
	// invalid (reported), so invalid values behave like unset ones.
	get := func(list corev1.ResourceList, field string) (int64, bool) {
		q, ok := list[corev1.ResourceCPU]
		if !ok {
			return 0, false
		}
		m, err := milli(q)
		if err != nil {
			out.Findings = append(out.Findings, Finding{Field: field, Message: err.Error() + "; treated as unset"})
			return 0, false
		}
		return m, true
	}
	// container returns a container's request (defaulted to the limit, as
	// the API server does) and limit; limited is false without a positive
	// limit.
	container := func(r corev1.ResourceRequirements, base string) (req, lim int64, limited bool) {
		req, hasReq := get(r.Requests, base+".requests.cpu")
		lim, hasLim := get(r.Limits, base+".limits.cpu")
		if !hasReq && hasLim {
			req = lim
		}
		return req, lim, hasLim && lim > 0
	}

	var app cpuSum
	for i, c := range pod.Spec.Containers {
		req, lim, limited := container(c.Resources, fmt.Sprintf("spec.containers[%d](%s).resources", i, c.Name))
		app.req, app.lim = sat(app.req, req), sat(app.lim, lim)
		app.unlimited = app.unlimited || !limited
	}
	// Init containers run in order; restartable ones (sidecars) keep
	// running next to the later init containers and the app containers.
	var sidecars, initPeak cpuSum
	for i, c := range pod.Spec.InitContainers {
		req, lim, limited := container(c.Resources, fmt.Sprintf("spec.initContainers[%d](%s).resources", i, c.Name))
		app.unlimited = app.unlimited || !limited
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars.req, sidecars.lim = sat(sidecars.req, req), sat(sidecars.lim, lim)
			initPeak.req, initPeak.lim = max(initPeak.req, sidecars.req), max(initPeak.lim, sidecars.lim)
			continue
		}
		initPeak.req = max(initPeak.req, sat(sidecars.req, req))
		initPeak.lim = max(initPeak.lim, sat(sidecars.lim, lim))
	}
	req := max(sat(app.req, sidecars.req), initPeak.req)
	lim := max(sat(app.lim, sidecars.lim), initPeak.lim)
	limited := !app.unlimited && len(pod.Spec.Containers) > 0

	// Pod-level resources replace the container sums, resource by
	// resource: a pod-level CPU limit without a request also sets the
	// request (API server defaulting).
	if pr := pod.Spec.Resources; pr != nil {
		podReq, hasReq := get(pr.Requests, "spec.resources.requests.cpu")
		podLim, hasLim := get(pr.Limits, "spec.resources.limits.cpu")
		if !hasReq && hasLim {
			podReq, hasReq = podLim, true
		}
		if hasReq {
			req = podReq
		}
		if hasLim {
			lim, limited = podLim, podLim > 0
		}
	}

	overhead, _ := get(pod.Spec.Overhead, "spec.overhead.cpu")
	out.RequestMilli = sat(req, overhead)
	if limited {
		out.LimitMilli = sat(lim, overhead)
	}
	return out
}

func milli(q resource.Quantity) (int64, error) {
	if q.Sign() < 0 {
		return 0, fmt.Errorf("negative quantity %s", q.String())
	}
	// Compare before MilliValue, which overflows silently.
	if q.Cmp(*resource.NewMilliQuantity(MaxCPUMilli, resource.DecimalSI)) > 0 {
		return 0, fmt.Errorf("quantity %s is more than %d cores", q.String(), MaxCPUMilli/1000)
	}
	return q.MilliValue(), nil
}

// sat adds without overflow, clamping at MaxCPUMilli.
func sat(a, b int64) int64 {
	if s := a + b; s <= MaxCPUMilli && s >= a {
		return s
	}
	return MaxCPUMilli
}
