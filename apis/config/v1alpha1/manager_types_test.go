package v1alpha1

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestManagerConfigurationDefault(t *testing.T) {
	var c ManagerConfiguration
	c.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	checks := map[string]bool{
		"platform namespace":      c.PlatformNamespace == "infera-system",
		"leader election on":      *c.LeaderElection.Enabled && c.LeaderElection.LeaseName == "infera-manager",
		"ports of DESIGN.md §6":   c.MetricsBindAddress == ":8080" && c.HealthProbeBindAddress == ":8081" && *c.Webhook.Port == 9443,
		"self-managed certs":      c.Webhook.CertMode == CertModeSelfManaged && c.Webhook.CertValidity.Duration == 30*24*time.Hour,
		"tier-load max age 180s":  c.TierLoadMaxAge.Duration == 180*time.Second,
		"backstop taint off":      !*c.SilentAgent.Taint && c.SilentAgent.TaintKey == "infera.io/agent-silent",
		"backstop after 5m":       c.SilentAgent.After.Duration == 5*time.Minute,
		"default tier thresholds": c.Webhook.PriorityMapping.Critical == 1_000_000 && c.Webhook.PriorityMapping.Low == -100,
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("default %s is wrong: %+v", what, c)
		}
	}
	// Set values survive defaulting.
	off, port := false, int32(10443)
	d := ManagerConfiguration{LeaderElection: LeaderElectionConfiguration{Enabled: &off}, Webhook: WebhookConfiguration{Port: &port}}
	d.Default()
	if *d.LeaderElection.Enabled || *d.Webhook.Port != 10443 {
		t.Errorf("defaulting overwrote set values: %+v", d)
	}
}

func TestManagerConfigurationValidate(t *testing.T) {
	tests := map[string]struct {
		mutate func(*ManagerConfiguration)
		field  string
	}{
		"kind":                 {func(c *ManagerConfiguration) { c.Kind = "Other" }, "kind"},
		"kube-system platform": {func(c *ManagerConfiguration) { c.PlatformNamespace = "kube-system" }, "platformNamespace"},
		"bad namespace":        {func(c *ManagerConfiguration) { c.PlatformNamespace = "Infera_System" }, "platformNamespace"},
		"port":                 {func(c *ManagerConfiguration) { p := int32(70000); c.Webhook.Port = &p }, "webhook.port"},
		"cert mode":            {func(c *ManagerConfiguration) { c.Webhook.CertMode = "magic" }, "webhook.certMode"},
		"tiny validity":        {func(c *ManagerConfiguration) { c.Webhook.CertValidity = &metav1.Duration{Duration: time.Second} }, "webhook.certValidity"},
		"cert outlives CA": {func(c *ManagerConfiguration) {
			c.Webhook.CertValidity = &metav1.Duration{Duration: 48 * time.Hour}
			c.Webhook.CAValidity = &metav1.Duration{Duration: 24 * time.Hour}
		}, "webhook.certValidity"},
		"thresholds":               {func(c *ManagerConfiguration) { c.Webhook.PriorityMapping.High = c.Webhook.PriorityMapping.Critical }, "webhook.priorityMapping"},
		"silent sooner than stale": {func(c *ManagerConfiguration) { c.SilentAgent.After = &metav1.Duration{Duration: time.Minute} }, "silentAgent.after"},
		"NoExecute refused":        {func(c *ManagerConfiguration) { c.SilentAgent.TaintEffect = corev1.TaintEffectNoExecute }, "silentAgent.taintEffect"},
		"taint key":                {func(c *ManagerConfiguration) { c.SilentAgent.TaintKey = "not a key!" }, "silentAgent.taintKey"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var c ManagerConfiguration
			c.Default()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
