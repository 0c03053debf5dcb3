package tiering

import (
	corev1 "k8s.io/api/core/v1"
)

// QOSClass returns the pod's Kubernetes QoS class: status.qosClass when the
// API server has set it, otherwise computed from the spec with the kubelet's
// rules (pod-level resources, when set, decide alone).
func QOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	if pod.Spec.Resources != nil {
		return qosOf([]corev1.ResourceRequirements{*pod.Spec.Resources})
	}
	var rs []corev1.ResourceRequirements
	for _, c := range pod.Spec.InitContainers {
		rs = append(rs, c.Resources)
	}
	for _, c := range pod.Spec.Containers {
		rs = append(rs, c.Resources)
	}
	return qosOf(rs)
}

func qosOf(rs []corev1.ResourceRequirements) corev1.PodQOSClass {
	isBestEffort, isGuaranteed := true, true
	for _, r := range rs {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			// Like the kubelet, only positive quantities count: zero and
			// (invalid) negative values are as good as unset.
			req, hasReq := r.Requests[name]
			lim, hasLim := r.Limits[name]
			if (hasReq && req.Sign() > 0) || (hasLim && lim.Sign() > 0) {
				isBestEffort = false
			}
			if !hasLim || lim.Sign() <= 0 {
				isGuaranteed = false
				continue
			}
			// An unset request defaults to the limit (the API server's
			// defaulting, which an object seen before admission lacks).
			if hasReq && req.Cmp(lim) != 0 {
				isGuaranteed = false
			}
		}
	}
	switch {
	case isBestEffort:
		return corev1.PodQOSBestEffort
	case isGuaranteed:
		return corev1.PodQOSGuaranteed
	default:
		return corev1.PodQOSBurstable
	}
}
