// Package inferactl is the command line of Temper: `inferactl`, also
// installed as the kubectl plugin `kubectl-infera`. It reads and steers the
// fleet through infera-gateway's /api/v1 when a gateway is configured, and
// otherwise computes tiers locally from the API server's objects with the
// same apis/tiering function the agent uses, saying so in its output.
//
// It talks to components only over their APIs (the Kubernetes API and the
// gateway's REST API); it must not import the gateway's, the agent's or the
// manager's code. docs/cli.md documents the commands and the exit codes.
package inferactl
