package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/ebpf"
	"github.com/infera-io/temper/nodeagent/server"
)

// maxTraceDuration bounds one trace capture.
const maxTraceDuration = 60 * time.Second

// captureTrace runs one trace capture with the eBPF probe: the pod's cgroup
// (and its containers') or the whole node. The server has already checked
// the pod is on this node and that no other capture runs.
func (a *Agent) captureTrace(ctx context.Context, req server.TraceRequest) (server.TraceResult, error) {
	a.mu.Lock()
	o := a.observation
	a.mu.Unlock()
	if o == nil {
		return server.TraceResult{}, fmt.Errorf("%w: the observation layer is off or failed to start", server.ErrTraceUnavailable)
	}
	if o.probe == nil {
		return server.TraceResult{}, fmt.Errorf("%w: %s", server.ErrTraceUnavailable, o.probeErr)
	}
	cr := ebpf.CaptureRequest{Node: req.Pod == nil, Duration: req.Duration}
	if req.Pod != nil {
		var dir string
		for _, p := range a.Assignments() {
			if p.Pod.Namespace != req.Pod.Namespace || p.Pod.Name != req.Pod.Name || (req.Pod.UID != "" && string(p.UID) != req.Pod.UID) {
				continue
			}
			if p.Cgroup == nil {
				return server.TraceResult{}, fmt.Errorf("%w: pod %s has no cgroup yet", server.ErrPodNotFound, req.Pod)
			}
			dir = p.Cgroup.Dirs[cgroupfs.CPU]
		}
		if dir == "" {
			return server.TraceResult{}, fmt.Errorf("%w: pod %s", server.ErrPodNotFound, req.Pod)
		}
		cr.Cgroups = []string{dir}
	}
	res, err := o.probe.Capture(ctx, cr)
	switch {
	case errors.Is(err, ebpf.ErrBusy):
		return server.TraceResult{}, fmt.Errorf("%w: %w", server.ErrCaptureBusy, err)
	case errors.Is(err, ebpf.ErrInvalidCapture):
		return server.TraceResult{}, fmt.Errorf("%w: %w", server.ErrInvalidArgument, err)
	case errors.Is(err, ebpf.ErrNoSuchCgroup):
		return server.TraceResult{}, fmt.Errorf("%w: %w", server.ErrPodNotFound, err)
	case err != nil:
		return server.TraceResult{}, err
	}
	return server.TraceResult{ID: res.ID, Path: res.Path, SizeBytes: res.SizeBytes, Events: res.Events,
		Truncated: res.Truncated, Start: res.Start, Took: res.Took}, nil
}
