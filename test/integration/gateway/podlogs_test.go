package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGetPodLogs: the log is read as the caller through the API server's
// pods/log (proxied to the stand-in kubelet of gw-n1). A caller whose own
// RBAC allows pods/log gets the tail it asked for; an infera-operator
// without it gets 200 with the API server's 403 naming the caller and
// still the container list; an unknown container or tail_lines out of
// range is 400, an unknown pod 404, and a caller without pods.infera.io 403.
func TestGetPodLogs(t *testing.T) {
	ctx := t.Context()
	const reader = "log-reader"
	if err := newCaller(ctx, reader, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}}); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&b, "line %d of crit\n", i)
	}
	kubelet.Set("default", "crit", "app", b.String())

	code, d := call(t, reader, http.MethodGet, "/api/v1/namespaces/default/pods/crit/log?tailLines=3", "")
	if code != 200 {
		t.Fatalf("GET log as %s = %d %v", reader, code, d)
	}
	if d["text"] != "line 298 of crit\nline 299 of crit\nline 300 of crit\n" || d["container"] != "app" || d["tailLines"] != float64(3) || d["errorCode"] != float64(0) {
		t.Errorf("log as %s = %v, want the last 3 lines of container app", reader, d)
	}
	if cs, _ := d["containers"].([]any); len(cs) != 1 || cs[0] != "app" {
		t.Errorf("containers = %v, want [app]", d["containers"])
	}
	// The default tail is 200 lines.
	if _, d := call(t, reader, http.MethodGet, "/api/v1/namespaces/default/pods/crit/log", ""); strings.Count(d["text"].(string), "\n") != 200 || !strings.HasPrefix(d["text"].(string), "line 101 of crit\n") {
		t.Errorf("default tail: %d lines starting %.20q, want 200 from line 101", strings.Count(d["text"].(string), "\n"), d["text"])
	}

	code, d = call(t, operator, http.MethodGet, "/api/v1/namespaces/default/pods/crit/log", "")
	if code != 200 {
		t.Fatalf("GET log as operator = %d %v", code, d)
	}
	msg, _ := d["error"].(string)
	if d["errorCode"] != float64(403) || d["text"] != "" || !strings.Contains(msg, "system:serviceaccount:"+callerNS+":"+operator) || !strings.Contains(msg, "pods/log") {
		t.Errorf("log as operator = %v, want error 403 naming the caller and pods/log", d)
	}
	if cs, _ := d["containers"].([]any); len(cs) != 1 {
		t.Errorf("a refused caller gets containers %v, want [app]", d["containers"])
	}

	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/namespaces/default/pods/crit/log?container=sidecar", 400, `no container "sidecar"`},
		{"/api/v1/namespaces/default/pods/crit/log?tailLines=5001", 400, "tail_lines: 5001"},
		{"/api/v1/namespaces/default/pods/crit/log?tailLines=-1", 400, "tail_lines: -1"},
		{"/api/v1/namespaces/default/pods/no-such-pod/log", 404, "default/no-such-pod"},
	} {
		if code, d := call(t, reader, http.MethodGet, c.path, ""); code != c.code || !strings.Contains(fmt.Sprint(d["message"]), c.want) {
			t.Errorf("GET %s = %d %v, want %d with %q", c.path, code, d, c.code, c.want)
		}
	}
	if code, _ := call(t, nobody, http.MethodGet, "/api/v1/namespaces/default/pods/crit/log", ""); code != 403 {
		t.Errorf("GET log as nobody = %d, want 403", code)
	}
}

// newCaller makes a ServiceAccount in callerNS bound to infera-viewer and
// a ClusterRole of rules, and stores its token in tokens.
func newCaller(ctx context.Context, name string, rules ...rbacv1.PolicyRule) error {
	if _, err := kube.CoreV1().ServiceAccounts(callerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "gw-test-" + name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, role := range []string{"gw-test-" + name, "infera-viewer"} {
		if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "gw-test-" + name + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: callerNS}},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	tok, err := token(ctx, callerNS, name)
	if err != nil {
		return err
	}
	tokens[name] = tok
	return nil
}
