package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadConfigAgents: the agents section defaults what it may and names
// the field of every bad value.
func TestLoadConfigAgents(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, []byte("apiVersion: config.infera.io/v1alpha1\nkind: GatewayConfiguration\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write("agents:\n  serviceNamespace: infera-system\n  serviceName: infera-agent-grpc\n  caFile: /ca.crt\n  serverName: infera-agent.infera-system.svc\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Agents; a.Discovery != "EndpointSlice" || a.Port != 9101 || a.Timeout.Duration != 5*time.Second || a.MaxConcurrent != 16 ||
		a.TokenFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("defaults = %+v", a)
	}
	if c, err := LoadConfig(write("")); err != nil || c.Agents != nil {
		t.Errorf("no agents section: %+v %v, want agents off", c.Agents, err)
	}
	for body, want := range map[string]string{
		"agents:\n  caFile: /ca\n  serverName: x\n":                                                  "agents.serviceName",
		"agents:\n  discovery: DNS\n  caFile: /ca\n  serverName: x\n":                                "agents.discovery",
		"agents:\n  discovery: NodeAddress\n  serverName: x\n":                                       "agents.caFile",
		"agents:\n  discovery: NodeAddress\n  caFile: /ca\n":                                         "agents.serverName",
		"agents:\n  discovery: NodeAddress\n  caFile: /ca\n  serverName: x\n  port: 70000\n":         "agents.port",
		"agents:\n  discovery: NodeAddress\n  caFile: /ca\n  serverName: x\n  maxConcurrent: 1000\n": "agents.maxConcurrent",
		"agents:\n  discovery: NodeAddress\n  caFile: /ca\n  serverName: x\n  timeout: -1s\n":        "agents.timeout",
		"agents:\n  discovery: NodeAddress\n  caFile: /ca\n  serverName: x\n  colour: red\n":         "colour",
	} {
		if _, err := LoadConfig(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want one naming %s", body, err, want)
		}
	}
}
