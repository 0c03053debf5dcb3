// Module of the dashboard builder (make generate-dashboard): esbuild's Go
// API bundles gateway/dashboard/web into gateway/dashboard/dist. It is
// separate from the root module so the project's dependency graph never
// carries esbuild; this go.mod is where esbuild's version is pinned.
module github.com/infera-io/temper/hack/tools/dashboard

go 1.26.0

require github.com/evanw/esbuild v0.28.2

require golang.org/x/sys v0.0.0-20220715151400-c0bba94af5f8 // indirect
