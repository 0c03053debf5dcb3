package v1alpha1

import (
	"fmt"
	"time"

	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// AgentAPIVersion and AgentKind identify an agent configuration file. Both
// keys are required, so a file written for another version is refused
// instead of half understood.
const (
	AgentAPIVersion = "config.infera.io/v1alpha1"
	AgentKind       = "AgentConfiguration"
)

// AgentConfiguration is the node agent's configuration file, TOML with
// snake_case keys (config/samples/agent-config.toml documents every key).
// Build one with DefaultAgentConfiguration or LoadAgentConfiguration; the
// zero value is not valid.
type AgentConfiguration struct {
	// APIVersion must be AgentAPIVersion.
	APIVersion string `toml:"api_version" json:"apiVersion"`
	// Kind must be AgentKind.
	Kind string `toml:"kind" json:"kind"`

	// PriorityMapping holds the minimum pod priority of each tier
	// (DESIGN.md §2). Default: the thresholds of the contract.
	PriorityMapping AgentPriorityMapping `toml:"priority_mapping" json:"priorityMapping"`

	// Backend selects the enforcement backend. Default: auto.
	Backend AgentBackend `toml:"backend" json:"backend"`

	// Cgroup says where the cgroup tree is and how the kubelet names it.
	Cgroup AgentCgroupConfig `toml:"cgroup" json:"cgroup"`

	// SCX configures the scx_layered backend.
	SCX AgentSCXConfig `toml:"scx" json:"scx"`

	// CoalesceWindow is how long the agent gathers pod events before it
	// applies a new assignment: a burst within the window becomes one
	// scx_layered restart, not one per event. Default 2s; at least 100ms,
	// at most 30s.
	CoalesceWindow Duration `toml:"coalesce_window" json:"coalesceWindow"`

	// Heartbeat is how often the agent re-confirms an unchanged
	// infera.io/tier-load annotation. Readers treat a value older than
	// 180 s as absent, so it must leave room for missed beats. Default
	// 60s; at least 10s (one patch per node every few seconds is load on
	// the API server for nothing), at most 60s.
	Heartbeat Duration `toml:"heartbeat" json:"heartbeat"`

	// Server holds the agent's listeners.
	Server AgentServerConfig `toml:"server" json:"server"`

	// Observation configures the always-on observation layer (thread
	// sampling, the placement linter, eBPF run-queue latency) and trace
	// capture.
	Observation AgentObservationConfig `toml:"observation" json:"observation"`

	// StateDir keeps what must survive an agent restart (the original
	// cgroup values to restore, the last applied assignment). Default
	// /var/lib/infera.
	StateDir string `toml:"state_dir" json:"stateDir"`

	// SysRoot is where the host's /sys is visible to the agent: the agent
	// reads SysRoot/kernel/sched_ext and SysRoot/devices/system/cpu. Set it
	// when the DaemonSet mounts the host's /sys elsewhere (e.g. /host/sys).
	// Default /sys.
	SysRoot string `toml:"sys_root" json:"sysRoot"`

	// ReleaseStartupPages, once the agent has started (informers synced,
	// first assignment applied), unmaps the pages of its own binary's code
	// and read-only data that start-up touched (package initialisation of
	// the Kubernetes client, TLS, gRPC, ...); the pages it goes on using
	// map back in on first use, from the page cache. This is most of the
	// agent's resident memory (docs/agent.md, "Make it smaller"). Default
	// true.
	ReleaseStartupPages bool `toml:"release_startup_pages" json:"releaseStartupPages"`
}

// AgentPriorityMapping is the [priority_mapping] section: the minimum priority
// of each workload tier. They must be strictly decreasing and critical must
// be below the system range (2,000,000,000).
type AgentPriorityMapping struct {
	Critical int32 `toml:"critical" json:"critical"`
	High     int32 `toml:"high" json:"high"`
	Normal   int32 `toml:"normal" json:"normal"`
	Low      int32 `toml:"low" json:"low"`
}

// Thresholds converts the mapping for tiering.Classify.
func (m AgentPriorityMapping) Thresholds() tiering.Thresholds {
	return tiering.Thresholds{Critical: m.Critical, High: m.High, Normal: m.Normal, Low: m.Low}
}

// AgentBackend is the enforcement backend the agent uses.
type AgentBackend string

// The backends. Auto picks scx when the kernel has sched_ext and the
// scx_layered binary exists, else the built-in tier scheduler when the
// kernel has sched_ext and BTF on cgroup v2, else cgroup.
const (
	AgentBackendTierSched AgentBackend = "temper-tiers"
)

const (
	AgentBackendAuto        AgentBackend = "auto"
	AgentBackendSCX         AgentBackend = "scx"
	AgentBackendCgroup      AgentBackend = "cgroup"
	AgentBackendObserveOnly AgentBackend = "observe-only"
)

// AgentCgroupDriver is the kubelet's cgroup driver as configured for the agent.
type AgentCgroupDriver string

// The drivers; auto detects it from the tree.
const (
	AgentCgroupDriverAuto     AgentCgroupDriver = "auto"
	AgentCgroupDriverSystemd  AgentCgroupDriver = "systemd"
	AgentCgroupDriverCgroupfs AgentCgroupDriver = "cgroupfs"
)

// AgentCgroupConfig is the [cgroup] section.
type AgentCgroupConfig struct {
	// Root is the cgroup mount root as the agent sees it. Default
	// /sys/fs/cgroup.
	Root string `toml:"root" json:"root"`
	// Driver is the kubelet's cgroup driver. Default auto.
	Driver AgentCgroupDriver `toml:"driver" json:"driver"`
	// KubepodsPath overrides the kubelet's pod root relative to the cgroup
	// root, for kubelets run with --cgroup-root, e.g.
	// "kubelet.slice/kubelet-kubepods.slice". A basename ending in .slice
	// means the systemd driver. Default: empty, detect.
	KubepodsPath string `toml:"kubepods_path,omitempty" json:"kubepodsPath,omitempty"`
	// ReconcileInterval is how often the cgroup backend reads back every
	// value it set and re-asserts what something else (the kubelet, a
	// runtime, an operator) changed, counting it as drift. Default 10s; at
	// least 1s, at most 5m.
	ReconcileInterval Duration `toml:"reconcile_interval" json:"reconcileInterval"`
	// FenceCritical lets the cgroup backend fence critical pods on
	// exclusive whole cores (cpusets) when the node has cores to spare for
	// the system and the shared pool. Default true.
	FenceCritical bool `toml:"fence_critical" json:"fenceCritical"`
	// CPUManagerState is the kubelet's CPU manager state file, read to
	// detect the static policy (then cpusets are the kubelet's and the
	// cgroup backend does not fence). Default
	// /var/lib/kubelet/cpu_manager_state.
	CPUManagerState string `toml:"cpu_manager_state" json:"cpuManagerState"`
	// Levers are how the cgroup backend treats each tier.
	Levers AgentCgroupLevers `toml:"levers" json:"levers"`
}

// AgentCgroupLevers is the [cgroup.levers] section: what the cgroup
// backend writes for each tier (docs/agent.md, "Levers across the QoS
// boundary"). The defaults are the ones the isolation bench chose
// (docs/benchmarks.md, issue 16).
type AgentCgroupLevers struct {
	// CriticalWeightFactor and HighWeightFactor multiply the kubelet's
	// cpu.shares / cpu.weight of critical and high pods. Defaults 4 and 2;
	// 1 to 64.
	CriticalWeightFactor int64 `toml:"critical_weight_factor" json:"criticalWeightFactor"`
	HighWeightFactor     int64 `toml:"high_weight_factor" json:"highWeightFactor"`
	// LowWeightDivisor divides the kubelet's weight of low pods. Default
	// 4; 1 to 64.
	LowWeightDivisor int64 `toml:"low_weight_divisor" json:"lowWeightDivisor"`
	// BackgroundIdle sets cpu.idle=1 on background pods (cgroup v2 and
	// v1 kernels that have it); false gives them the minimal weight
	// instead. Default true.
	BackgroundIdle bool `toml:"background_idle" json:"backgroundIdle"`
	// CriticalSlice is the EEVDF scheduler slice given to every thread of
	// critical pods (sched_setattr, Linux ≥ 6.12): a short slice lets the
	// pod preempt the whole burstable QoS group on wake-up. Default 500us;
	// "0s" leaves the threads' slice alone; else 100us to 100ms.
	CriticalSlice Duration `toml:"critical_slice" json:"criticalSlice"`
	// HighSlice is the same for high pods. Default "0s" (alone).
	HighSlice Duration `toml:"high_slice" json:"highSlice"`
	// BackgroundSchedIdle moves every thread of background pods to the
	// SCHED_IDLE policy. Default false (it cost batch work and latency in
	// the isolation bench).
	BackgroundSchedIdle bool `toml:"background_sched_idle" json:"backgroundSchedIdle"`
	// BestEffortQoSIdle sets cpu.idle=1 on the kubelet's besteffort QoS
	// cgroup while every BestEffort pod on the node is background.
	// Default false (no consistent gain measured; the kubelet's weight
	// writes to that cgroup fail while it is idle).
	BestEffortQoSIdle bool `toml:"besteffort_qos_idle" json:"bestEffortQoSIdle"`
	// Suppress turns on dynamic CPU suppression: a CFS quota on low and
	// background pods sized every second from the node's capacity minus
	// what critical and high pods used minus SuppressHeadroomMilli, moved
	// by at most SuppressStepMilli per second, never below
	// SuppressFloorMilli per pod. Default false (measured once).
	Suppress bool `toml:"suppress" json:"suppress"`
	// SuppressHeadroomMilli, SuppressFloorMilli and SuppressStepMilli are
	// in millicores. Defaults 500, 100 and 250; each 1 to 1000000.
	SuppressHeadroomMilli int64 `toml:"suppress_headroom_milli" json:"suppressHeadroomMilli"`
	SuppressFloorMilli    int64 `toml:"suppress_floor_milli" json:"suppressFloorMilli"`
	SuppressStepMilli     int64 `toml:"suppress_step_milli" json:"suppressStepMilli"`
}

// AgentSCXConfig is the [scx] section.
type AgentSCXConfig struct {
	// Binary is the scx_layered executable. Default /usr/bin/scx_layered.
	Binary string `toml:"binary" json:"binary"`
	// ExtraArgs are passed to scx_layered before the generated config
	// (for example ["--slice-us", "20000"]). Arguments that would keep it
	// from running as a scheduler (--monitor, --print-and-exit, --help, …)
	// are refused. Default: none.
	ExtraArgs []string `toml:"extra_args" json:"extraArgs"`
	// ConfigPath is where the agent writes the generated layer config that
	// scx_layered reads (`f:<config_path>`). Default
	// /run/infera/layered.json.
	ConfigPath string `toml:"config_path" json:"configPath"`
}

// AgentServerConfig is the [server] section.
type AgentServerConfig struct {
	// Address serves /metrics, /observe, /audit, /healthz and /readyz.
	// Default ":9100". On any address but a loopback one, every path but
	// /healthz and /readyz needs a bearer token that TokenReview accepts
	// and SubjectAccessReview allows (docs/agent.md).
	Address string `toml:"address" json:"address"`
	// GRPCSocket is the unix socket of the agent's gRPC API. Default
	// /run/infera/agent.sock.
	GRPCSocket string `toml:"grpc_socket" json:"grpcSocket"`
	// GRPCAddress, when set (for example ":9101"), also serves the gRPC API
	// on TCP with TLS, to callers whose bearer token TokenReview accepts
	// and SubjectAccessReview allows on nodes/agent.infera.io (in the chart:
	// only infera-gateway). Default "": off.
	GRPCAddress string `toml:"grpc_address" json:"grpcAddress"`
	// GRPCTLSCertFile and GRPCTLSKeyFile are the PEM serving certificate
	// and key of GRPCAddress; required with it. They are re-read when they
	// change.
	GRPCTLSCertFile string `toml:"grpc_tls_cert_file" json:"grpcTLSCertFile"`
	GRPCTLSKeyFile  string `toml:"grpc_tls_key_file" json:"grpcTLSKeyFile"`
	// Pprof serves Go's profiles (CPU, heap, goroutines, …) under
	// /debug/pprof/ on Address, to measure the agent's own cost. Like every
	// other path there, on a non-loopback address it needs a bearer token
	// allowed get on nodes/pprof.infera.io of this node (no chart role
	// grants it). Default false: off.
	Pprof bool `toml:"pprof" json:"pprof"`
}

// AgentObservationConfig is the [observation] section.
type AgentObservationConfig struct {
	// Enabled turns the observation layer on. Off, the agent still
	// enforces and serves /metrics with what enforcement knows. Default
	// true.
	Enabled bool `toml:"enabled" json:"enabled"`
	// SampleInterval is how often the agent samples where the pods'
	// threads run and lints their placement. Default 10s; at least 1s, at
	// most 5m.
	SampleInterval Duration `toml:"sample_interval" json:"sampleInterval"`
	// EBPF loads the run-queue latency programs (needs root or CAP_BPF +
	// CAP_PERFMON, and BTF). Without them the metrics are absent with a
	// reason. Default true.
	EBPF bool `toml:"ebpf" json:"ebpf"`
	// TraceDir keeps captured traces (one capture at a time, the newest
	// few kept). Default /var/lib/infera/traces.
	TraceDir string `toml:"trace_dir" json:"traceDir"`
	// TraceMaxBytes caps one trace file. Default 64 MiB; at least 64 KiB,
	// at most 1 GiB.
	TraceMaxBytes int64 `toml:"trace_max_bytes" json:"traceMaxBytes"`
}

// Duration is a time.Duration written as a Go duration string ("2s",
// "1m30s"). A bare number is refused: TOML would otherwise read 60 as 60
// nanoseconds.
type Duration struct {
	time.Duration
}

// UnmarshalText parses a duration string with a unit.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit, like \"2s\" or \"500ms\"", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText renders the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Defaults of AgentConfiguration.
const (
	DefaultAgentBackend    = AgentBackendAuto
	DefaultCgroupRoot      = "/sys/fs/cgroup"
	DefaultCgroupDriver    = AgentCgroupDriverAuto
	DefaultCgroupReconcile = 10 * time.Second
	DefaultCPUManagerState = "/var/lib/kubelet/cpu_manager_state"
	DefaultSCXBinary       = "/usr/bin/scx_layered"
	DefaultSCXConfigPath   = "/run/infera/layered.json"
	DefaultCoalesceWindow  = 2 * time.Second
	DefaultHeartbeat       = wellknown.TierLoadHeartbeat
	DefaultAgentAddress    = ":9100"
	DefaultAgentGRPCSocket = "/run/infera/agent.sock"
	DefaultAgentStateDir   = "/var/lib/infera"
	DefaultSampleInterval  = 10 * time.Second
	DefaultTraceDir        = "/var/lib/infera/traces"
	DefaultTraceMaxBytes   = 64 << 20
	DefaultAgentSysRoot    = "/sys"
)

// Bounds of the durations.
const (
	MinCoalesceWindow  = 100 * time.Millisecond
	MaxCoalesceWindow  = 30 * time.Second
	MinHeartbeat       = 10 * time.Second
	MinCgroupReconcile = time.Second
	// The [cgroup.levers] defaults and bounds.
	DefaultCriticalWeightFactor  = 4
	DefaultHighWeightFactor      = 2
	DefaultLowWeightDivisor      = 4
	MaxWeightFactor              = 64
	DefaultCriticalSlice         = 500 * time.Microsecond
	MinSlice                     = 100 * time.Microsecond
	MaxSlice                     = 100 * time.Millisecond
	DefaultSuppressHeadroomMilli = 500
	DefaultSuppressFloorMilli    = 100
	DefaultSuppressStepMilli     = 250
	MaxSuppressMilli             = 1000000
	MinSampleInterval            = time.Second
	MaxSampleInterval            = 5 * time.Minute
	MinTraceMaxBytes             = 64 << 10
	MaxTraceMaxBytes             = 1 << 30
	MaxCgroupReconcile           = 5 * time.Minute
	MaxHeartbeat                 = wellknown.TierLoadHeartbeat
)

// DefaultAgentConfiguration returns the configuration the agent runs with
// when a file sets nothing but api_version and kind.
func DefaultAgentConfiguration() *AgentConfiguration {
	return &AgentConfiguration{
		APIVersion: AgentAPIVersion,
		Kind:       AgentKind,
		PriorityMapping: AgentPriorityMapping{
			Critical: wellknown.DefaultCriticalMinPriority,
			High:     wellknown.DefaultHighMinPriority,
			Normal:   wellknown.DefaultNormalMinPriority,
			Low:      wellknown.DefaultLowMinPriority,
		},
		Backend: DefaultAgentBackend,
		Cgroup: AgentCgroupConfig{
			Root:              DefaultCgroupRoot,
			Driver:            DefaultCgroupDriver,
			ReconcileInterval: Duration{DefaultCgroupReconcile},
			FenceCritical:     true,
			CPUManagerState:   DefaultCPUManagerState,
			Levers: AgentCgroupLevers{
				CriticalWeightFactor:  DefaultCriticalWeightFactor,
				HighWeightFactor:      DefaultHighWeightFactor,
				LowWeightDivisor:      DefaultLowWeightDivisor,
				BackgroundIdle:        true,
				CriticalSlice:         Duration{DefaultCriticalSlice},
				SuppressHeadroomMilli: DefaultSuppressHeadroomMilli,
				SuppressFloorMilli:    DefaultSuppressFloorMilli,
				SuppressStepMilli:     DefaultSuppressStepMilli,
			},
		},
		SCX: AgentSCXConfig{
			Binary:     DefaultSCXBinary,
			ExtraArgs:  []string{},
			ConfigPath: DefaultSCXConfigPath,
		},
		CoalesceWindow: Duration{DefaultCoalesceWindow},
		Heartbeat:      Duration{DefaultHeartbeat},
		Server: AgentServerConfig{
			Address:    DefaultAgentAddress,
			GRPCSocket: DefaultAgentGRPCSocket,
		},
		Observation: AgentObservationConfig{
			Enabled:        true,
			SampleInterval: Duration{DefaultSampleInterval},
			EBPF:           true,
			TraceDir:       DefaultTraceDir,
			TraceMaxBytes:  DefaultTraceMaxBytes,
		},
		StateDir:            DefaultAgentStateDir,
		SysRoot:             DefaultAgentSysRoot,
		ReleaseStartupPages: true,
	}
}
