package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// fakeAgent implements Agent for the transport tests; its events come from
// a real Broadcaster.
type fakeAgent struct {
	*Broadcaster

	mu     sync.Mutex
	config LayeredConfig
	status Status
	pods   []Pod
	err    error // returned by LayeredConfig, Status and Pods when set

	traceErr     error
	traceStarted chan TraceRequest // receives each request when set
	traceRelease chan struct{}     // CaptureTrace waits on it when set
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{Broadcaster: NewBroadcaster(BroadcasterOptions{})}
}

func (a *fakeAgent) LayeredConfig(context.Context) (LayeredConfig, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.config, a.err
}

func (a *fakeAgent) Status(context.Context) (Status, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status, a.err
}

func (a *fakeAgent) Pods(context.Context) ([]Pod, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.pods), a.err
}

func (a *fakeAgent) CaptureTrace(ctx context.Context, req TraceRequest) (TraceResult, error) {
	if a.traceStarted != nil {
		a.traceStarted <- req
	}
	if a.traceRelease != nil {
		select {
		case <-a.traceRelease:
		case <-ctx.Done():
			return TraceResult{}, ctx.Err()
		}
	}
	if a.traceErr != nil {
		return TraceResult{}, a.traceErr
	}
	who := "node"
	if req.Pod != nil {
		who = req.Pod.Namespace + "-" + req.Pod.Name
	}
	return TraceResult{
		ID: "cap-1", Path: "/var/lib/infera/traces/cap-1-" + who + ".trace", SizeBytes: 4096, Events: 17,
		Start: time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC), Took: req.Duration,
	}, nil
}

// startServer serves agent on a socket in a fresh directory below a temp
// dir (so the server creates it) and returns a client connected to it.
func startServer(t *testing.T, agent Agent, o Options) (*GRPCServer, inferav1.AgentServiceClient) {
	t.Helper()
	if o.SocketPath == "" {
		o.SocketPath = filepath.Join(t.TempDir(), "run", "infera", "agent.sock")
	}
	o.Agent = agent
	o.Logger = testr.New(t)
	s, err := NewGRPC(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s, dial(t, o.SocketPath)
}

func dial(t *testing.T, path string) inferav1.AgentServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return inferav1.NewAgentServiceClient(conn)
}

// wantStatus fails unless err is a gRPC status with code and a message
// containing every one of parts.
func wantStatus(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Fatalf("error message %q does not contain %q", st.Message(), p)
		}
	}
}

func TestSocketLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "infera")
	path := filepath.Join(dir, "agent.sock")

	// A stale socket (its process died without unlinking it) is replaced.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	_ = stale.Close()
	if err := os.Remove(dir); err == nil {
		t.Fatal("stale socket was not left behind; the test does not test anything")
	}

	s, err := NewGRPC(Options{SocketPath: path, Agent: newFakeAgent(), Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start over a stale socket: %v", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %s, want a socket with 0660", fi.Mode())
	}
	if _, err := dial(t, path).GetStatus(t.Context(), &inferav1.GetStatusRequest{}); err != nil {
		t.Fatalf("GetStatus over the socket: %v", err)
	}

	// A second server must not steal a live socket.
	s2, err := NewGRPC(Options{SocketPath: path, Agent: newFakeAgent(), Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Start on a live socket = %v, want an 'in use' error", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the live socket is gone after a refused Start: %v", err)
	}

	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket still there after Stop: %v", err)
	}
	matches, _ := filepath.Glob(path + "*")
	if len(matches) != 0 {
		t.Fatalf("leftovers after Stop: %v", matches)
	}

	// Nothing but a socket is ever removed.
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	s3, err := NewGRPC(Options{SocketPath: path, Agent: newFakeAgent(), Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Start(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Start over a regular file = %v, want a 'not a socket' error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("the regular file at the socket path was changed")
	}
}

func TestSocketDirectoryCreatedPrivate(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "run", "infera", "agent.sock")
	startServer(t, newFakeAgent(), Options{SocketPath: path})
	for _, d := range []string{filepath.Join(root, "run"), filepath.Join(root, "run", "infera")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o750 {
			t.Errorf("%s has mode %s, want 0750", d, fi.Mode().Perm())
		}
	}
}

func TestGetLayeredConfigAndStatus(t *testing.T) {
	agent := newFakeAgent()
	applied := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	cfg := []byte(`{"layers":[{"name":"critical","kind":{"Confined":{"cpus_range":[2,2]}}}]}`)
	agent.config = LayeredConfig{JSON: cfg, Generation: 42, Backend: "scx_layered", AppliedAt: applied}
	agent.status = Status{
		AgentStatus: "degraded: scx_layered exited 1", Backend: "cgroup", SafeMode: false, Generation: 42,
		EnforcementVerified: false, EnforcementReason: "cpu.shares of 2 pods not read back yet",
		Tiers:    []TierUsage{{Tier: "critical", Pods: 2, RequestMilli: 4000, LimitMilli: 4000}, {Tier: "low", Pods: 0}},
		NodeName: "node-a", Version: "v0.1.0",
	}
	_, c := startServer(t, agent, Options{})

	got, err := c.GetLayeredConfig(t.Context(), &inferav1.GetLayeredConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cfg)
	if got.GetConfigJson() != string(cfg) || got.GetConfigHash() != hex.EncodeToString(sum[:]) ||
		got.GetGeneration() != 42 || got.GetBackend() != "scx_layered" || !got.GetAppliedTime().AsTime().Equal(applied) {
		t.Fatalf("GetLayeredConfig = %v", got)
	}

	st, err := c.GetStatus(t.Context(), &inferav1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &inferav1.GetStatusResponse{
		AgentStatus: "degraded: scx_layered exited 1", Backend: "cgroup", Generation: 42,
		EnforcementReason: "cpu.shares of 2 pods not read back yet",
		Tiers: []*inferav1.TierUsage{
			{Tier: "critical", Pods: 2, RequestMilli: 4000, LimitMilli: 4000},
			{Tier: "low"},
		},
		NodeName: "node-a", Version: "v0.1.0",
	}
	if diff := cmp.Diff(want, st, protocmp.Transform()); diff != "" {
		t.Fatalf("GetStatus (-want +got):\n%s", diff)
	}

	// No scx_layered config in force: empty config, empty hash.
	agent.mu.Lock()
	agent.config = LayeredConfig{Generation: 43, Backend: "cgroup"}
	agent.mu.Unlock()
	got, err = c.GetLayeredConfig(t.Context(), &inferav1.GetLayeredConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetConfigJson() != "" || got.GetConfigHash() != "" || got.GetBackend() != "cgroup" || got.GetAppliedTime() != nil {
		t.Fatalf("GetLayeredConfig without a config = %v", got)
	}

	// An agent failure is INTERNAL and says what failed.
	agent.mu.Lock()
	agent.err = errors.New("state not loaded")
	agent.mu.Unlock()
	_, err = c.GetStatus(t.Context(), &inferav1.GetStatusRequest{})
	wantStatus(t, err, codes.Internal, "failed to get the agent status", "state not loaded")
}

func makePods(n int) []Pod {
	tiers := []string{"critical", "high", "normal", "low", "background"}
	pods := make([]Pod, 0, n)
	// Descending, so the server has to sort.
	for i := n - 1; i >= 0; i-- {
		pods = append(pods, Pod{
			Namespace: fmt.Sprintf("ns-%d", i%7), Name: fmt.Sprintf("pod-%04d", i), UID: fmt.Sprintf("uid-%d", i),
			Tier: tiers[i%len(tiers)], TierSource: "priority", QoSClass: "Burstable",
			CgroupPath: fmt.Sprintf("kubepods/burstable/poduid-%d", i), Enforcement: Enforced,
		})
	}
	return pods
}

// listAll pages through ListPods with page size size.
func listAll(t *testing.T, c inferav1.AgentServiceClient, req *inferav1.ListPodsRequest) ([]*inferav1.Pod, int) {
	t.Helper()
	var all []*inferav1.Pod
	pages := 0
	for {
		resp, err := c.ListPods(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if int(resp.GetTotalSize()) < len(all)+len(resp.GetPods()) {
			t.Fatalf("total_size %d below the %d pods seen", resp.GetTotalSize(), len(all)+len(resp.GetPods()))
		}
		all = append(all, resp.GetPods()...)
		if resp.GetNextPageToken() == "" {
			return all, pages
		}
		if pages > 10000 {
			t.Fatal("pagination does not end")
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestListPodsPagination(t *testing.T) {
	agent := newFakeAgent()
	agent.pods = makePods(1234)
	_, c := startServer(t, agent, Options{})

	// Default and capped page sizes.
	for _, tc := range []struct {
		ask  int32
		want int
	}{{0, DefaultPageSize}, {7, 7}, {100000, MaxPageSize}} {
		resp, err := c.ListPods(t.Context(), &inferav1.ListPodsRequest{PageSize: tc.ask})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPods()) != tc.want || resp.GetTotalSize() != 1234 || resp.GetNextPageToken() == "" {
			t.Fatalf("page_size %d: %d pods, total %d, token %q; want %d pods, total 1234 and a token",
				tc.ask, len(resp.GetPods()), resp.GetTotalSize(), resp.GetNextPageToken(), tc.want)
		}
	}

	// Paging through everything yields every pod once, in order.
	all, pages := listAll(t, c, &inferav1.ListPodsRequest{PageSize: 97})
	if len(all) != 1234 || pages != 13 {
		t.Fatalf("paged through %d pods in %d pages, want 1234 in 13", len(all), pages)
	}
	keys := make([]string, len(all))
	for i, p := range all {
		keys[i] = p.GetNamespace() + "/" + p.GetName()
	}
	if !slices.IsSorted(keys) {
		t.Fatal("pods are not ordered by namespace/name")
	}
	if len(slices.Compact(slices.Clone(keys))) != len(keys) {
		t.Fatal("a pod appears twice across pages")
	}
	first := all[0]
	want := &inferav1.Pod{Namespace: "ns-0", Name: "pod-0000", Uid: "uid-0", Tier: "critical", TierSource: "priority",
		QosClass: "Burstable", CgroupPath: "kubepods/burstable/poduid-0", Enforcement: inferav1.EnforcementState_ENFORCEMENT_STATE_ENFORCED}
	if diff := cmp.Diff(want, first, protocmp.Transform()); diff != "" {
		t.Fatalf("first pod (-want +got):\n%s", diff)
	}

	// Filters, paged.
	low, _ := listAll(t, c, &inferav1.ListPodsRequest{Tier: "low", Namespace: "ns-3", PageSize: 5})
	n := 0
	for i := range 1234 {
		if i%5 == 3 && i%7 == 3 {
			n++
		}
	}
	if len(low) != n {
		t.Fatalf("tier low in ns-3: %d pods, want %d", len(low), n)
	}
	for _, p := range low {
		if p.GetTier() != "low" || p.GetNamespace() != "ns-3" {
			t.Fatalf("filter leaked %v", p)
		}
	}

	// A pod removed between pages is not an error, and nothing repeats.
	resp, err := c.ListPods(t.Context(), &inferav1.ListPodsRequest{PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	agent.mu.Lock()
	agent.pods = slices.DeleteFunc(agent.pods, func(p Pod) bool { return p.Name == resp.GetPods()[9].GetName() })
	agent.mu.Unlock()
	resp2, err := c.ListPods(t.Context(), &inferav1.ListPodsRequest{PageSize: 10, PageToken: resp.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if resp2.GetPods()[0].GetName() == resp.GetPods()[9].GetName() || keysOf(resp2.GetPods())[0] <= keysOf(resp.GetPods())[9] {
		t.Fatalf("second page starts at %s, after the first page ended at %s", keysOf(resp2.GetPods())[0], keysOf(resp.GetPods())[9])
	}
}

func keysOf(pods []*inferav1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.GetNamespace() + "/" + p.GetName()
	}
	return out
}

func TestListPodsInvalidArguments(t *testing.T) {
	agent := newFakeAgent()
	agent.pods = makePods(30)
	_, c := startServer(t, agent, Options{})
	first, err := c.ListPods(t.Context(), &inferav1.ListPodsRequest{PageSize: 5, Tier: "low"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		req  *inferav1.ListPodsRequest
		want []string
	}{
		"unknown tier":      {&inferav1.ListPodsRequest{Tier: "gold"}, []string{"tier:", `"gold"`}},
		"negative size":     {&inferav1.ListPodsRequest{PageSize: -1}, []string{"page_size:", "-1"}},
		"garbage token":     {&inferav1.ListPodsRequest{PageToken: "!!!"}, []string{"page_token:", "malformed"}},
		"foreign token":     {&inferav1.ListPodsRequest{PageToken: "eyJ2IjoyfQ"}, []string{"page_token:", "not a token issued by this server"}},
		"token, new filter": {&inferav1.ListPodsRequest{Tier: "high", PageToken: first.GetNextPageToken()}, []string{"page_token:", `issued for tier "low"`}},
		"huge token":        {&inferav1.ListPodsRequest{PageToken: strings.Repeat("A", 5000)}, []string{"page_token:", "5000 bytes"}},
		"long namespace":    {&inferav1.ListPodsRequest{Namespace: strings.Repeat("n", 300)}, []string{"namespace:", "300 bytes"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.ListPods(t.Context(), tc.req)
			wantStatus(t, err, codes.InvalidArgument, tc.want...)
		})
	}
}

func TestHostileValuesEchoSafely(t *testing.T) {
	agent := newFakeAgent()
	huge := strings.Repeat("x", 1<<20)
	agent.pods = []Pod{
		{Namespace: "default", Name: huge, UID: huge, Tier: "low", CgroupPath: huge, Reason: huge, TierSource: huge, QoSClass: huge},
		{Namespace: "default", Name: "bad-\xff\xfe-utf8\n\"quoted\"", UID: "u2", Tier: "low"},
		{Namespace: strings.Repeat("é", 200), Name: "multibyte", UID: "u3", Tier: "low"}, // 400 bytes, cut mid-rune would be invalid
	}
	agent.status = Status{AgentStatus: "refused: " + huge, EnforcementReason: "\xc3(" + huge}
	_, c := startServer(t, agent, Options{})

	resp, err := c.ListPods(t.Context(), &inferav1.ListPodsRequest{})
	if err != nil {
		t.Fatalf("ListPods with hostile values: %v", err)
	}
	if len(resp.GetPods()) != 3 {
		t.Fatalf("got %d pods, want 3", len(resp.GetPods()))
	}
	for _, p := range resp.GetPods() {
		for field, v := range map[string]string{"namespace": p.GetNamespace(), "name": p.GetName(), "uid": p.GetUid(),
			"cgroup_path": p.GetCgroupPath(), "reason": p.GetEnforcementReason(), "tier_source": p.GetTierSource()} {
			if !utf8.ValidString(v) {
				t.Errorf("%s %q is not valid UTF-8", field, v)
			}
		}
		if len(p.GetNamespace()) > 253 || len(p.GetName()) > 253 || len(p.GetUid()) > 128 ||
			len(p.GetCgroupPath()) > 4096 || len(p.GetEnforcementReason()) > 1024 || len(p.GetTierSource()) > 64 {
			t.Errorf("unbounded field in %.80v", p)
		}
	}
	for _, p := range resp.GetPods() {
		if p.GetUid() == "u2" && p.GetName() != "bad-\uFFFD-utf8\n\"quoted\"" {
			t.Errorf("invalid UTF-8 name echoed as %q", p.GetName())
		}
	}

	st, err := c.GetStatus(t.Context(), &inferav1.GetStatusRequest{})
	if err != nil {
		t.Fatalf("GetStatus with hostile values: %v", err)
	}
	if len(st.GetAgentStatus()) > 1024 || len(st.GetEnforcementReason()) > 1024 || !utf8.ValidString(st.GetEnforcementReason()) {
		t.Fatalf("status strings not bounded: %d and %d bytes", len(st.GetAgentStatus()), len(st.GetEnforcementReason()))
	}

	// A hostile pod reference is quoted in the error, never echoed raw.
	_, err = c.CaptureTrace(t.Context(), &inferav1.CaptureTraceRequest{
		Pod: &inferav1.PodRef{Namespace: "default", Name: "evil\n\x1b[31mname"}, DurationSeconds: 1})
	wantStatus(t, err, codes.NotFound, `pod "default/evil\n\x1b[31mname" is not on this node`)

	// The same for the event stream.
	stream, err := c.WatchEvents(t.Context(), &inferav1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	agent.Publish(Event{Type: EventLintViolation, Message: huge, Pod: &PodRef{Namespace: "a\xff", Name: huge}, Detail: huge, Invariant: huge})
	ev, err := stream.Recv()
	if err != nil {
		t.Fatalf("event with hostile values: %v", err)
	}
	lv := ev.GetLintViolation()
	if len(ev.GetMessage()) > 1024 || len(lv.GetPod().GetName()) > 253 || len(lv.GetDetail()) > 1024 ||
		len(lv.GetInvariant()) > 64 || lv.GetPod().GetNamespace() != "a\uFFFD" {
		t.Fatalf("event not bounded: message %d, name %d, detail %d bytes, namespace %q",
			len(ev.GetMessage()), len(lv.GetPod().GetName()), len(lv.GetDetail()), lv.GetPod().GetNamespace())
	}
}

func TestCaptureTrace(t *testing.T) {
	agent := newFakeAgent()
	agent.pods = []Pod{{Namespace: "default", Name: "web-0", UID: "u-web", Tier: "high"}}
	_, c := startServer(t, agent, Options{MaxTraceDuration: 30 * time.Second})

	resp, err := c.CaptureTrace(t.Context(), &inferav1.CaptureTraceRequest{
		Pod: &inferav1.PodRef{Namespace: "default", Name: "web-0", Uid: "u-web"}, DurationSeconds: 3})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCaptureId() != "cap-1" || resp.GetPath() != "/var/lib/infera/traces/cap-1-default-web-0.trace" ||
		resp.GetSizeBytes() != 4096 || resp.GetEvents() != 17 || resp.GetDurationSeconds() != 3 || resp.GetTruncated() {
		t.Fatalf("CaptureTrace of a pod = %v", resp)
	}
	resp, err = c.CaptureTrace(t.Context(), &inferav1.CaptureTraceRequest{DurationSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPath() != "/var/lib/infera/traces/cap-1-node.trace" || resp.GetDurationSeconds() != 30 {
		t.Fatalf("CaptureTrace of the node = %v", resp)
	}

	for name, tc := range map[string]struct {
		req  *inferav1.CaptureTraceRequest
		code codes.Code
		want []string
	}{
		"zero duration":     {&inferav1.CaptureTraceRequest{}, codes.InvalidArgument, []string{"duration_seconds:", "between 1 and 30", "got 0"}},
		"negative duration": {&inferav1.CaptureTraceRequest{DurationSeconds: -4}, codes.InvalidArgument, []string{"duration_seconds:", "got -4"}},
		"too long":          {&inferav1.CaptureTraceRequest{DurationSeconds: 31}, codes.InvalidArgument, []string{"duration_seconds:", "got 31"}},
		"no pod name": {&inferav1.CaptureTraceRequest{Pod: &inferav1.PodRef{Namespace: "default"}, DurationSeconds: 1},
			codes.InvalidArgument, []string{"pod.name: required"}},
		"no namespace": {&inferav1.CaptureTraceRequest{Pod: &inferav1.PodRef{Name: "web-0"}, DurationSeconds: 1},
			codes.InvalidArgument, []string{"pod.namespace: required"}},
		"long pod name": {&inferav1.CaptureTraceRequest{Pod: &inferav1.PodRef{Namespace: "default", Name: strings.Repeat("p", 300)}, DurationSeconds: 1},
			codes.InvalidArgument, []string{"pod.name:", "300 bytes"}},
		"pod elsewhere": {&inferav1.CaptureTraceRequest{Pod: &inferav1.PodRef{Namespace: "default", Name: "ghost"}, DurationSeconds: 1},
			codes.NotFound, []string{`pod "default/ghost" is not on this node`}},
		"recreated pod": {&inferav1.CaptureTraceRequest{Pod: &inferav1.PodRef{Namespace: "default", Name: "web-0", Uid: "u-old"}, DurationSeconds: 1},
			codes.NotFound, []string{`pod "default/web-0" with uid "u-old" is not on this node`, `"u-web"`}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.CaptureTrace(t.Context(), tc.req)
			wantStatus(t, err, tc.code, tc.want...)
		})
	}

	// Agent errors map to codes.
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("no BTF at /sys/kernel/btf/vmlinux: %w", ErrTraceUnavailable), codes.FailedPrecondition},
		{fmt.Errorf("pod default/web-0 left: %w", ErrPodNotFound), codes.NotFound},
		{fmt.Errorf("capture abc runs: %w", ErrCaptureBusy), codes.ResourceExhausted},
	} {
		agent.traceErr = tc.err
		_, err := c.CaptureTrace(t.Context(), &inferav1.CaptureTraceRequest{DurationSeconds: 1})
		wantStatus(t, err, tc.code, tc.err.Error())
	}
}

func TestConcurrentCaptureTraceOneBusy(t *testing.T) {
	agent := newFakeAgent()
	agent.pods = []Pod{{Namespace: "default", Name: "web-0", Tier: "high"}}
	agent.traceStarted = make(chan TraceRequest, 8)
	agent.traceRelease = make(chan struct{})
	_, c := startServer(t, agent, Options{})

	first := make(chan error, 1)
	go func() {
		_, err := c.CaptureTrace(context.Background(), &inferav1.CaptureTraceRequest{
			Pod: &inferav1.PodRef{Namespace: "default", Name: "web-0"}, DurationSeconds: 5})
		first <- err
	}()
	<-agent.traceStarted // the first capture runs in the agent

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := c.CaptureTrace(t.Context(), &inferav1.CaptureTraceRequest{DurationSeconds: 1})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		wantStatus(t, err, codes.ResourceExhausted, "cannot capture the whole node", `a capture of pod "default/web-0" is running`)
	}
	if len(agent.traceStarted) != 0 {
		t.Fatal("a concurrent capture reached the agent")
	}

	close(agent.traceRelease)
	if err := <-first; err != nil {
		t.Fatalf("the first capture failed: %v", err)
	}
	// The slot is free again.
	if _, err := c.CaptureTrace(t.Context(), &inferav1.CaptureTraceRequest{DurationSeconds: 1}); err != nil {
		t.Fatalf("capture after the first ended: %v", err)
	}
}

func TestWatchEvents(t *testing.T) {
	agent := newFakeAgent()
	_, c := startServer(t, agent, Options{})

	bad, err := c.WatchEvents(t.Context(), &inferav1.WatchEventsRequest{Types: []inferav1.EventType{42}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Recv()
	wantStatus(t, err, codes.InvalidArgument, "types[0]: unknown event type 42")

	all, err := c.WatchEvents(t.Context(), &inferav1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	lint, err := c.WatchEvents(t.Context(), &inferav1.WatchEventsRequest{Types: []inferav1.EventType{inferav1.EventType_EVENT_TYPE_LINT_VIOLATION}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []grpc.ServerStreamingClient[inferav1.Event]{all, lint} {
		if _, err := s.Header(); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	web := &PodRef{Namespace: "default", Name: "web-0", UID: "u1"}
	published := []Event{
		{Type: EventAssignmentChanged, Time: at, Message: "web-0 to high", Pod: web, FromTier: "normal", ToTier: "high", Generation: 7},
		{Type: EventSafeModeEntered, Time: at, Reason: "infera.io/safe-mode-requested=true"},
		{Type: EventSafeModeLeft, Time: at, Reason: "annotation removed"},
		{Type: EventBackendStateChanged, Time: at, Backend: "cgroup", PreviousStatus: "enforcing/scx_layered", Status: "degraded: ejected", Reason: "kernel ejected scx_layered"},
		{Type: EventDriftReasserted, Time: at, Pod: web, CgroupPath: "kubepods/pod-u1", File: "cpu.shares", Found: "2", Expected: "1024"},
		{Type: EventLintViolation, Time: at, Pod: web, Invariant: "smt_collision", Tier: "high", Detail: "CPU 3 sibling of 2"},
	}
	for _, ev := range published {
		agent.Publish(ev)
	}
	ts := published[0].Time
	wantAll := []*inferav1.Event{
		{Sequence: 1, Type: inferav1.EventType_EVENT_TYPE_ASSIGNMENT_CHANGED, Message: "web-0 to high",
			Detail: &inferav1.Event_AssignmentChanged{AssignmentChanged: &inferav1.AssignmentChanged{
				Pod: &inferav1.PodRef{Namespace: "default", Name: "web-0", Uid: "u1"}, FromTier: "normal", ToTier: "high", Generation: 7}}},
		{Sequence: 2, Type: inferav1.EventType_EVENT_TYPE_SAFE_MODE_ENTERED,
			Detail: &inferav1.Event_SafeModeChanged{SafeModeChanged: &inferav1.SafeModeChanged{Reason: "infera.io/safe-mode-requested=true"}}},
		{Sequence: 3, Type: inferav1.EventType_EVENT_TYPE_SAFE_MODE_LEFT,
			Detail: &inferav1.Event_SafeModeChanged{SafeModeChanged: &inferav1.SafeModeChanged{Reason: "annotation removed"}}},
		{Sequence: 4, Type: inferav1.EventType_EVENT_TYPE_BACKEND_STATE_CHANGED,
			Detail: &inferav1.Event_BackendStateChanged{BackendStateChanged: &inferav1.BackendStateChanged{
				Backend: "cgroup", PreviousStatus: "enforcing/scx_layered", Status: "degraded: ejected", Reason: "kernel ejected scx_layered"}}},
		{Sequence: 5, Type: inferav1.EventType_EVENT_TYPE_DRIFT_REASSERTED,
			Detail: &inferav1.Event_DriftReasserted{DriftReasserted: &inferav1.DriftReasserted{
				Pod: &inferav1.PodRef{Namespace: "default", Name: "web-0", Uid: "u1"}, CgroupPath: "kubepods/pod-u1", File: "cpu.shares", Found: "2", Expected: "1024"}}},
		{Sequence: 6, Type: inferav1.EventType_EVENT_TYPE_LINT_VIOLATION,
			Detail: &inferav1.Event_LintViolation{LintViolation: &inferav1.LintViolation{
				Invariant: "smt_collision", Pod: &inferav1.PodRef{Namespace: "default", Name: "web-0", Uid: "u1"}, Tier: "high", Detail: "CPU 3 sibling of 2"}}},
	}
	for _, w := range wantAll {
		got, err := all.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !got.GetTime().AsTime().Equal(ts) {
			t.Fatalf("event %d time %v, want %v", w.GetSequence(), got.GetTime().AsTime(), ts)
		}
		got.Time = nil
		if diff := cmp.Diff(w, got, protocmp.Transform()); diff != "" {
			t.Fatalf("event (-want +got):\n%s", diff)
		}
	}
	got, err := lint.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSequence() != 6 || got.GetType() != inferav1.EventType_EVENT_TYPE_LINT_VIOLATION || got.GetDropped() != 0 {
		t.Fatalf("filtered stream got %v, want only the lint violation (sequence 6, nothing dropped)", got)
	}
}

// TestWatchEventsClientThatNeverReads: a stream whose client stops reading
// must not make Publish block or memory grow; the client learns how many
// events it lost when it reads again.
func TestWatchEventsClientThatNeverReads(t *testing.T) {
	const buffer = 16
	agent := newFakeAgent()
	_, c := startServer(t, agent, Options{StreamBuffer: buffer})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := c.WatchEvents(ctx, &inferav1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}

	const n = 20000
	msg := strings.Repeat("m", 1000) // ~1 KiB per event, ~20 MiB in all
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		// Publish is synchronous and never waits for a subscriber: if it
		// blocked on the stalled stream this loop would never finish.
		agent.Publish(Event{Type: EventDriftReasserted, Message: msg, File: fmt.Sprint(i)})
		if st := agent.Stats(); st.MaxBuffered > buffer {
			t.Fatalf("after %d events a subscriber buffers %d, over its cap of %d", i+1, st.MaxBuffered, buffer)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("heap grew by %d bytes while a stalled client was sent ~20 MiB of events; want bounded", grew)
	}
	st := agent.Stats()
	if st.Dropped == 0 || st.Dropped >= n {
		t.Fatalf("dropped %d of %d events for the stalled client, want most but not all", st.Dropped, n)
	}

	// The client reads again. Wait until the server has taken everything
	// buffered, then publish one more: it fits, and says what was lost.
	received := make(chan *inferav1.Event, n+1)
	recvErr := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			received <- ev
		}
	}()
	for agent.Stats().Buffered != 0 {
		time.Sleep(time.Millisecond)
	}
	agent.Publish(Event{Type: EventLintViolation, Invariant: "open_reserve"})

	var got []*inferav1.Event
	for {
		select {
		case ev := <-received:
			got = append(got, ev)
		case err := <-recvErr:
			t.Fatalf("stream ended before the last event: %v", err)
		}
		if got[len(got)-1].GetSequence() == n+1 {
			break
		}
	}
	if got[0].GetSequence() != 1 || got[0].GetDropped() != 0 {
		t.Fatalf("first event seq %d dropped %d, want 1 and 0", got[0].GetSequence(), got[0].GetDropped())
	}
	var lost uint64
	for i := 1; i < len(got); i++ {
		gap := got[i].GetSequence() - got[i-1].GetSequence() - 1
		if got[i].GetDropped() != gap {
			t.Fatalf("event %d follows %d but says %d dropped", got[i].GetSequence(), got[i-1].GetSequence(), got[i].GetDropped())
		}
		lost += gap
	}
	if lost == 0 || uint64(len(got))+lost != n+1 {
		t.Fatalf("received %d events and %d reported dropped, want them to add up to %d with some dropped", len(got), lost, n+1)
	}
	last := got[len(got)-1]
	if last.GetDropped() == 0 || last.GetLintViolation().GetInvariant() != "open_reserve" {
		t.Fatalf("last event %v, want the lint violation reporting the gap", last)
	}
	t.Logf("stalled client: %d events delivered, %d dropped and reported; heap grew %d bytes",
		len(got), lost, int64(after.HeapAlloc)-int64(before.HeapAlloc))
}

func TestWatchEventsStreamCap(t *testing.T) {
	agent := newFakeAgent()
	s, c := startServer(t, agent, Options{MaxStreams: 2})

	open := func(ctx context.Context) grpc.ServerStreamingClient[inferav1.Event] {
		st, err := c.WatchEvents(ctx, &inferav1.WatchEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// Headers come once the server has subscribed, or with the
		// rejection.
		if _, err := st.Header(); err != nil {
			t.Fatal(err)
		}
		return st
	}
	ctx1, cancel1 := context.WithCancel(t.Context())
	open(ctx1)
	open(t.Context())
	_, err := open(t.Context()).Recv()
	wantStatus(t, err, codes.ResourceExhausted, "too many WatchEvents streams", "the cap is 2")

	// Closing a stream frees its slot (once the server has seen it go).
	cancel1()
	for {
		st := open(t.Context())
		agent.Publish(Event{Type: EventSafeModeLeft})
		_, err := st.Recv()
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("stream after a slot freed: %v", err)
		}
		time.Sleep(time.Millisecond)
	}

	// Stop ends the open streams even though nobody reads them.
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestSocketGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket another group")
	}
	const gid = 4242
	s, _ := startServer(t, newFakeAgent(), Options{SocketGID: gid})
	fi, err := os.Lstat(s.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Gid != gid {
		t.Fatalf("socket group = %v, want %d", fi.Sys(), gid)
	}
}

// TestStopWithStalledStream: a client that never reads keeps the server's
// Send blocked; Stop must still end, close the connection and remove the
// socket.
func TestStopWithStalledStream(t *testing.T) {
	agent := newFakeAgent()
	s, c := startServer(t, agent, Options{StreamBuffer: 4, ShutdownTimeout: 100 * time.Millisecond})
	stream, err := c.WatchEvents(t.Context(), &inferav1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("s", 1000)
	for range 2000 { // far more than the HTTP/2 window: Send blocks
		agent.Publish(Event{Type: EventDriftReasserted, Message: msg})
	}
	if st := agent.Stats(); st.Dropped == 0 {
		t.Fatalf("no event dropped (%+v): the stream is not stalled and the test proves nothing", st)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Lstat(s.SocketPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket still there after Stop: %v", err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break // the connection is gone; the client sees an error, not a hang
		}
	}
	if st := agent.Stats(); st.Subscribers != 0 {
		t.Fatalf("%d subscriptions left after Stop, want 0", st.Subscribers)
	}
}
