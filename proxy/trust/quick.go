package trust

import (
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
)

// HeldPackage answers, without waiting for anything, whether t names an apt
// package that a verified index already vouches for and whose blob the store
// holds: then d is that blob and size its length. It is the question of the
// front's quick lane (a cache hit answered without net/http). Nothing is
// fetched, parsed, revalidated or waited for: every other case (another kind
// of file, an expectation not yet known, a blob not held) reports false and
// goes the way of Resolve, which gives the same answer for a held package
// (Resolve's plan, then the pipeline's lookup of its expectation).
func (r *Resolver) HeldPackage(t target.Target) (d store.Digest, size int64, ok bool) {
	c, ok := classify(t.Path)
	if !ok || c.kind != kindAptPackage {
		return d, 0, false
	}
	exp, err := r.expect(FormatApt, t.URL)
	if err != nil || !r.st.HasBlob(exp.SHA256) {
		return d, 0, false
	}
	// As the pipeline's lookup does on a hit: a verified blob is shareable.
	r.markShareable(exp.SHA256)
	return exp.SHA256, exp.Size, true
}
