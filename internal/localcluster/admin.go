package localcluster

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlaneBinaries are what a local control plane needs in its bin dir.
var controlPlaneBinaries = []string{"kube-apiserver", "etcd", "kubectl", "kube-controller-manager"}

// CheckBinaries fails, saying how to build them, when binDir lacks a
// control-plane binary.
func CheckBinaries(binDir string) error {
	for _, b := range controlPlaneBinaries {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("control-plane binary %s is missing from %s: run `make controlplane` (it builds them from the Go module proxy): %w", b, binDir, err)
		}
	}
	return nil
}

// AddAdmin adds a system:masters user to env and writes its kubeconfig to
// path (mode 0600). It returns the user's rest.Config.
func AddAdmin(env *envtest.Environment, path string) (*rest.Config, error) {
	user, err := env.AddUser(envtest.User{Name: "temper-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to add the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("failed to render the admin kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("failed to create %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write kubeconfig: %w", err)
	}
	return user.Config(), nil
}
