package gateway

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOwner(t *testing.T) {
	yes := true
	ctl := func(kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &yes}}
	}
	for _, tc := range []struct {
		name       string
		refs       []metav1.OwnerReference
		hash       string
		kind, want string
	}{
		{"bare pod", nil, "", "Pod", "p"},
		{"deployment", ctl("ReplicaSet", "web-7d9f8"), "7d9f8", "Deployment", "web"},
		{"replicaset of its own", ctl("ReplicaSet", "web"), "7d9f8", "ReplicaSet", "web"},
		{"statefulset", ctl("StatefulSet", "db"), "", "StatefulSet", "db"},
		{"not the controller", []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "x"}}, "", "Pod", "p"},
	} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", OwnerReferences: tc.refs}}
		if tc.hash != "" {
			p.Labels = map[string]string{"pod-template-hash": tc.hash}
		}
		if k, n := owner(p); k != tc.kind || n != tc.want {
			t.Errorf("%s: owner = %s/%s, want %s/%s", tc.name, k, n, tc.kind, tc.want)
		}
	}
}
