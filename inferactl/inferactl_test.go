package inferactl

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func TestCommandName(t *testing.T) {
	for argv0, want := range map[string]string{
		"inferactl": "inferactl", "/usr/local/bin/inferactl": "inferactl",
		"kubectl-infera": "kubectl infera", "/home/u/.krew/bin/kubectl-infera": "kubectl infera",
		"kubectl-infera.exe": "kubectl infera",
	} {
		if got := CommandName(argv0); got != want {
			t.Errorf("CommandName(%q) = %q, want %q", argv0, got, want)
		}
	}
}

// TestHelpAndCompletion: the name the binary is called by shows in the
// help, the examples and the completion scripts; usage errors are exit 2.
func TestHelpAndCompletion(t *testing.T) {
	run := func(argv0 string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), argv0, args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
		return code, out.String(), errb.String()
	}
	_, out, _ := run("kubectl-infera", "pods", "--help")
	if !strings.Contains(out, "kubectl infera pods --node worker-1") || strings.Contains(out, "inferactl") {
		t.Errorf("kubectl-infera pods --help does not speak as kubectl infera:\n%s", out)
	}
	_, out, _ = run("inferactl", "safe-mode", "--help")
	if !strings.Contains(out, "inferactl safe-mode on worker-1") {
		t.Errorf("inferactl safe-mode --help:\n%s", out)
	}
	for shell, want := range map[string]string{"bash": "bash completion V2 for inferactl", "zsh": "#compdef inferactl", "fish": "fish completion for inferactl"} {
		code, out, errOut := run("inferactl", "completion", shell)
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, %q..., stderr %s", shell, code, firstN(out, 80), errOut)
		}
	}
	if _, out, _ := run("kubectl-infera", "completion", "zsh"); !strings.Contains(out, "#compdef kubectl-infera") {
		t.Errorf("kubectl-infera completion zsh: %q", firstN(out, 80))
	}
	if code, _, errOut := run("inferactl", "completion", "tcsh"); code != ExitUsage {
		t.Errorf("completion tcsh: exit %d (%s), want %d", code, errOut, ExitUsage)
	}
	if code, _, errOut := run("inferactl", "status", "--bogus"); code != ExitUsage || !strings.Contains(errOut, "unknown flag") {
		t.Errorf("status --bogus: exit %d %q, want %d", code, errOut, ExitUsage)
	}
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
