// Package load is the benchmarks' HTTP client: N clients fetching one URL
// over and over on kept-alive connections (throughput and request rate),
// and N clients released at the same instant on one URL (the thundering
// herd). Every loop is bounded by a request count and by a deadline, both
// required; whichever comes first ends it.
package load
