package nodeagent

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/server"
)

// startServers serves :9100 (/metrics, /observe, /healthz, /readyz) and
// the gRPC API on its unix socket until ctx ends. A listener that cannot be
// opened is logged; the agent keeps enforcing without it.
func (a *Agent) startServers(ctx context.Context, wg *sync.WaitGroup) {
	cfg := a.o.Config.Server
	log := a.log.WithName("server")
	api := agentAPI{a: a, Broadcaster: a.events}

	extra := map[string]http.Handler{"/audit": http.HandlerFunc(a.serveAudit)}
	if cfg.Pprof {
		extra[pprofPath] = pprofHandler()
		log.Info("Serving Go profiles (server.pprof = true)", "path", pprofPath)
	}
	hs, err := server.NewHTTP(server.HTTPOptions{
		Address:  cfg.Address,
		Gatherer: a.metrics,
		Observe:  a.observeJSON,
		Ready:    a.Ready,
		Logger:   log,
		Extra:    extra,
		Guard:    a.httpGuard(cfg.Address),
	})
	if err != nil {
		log.Error(err, "Failed to set up the HTTP server; no /metrics, /observe or probes")
	} else {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", cfg.Address)
		if err != nil {
			log.Error(err, "Failed to listen; no /metrics, /observe or probes", "address", cfg.Address)
		} else {
			a.mu.Lock()
			a.httpAddr = l.Addr().String()
			a.mu.Unlock()
			log.Info("Serving /metrics, /observe, /healthz, /readyz", "address", l.Addr().String())
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := hs.Serve(ctx, l); err != nil {
					log.Error(err, "HTTP server stopped")
				}
			}()
		}
	}

	gs, err := server.NewGRPC(server.Options{
		SocketPath:       cfg.GRPCSocket,
		Agent:            api,
		Logger:           log,
		MaxTraceDuration: maxTraceDuration,
		ServerOptions:    a.grpcGuard(),
	})
	if err != nil {
		log.Error(err, "Failed to set up the gRPC API")
		return
	}
	if err := gs.Start(); err != nil {
		log.Error(err, "Failed to serve the gRPC API", "socket", cfg.GRPCSocket)
		return
	}
	log.Info("Serving the gRPC API", "socket", cfg.GRPCSocket)
	a.serveGRPCTCP(ctx, gs, log)
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := gs.Stop(sctx); err != nil {
			log.Error(err, "gRPC API did not stop cleanly")
		}
	}()
}

// HTTPAddress is where /metrics and /observe are served, once listening.
func (a *Agent) HTTPAddress() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.httpAddr
}

// observeJSON is the /observe body.
func (a *Agent) observeJSON(context.Context) (any, error) {
	a.mu.Lock()
	o := a.observation
	a.mu.Unlock()
	if o == nil {
		return map[string]any{
			"schema_version": 1,
			"node":           a.o.NodeName,
			"unavailable":    "the observation layer is disabled or could not start (see the agent's log)",
		}, nil
	}
	return o.obs.Snapshot(), nil
}

// serveAudit is GET /audit: the cgroup writer's audit ring (every write:
// path, file, old value, new value read back, reason, time, kind set / drift
// / restore, error), oldest first, bounded to the last 1024 writes. Empty on
// a node without the cgroup backend.
func (a *Agent) serveAudit(w http.ResponseWriter, _ *http.Request) {
	recs := a.backend.Audit()
	if recs == nil {
		recs = []writer.Record{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(map[string]any{"records": recs})
}
