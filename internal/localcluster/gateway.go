package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// GatewayCaller is the ServiceAccount (in "default") that make run binds to
// infera-operator so the printed curl example has a token to send.
const GatewayCaller = "infera-local-operator"

// GatewayAccess installs the gateway's user ClusterRoles (the
// user_roles.yaml in rbacDir), binds GatewayCaller to infera-operator and
// writes a one-hour token for it to tokenPath (mode 0600).
func GatewayAccess(ctx context.Context, cfg *rest.Config, c client.Client, rbacDir, tokenPath string) error {
	b, err := os.ReadFile(filepath.Join(rbacDir, "user_roles.yaml"))
	if err != nil {
		return fmt.Errorf("failed to read the gateway's user roles: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("failed to decode the gateway's user roles: %w", err)
		}
		if len(u.Object) > 0 {
			if err := c.Create(ctx, &u); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("failed to create ClusterRole %s: %w", u.GetName(), err)
			}
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: GatewayCaller, Namespace: metav1.NamespaceDefault}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create ServiceAccount %s: %w", GatewayCaller, err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayCaller},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "infera-operator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: GatewayCaller, Namespace: metav1.NamespaceDefault}},
	}
	if err := c.Create(ctx, crb); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to bind %s: %w", GatewayCaller, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	hour := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).CreateToken(ctx, GatewayCaller,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("failed to mint a token for %s: %w", GatewayCaller, err)
	}
	if err := os.WriteFile(tokenPath, []byte(tr.Status.Token), 0o600); err != nil {
		return fmt.Errorf("failed to write the token: %w", err)
	}
	return nil
}
