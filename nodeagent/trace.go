package nodeagent

import (
	"context"
	"fmt"
	"time"

	"github.com/infera-io/temper/nodeagent/server"
)

// maxTraceDuration bounds one trace capture.
const maxTraceDuration = 60 * time.Second

// captureTrace runs one trace capture.
func (a *Agent) captureTrace(context.Context, server.TraceRequest) (server.TraceResult, error) {
	return server.TraceResult{}, fmt.Errorf("%w: the eBPF trace capture is not wired into this agent build", server.ErrTraceUnavailable)
}
