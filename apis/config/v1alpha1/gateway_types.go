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
	return errs.ToAggregate()
}
