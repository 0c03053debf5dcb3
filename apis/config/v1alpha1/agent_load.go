package v1alpha1

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// maxAgentConfigBytes bounds the file LoadAgentConfiguration reads; a real
// one is a few hundred bytes.
const maxAgentConfigBytes = 1 << 20

// LoadAgentConfiguration reads the TOML file at path over the defaults and
// validates the result. A missing file, a TOML syntax error, an unknown key,
// a value of the wrong type, a bad duration or enum, or thresholds out of
// order are errors that name the key (as "section.key") so the agent can
// refuse to start with a message an operator can act on.
func LoadAgentConfiguration(path string) (*AgentConfiguration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read agent config: %w", err)
	}
	c, err := ParseAgentConfiguration(b)
	if err != nil {
		return nil, fmt.Errorf("failed to load agent config %s: %w", path, err)
	}
	return c, nil
}

// ParseAgentConfiguration decodes TOML over the defaults and validates the
// result, like LoadAgentConfiguration without the file.
func ParseAgentConfiguration(data []byte) (*AgentConfiguration, error) {
	if len(data) > maxAgentConfigBytes {
		return nil, fmt.Errorf("%d bytes is more than the %d allowed", len(data), maxAgentConfigBytes)
	}
	c := DefaultAgentConfiguration()
	// api_version and kind have no default: the file must say what it is.
	c.APIVersion, c.Kind = "", ""
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, agentDecodeError(err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("%s: unknown key", strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeError puts the key first in a TOML decoding error.
func agentDecodeError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		if pe.LastKey != "" {
			return fmt.Errorf("%s: %s (line %d)", pe.LastKey, pe.Message, pe.Position.Line)
		}
		return fmt.Errorf("invalid TOML: %s (line %d)", pe.Message, pe.Position.Line)
	}
	// Type mismatches come as "toml: line N (last key "k"): msg".
	if m := agentTOMLKeyRE.FindStringSubmatch(err.Error()); m != nil {
		if m[1] != "" {
			return fmt.Errorf("%s: %s (line %s)", m[2], m[3], m[1])
		}
		return fmt.Errorf("%s: %s", m[2], m[3])
	}
	return fmt.Errorf("invalid TOML: %w", err)
}

var agentTOMLKeyRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// refusedAgentSCXArgs would keep scx_layered from running as the node's
// scheduler under the agent's supervision (FORMAT.md §1, §11.1).
var refusedAgentSCXArgs = []string{
	"--monitor", "--print-and-exit", "--run-example", "-e", "--example",
	"-h", "--help", "--help-stats", "-V", "--version",
}

// maxAgentSocketPath is the room in sockaddr_un.sun_path, less the NUL.
const maxAgentSocketPath = 107

// Validate checks a configuration. The error names the first offending key
// as it is spelled in the file.
func (c *AgentConfiguration) Validate() error {
	if c.APIVersion != AgentAPIVersion {
		return fmt.Errorf("api_version: %q is not supported; want %q", c.APIVersion, AgentAPIVersion)
	}
	if c.Kind != AgentKind {
		return fmt.Errorf("kind: %q is not supported; want %q", c.Kind, AgentKind)
	}
	// tiering.Thresholds.Validate names the priority_mapping.* key.
	if err := c.PriorityMapping.Thresholds().Validate(); err != nil {
		return err
	}
	switch c.Backend {
	case AgentBackendAuto, AgentBackendSCX, AgentBackendTierSched, AgentBackendCgroup, AgentBackendObserveOnly:
	default:
		return fmt.Errorf("backend: unknown backend %q: must be auto, scx, temper-tiers, cgroup or observe-only", c.Backend)
	}
	if err := agentAbsPath("cgroup.root", c.Cgroup.Root); err != nil {
		return err
	}
	switch c.Cgroup.Driver {
	case AgentCgroupDriverAuto, AgentCgroupDriverSystemd, AgentCgroupDriverCgroupfs:
	default:
		return fmt.Errorf("cgroup.driver: unknown driver %q: must be auto, systemd or cgroupfs", c.Cgroup.Driver)
	}
	if p := c.Cgroup.KubepodsPath; p != "" {
		if !filepath.IsLocal(p) || path.Clean(p) != p {
			return fmt.Errorf("cgroup.kubepods_path: %q must be a clean relative path inside the cgroup root, like \"kubepods.slice\"", p)
		}
		systemd := strings.HasSuffix(path.Base(p), ".slice")
		if (systemd && c.Cgroup.Driver == AgentCgroupDriverCgroupfs) || (!systemd && c.Cgroup.Driver == AgentCgroupDriverSystemd) {
			return fmt.Errorf("cgroup.kubepods_path: %q does not fit driver %s: a basename ending in .slice means systemd, anything else cgroupfs", p, c.Cgroup.Driver)
		}
	}
	if d := c.Cgroup.ReconcileInterval.Duration; d < MinCgroupReconcile || d > MaxCgroupReconcile {
		return fmt.Errorf("cgroup.reconcile_interval: %s is out of range [%s, %s]", d, MinCgroupReconcile, MaxCgroupReconcile)
	}
	if err := agentAbsPath("cgroup.cpu_manager_state", c.Cgroup.CPUManagerState); err != nil {
		return err
	}
	if err := c.Cgroup.Levers.validate(); err != nil {
		return err
	}
	if err := agentAbsPath("scx.binary", c.SCX.Binary); err != nil {
		return err
	}
	for i, a := range c.SCX.ExtraArgs {
		key := fmt.Sprintf("scx.extra_args[%d]", i)
		switch {
		case a == "" || strings.ContainsRune(a, 0):
			return fmt.Errorf("%s: %q must be non-empty and contain no NUL", key, a)
		case slices.Contains(refusedAgentSCXArgs, strings.SplitN(a, "=", 2)[0]):
			return fmt.Errorf("%s: %q keeps scx_layered from running as the node's scheduler", key, a)
		case strings.HasPrefix(a, "f:") || strings.HasPrefix(a, "file:") || strings.HasPrefix(a, "["):
			return fmt.Errorf("%s: %q is a layer spec; the agent passes the generated config itself", key, a)
		}
	}
	if err := agentAbsPath("scx.config_path", c.SCX.ConfigPath); err != nil {
		return err
	}
	if d := c.CoalesceWindow.Duration; d < MinCoalesceWindow || d > MaxCoalesceWindow {
		return fmt.Errorf("coalesce_window: %s is out of range [%s, %s]", d, MinCoalesceWindow, MaxCoalesceWindow)
	}
	if d := c.Heartbeat.Duration; d < MinHeartbeat || d > MaxHeartbeat {
		return fmt.Errorf("heartbeat: %s is out of range [%s, %s]", d, MinHeartbeat, MaxHeartbeat)
	}
	if err := agentListenAddress("server.address", c.Server.Address); err != nil {
		return err
	}
	if err := agentAbsPath("server.grpc_socket", c.Server.GRPCSocket); err != nil {
		return err
	}
	if n := len(c.Server.GRPCSocket); n > maxAgentSocketPath {
		return fmt.Errorf("server.grpc_socket: %d bytes is longer than a unix socket path may be (%d)", n, maxAgentSocketPath)
	}
	if err := validateAgentGRPCTCP(c.Server); err != nil {
		return err
	}
	if d := c.Observation.SampleInterval.Duration; d < MinSampleInterval || d > MaxSampleInterval {
		return fmt.Errorf("observation.sample_interval: %s is out of range [%s, %s]", d, MinSampleInterval, MaxSampleInterval)
	}
	if err := agentAbsPath("observation.trace_dir", c.Observation.TraceDir); err != nil {
		return err
	}
	if n := c.Observation.TraceMaxBytes; n < MinTraceMaxBytes || n > MaxTraceMaxBytes {
		return fmt.Errorf("observation.trace_max_bytes: %d is out of range [%d, %d]", n, MinTraceMaxBytes, MaxTraceMaxBytes)
	}
	if err := agentAbsPath("state_dir", c.StateDir); err != nil {
		return err
	}
	return agentAbsPath("sys_root", c.SysRoot)
}

func agentAbsPath(key, p string) error {
	if p == "" || !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%s: %q must be an absolute path", key, p)
	}
	return nil
}

func agentListenAddress(key, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q must be host:port or :port: %w", key, addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%s: port %q must be a number from 1 to 65535", key, port)
	}
	return nil
}

// validateAgentGRPCTCP checks the optional TLS listener of the gRPC API:
// off, or an address with both certificate files.
func validateAgentGRPCTCP(s AgentServerConfig) error {
	if s.GRPCAddress == "" {
		if s.GRPCTLSCertFile != "" || s.GRPCTLSKeyFile != "" {
			return errors.New("server.grpc_tls_cert_file, server.grpc_tls_key_file: set only with server.grpc_address")
		}
		return nil
	}
	if err := agentListenAddress("server.grpc_address", s.GRPCAddress); err != nil {
		return err
	}
	if err := agentAbsPath("server.grpc_tls_cert_file", s.GRPCTLSCertFile); err != nil {
		return fmt.Errorf("%w (required with server.grpc_address: the gRPC API is served on TCP only with TLS)", err)
	}
	if err := agentAbsPath("server.grpc_tls_key_file", s.GRPCTLSKeyFile); err != nil {
		return fmt.Errorf("%w (required with server.grpc_address)", err)
	}
	if s.GRPCAddress == s.Address {
		return fmt.Errorf("server.grpc_address: %q is also server.address", s.GRPCAddress)
	}
	return nil
}

// validate checks [cgroup.levers], naming the key at fault.
func (l AgentCgroupLevers) validate() error {
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"cgroup.levers.critical_weight_factor", l.CriticalWeightFactor},
		{"cgroup.levers.high_weight_factor", l.HighWeightFactor},
		{"cgroup.levers.low_weight_divisor", l.LowWeightDivisor},
	} {
		if f.v < 1 || f.v > MaxWeightFactor {
			return fmt.Errorf("%s: %d is out of range [1, %d]", f.key, f.v, MaxWeightFactor)
		}
	}
	for _, f := range []struct {
		key string
		d   time.Duration
	}{
		{"cgroup.levers.critical_slice", l.CriticalSlice.Duration},
		{"cgroup.levers.high_slice", l.HighSlice.Duration},
	} {
		if f.d != 0 && (f.d < MinSlice || f.d > MaxSlice) {
			return fmt.Errorf("%s: %s is out of range: \"0s\" (leave the threads' slice alone) or [%s, %s]", f.key, f.d, MinSlice, MaxSlice)
		}
	}
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"cgroup.levers.suppress_headroom_milli", l.SuppressHeadroomMilli},
		{"cgroup.levers.suppress_floor_milli", l.SuppressFloorMilli},
		{"cgroup.levers.suppress_step_milli", l.SuppressStepMilli},
	} {
		if f.v < 1 || f.v > MaxSuppressMilli {
			return fmt.Errorf("%s: %d is out of range [1, %d]", f.key, f.v, MaxSuppressMilli)
		}
	}
	return nil
}
