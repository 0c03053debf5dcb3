// Package standintest builds the scx_layered STAND-IN
// (test/standin/scx_layered) and lays out the faked /sys/kernel/sched_ext
// tree it attaches to, for the supervisor's, the agent's and the
// benchmarks' tests. Test support only.
package standintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles the stand-in into dir and returns its path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "scx_layered")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/infera-io/temper/test/standin/scx_layered").CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to build the scx_layered stand-in: %w: %s", err, out)
	}
	return bin, nil
}

// FakeSchedExt creates root as a /sys/kernel/sched_ext with no scheduler
// loaded, as a sched_ext kernel shows it after boot.
func FakeSchedExt(root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("failed to create faked sched_ext: %w", err)
	}
	for f, v := range map[string]string{"state": "disabled", "enable_seq": "0", "switch_all": "0", "nr_rejected": "0", "hotplug_seq": "0"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(v+"\n"), 0o644); err != nil {
			return fmt.Errorf("failed to create faked sched_ext: %w", err)
		}
	}
	return nil
}
