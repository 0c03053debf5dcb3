package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "apiVersion: config.infera.io/v1alpha1\nkind: ManagerConfiguration\nsilentAgent:\n  taint: true\n")
	c, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if !*c.SilentAgent.Taint || c.PlatformNamespace != "infera-system" {
		t.Errorf("loaded %+v", c)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"unknown field": {"apiVersion: config.infera.io/v1alpha1\nkind: ManagerConfiguration\nsilentAgnet: {}\n", "silentAgnet"},
		"wrong kind":    {"apiVersion: config.infera.io/v1alpha1\nkind: AgentConfiguration\n", "kind"},
		"invalid value": {"apiVersion: config.infera.io/v1alpha1\nkind: ManagerConfiguration\nwebhook:\n  certMode: magic\n", "webhook.certMode"},
		"not yaml":      {"{{{", "failed to decode"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(write(name+".yaml", tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadConfig = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file must be an error")
	}
}

func TestLocalConfigMatchesFile(t *testing.T) {
	fromFile, err := LoadConfig(filepath.Join("..", "..", "..", "config", "manager", "local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := LocalConfig(9443)
	c.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, fromFile); diff != "" {
		t.Errorf("LocalConfig(9443) differs from config/manager/local.yaml (-code +file):\n%s", diff)
	}
}

// FuzzParseConfig feeds arbitrary files to the manager's configuration
// reader. Whatever it accepts is defaulted and valid (Default changes it no
// further and Validate passes); whatever it rejects comes back with an error.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("apiVersion: config.infera.io/v1alpha1\nkind: ManagerConfiguration\nsilentAgent:\n  taint: true\n"))
	f.Add([]byte("apiVersion: config.infera.io/v1alpha1\nkind: ManagerConfiguration\nwebhook:\n  certMode: magic\n"))
	f.Add([]byte(`{"apiVersion":"config.infera.io/v1alpha1","kind":"ManagerConfiguration","webhook":{"port":-1}}`))
	f.Add([]byte(""))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		again := *c.DeepCopy()
		again.Default()
		if d := cmp.Diff(c, again); d != "" {
			t.Fatalf("accepted config is not a fixed point of Default (-accepted +defaulted):\n%s", d)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
	})
}
