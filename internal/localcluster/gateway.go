package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
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
	return serviceAccountToken(ctx, cfg, c, GatewayCaller, "infera-operator", time.Hour, tokenPath)
}
