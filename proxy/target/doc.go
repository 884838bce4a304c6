// Package target turns a proxy request's URI — absolute ("http://host/path",
// as a forward proxy receives it) or prefix form ("/host/path",
// "/https/host/path", as apt-cacher-ng users write it) — into one canonical
// origin URL: lower-case host, default port dropped, clean absolute path, no
// query. The same file reached either way has one Target, so one cache key.
//
// It refuses what can never name a repository file ("..", control
// characters, credentials, queries, other schemes) with ErrBadTarget or
// ErrNotAllowed. It does not decide whether a path is a repository file of
// a known format: that is the trust package's classification.
package target
