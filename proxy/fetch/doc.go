// Package fetch is pkgswarm's one fetch pipeline: it answers a Request from
// the content store, or starts (or joins) the single download of it and walks
// the tiers in order — site peers (the LAN), wide peers (the swarm), then each
// origin candidate — resuming at the current offset when a source fails
// mid-stream, verifying the bytes against the Request's expectation, and
// committing them to the store or discarding them.
//
// What it promises:
//
//   - One download per file: requests with the same key (the expected SHA-256,
//     else the expectation's Key, else the URL) join one Flight; any number of
//     readers stream from it as it grows.
//   - Nothing unverified is committed as the expected file. A file with an
//     expectation is committed only when its size, SHA-256 and Check all pass; a
//     reader never receives its final byte before that (store.Follower holds it
//     back), so a response streamed from a download that then fails can never
//     be completed. Every source whose bytes were part of a failing file is
//     penalised (Penalizer) and reported (Observer); the next source starts
//     from zero, except that a source which had resumed after another is
//     first asked once more alone (which part was wrong is not known).
//   - A second hash over a verified download (Config.SideHash: the swarm's
//     piece hashes) sees exactly the bytes of the blob committed, in order,
//     and hears Done only after the commit.
//   - Peers (Config.Site, Config.Wide) are asked only for Requests that allow
//     them (Request.Peers), which the caller sets only for expectations from a
//     signed chain. Files without an expectation come from the origin only,
//     bounded in size (Request.MaxSize) and idleness, and are never shared.
//   - Every source is cut when it sends nothing for Config.StallTimeout, and a
//     peer source also when it sends less than Config.MinRate per
//     Config.RateWindow; a peer that promised bytes and did not deliver them is
//     penalised like one that lied.
//   - One origin loop: every origin request (downloads and the small
//     revalidated files of GetSmall) goes through Config.Origin, once per
//     candidate URL (the URL, its mirrors, then Request.Alternates), with one
//     interpretation of statuses (the origin Source maps them to ErrNotFound,
//     ErrNotModified or an error of its own).
//
// What it never does: decide trust. It verifies against the expectation it is
// given and never asks where that came from; the trust package builds
// Requests, and learns from committed files through Request.Learn. It imports
// neither the trust package nor the HTTP front.
//
// Errors: ErrNotFound (wrapped) means "no source has it"; *VerifyError means
// bytes arrived and failed verification (its Unwrap gives the cause, e.g.
// rpmsig.ErrUnsigned); IsUnavailable reports network failures, timeouts and
// offline mode, for which a held copy may be served instead.
//
// Concurrency: a Fetcher is safe for concurrent use. Downloads outlive the
// request that started them (bounded by Config.DownloadTimeout) and end when
// Close is called.
package fetch
