// Package trust is the only code in pkgswarm that decides trust. For every
// request it says what the file is (classify: which format, which kind; a
// path of no known format is refused), what a verified chain expects of it,
// and how it may be obtained (Resolve returns a Plan: a held blob, or a
// fetch.Request whose expectation the pipeline checks); it records what a
// verified file teaches (roots, indices, pubkeys, name keys) through the
// Request's Learn callback; and it decides what `pkgswarm import` may add.
//
// The chains, one per format, each in its own namespace of expectations:
//
//   - apt: InRelease (or Release + Release.gpg) verified with the trusted
//     keyrings → SHA-256 and size of each index → Packages/Sources parsed →
//     SHA-256 and size of each .deb. A repository is bound to the keys that
//     signed its accepted roots, to the suite its dists/ path names (and to
//     its codename when reached by codename), and to time: a root older than
//     the accepted one, or dated beyond Config.MaxClockSkew in the future, is
//     refused, and a refused root changes nothing (the held one keeps
//     serving, and the next request asks the origin again).
//   - urpmi: nothing in the metadata is signed. MD5SUM (revalidated on every
//     request) checks the other media_info files, fetched from origins only;
//     a synthesis gives each rpm's NEVRA and exact size; an rpm is accepted
//     only with a header signature by a configured key or the medium's
//     pubkey (pinned on first use), a matching payload digest, that NEVRA and
//     that size. It is then stored by SHA-256 and known to peers by a name
//     key.
//   - rpm-md: repomd.xml (signature checked when repomd.xml.asc exists and
//     keys are configured; an unsigned one after a signed one is refused) →
//     SHA-256 of each repodata file → primary.xml → SHA-256 of each rpm (and
//     its signature, with keys configured).
//
// What it promises (DESIGN.md invariants 1, 3, 3a):
//
//   - An expectation is bound to the format and repository whose chain made
//     it: a .deb is looked up in the apt namespace only, so no rpm-md or
//     urpmi chain can replace, outrank or share it.
//   - Peers are asked (Request.Peers), and a blob becomes shareable
//     (store.MarkShareable), only for expectations from a signed chain: an
//     apt root signed by a trusted key, a signed repomd.xml, or an rpm whose
//     own signature verified.
//   - A file of a repository a signed chain covers is never cached by URL:
//     until a parsed index lists it, it is streamed from the origin and not
//     kept (Request.NoRecord).
//   - A failed index parse is remembered per digest (retried after 10
//     minutes), not repeated on every request.
//
// What it never does: fetch a file's body, serve a client, or choose tiers.
// It reaches origins only through the fetch package (fetch.Fetcher.GetSmall
// for roots and other small files, verified before anything is kept).
package trust
