package chart

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/infera-io/temper/gateway"
)

// TestGateway: with gateway.enabled the gateway runs with a config it
// accepts, reaching the agents through the headless Service over TLS; the
// agents serve :9101 with the certificate Secret, the gateway sees only the
// CA; the user roles aggregate into view and edit.
func TestGateway(t *testing.T) {
	c := caseNamed(t, "full")
	objs := decodeAll(t, render(t, c))
	cm := find[*corev1.ConfigMap](t, objs, "infera-gateway-config")
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("the gateway refuses the chart's config: %v\n%s", err, cm.Data["config.yaml"])
	}
	a := cfg.Agents
	if a == nil || a.Discovery != "EndpointSlice" || a.ServiceName != "infera-agent-grpc" || a.ServiceNamespace != c.namespace ||
		a.ServerName != "infera-agent."+c.namespace+".svc" || a.Port != 9101 || a.Timeout.Duration != 3*time.Second {
		t.Errorf("gateway agents config = %+v", a)
	}
	d := find[*appsv1.Deployment](t, objs, "infera-gateway")
	if *d.Spec.Replicas != 2 || d.Spec.Template.Spec.ServiceAccountName != "infera-gateway" {
		t.Errorf("gateway Deployment: replicas %d, service account %q", *d.Spec.Replicas, d.Spec.Template.Spec.ServiceAccountName)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && (v.Secret.SecretName != "agent-grpc-from-cert-manager" || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "ca.crt") {
			t.Errorf("the gateway mounts %+v; want only ca.crt of the agents' Secret", v.Secret)
		}
	}
	if s := find[*corev1.Service](t, objs, "infera-gateway"); s.Spec.Ports[0].Port != 8090 {
		t.Errorf("gateway Service ports %+v", s.Spec.Ports)
	}
	svc := find[*corev1.Service](t, objs, "infera-agent-grpc")
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses || svc.Spec.Ports[0].Name != "grpc" || svc.Spec.Ports[0].Port != 9101 {
		t.Errorf("agent gRPC Service = %+v", svc.Spec)
	}
	agentCfg := loadAgentConfig(t, find[*corev1.ConfigMap](t, objs, "infera-agent-config"))
	if agentCfg.Server.GRPCAddress != ":9101" || agentCfg.Server.Address != ":9100" {
		t.Errorf("agent [server] = %+v, want grpc_address :9101 and :9100 (guarded)", agentCfg.Server)
	}
	ds := find[*appsv1.DaemonSet](t, objs, "infera-agent")
	mounted := false
	for _, v := range ds.Spec.Template.Spec.Volumes {
		mounted = mounted || v.Secret != nil && v.Secret.SecretName == "agent-grpc-from-cert-manager"
	}
	if !mounted {
		t.Error("the agent does not mount the gRPC TLS Secret")
	}
	if len(findAll[*corev1.Secret](objs)) != 0 {
		t.Error("with agentTLS.existingSecret the chart still renders a Secret")
	}
	for name, label := range map[string]string{"infera-viewer": "rbac.authorization.k8s.io/aggregate-to-view", "infera-operator": "rbac.authorization.k8s.io/aggregate-to-edit"} {
		if r := find[*rbacv1.ClusterRole](t, objs, name); r.Labels[label] != "true" {
			t.Errorf("%s labels %v, want %s", name, r.Labels, label)
		}
	}

	// Off: no gateway, no listener, no Secret.
	def := decodeAll(t, render(t, caseNamed(t, "default")))
	if n := len(findAll[*corev1.Secret](def)); n != 0 {
		t.Errorf("the default render has %d Secrets, want none", n)
	}
	for _, d := range findAll[*appsv1.Deployment](def) {
		if d.Name == "infera-gateway" {
			t.Error("the default render runs the gateway")
		}
	}
	if cfg := loadAgentConfig(t, find[*corev1.ConfigMap](t, def, "infera-agent-config")); cfg.Server.GRPCAddress != "" {
		t.Errorf("default agent config serves gRPC on %q", cfg.Server.GRPCAddress)
	}
}

// TestGatewayGeneratedCert: without an existing Secret the chart makes a CA
// and a certificate that verifies for the name the gateway checks.
func TestGatewayGeneratedCert(t *testing.T) {
	c := caseNamed(t, "default")
	objs := decodeAll(t, render(t, c, "--set", "gateway.enabled=true"))
	s := find[*corev1.Secret](t, objs, "infera-agent-grpc-tls")
	parse := func(key string) *x509.Certificate {
		b, _ := pem.Decode(s.Data[key])
		if b == nil {
			t.Fatalf("%s is not PEM", key)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	ca, cert := parse("ca.crt"), parse("tls.crt")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	name := "infera-agent." + c.namespace + ".svc"
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the generated certificate does not verify for %s: %v", name, err)
	}
	if len(s.Data["tls.key"]) == 0 {
		t.Error("no tls.key")
	}
}
