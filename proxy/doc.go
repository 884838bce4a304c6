// Package proxy is pkgswarm's HTTP front: the forward proxy (absolute-URI
// requests, as apt sends with Acquire::http::Proxy), the URL-prefix proxy
// (/host/path, /https/host/path, as apt-cacher-ng users write it), CONNECT
// tunnels to an allow-list, and the peer protocol endpoints
// (/_pkgswarm/v1/...), all on one port.
//
// A request walks one straight line (Server.ServeHTTP): the client
// allow-list (Config.AllowClients; not an open proxy), the target
// (target.Parse: one canonical URL whichever form was used), the origin port,
// then trust.Resolver.Resolve, which says what the file is and what is
// expected of it; the answer comes from a held blob (from memory, or sendfile of the blob file,
// with Range and conditionals) or from the fetch pipeline's download (fetch.Fetcher.Get),
// waited for up to Config.Hold or streamed as it arrives.
//
// A listener wrapped by Server.Readahead adds two things per connection:
// requests a client pipelines are started as they arrive (read-ahead), and
// a plain GET of a small held package is answered by the connection itself
// when net/http is between requests (the quick lane, quick.go), with the
// answer serveBlob would give, in one write, counted through
// Config.QuickHit. Anything else reaches ServeHTTP unchanged.
//
// What it promises: every failure is a clear HTTP status with a one-line
// reason in the body and the X-Pkgswarm-Error header (StatusFor maps errors
// to statuses); a response streamed from a download that then fails
// verification is aborted, never completed (the store holds back the last
// byte until the digest matched); the peer endpoints serve only blobs a
// signed chain vouched for and signed downloads in flight.
//
// What it never does: decide trust (the trust package does), fetch from an
// origin or a peer (the fetch package does), or count and log requests
// (the status package wraps the handler for that; the quick lane's hits,
// which never reach the handler, are reported to Config.QuickHit and logged
// at debug here), or answer a byte inside a CONNECT tunnel.
package proxy
