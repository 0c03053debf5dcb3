package agent

import (
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
)

// TestPprofOffByDefaultAndGuarded: Go's profiles are not served unless
// [server] pprof = true, and then, on a non-loopback address, only to a
// token allowed get on nodes/pprof.infera.io of this node; not even the
// chart's operator role has it.
func TestPprofOffByDefaultAndGuarded(t *testing.T) {
	tokens := callers(t, "pprof-callers", map[string]rbacv1.ClusterRole{
		"operator": repoRole(t, "config/rbac/gateway/user_roles.yaml", "infera-operator"),
		"profiler": {Rules: []rbacv1.PolicyRule{{APIGroups: []string{"infera.io"}, Resources: []string{"nodes/pprof"},
			ResourceNames: []string{"pprof-on"}, Verbs: []string{"get"}}}},
	})

	offPort := port(t, freeAddr(t))
	off := newRigWith(t, "pprof-off", 200*time.Millisecond, rigOptions{configure: func(c *configv1alpha1.AgentConfiguration) {
		c.Server.Address = "127.0.0.1:" + offPort
	}})
	waitFor(t, "the agent's HTTP listener", func() bool { return off.agent.HTTPAddress() != "" })
	if code, body := getWithToken(t, "http://127.0.0.1:"+offPort+"/debug/pprof/heap", ""); code != 404 {
		t.Errorf("GET /debug/pprof/heap with pprof off (the default) = %d %.80s, want 404", code, body)
	}

	onPort := port(t, freeAddr(t))
	on := newRigWith(t, "pprof-on", 200*time.Millisecond, rigOptions{configure: func(c *configv1alpha1.AgentConfiguration) {
		c.Server.Address = "0.0.0.0:" + onPort
		c.Server.Pprof = true
	}})
	waitFor(t, "the agent's HTTP listener", func() bool { return on.agent.HTTPAddress() != "" })
	base := "http://127.0.0.1:" + onPort
	for _, c := range []struct {
		path, who string
		want      int
	}{
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/heap", "", 401},
		{"/debug/pprof/heap", "nobody", 403},
		{"/debug/pprof/heap", "operator", 403},
		{"/debug/pprof/heap?debug=1", "profiler", 200},
		{"/debug/pprof/", "profiler", 200},
		{"/debug/pprof/cmdline", "profiler", 404},
		{"/observe", "profiler", 403},
	} {
		tok := tokens[c.who]
		if c.who == "" {
			tok = ""
		}
		code, body := getWithToken(t, base+c.path, tok)
		if code != c.want {
			t.Errorf("GET %s as %q = %d %.80s, want %d", c.path, c.who, code, body, c.want)
		}
		if c.want == 200 && strings.Contains(c.path, "heap") && !strings.Contains(body, "heap profile") {
			t.Errorf("GET %s as %q: not a heap profile: %.80s", c.path, c.who, body)
		}
	}
}
