package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/infera-io/temper/apis/wellknown"
)

// ManagerConfiguration identity: the apiVersion and kind a manager
// configuration file must declare.
const (
	ManagerConfigurationAPIVersion = "config.infera.io/v1alpha1"
	ManagerConfigurationKind       = "ManagerConfiguration"
)

// Certificate modes of the overcommit webhook's serving certificate.
const (
	// CertModeSelfManaged: the manager creates a CA and a serving
	// certificate, keeps them in a Secret in the platform namespace, rotates
	// them before they expire and writes the CA bundle into the webhook
	// configuration. No other component is needed.
	CertModeSelfManaged = "self-managed"
	// CertModeExternal: something else (cert-manager, with its CA injector)
	// mounts tls.crt and tls.key into CertDir and keeps the webhook
	// configuration's CA bundle current; the manager reloads the files when
	// they change.
	CertModeExternal = "external"
)

// DefaultSilentAgentTaintKey is the taint the silent-agent backstop puts on
// a node whose agent has stopped reporting, when SilentAgent.Taint is on.
// The agent's DaemonSet must tolerate it, or a restarted agent could not come
// back to the node.
const DefaultSilentAgentTaintKey = wellknown.AgentSilentTaintKey

// Defaults of ManagerConfiguration.
const (
	DefaultPlatformNamespace            = "infera-system"
	DefaultLeaseName                    = "infera-manager"
	DefaultMetricsBindAddress           = ":8080"
	DefaultHealthProbeBindAddress       = ":8081"
	DefaultWebhookPort            int32 = 9443
	DefaultWebhookSecretName            = "infera-webhook-server-cert"
	DefaultWebhookServiceName           = "infera-webhook-service"
	DefaultWebhookConfiguration         = "infera-mutating-webhook-configuration"
	DefaultWebhookCertDir               = "/tmp/k8s-webhook-server/serving-certs"
	DefaultCAValidity                   = 365 * 24 * time.Hour
	DefaultCertValidity                 = 30 * 24 * time.Hour
	DefaultSilentAgentAfter             = 5 * time.Minute
	minCertValidity                     = 5 * time.Second
)

// ManagerConfiguration is the configuration file of infera-manager
// (controllers and the overcommit webhook). Every field is optional; Default
// fills in the values of DESIGN.md §6 and §7. Files are decoded strictly: an
// unknown field is an error.
//
// +kubebuilder:object:root=true
type ManagerConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// PlatformNamespace is the namespace the manager runs in. It holds the
	// leader-election lease and the webhook certificate Secret, and it is
	// never opted into overcommit. Default: infera-system.
	// +optional
	PlatformNamespace string `json:"platformNamespace,omitempty"`

	// LeaderElection makes one replica run the controllers; every replica
	// serves the webhook.
	// +optional
	LeaderElection LeaderElectionConfiguration `json:"leaderElection,omitempty"`

	// MetricsBindAddress serves Prometheus metrics; "0" turns them off.
	// Default: ":8080".
	// +optional
	MetricsBindAddress string `json:"metricsBindAddress,omitempty"`

	// HealthProbeBindAddress serves /healthz and /readyz; "0" turns them
	// off. Default: ":8081".
	// +optional
	HealthProbeBindAddress string `json:"healthProbeBindAddress,omitempty"`

	// Webhook configures the overcommit admission webhook.
	// +optional
	Webhook WebhookConfiguration `json:"webhook,omitempty"`

	// TierLoadMaxAge is how old infera.io/tier-load may be before the
	// NodeQoSReport's AgentHeartbeat condition turns False. Default: 180s,
	// the contract's value.
	// +optional
	TierLoadMaxAge *metav1.Duration `json:"tierLoadMaxAge,omitempty"`

	// SilentAgent configures the backstop for nodes whose agent stopped
	// reporting.
	// +optional
	SilentAgent SilentAgentConfiguration `json:"silentAgent,omitempty"`
}

// LeaderElectionConfiguration configures the controllers' leader election.
type LeaderElectionConfiguration struct {
	// Enabled turns leader election on. Default: true. Turn it off only
	// when exactly one replica runs (make run, tests).
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// LeaseName is the Lease in the platform namespace. Default:
	// infera-manager.
	// +optional
	LeaseName string `json:"leaseName,omitempty"`
}

// WebhookConfiguration configures the overcommit webhook and its serving
// certificate.
type WebhookConfiguration struct {
	// Enabled serves the webhook. Default: true. With it off the manager
	// runs the controllers only, and the API server bypasses the webhook
	// (failurePolicy Ignore).
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// Host is the address the webhook server listens on. Default: all.
	// +optional
	Host string `json:"host,omitempty"`
	// Port is the webhook server's TLS port. Default: 9443.
	// +optional
	Port *int32 `json:"port,omitempty"`
	// CertMode is self-managed (default) or external; see the CertMode*
	// constants.
	// +optional
	CertMode string `json:"certMode,omitempty"`
	// CertDir holds tls.crt and tls.key in external mode. Default:
	// /tmp/k8s-webhook-server/serving-certs.
	// +optional
	CertDir string `json:"certDir,omitempty"`
	// SecretName is the Secret in the platform namespace where self-managed
	// mode keeps its CA and serving certificate, so every replica serves the
	// same one. Default: infera-webhook-server-cert.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// ServiceName is the Service in front of the webhook; the serving
	// certificate names it. Default: infera-webhook-service.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// ConfigurationName is the MutatingWebhookConfiguration whose CA bundle
	// self-managed mode keeps current. Default:
	// infera-mutating-webhook-configuration.
	// +optional
	ConfigurationName string `json:"configurationName,omitempty"`
	// URL, when set, makes the manager install the webhook configuration
	// itself, pointing the API server at this https URL instead of the
	// Service (make run, where the API server and the manager share a
	// host). The serving certificate then also names the URL's host.
	// +optional
	URL string `json:"url,omitempty"`
	// CAValidity is how long a self-managed CA is valid. The manager makes a
	// new CA when a third of it is left and keeps the old one in the bundle
	// until it expires. Default: 8760h.
	// +optional
	CAValidity *metav1.Duration `json:"caValidity,omitempty"`
	// CertValidity is how long a self-managed serving certificate is valid;
	// it is renewed when a third of it is left. Default: 720h.
	// +optional
	CertValidity *metav1.Duration `json:"certValidity,omitempty"`
	// PriorityMapping is the tier thresholds the webhook classifies pods
	// with, besides those of every InferaPolicy (a pod critical under any
	// of them is never deflated). Default: DESIGN.md §2.
	// +optional
	PriorityMapping *PriorityThresholds `json:"priorityMapping,omitempty"`
}

// PriorityThresholds are the minimum priorities of the workload tiers.
type PriorityThresholds struct {
	Critical int32 `json:"critical"`
	High     int32 `json:"high"`
	Normal   int32 `json:"normal"`
	Low      int32 `json:"low"`
}

// SilentAgentConfiguration configures the silent-agent backstop: a node
// whose infera.io/tier-load heartbeat is older than After gets a Warning
// event and the AgentSilent condition on its NodeQoSReport, and, with Taint
// on, a taint.
type SilentAgentConfiguration struct {
	// After is how long after the last heartbeat an agent counts as silent.
	// Default: 5m; at least the tier-load max age.
	// +optional
	After *metav1.Duration `json:"after,omitempty"`
	// Taint puts TaintKey on silent nodes and lifts it when the agent is
	// back. Default: false.
	// +optional
	Taint *bool `json:"taint,omitempty"`
	// TaintKey is the taint's key. Default: infera.io/agent-silent.
	// +optional
	TaintKey string `json:"taintKey,omitempty"`
	// TaintEffect is NoSchedule (default) or PreferNoSchedule. NoExecute is
	// refused: the backstop never evicts.
	// +optional
	TaintEffect corev1.TaintEffect `json:"taintEffect,omitempty"`
	// MaxSilentPercent is the taint's circuit breaker: when more than this
	// percentage of all nodes have silent agents at once, the cause is
	// fleet-wide (an uninstall, agents cut off from the API server), not
	// the nodes, so no node is tainted and taints already set are lifted,
	// as the node lifecycle controller stops evicting in a zone in full
	// disruption. 0 means the default 55 (its unhealthyZoneThreshold);
	// 100 turns the breaker off.
	// +optional
	MaxSilentPercent int32 `json:"maxSilentPercent,omitempty"`
}

// Default fills every unset field with its default.
func (c *ManagerConfiguration) Default() {
	if c.APIVersion == "" {
		c.APIVersion = ManagerConfigurationAPIVersion
	}
	if c.Kind == "" {
		c.Kind = ManagerConfigurationKind
	}
	setString(&c.PlatformNamespace, DefaultPlatformNamespace)
	setBool(&c.LeaderElection.Enabled, true)
	setString(&c.LeaderElection.LeaseName, DefaultLeaseName)
	setString(&c.MetricsBindAddress, DefaultMetricsBindAddress)
	setString(&c.HealthProbeBindAddress, DefaultHealthProbeBindAddress)
	w := &c.Webhook
	setBool(&w.Enabled, true)
	if w.Port == nil {
		p := DefaultWebhookPort
		w.Port = &p
	}
	setString(&w.CertMode, CertModeSelfManaged)
	setString(&w.CertDir, DefaultWebhookCertDir)
	setString(&w.SecretName, DefaultWebhookSecretName)
	setString(&w.ServiceName, DefaultWebhookServiceName)
	setString(&w.ConfigurationName, DefaultWebhookConfiguration)
	setDuration(&w.CAValidity, DefaultCAValidity)
	setDuration(&w.CertValidity, DefaultCertValidity)
	if w.PriorityMapping == nil {
		w.PriorityMapping = &PriorityThresholds{
			Critical: wellknown.DefaultCriticalMinPriority,
			High:     wellknown.DefaultHighMinPriority,
			Normal:   wellknown.DefaultNormalMinPriority,
			Low:      wellknown.DefaultLowMinPriority,
		}
	}
	setDuration(&c.TierLoadMaxAge, wellknown.TierLoadMaxAge)
	s := &c.SilentAgent
	setDuration(&s.After, DefaultSilentAgentAfter)
	setBool(&s.Taint, false)
	setString(&s.TaintKey, DefaultSilentAgentTaintKey)
	if s.TaintEffect == "" {
		s.TaintEffect = corev1.TaintEffectNoSchedule
	}
}

// Validate checks a defaulted configuration. The errors name the field as it
// is spelled in the configuration file.
func (c *ManagerConfiguration) Validate() error {
	var errs field.ErrorList
	if c.APIVersion != ManagerConfigurationAPIVersion {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), c.APIVersion, "must be "+ManagerConfigurationAPIVersion))
	}
	if c.Kind != ManagerConfigurationKind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), c.Kind, "must be "+ManagerConfigurationKind))
	}
	for _, msg := range validation.IsDNS1123Label(c.PlatformNamespace) {
		errs = append(errs, field.Invalid(field.NewPath("platformNamespace"), c.PlatformNamespace, msg))
	}
	if c.PlatformNamespace == metav1.NamespaceSystem {
		errs = append(errs, field.Invalid(field.NewPath("platformNamespace"), c.PlatformNamespace, "must not be kube-system"))
	}
	w, wp := c.Webhook, field.NewPath("webhook")
	if w.Port == nil || *w.Port < 1 || *w.Port > 65535 {
		errs = append(errs, field.Invalid(wp.Child("port"), w.Port, "must be between 1 and 65535"))
	}
	switch w.CertMode {
	case CertModeSelfManaged, CertModeExternal:
	default:
		errs = append(errs, field.NotSupported(wp.Child("certMode"), w.CertMode, []string{CertModeSelfManaged, CertModeExternal}))
	}
	for _, d := range []struct {
		name string
		v    *metav1.Duration
	}{{"caValidity", w.CAValidity}, {"certValidity", w.CertValidity}} {
		if d.v == nil || d.v.Duration < minCertValidity {
			errs = append(errs, field.Invalid(wp.Child(d.name), d.v, "must be at least "+minCertValidity.String()))
		}
	}
	if w.CAValidity != nil && w.CertValidity != nil && w.CertValidity.Duration > w.CAValidity.Duration {
		errs = append(errs, field.Invalid(wp.Child("certValidity"), w.CertValidity.Duration.String(), "must not be longer than caValidity"))
	}
	if m := w.PriorityMapping; m == nil {
		errs = append(errs, field.Required(wp.Child("priorityMapping"), "call Default first"))
	} else if m.Critical >= wellknown.DefaultSystemMinPriority || m.High >= m.Critical || m.Normal >= m.High || m.Low >= m.Normal {
		errs = append(errs, field.Invalid(wp.Child("priorityMapping"), *m, "thresholds must be strictly decreasing, critical below 2000000000"))
	}
	if c.TierLoadMaxAge == nil || c.TierLoadMaxAge.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("tierLoadMaxAge"), c.TierLoadMaxAge, "must be more than 0"))
	}
	s, sp := c.SilentAgent, field.NewPath("silentAgent")
	if s.After == nil || (c.TierLoadMaxAge != nil && s.After.Duration < c.TierLoadMaxAge.Duration) {
		errs = append(errs, field.Invalid(sp.Child("after"), s.After, "must be at least tierLoadMaxAge"))
	}
	for _, msg := range validation.IsQualifiedName(s.TaintKey) {
		errs = append(errs, field.Invalid(sp.Child("taintKey"), s.TaintKey, msg))
	}
	if s.MaxSilentPercent < 0 || s.MaxSilentPercent > 100 {
		errs = append(errs, field.Invalid(sp.Child("maxSilentPercent"), s.MaxSilentPercent, "must be from 0 (the default, 55) to 100 (no breaker)"))
	}
	switch s.TaintEffect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule:
	default:
		errs = append(errs, field.NotSupported(sp.Child("taintEffect"), s.TaintEffect,
			[]string{string(corev1.TaintEffectNoSchedule), string(corev1.TaintEffectPreferNoSchedule)}))
	}
	return errs.ToAggregate()
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setBool(p **bool, v bool) {
	if *p == nil {
		*p = &v
	}
}

func setDuration(p **metav1.Duration, v time.Duration) {
	if *p == nil {
		*p = &metav1.Duration{Duration: v}
	}
}
