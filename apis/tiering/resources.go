package tiering

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// MaxCPUMilli bounds any CPU quantity this package accepts: 1,000,000 cores.
// Anything larger is absurd input; it is reported and counted as zero so
// that one broken pod cannot overflow a node's sums.
const MaxCPUMilli int64 = 1_000_000_000

// CPU is a pod's effective CPU, in millicores, as the scheduler accounts it.
type CPU struct {
	// RequestMilli: pod-level request if set; otherwise the larger of the
	// sum over app containers and restartable (sidecar) init containers and
	// the largest plain init container with the sidecars started before it;
	// plus pod overhead.
	RequestMilli int64
	// LimitMilli: the same for limits; 0 means unlimited (some container
	// that runs for the pod's lifetime has no CPU limit).
	LimitMilli int64
	// Findings name containers whose quantities were absurd.
	Findings []Finding
}

// PodCPU returns the pod's effective CPU request and limit.
func PodCPU(pod *corev1.Pod) CPU {
	var out CPU
	get := func(list corev1.ResourceList, field string) (int64, bool) {
		q, ok := list[corev1.ResourceCPU]
		if !ok {
			return 0, false
		}
		m, err := milli(q)
		if err != nil {
			out.Findings = append(out.Findings, Finding{Field: field, Message: err.Error() + "; counted as 0"})
			return 0, true
		}
		return m, true
	}
	overheadReq, _ := get(pod.Spec.Overhead, "spec.overhead.cpu")
	if pr := pod.Spec.Resources; pr != nil {
		if _, hasReq := pr.Requests[corev1.ResourceCPU]; hasReq || pr.Limits != nil {
			req, hasReq := get(pr.Requests, "spec.resources.requests.cpu")
			lim, hasLim := get(pr.Limits, "spec.resources.limits.cpu")
			if !hasReq && hasLim {
				req = lim
			}
			out.RequestMilli = sat(req, overheadReq)
			if hasLim {
				out.LimitMilli = sat(lim, overheadReq)
			}
			return out
		}
	}

	// Limits: unlimited if any long-running container has no limit.
	unlimited := false
	var appReq, appLim int64
	for i, c := range pod.Spec.Containers {
		base := fmt.Sprintf("spec.containers[%d](%s).resources", i, c.Name)
		req, hasReq := get(c.Resources.Requests, base+".requests.cpu")
		lim, hasLim := get(c.Resources.Limits, base+".limits.cpu")
		if !hasReq && hasLim {
			req = lim // the API server defaults a missing request to the limit
		}
		if !hasLim {
			unlimited = true
		}
		appReq, appLim = sat(appReq, req), sat(appLim, lim)
	}
	// Init containers run in order; restartable ones (sidecars) keep running.
	var sidecarReq, sidecarLim, initPeakReq, initPeakLim int64
	for i, c := range pod.Spec.InitContainers {
		base := fmt.Sprintf("spec.initContainers[%d](%s).resources", i, c.Name)
		req, hasReq := get(c.Resources.Requests, base+".requests.cpu")
		lim, hasLim := get(c.Resources.Limits, base+".limits.cpu")
		if !hasReq && hasLim {
			req = lim
		}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecarReq, sidecarLim = sat(sidecarReq, req), sat(sidecarLim, lim)
			initPeakReq, initPeakLim = max(initPeakReq, sidecarReq), max(initPeakLim, sidecarLim)
			if !hasLim {
				unlimited = true
			}
			continue
		}
		initPeakReq = max(initPeakReq, sat(sidecarReq, req))
		initPeakLim = max(initPeakLim, sat(sidecarLim, lim))
	}
	out.RequestMilli = sat(max(sat(appReq, sidecarReq), initPeakReq), overheadReq)
	if !unlimited && len(pod.Spec.Containers) > 0 {
		out.LimitMilli = sat(max(sat(appLim, sidecarLim), initPeakLim), overheadReq)
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
