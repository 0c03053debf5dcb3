package envtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/infera-io/temper/internal/localcluster"
	kscheme "github.com/infera-io/temper/internal/scheme"
)

// ModulePath is the project's module; RepoRoot looks for its go.mod.
const ModulePath = "github.com/infera-io/temper"

// Options tune an Env. The zero value installs the CRDs and nothing else.
type Options struct {
	// WebhookPaths are directories or files with webhook configurations to
	// install; envtest rewrites them to point at a local serving port.
	WebhookPaths []string
	// PriorityClasses installs the five PriorityClasses of DESIGN.md §2.
	PriorityClasses bool
	// APIServerArgs are extra kube-apiserver flags (name → value).
	APIServerArgs map[string]string
	// Restartable keeps the API server's certificates, service-account
	// keys and ports in a directory of the Env's own, so StopAPIServer and
	// StartAPIServer bring the same API server (same etcd, same address,
	// same serving CA, same client CA) down and back up, and every client
	// made before the stop works again after the start.
	Restartable bool
	// APIServerOnly requires only etcd and kube-apiserver in the binary
	// directory (the VM test of test/vm/agent ships no kubectl and no
	// controller manager); Env.Kubectl does not work then.
	APIServerOnly bool
	// StartTimeout bounds each start attempt of the control plane; default
	// 90 s. Emulated machines (the VM of `make test-vm`) need more.
	StartTimeout time.Duration
}

// Env is a running control plane.
type Env struct {
	// Root is the repository root.
	Root string
	// Config reaches the API server as an admin.
	Config *rest.Config
	// Scheme knows the client-go types and infera.io/v1alpha1.
	Scheme *runtime.Scheme
	// Client is a controller-runtime client (no cache).
	Client client.Client
	// Kubeconfig is the path of an admin kubeconfig for kubectl and
	// subprocesses.
	Kubeconfig string
	// WebhookInstallOptions is set when WebhookPaths were given.
	WebhookInstallOptions *crenvtest.WebhookInstallOptions

	env *crenvtest.Environment
	dir string
	// certDir is the API server's certificate directory when Restartable.
	certDir string
}

// RepoRoot walks up from the working directory to the directory holding the
// project's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("failed to get working directory: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module "+ModulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("failed to find the repository root: no go.mod of " + ModulePath + " above the working directory")
		}
		dir = parent
	}
}

// BinDir is where the control-plane binaries are: $KUBEBUILDER_ASSETS, or
// bin/ under the repository root.
func BinDir(root string) string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(root, "bin")
}

// NewScheme returns a scheme with the client-go types and infera.io types.
// Each caller gets its own; nothing global is mutated.
func NewScheme() (*runtime.Scheme, error) { return kscheme.New() }

// Start starts etcd and kube-apiserver and installs the CRDs.
func Start(opts Options) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := BinDir(root)
	if opts.APIServerOnly {
		for _, b := range []string{"etcd", "kube-apiserver"} {
			if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
				return nil, fmt.Errorf("control-plane binary %s is missing from %s: %w", b, bin, err)
			}
		}
	} else if err := localcluster.CheckBinaries(bin); err != nil {
		return nil, err
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	startTimeout := 90 * time.Second
	if opts.StartTimeout > 0 {
		startTimeout = opts.StartTimeout
	}
	env := &crenvtest.Environment{
		BinaryAssetsDirectory:    bin,
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if len(opts.WebhookPaths) > 0 {
		env.WebhookInstallOptions = crenvtest.WebhookInstallOptions{Paths: opts.WebhookPaths}
	}
	api := env.ControlPlane.GetAPIServer()
	args := api.Configure()
	for k, v := range opts.APIServerArgs {
		args.Set(k, v)
	}
	var certDir string
	if opts.Restartable {
		// A CertDir of our own is not cleaned on Stop, so a restart finds
		// the serving certificate and service-account keys it made.
		if certDir, err = os.MkdirTemp("", "temper-envtest-apiserver-"); err != nil {
			return nil, fmt.Errorf("failed to create the API server's certificate directory: %w", err)
		}
		api.CertDir = certDir
		// Its graceful shutdown waits on open watches; a restart test
		// does not need more than this before SIGKILL.
		api.StopTimeout = 10 * time.Second
	}
	cfg, err := env.Start()
	if err != nil {
		if certDir != "" {
			_ = os.RemoveAll(certDir)
		}
		return nil, fmt.Errorf("failed to start the envtest control plane: %w", err)
	}
	e := &Env{Root: root, Config: cfg, Scheme: scheme, env: env, certDir: certDir}
	if len(opts.WebhookPaths) > 0 {
		e.WebhookInstallOptions = &env.WebhookInstallOptions
	}
	if err := e.init(opts); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) init(opts Options) error {
	c, err := client.New(e.Config, client.Options{Scheme: e.Scheme})
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	e.Client = c
	dir, err := os.MkdirTemp("", "temper-envtest-")
	if err != nil {
		return fmt.Errorf("failed to create temp dir: %w", err)
	}
	e.dir = dir
	e.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if _, err := localcluster.AddAdmin(e.env, e.Kubeconfig); err != nil {
		return err
	}
	if opts.PriorityClasses {
		if err := localcluster.InstallPriorityClasses(context.Background(), c); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops the control plane and removes the temporary files.
func (e *Env) Stop() error {
	err := e.env.Stop()
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
	if e.certDir != "" {
		_ = os.RemoveAll(e.certDir)
	}
	if err != nil {
		return fmt.Errorf("failed to stop the envtest control plane: %w", err)
	}
	return nil
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after the
// stop timeout; on a loaded machine its graceful shutdown can take longer,
// and a killed API server is stopped all the same) and leaves etcd
// running. The Env must be Restartable.
func (e *Env) StopAPIServer() error {
	if e.certDir == "" {
		return errors.New("StopAPIServer needs an Env started with Options.Restartable")
	}
	if err := e.env.ControlPlane.APIServer.Stop(); err != nil {
		// After the timeout it was sent SIGKILL: wait for it to be gone.
		for range 100 {
			if pid, perr := e.APIServerPID(); perr == nil && pid == 0 {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("failed to stop kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same etcd, port and certificates, and waits until it is healthy.
func (e *Env) StartAPIServer() error {
	if e.certDir == "" {
		return errors.New("StartAPIServer needs an Env started with Options.Restartable")
	}
	if err := e.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("failed to restart kube-apiserver: %w", err)
	}
	return nil
}

// APIServerPID finds the running kube-apiserver of a Restartable Env (the
// one whose --cert-dir is the Env's), for tests that freeze it with
// SIGSTOP: a frozen API server accepts connections and never answers,
// which is what a hung control plane looks like to a client. It returns 0
// when none runs.
func (e *Env) APIServerPID() (int, error) {
	if e.certDir == "" {
		return 0, errors.New("APIServerPID needs an Env started with Options.Restartable")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("failed to list /proc: %w", err)
	}
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) != "kube-apiserver" {
			continue
		}
		for _, a := range args[1:] {
			if a == "--cert-dir="+e.certDir {
				return pid, nil
			}
		}
	}
	return 0, nil
}

// Kubectl runs bin/kubectl against the Env and returns its stdout; a
// non-zero exit is an error that carries stderr.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(BinDir(e.Root), "kubectl"), append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// RunMain is a TestMain body: it starts an Env, hands it to set, runs the
// tests and stops the Env. A start failure fails the whole package loudly.
func RunMain(m *testing.M, opts Options, set func(*Env)) int {
	e, err := Start(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	set(e)
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
	}
	return code
}
