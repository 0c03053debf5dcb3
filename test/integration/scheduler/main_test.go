package scheduler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"

	"github.com/infera-io/temper/schedulerplugin/schedulertest"
	"github.com/infera-io/temper/test/envtest"
)

var (
	env *envtest.Env
	// logs holds what the in-process scheduler (and the plugin) logged.
	logs = &logBuffer{}
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	e, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	env = e
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		}
	}()

	dir, err := os.MkdirTemp("", "temper-scheduler-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "temp dir: %v\n", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cfg, err := schedulertest.WriteConfig(filepath.Join(e.Root, "config", "scheduler", "scheduler-config.yaml"), dir, schedulertest.ConfigOverrides{Kubeconfig: e.Kubeconfig})
	if err != nil {
		fmt.Fprintf(os.Stderr, "scheduler config: %v\n", err)
		return 1
	}
	ctx := klog.NewContext(context.Background(), funcr.New(logs.add, funcr.Options{Verbosity: 0}))
	stop := schedulertest.Start(ctx, cfg)
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "scheduler: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// logBuffer collects log lines; the scheduler logs from many goroutines.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) add(prefix, args string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, prefix+" "+args)
}

// matching returns the lines that contain every substring.
func (b *logBuffer) matching(substrs ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
next:
	for _, l := range b.lines {
		for _, s := range substrs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}
