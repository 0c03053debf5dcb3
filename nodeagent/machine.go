package nodeagent

import (
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/enforcement"
	"github.com/infera-io/temper/nodeagent/observe"
)

// Machine is the CPU shape of the node as the kernel reports it.
type Machine = enforcement.Machine

// ReadMachine reads the online CPUs and their SMT siblings under root
// (/sys/devices/system/cpu), with the observation layer's reader.
func ReadMachine(root string) (Machine, error) {
	online, cores, err := observe.ReadCores(root)
	if err != nil {
		return Machine{}, err
	}
	return Machine{CPUs: online.Sorted(), Cores: cores}, nil
}

// threadsPerCore is the size of the core holding the lowest CPU id, the
// unit the critical fence is sized in (wellknown.FenceCores), or 0 when
// there is no SMT (or the shape is unknown), which tier-load omits.
func threadsPerCore(m Machine) int {
	if len(m.Cores) == 0 || len(m.Cores[0]) < 2 {
		return 0
	}
	return min(len(m.Cores[0]), wellknown.MaxThreadsPerCore)
}
