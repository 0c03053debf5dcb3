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

	"github.com/BurntSushi/toml"
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
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/internal/certrotation"
)

const (
	// GatewayIdentity is the ServiceAccount (in "default") the local
	// gateway presents to the agent, bound to the infera-gateway
	// ClusterRole (nodes/agent among it), as the chart binds the gateway's.
	GatewayIdentity = "infera-local-gateway"
	// AgentServerName is the DNS name of the local agent's serving
	// certificate, the name the gateway verifies.
	AgentServerName = "infera-agent.local"
	// AgentGRPCAddress is the local agent's gRPC TLS listener: loopback,
	// the Node's InternalIP (127.0.0.1) at the default agent port.
	AgentGRPCAddress = "127.0.0.1:9101"
)

// Wiring is what WireAgent wrote: the configurations to start the agent and
// the gateway with.
type Wiring struct {
	AgentConfig   string // TOML: the base agent config plus the gRPC TLS listener
	GatewayConfig string // YAML GatewayConfiguration with its agents section
}

// WireAgent lets the local gateway reach the local agent as it does in a
// cluster: a fresh CA and a serving certificate for AgentServerName (valid
// a week) under stateDir/agent-tls, the agent's config (agentBase with the
// TLS listener on AgentGRPCAddress) in stateDir/agent.toml, the gateway's
// ServiceAccount bound to infera-gateway (rbacDir/role.yaml) with a token
// in stateDir/gateway-agent-token, and a GatewayConfiguration in
// stateDir/gateway.yaml that finds the agent at the Node's InternalIP.
func WireAgent(ctx context.Context, cfg *rest.Config, c client.Client, rbacDir, stateDir, agentBase string) (Wiring, error) {
	tlsDir := filepath.Join(stateDir, "agent-tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return Wiring{}, fmt.Errorf("failed to create %s: %w", tlsDir, err)
	}
	files, err := certrotation.WriteFiles(tlsDir, AgentServerName, 7*24*time.Hour)
	if err != nil {
		return Wiring{}, err
	}

	// The agent: its base config and the listener.
	var agent map[string]any
	if _, err := toml.DecodeFile(agentBase, &agent); err != nil {
		return Wiring{}, fmt.Errorf("failed to read the agent config %s: %w", agentBase, err)
	}
	server, _ := agent["server"].(map[string]any)
	if server == nil {
		server = map[string]any{}
		agent["server"] = server
	}
	server["grpc_address"], server["grpc_tls_cert_file"], server["grpc_tls_key_file"] = AgentGRPCAddress, files.Cert, files.Key
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Written by infera-local from %s at each start; edit that file instead.\n", agentBase)
	if err := toml.NewEncoder(&buf).Encode(agent); err != nil {
		return Wiring{}, fmt.Errorf("failed to encode the agent config: %w", err)
	}
	w := Wiring{AgentConfig: filepath.Join(stateDir, "agent.toml"), GatewayConfig: filepath.Join(stateDir, "gateway.yaml")}
	if err := os.WriteFile(w.AgentConfig, buf.Bytes(), 0o600); err != nil {
		return Wiring{}, fmt.Errorf("failed to write the agent config: %w", err)
	}

	// The gateway's identity.
	if err := createClusterRoles(ctx, c, filepath.Join(rbacDir, "role.yaml")); err != nil {
		return Wiring{}, err
	}
	tokenPath := filepath.Join(stateDir, "gateway-agent-token")
	if err := serviceAccountToken(ctx, cfg, c, GatewayIdentity, "infera-gateway", 24*time.Hour, tokenPath); err != nil {
		return Wiring{}, err
	}

	// The gateway's configuration.
	gw := configv1alpha1.GatewayConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: configv1alpha1.GatewayConfigurationAPIVersion, Kind: configv1alpha1.GatewayConfigurationKind},
		Agents: &configv1alpha1.GatewayAgents{
			Discovery: configv1alpha1.AgentDiscoveryNodeAddress,
			Port:      9101,
			CAFile:    files.CA, ServerName: AgentServerName, TokenFile: tokenPath,
		},
	}
	b, err := yaml.Marshal(gw)
	if err != nil {
		return Wiring{}, fmt.Errorf("failed to encode the gateway configuration: %w", err)
	}
	b = append([]byte("# Written by infera-local at each start.\n"), b...)
	if err := os.WriteFile(w.GatewayConfig, b, 0o600); err != nil {
		return Wiring{}, fmt.Errorf("failed to write the gateway configuration: %w", err)
	}
	return w, nil
}

// createClusterRoles creates the ClusterRoles of a manifest file (other
// kinds, such as the namespaced Role of the release namespace, are skipped).
func createClusterRoles(ctx context.Context, c client.Client, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("failed to read the gateway's roles: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("failed to decode %s: %w", path, err)
		}
		if u.GetKind() != "ClusterRole" {
			continue
		}
		if err := c.Create(ctx, &u); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("failed to create ClusterRole %s: %w", u.GetName(), err)
		}
	}
}

// serviceAccountToken creates ServiceAccount name in "default", binds it to
// clusterRole and writes a token for it, valid for ttl, to path (mode 0600).
func serviceAccountToken(ctx context.Context, cfg *rest.Config, c client.Client, name, clusterRole string, ttl time.Duration, path string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create ServiceAccount %s: %w", name, err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: metav1.NamespaceDefault}},
	}
	if err := c.Create(ctx, crb); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to bind %s to %s: %w", name, clusterRole, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	secs := int64(ttl.Seconds())
	tr, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).CreateToken(ctx, name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("failed to mint a token for %s: %w", name, err)
	}
	if err := os.WriteFile(path, []byte(tr.Status.Token), 0o600); err != nil {
		return fmt.Errorf("failed to write the token of %s: %w", name, err)
	}
	return nil
}
