package gateway

import (
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGetPodDetails: the manifest and the Events are read as the caller. A caller
// whose own RBAC allows them gets both; an infera-operator without core
// pod and event reads gets 200 with each part's 403 named; unknown pods
// are 404 and callers without pods.infera.io are 403.
func TestGetPodDetails(t *testing.T) {
	ctx := t.Context()
	const reader = "pod-reader"
	if _, err := kube.CoreV1().ServiceAccounts(callerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: reader}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Core reads like the built-in "view" role's (which is aggregated, and
	// envtest runs no aggregation controller), plus infera-viewer.
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "gw-test-core-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"gw-test-core-reader", "infera-viewer"} {
		if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "gw-test-" + reader + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: reader, Namespace: callerNS}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := token(ctx, callerNS, reader)
	if err != nil {
		t.Fatal(err)
	}
	tokens[reader] = tok
	p, err := kube.CoreV1().Pods("default").Get(ctx, "crit", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*corev1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "crit.1", Namespace: "default"}, Type: "Normal", Reason: "Scheduled", Message: "assigned to gw-n1",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "crit", UID: p.UID},
			LastTimestamp:  metav1.Now(), Source: corev1.EventSource{Component: "default-scheduler"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "crit.old", Namespace: "default"}, Type: "Warning", Reason: "OldPod", Message: "an earlier pod of the same name",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "crit", UID: "another-uid"}, LastTimestamp: metav1.Now()},
	} {
		if _, err := kube.CoreV1().Events("default").Create(ctx, e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	code, d := call(t, reader, http.MethodGet, "/api/v1/namespaces/default/pods/crit/details", "")
	if code != 200 {
		t.Fatalf("GET pod as %s = %d %v", reader, code, d)
	}
	m, _ := d["manifest"].(string)
	if !strings.Contains(m, "kind: Pod") || !strings.Contains(m, "name: crit") || strings.Contains(m, "managedFields") || d["manifestErrorCode"] != float64(0) {
		t.Errorf("manifest as %s = %q (error %v), want the Pod's YAML without managedFields", reader, m, d["manifestError"])
	}
	evs, _ := d["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["reason"] != "Scheduled" || evs[0].(map[string]any)["source"] != "default-scheduler" {
		t.Errorf("events as %s = %v, want only this pod's Scheduled event", reader, d["events"])
	}
	if d["node"] != "gw-n1" {
		t.Errorf("node = %v, want gw-n1", d["node"])
	}

	code, d = call(t, operator, http.MethodGet, "/api/v1/namespaces/default/pods/crit/details", "")
	if code != 200 {
		t.Fatalf("GET pod as operator = %d %v", code, d)
	}
	if d["manifest"] != "" || d["manifestErrorCode"] != float64(403) || !strings.Contains(d["manifestError"].(string), saName(operator)) {
		t.Errorf("operator (no core pod get): manifest %q, error %v %v; want none, 403 naming the caller", d["manifest"], d["manifestErrorCode"], d["manifestError"])
	}
	if d["eventsErrorCode"] != float64(403) || len(d["events"].([]any)) != 0 {
		t.Errorf("operator (no event list): events %v, error %v %v; want none and 403", d["events"], d["eventsErrorCode"], d["eventsError"])
	}

	if code, d := call(t, reader, http.MethodGet, "/api/v1/namespaces/default/pods/no-such-pod/details", ""); code != 404 || !strings.Contains(d["message"].(string), "default/no-such-pod") {
		t.Errorf("GET unknown pod = %d %v, want 404 naming it", code, d)
	}
	if code, _ := call(t, nobody, http.MethodGet, "/api/v1/namespaces/default/pods/crit/details", ""); code != 403 {
		t.Errorf("GET pod as nobody = %d, want 403", code)
	}
}
