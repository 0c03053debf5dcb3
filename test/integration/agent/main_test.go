package agent

import (
	"fmt"
	"os"
	"testing"

	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/standin/standintest"
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
	if standin, err = standintest.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := envtest.RunMain(m, envtest.Options{PriorityClasses: true}, func(e *envtest.Env) { env = e })
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
