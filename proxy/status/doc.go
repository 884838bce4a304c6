// Package status is what a node says about itself: the status document
// (GET /_pkgswarm/status), the web dashboard (GET / and /_pkgswarm/ui/...)
// and Prometheus metrics (GET /metrics).
//
// It observes the request path from outside, never from within: Metrics
// wraps the HTTP front (Handler: one debug line per request, one warn line
// per failure, request and byte counters by source, read from the
// X-Pkgswarm-Source header the front sets), wraps the origin tier (Origin:
// origin requests, errors and bytes), and is the pipeline's fetch.Observer
// (bytes fetched per tier, verification failures). Node.Status gathers the
// rest from the store, the trust resolver and the pipeline when asked.
//
// What it never does: decide anything about a request, or hold locks the
// request path waits on; a status read costs the request path nothing.
package status
