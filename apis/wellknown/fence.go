package wellknown

// MaxThreadsPerCore bounds TierLoad.ThreadsPerCore: no CPU in use has more
// SMT threads per core than this.
const MaxThreadsPerCore = 8

// FenceCores is how many whole physical cores the critical tier's fence
// needs for requestMilli of critical CPU requests on a node whose cores
// have threadsPerCore SMT threads (below 1 means 1: no SMT). This is the
// one sizing rule the node agent fences by (nodeagent/layered) and the
// scheduler plugin places by, so the two agree on every node.
//
// With exclusive cores (the critical tier's default, DESIGN.md §2) a fenced
// core runs one critical thread and its siblings stay idle, so each
// started 1000m of requests takes a whole physical core: on a 2-thread SMT
// node a 1500m request fences 2 cores, 4 logical CPUs. Without exclusive
// cores all threads of a fenced core serve the tier, so a core covers
// threadsPerCore × 1000m.
func FenceCores(requestMilli int64, threadsPerCore int, exclusive bool) int64 {
	if requestMilli <= 0 {
		return 0
	}
	perCore := int64(1000)
	if !exclusive {
		perCore *= int64(max(1, threadsPerCore))
	}
	return (requestMilli + perCore - 1) / perCore
}
