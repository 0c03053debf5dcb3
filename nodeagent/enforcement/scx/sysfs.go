package scx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultSysFSRoot is where the kernel exposes sched_ext state.
const DefaultSysFSRoot = "/sys/kernel/sched_ext"

// Kernel states of /sys/kernel/sched_ext/state.
const (
	StateDisabled  = "disabled"
	StateEnabling  = "enabling"
	StateEnabled   = "enabled"
	StateDisabling = "disabling"
)

// LayeredOpsName is what root/ops reads while scx_layered is attached.
const LayeredOpsName = "layered"

// ErrNoSchedExt means the kernel was built without CONFIG_SCHED_CLASS_EXT.
var ErrNoSchedExt = errors.New("kernel has no sched_ext (/sys/kernel/sched_ext is missing)")

// KernelState is one reading of the sched_ext sysfs files.
type KernelState struct {
	// State is the content of state.
	State string
	// Ops is root/ops: the attached scheduler's name, "" when none is
	// registered.
	Ops string
	// EnableSeq counts successful enables since boot.
	EnableSeq uint64
}

// Attached reports whether a scheduler named ops is fully enabled.
func (k KernelState) Attached(ops string) bool { return k.State == StateEnabled && k.Ops == ops }

// SysFS reads the sched_ext sysfs directory. Root is injectable so tests can
// use a faked tree.
type SysFS struct{ Root string }

// Available reports whether the kernel has sched_ext.
func (s SysFS) Available() error {
	st, err := os.Stat(filepath.Join(s.Root, "state"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNoSchedExt
		}
		return fmt.Errorf("failed to stat sched_ext state: %w", err)
	}
	if st.IsDir() {
		return fmt.Errorf("sched_ext state %s is a directory", filepath.Join(s.Root, "state"))
	}
	return nil
}

// Read returns the current kernel state.
func (s SysFS) Read() (KernelState, error) {
	var k KernelState
	b, err := os.ReadFile(filepath.Join(s.Root, "state"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return k, ErrNoSchedExt
		}
		return k, fmt.Errorf("failed to read sched_ext state: %w", err)
	}
	k.State = strings.TrimSpace(string(b))
	// root/ exists only while a scheduler is registered.
	if b, err := os.ReadFile(filepath.Join(s.Root, "root", "ops")); err == nil {
		k.Ops = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(s.Root, "enable_seq")); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			k.EnableSeq = v
		}
	}
	return k, nil
}
