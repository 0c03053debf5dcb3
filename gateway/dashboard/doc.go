// Package dashboard serves Temper's web dashboard: the bundle in dist/ (built
// from web/ by `make generate-dashboard` with esbuild, without Node, and
// committed), embedded into infera-gateway. The dashboard is a static client
// of the public /api/v1; this package serves files only and must never
// serve data or hold credentials (the token stays in the browser tab).
package dashboard
