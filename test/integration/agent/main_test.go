package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/infera-io/temper/test/envtest"
)

var (
	env     *envtest.Env
	standin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agent-standin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	standin = filepath.Join(dir, "scx_layered")
	if out, err := exec.Command("go", "build", "-o", standin, "github.com/infera-io/temper/test/standin/scx_layered").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "failed to build the scx_layered stand-in: %v\n%s", err, out)
		os.Exit(1)
	}
	code := envtest.RunMain(m, envtest.Options{PriorityClasses: true}, func(e *envtest.Env) { env = e })
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
