package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/infera-io/temper/apis/wellknown"
)

// GatewayConfiguration identity: the apiVersion and kind a gateway
// configuration file must declare.
const (
	GatewayConfigurationAPIVersion = "config.infera.io/v1alpha1"
	GatewayConfigurationKind       = "GatewayConfiguration"
)

// Defaults of GatewayConfiguration (DESIGN.md §6: the gateway is on :8090).
const (
	DefaultGatewayBindAddress        = ":8090"
	DefaultGatewayAuditLogPath       = "-"
	DefaultGatewayAuditRingSize      = int32(1000)
	DefaultGatewayMaxRequestBytes    = int64(64 << 10)
	DefaultGatewayAuthCacheTTL       = 10 * time.Second
	DefaultGatewayRequestTimeout     = 30 * time.Second
	DefaultGatewayMaxSelectorTargets = int32(500)

	DefaultGatewayAgentPort          = int32(9101)
	DefaultGatewayAgentTimeout       = 5 * time.Second
	DefaultGatewayAgentMaxConcurrent = int32(16)
	DefaultGatewayAgentTokenFile     = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// How the gateway finds the agent of a node (GatewayAgents.Discovery).
const (
	// AgentDiscoveryEndpointSlice: the addresses of a Service's
	// EndpointSlices, by the endpoint's nodeName (the chart's headless
	// Service infera-agent-grpc; agents on the pod network).
	AgentDiscoveryEndpointSlice = "EndpointSlice"
	// AgentDiscoveryNodeAddress: the Node's InternalIP (agents on the host
	// network).
	AgentDiscoveryNodeAddress = "NodeAddress"
)

// GatewayConfiguration is the configuration file of infera-gateway (the
// REST /api/v1 over the fleet). Every field is optional; Default fills in
// the defaults. Files are decoded strictly: an unknown field is an error.
//
// +kubebuilder:object:root=true
type GatewayConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// BindAddress serves /api/v1, the OpenAPI document, /healthz, /readyz
	// and /metrics. Default: ":8090".
	// +optional
	BindAddress string `json:"bindAddress,omitempty"`

	// TLSCertFile and TLSKeyFile, when both set, serve HTTPS instead of
	// plain HTTP. Bearer tokens travel in every request: serve TLS (here or
	// at an ingress) whenever the port is reachable off the node.
	// +optional
	TLSCertFile string `json:"tlsCertFile,omitempty"`
	// +optional
	TLSKeyFile string `json:"tlsKeyFile,omitempty"`

	// AuditLogPath receives one audit.k8s.io/v1 Event JSON line per API
	// request: "-" is stdout, "" turns the file off (the in-memory ring
	// stays). Default: "-".
	// +optional
	AuditLogPath *string `json:"auditLogPath,omitempty"`

	// AuditRingSize is how many recent audit events GET /api/v1/auditEvents
	// keeps. Default: 1000.
	// +optional
	AuditRingSize int32 `json:"auditRingSize,omitempty"`

	// MaxRequestBytes rejects larger request bodies with 413. Default:
	// 65536.
	// +optional
	MaxRequestBytes int64 `json:"maxRequestBytes,omitempty"`

	// AuthCacheTTL is how long a TokenReview or SubjectAccessReview answer
	// is reused for the same token or the same user and attributes.
	// Default: 10s; 0s is not allowed (it would send two reviews per
	// request).
	// +optional
	AuthCacheTTL *metav1.Duration `json:"authCacheTTL,omitempty"`

	// RequestTimeout bounds every unary call. Default: 30s.
	// +optional
	RequestTimeout *metav1.Duration `json:"requestTimeout,omitempty"`

	// MaxSelectorTargets bounds how many nodes one selector action may
	// change; more is INVALID_ARGUMENT. Default: 500.
	// +optional
	MaxSelectorTargets int32 `json:"maxSelectorTargets,omitempty"`

	// TierLoadMaxAge is how old a tier-load may be before the gateway treats
	// it as absent. Default: 180s (DESIGN.md §3).
	// +optional
	TierLoadMaxAge *metav1.Duration `json:"tierLoadMaxAge,omitempty"`

	// PriorityMapping are the tier thresholds explainTier and the pod views
	// use; they should match the agents' [priority_mapping]. Default:
	// DESIGN.md §2.
	// +optional
	PriorityMapping *PriorityThresholds `json:"priorityMapping,omitempty"`

	// Agents says how the gateway reaches the node agents' gRPC API (their
	// server.grpc_address, TLS). Unset: it does not; node pods come from
	// the API server alone and the agent-backed calls answer
	// FAILED_PRECONDITION.
	// +optional
	Agents *GatewayAgents `json:"agents,omitempty"`
}

// GatewayAgents configures the gateway's calls to the node agents.
type GatewayAgents struct {
	// Discovery is how a node's agent is found: "EndpointSlice" (the
	// default) or "NodeAddress".
	// +optional
	Discovery string `json:"discovery,omitempty"`
	// ServiceNamespace and ServiceName name the Service whose EndpointSlices
	// list the agents (EndpointSlice discovery); required with it.
	// +optional
	ServiceNamespace string `json:"serviceNamespace,omitempty"`
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// Port is the agents' gRPC TLS port. Default: 9101.
	// +optional
	Port int32 `json:"port,omitempty"`
	// CAFile is the PEM CA that signed the agents' serving certificates;
	// required.
	CAFile string `json:"caFile"`
	// ServerName is the DNS name every agent's certificate carries and the
	// gateway verifies (it dials IP addresses); required.
	ServerName string `json:"serverName"`
	// TokenFile holds the bearer token the gateway presents (its projected
	// ServiceAccount token, re-read as it rotates). Default:
	// /var/run/secrets/kubernetes.io/serviceaccount/token.
	// +optional
	TokenFile string `json:"tokenFile,omitempty"`
	// Timeout bounds one call to one agent. Default: 5s.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// MaxConcurrent bounds how many agents one request asks at once.
	// Default: 16.
	// +optional
	MaxConcurrent int32 `json:"maxConcurrent,omitempty"`
}

// Default fills every unset field with its default.
func (c *GatewayConfiguration) Default() {
	if c.APIVersion == "" {
		c.APIVersion = GatewayConfigurationAPIVersion
	}
	if c.Kind == "" {
		c.Kind = GatewayConfigurationKind
	}
	setString(&c.BindAddress, DefaultGatewayBindAddress)
	if c.AuditLogPath == nil {
		p := DefaultGatewayAuditLogPath
		c.AuditLogPath = &p
	}
	if c.AuditRingSize == 0 {
		c.AuditRingSize = DefaultGatewayAuditRingSize
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultGatewayMaxRequestBytes
	}
	setDuration(&c.AuthCacheTTL, DefaultGatewayAuthCacheTTL)
	setDuration(&c.RequestTimeout, DefaultGatewayRequestTimeout)
	if c.MaxSelectorTargets == 0 {
		c.MaxSelectorTargets = DefaultGatewayMaxSelectorTargets
	}
	setDuration(&c.TierLoadMaxAge, wellknown.TierLoadMaxAge)
	if a := c.Agents; a != nil {
		setString(&a.Discovery, AgentDiscoveryEndpointSlice)
		if a.Port == 0 {
			a.Port = DefaultGatewayAgentPort
		}
		setString(&a.TokenFile, DefaultGatewayAgentTokenFile)
		setDuration(&a.Timeout, DefaultGatewayAgentTimeout)
		if a.MaxConcurrent == 0 {
			a.MaxConcurrent = DefaultGatewayAgentMaxConcurrent
		}
	}
	if c.PriorityMapping == nil {
		c.PriorityMapping = &PriorityThresholds{
			Critical: wellknown.DefaultCriticalMinPriority,
			High:     wellknown.DefaultHighMinPriority,
			Normal:   wellknown.DefaultNormalMinPriority,
			Low:      wellknown.DefaultLowMinPriority,
		}
	}
}

// Validate checks a defaulted configuration. The errors name the field as it
// is spelled in the configuration file.
func (c *GatewayConfiguration) Validate() error {
	var errs field.ErrorList
	if c.APIVersion != GatewayConfigurationAPIVersion {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), c.APIVersion, "must be "+GatewayConfigurationAPIVersion))
	}
	if c.Kind != GatewayConfigurationKind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), c.Kind, "must be "+GatewayConfigurationKind))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, field.Invalid(field.NewPath("tlsKeyFile"), c.TLSKeyFile, "tlsCertFile and tlsKeyFile must be set together"))
	}
	if c.AuditRingSize < 1 || c.AuditRingSize > 100000 {
		errs = append(errs, field.Invalid(field.NewPath("auditRingSize"), c.AuditRingSize, "must be between 1 and 100000"))
	}
	if c.MaxRequestBytes < 1024 {
		errs = append(errs, field.Invalid(field.NewPath("maxRequestBytes"), c.MaxRequestBytes, "must be at least 1024"))
	}
	for _, d := range []struct {
		name string
		v    *metav1.Duration
	}{{"authCacheTTL", c.AuthCacheTTL}, {"requestTimeout", c.RequestTimeout}, {"tierLoadMaxAge", c.TierLoadMaxAge}} {
		if d.v == nil || d.v.Duration <= 0 {
			errs = append(errs, field.Invalid(field.NewPath(d.name), d.v, "must be more than 0"))
		}
	}
	if c.MaxSelectorTargets < 1 {
		errs = append(errs, field.Invalid(field.NewPath("maxSelectorTargets"), c.MaxSelectorTargets, "must be at least 1"))
	}
	if m := c.PriorityMapping; m == nil {
		errs = append(errs, field.Required(field.NewPath("priorityMapping"), "call Default first"))
	} else if m.Critical >= wellknown.DefaultSystemMinPriority || m.High >= m.Critical || m.Normal >= m.High || m.Low >= m.Normal {
		errs = append(errs, field.Invalid(field.NewPath("priorityMapping"), *m, "thresholds must be strictly decreasing, critical below 2000000000"))
	}
	if a := c.Agents; a != nil {
		errs = append(errs, a.validate(field.NewPath("agents"))...)
	}
	return errs.ToAggregate()
}

func (a *GatewayAgents) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch a.Discovery {
	case AgentDiscoveryEndpointSlice:
		if a.ServiceNamespace == "" || a.ServiceName == "" {
			errs = append(errs, field.Required(p.Child("serviceName"), "serviceNamespace and serviceName are required with discovery EndpointSlice"))
		}
	case AgentDiscoveryNodeAddress:
	default:
		errs = append(errs, field.NotSupported(p.Child("discovery"), a.Discovery, []string{AgentDiscoveryEndpointSlice, AgentDiscoveryNodeAddress}))
	}
	if a.Port < 1 || a.Port > 65535 {
		errs = append(errs, field.Invalid(p.Child("port"), a.Port, "must be between 1 and 65535"))
	}
	if a.CAFile == "" {
		errs = append(errs, field.Required(p.Child("caFile"), "the agents' certificates are verified against this CA"))
	}
	if a.ServerName == "" {
		errs = append(errs, field.Required(p.Child("serverName"), "the DNS name in the agents' certificates"))
	}
	if a.Timeout == nil || a.Timeout.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("timeout"), a.Timeout, "must be more than 0"))
	}
	if a.MaxConcurrent < 1 || a.MaxConcurrent > 256 {
		errs = append(errs, field.Invalid(p.Child("maxConcurrent"), a.MaxConcurrent, "must be between 1 and 256"))
	}
	return errs
}
