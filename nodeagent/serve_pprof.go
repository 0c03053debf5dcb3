package nodeagent

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// pprofPath is where [server] pprof = true serves Go's profiles.
const pprofPath = "/debug/pprof/"

// pprofHandler serves the runtime's profiles under /debug/pprof/: the
// index and the named profiles (heap, allocs, goroutine, block, mutex,
// threadcreate), a CPU profile (profile?seconds=N), an execution trace
// (trace?seconds=N) and symbol lookup. The command line is left out: it is
// not needed to read a profile.
//
// It is only ever mounted behind the agent's HTTP guard (httpGuard): on a
// non-loopback address a caller needs get on nodes/pprof.infera.io of this
// node, like /observe needs nodes/observe.
func pprofHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, pprofPath) {
		case "profile":
			pprof.Profile(w, r)
		case "trace":
			pprof.Trace(w, r)
		case "symbol":
			pprof.Symbol(w, r)
		case "cmdline":
			http.NotFound(w, r)
		default:
			pprof.Index(w, r) // the index, or a named profile
		}
	})
}
