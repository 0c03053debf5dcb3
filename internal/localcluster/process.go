package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Component is a platform binary `make run` starts against the local
// control plane.
type Component struct {
	// Name is the binary in BinDir and the log file name.
	Name string
	Args []string
	Env  []string
}

// process is a running component.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// startComponent runs bin/<name> with its output in stateDir/<name>.log.
// The child gets SIGTERM if infera-local itself dies, so no component
// outlives it.
func startComponent(binDir, stateDir string, c Component, log logr.Logger) (*process, error) {
	bin := filepath.Join(binDir, c.Name)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("component %s is not built (make build): %w", c.Name, err)
	}
	lf, err := os.Create(filepath.Join(stateDir, c.Name+".log"))
	if err != nil {
		return nil, fmt.Errorf("failed to create log of %s: %w", c.Name, err)
	}
	cmd := exec.Command(bin, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return nil, fmt.Errorf("failed to start %s: %w", c.Name, err)
	}
	p := &process{name: c.Name, cmd: cmd, done: make(chan error, 1), log: lf}
	go func() { p.done <- cmd.Wait() }()
	log.Info("Started component", "component", c.Name, "pid", cmd.Process.Pid, "log", lf.Name())
	return p, nil
}

// stop sends SIGTERM to the component's process group and waits, then
// SIGKILL after a timeout.
func (p *process) stop(ctx context.Context) error {
	defer func() { _ = p.log.Close() }()
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case err := <-p.done:
		return exitError(p.name, err)
	case <-t.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	if err := <-p.done; err != nil {
		return fmt.Errorf("component %s did not stop within 10s; killed: %w", p.name, err)
	}
	return fmt.Errorf("component %s did not stop within 10s; killed", p.name)
}

// exitError reports a component that failed on its way out; ending because
// of our SIGTERM is a clean stop.
func exitError(name string, err error) error {
	var ee *exec.ExitError
	if err == nil || (errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM) {
		return nil
	}
	return fmt.Errorf("component %s exited uncleanly: %w", name, err)
}

// ControllerManagerControllers are the kube-controller-manager controllers
// the local cluster runs: what a user creating namespaces, Deployments,
// DaemonSets and Jobs expects. The node lifecycle controller is left out
// (no kubelet renews the Node's lease, so it would mark the Node NotReady
// and taint it), and so are the cloud and service-account-token ones,
// which need keys or a cloud the local cluster does not have.
var ControllerManagerControllers = []string{
	"namespace", "garbagecollector", "deployment", "replicaset", "statefulset",
	"daemonset", "job", "cronjob", "disruption", "endpointslice", "podgc",
	"ttl-after-finished", "serviceaccount",
}

// ControllerManagerArgs are kube-controller-manager's flags against the
// local control plane's admin kubeconfig.
func ControllerManagerArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(ControllerManagerControllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-namespace-syncs=2",
	}
}
