package main

// The kubelet's CPU arithmetic on cgroup v1 (pkg/kubelet/cm: MilliCPUToShares,
// MilliCPUToQuota and the QoS container manager), re-derived here so the
// stock arm carries the values a real node has.

const (
	minShares     = 2
	maxShares     = 262144
	sharesPerCPU  = 1024
	milliPerCPU   = 1000
	quotaPeriodUS = 100000
	minQuotaUS    = 1000
)

// milliCPUToShares is cpu.shares for a CPU request in millicores: 1024 per
// CPU, at least 2 (also for no request), at most 262144.
func milliCPUToShares(milli int64) int64 {
	if milli <= 0 {
		return minShares
	}
	return min(max(milli*sharesPerCPU/milliPerCPU, minShares), maxShares)
}

// milliCPUToQuota is cpu.cfs_quota_us for a CPU limit in millicores over a
// 100 ms period (at least 1 ms), or -1 (unlimited) without a limit.
func milliCPUToQuota(milli int64) int64 {
	if milli <= 0 {
		return -1
	}
	return max(milli*quotaPeriodUS/milliPerCPU, minQuotaUS)
}

// container is one container's CPU request and limit in millicores (0:
// none).
type container struct {
	name           string
	request, limit int64
}

// qosShares is what the kubelet's QoS container manager writes on the QoS
// cgroups: besteffort always the minimum, burstable the shares of the sum
// of every Burstable pod's requests.
func qosShares(burstablePods [][]container) (burstable, besteffort int64) {
	var sum int64
	for _, p := range burstablePods {
		for _, c := range p {
			sum += c.request
		}
	}
	return milliCPUToShares(sum), minShares
}

// podShares and podQuota are the pod-level values: the shares of the sum
// of requests, and a quota only when every container has a limit (then
// the sum of limits).
func podShares(cs []container) int64 {
	var sum int64
	for _, c := range cs {
		sum += c.request
	}
	return milliCPUToShares(sum)
}

func podQuota(cs []container) int64 {
	var sum int64
	for _, c := range cs {
		if c.limit <= 0 {
			return -1
		}
		sum += c.limit
	}
	return milliCPUToQuota(sum)
}
