// Package origin is pkgswarm's one origin client: the fetch.Source of the
// origin tier, and the only code that decides how origin HTTP works.
//
// What it promises:
//
//   - One request per Fetch: a GET of Attempt.URL, from Attempt.Offset with
//     "Range: bytes=OFFSET-" when it is positive, conditional on
//     Attempt.Conditional (If-None-Match, If-Modified-Since) when it is zero,
//     with the User-Agent "pkgswarm/<version>" and no Accept-Encoding (bytes
//     are verified as the origin sent them).
//   - One interpretation of statuses: 200 is the file from byte 0; 206 is the
//     file from the first byte of its Content-Range, which is parsed strictly
//     and must start at or before the offset asked (a range that ends before
//     the file does is an error at its end, so that the pipeline resumes
//     elsewhere); 304 wraps fetch.ErrNotModified; 404 and 410 wrap
//     fetch.ErrNotFound; any other status is a *fetch.StatusError. A request
//     that gets no answer keeps its *url.Error, so fetch.IsUnavailable holds.
//   - An egress policy (Egress, DESIGN.md invariant 5) that cannot be walked
//     around: origins are reached on allowed ports only (80 and 443 by
//     default; a port is parsed strictly, "0080" is refused), and never at a
//     loopback, link-local, unspecified, multicast or broadcast address or
//     one of the node's own addresses unless a setting allows it (private
//     ranges are allowed unless a setting refuses them). IPv4-mapped IPv6
//     addresses are judged as the IPv4 address they carry. The policy is
//     checked on the request URL, on every redirect (at most MaxRedirects,
//     never from https down to http) and on every dial: the client resolves
//     names itself and dials only the checked addresses, so every resolved
//     name, redirect target and retry is checked, and a name cannot resolve
//     to an allowed address when checked and to a refused one when dialed.
//     The default transport's dialer checks the socket address once more
//     before it connects. A refusal is a *ForbiddenError wrapping
//     ErrForbiddenAddress, ErrForbiddenPort or ErrForbiddenRedirect (see
//     IsForbidden), whose text says what the user can change; the front
//     answers it with 403.
//   - Connections: at most Config.MaxConnsPerHost per origin host. Plain
//     http:// GETs of files of known SHA-256 and size are pipelined (RFC
//     9112 9.3.2; pipelining.go, pipeconn.go): up to Config.PipelineDepth
//     (10, apt's default) on one connection once its first answer proved
//     HTTP/1.1 keep-alive, each sent only when a caller asked for it. A
//     host's pipelinable requests go in order on one connection unless a
//     probe found that spreading them over several gives 1.5 times the rate
//     (spread.go): an origin that paces each connection, not a shared link.
//     A request is not queued behind more than 4 MiB on a connection (it
//     waits for one with less, an idle one or a new one), unless, in order,
//     it waits there only for its own client: one the client sent earlier on the same connection
//     (fetch.Request.Line), whose answer that client reads first anyway.
//     Answers are read in order by http.ReadResponse with a header bound. A
//     connection that ends or stalls with requests unanswered has them sent
//     again on another (a GET is idempotent; none of their bytes was handed
//     out); an HTTP/1.0 answer, an early close or "Connection: close", an
//     answer that cannot be the one asked, or bytes nobody asked for puts
//     the host off pipelining for a while. A body closed early is drained
//     within a bound, else its connection is dropped; a caller that goes
//     away does not break the requests beside it. https:// origins and any
//     other request use net/http's transport (HTTP/2 where offered).
//   - Mirrors: Client.Mirrors lists a URL's candidates (the URL, then its
//     longest configured prefix's alternatives), for fetch.Config.Mirrors.
//   - Every error names the URL.
//
// What it never does: verify bytes (the pipeline does), cache or store
// anything, retry a request that was answered or failed (the pipeline moves
// to the next candidate; only requests a dropped connection left unanswered
// are sent again), follow a redirect to a disallowed scheme, port or
// address, connect to an address the policy refuses, use a proxy from the
// environment, or count anything (metrics are a wrapper around
// fetch.Source). Offline mode contacts nothing: every Fetch fails with
// fetch.ErrOffline.
//
// Concurrency: a Client is safe for concurrent use; Fetch is called once per
// attempt, from the download's goroutine. The pipelining pool's state is
// behind one mutex (pipeTransport.mu); each connection has one writer and
// one reader goroutine, and a body's reads run on the caller's goroutine.
// The list of own addresses is read by New, again at a dial when it is older
// than Egress.LocalAddrsEvery, and on RefreshLocalAddrs; on a failed reading
// the previous list stays.
package origin
