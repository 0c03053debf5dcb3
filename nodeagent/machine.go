package nodeagent

import (
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
