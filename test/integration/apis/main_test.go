package apis

import (
	"os"
	"testing"

	"github.com/infera-io/temper/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	os.Exit(envtest.RunMain(m, envtest.Options{}, func(e *envtest.Env) { env = e }))
}
