package gateway

import (
	"context"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// GetNodeObservation implements ClusterService: the node agent's
// GetObservation (per-tier counters, CPU pressure, the busiest threads and
// the cgroup knobs in force).
func (s *Service) GetNodeObservation(ctx context.Context, req *inferav1.GetNodeObservationRequest) (*inferav1.Observation, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "nodes", Name: req.GetNode()}); err != nil {
		return nil, err
	}
	n, err := s.getNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	var out *inferav1.Observation
	_, err = s.agentCall(ctx, n, func(ctx context.Context, c inferav1.AgentServiceClient) error {
		var err error
		out, err = c.GetObservation(ctx, &inferav1.GetObservationRequest{})
		return err
	})
	return out, err
}
