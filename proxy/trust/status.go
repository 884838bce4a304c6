package trust

import (
	"sort"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

// RepoStatus is one apt repository root as accepted (or not) by pkgswarm.
type RepoStatus struct {
	Repo       string    `json:"repo"`
	URL        string    `json:"url"`
	Trusted    bool      `json:"trusted"`
	Note       string    `json:"note,omitempty"`
	Signer     string    `json:"signer,omitempty"`
	Keys       []string  `json:"bound_keys,omitempty"`
	Suite      string    `json:"suite,omitempty"`
	Codename   string    `json:"codename,omitempty"`
	Date       time.Time `json:"date,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	Accepted   time.Time `json:"accepted,omitzero"`
}

// Repos lists the apt repositories whose roots the store holds.
func (r *Resolver) Repos() []RepoStatus {
	roots, _ := r.st.Roots()
	out := make([]RepoStatus, 0, len(roots))
	for _, rt := range roots {
		rs := RepoStatus{Repo: rt.Repo, URL: rt.URL, Trusted: !rt.Untrusted, Signer: rt.Signer, Keys: rt.Keys,
			Suite: rt.Suite, Codename: rt.Codename, Date: rt.Date, ValidUntil: rt.ValidUntil, Accepted: rt.Accepted}
		if rt.Untrusted {
			rs.Note = "no trusted key signs this repository: cached by URL like any proxy, never shared with or taken from peers (add its key with --keyring)"
		}
		out = append(out, rs)
	}
	return out
}

// RPMRepoStatus is one urpmi medium or rpm-md repository as pkgswarm trusts
// it.
type RPMRepoStatus struct {
	// Repo is the medium or repository directory URL.
	Repo string `json:"repo"`
	// Kind is "urpmi" or "rpm-md".
	Kind string `json:"kind"`
	// Keys are the IDs of the keys whose rpm signatures are accepted.
	Keys []string `json:"keys,omitempty"`
	// Signed (rpm-md) says repomd.xml was verified against repomd.xml.asc.
	Signed   bool   `json:"signed,omitempty"`
	Signer   string `json:"signer,omitempty"`
	Revision string `json:"revision,omitempty"`
	// Note says in one sentence what trust rests on.
	Note string `json:"note"`
}

// RPMRepos lists the urpmi media whose pubkey is pinned and the rpm-md
// repositories whose repomd.xml was accepted.
func (r *Resolver) RPMRepos() []RPMRepoStatus {
	out := []RPMRepoStatus{}
	conf := r.cfg.RPMKeys.KeyIDs()
	_ = r.st.ScanMeta(metaURPMIPin, func(k string, v []byte) error {
		st := RPMRepoStatus{Repo: strings.TrimPrefix(k, metaURPMIPin), Kind: "urpmi",
			Note: "rpms are accepted when signed by the configured keys or the medium's pubkey, pinned on first use; the synthesis gives each rpm's name and exact size"}
		if ks, err := rpmsig.LoadKeys(v); err == nil {
			st.Keys = unionIDs(conf, ks.KeyIDs())
		}
		out = append(out, st)
		return nil
	})
	_ = r.st.ScanMeta(metaRPMMDRepo, func(k string, v []byte) error {
		rs, err := decodeRepomdState(v)
		if err != nil {
			return nil
		}
		st := RPMRepoStatus{Repo: strings.TrimPrefix(k, metaRPMMDRepo), Kind: "rpm-md", Keys: conf, Signed: rs.Signed, Signer: rs.Signer, Revision: rs.Revision}
		switch {
		case rs.Signed:
			st.Note = "repomd.xml is signed by a configured key; every repodata file and rpm is checked against its sha256, each rpm's signature too, and verified files are shared with peers"
		case len(conf) > 0:
			st.Note = "repomd.xml is not signed (no repomd.xml.asc): its repodata is fetched from the origin only and never shared; rpms are shared once their signature by a configured key verifies"
		default:
			st.Note = "repomd.xml is not verified and no --rpm-key is configured: files are checked against its digests (corruption), fetched from the origin only and never shared with peers"
		}
		out = append(out, st)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Repo < out[j].Repo })
	return out
}

// TrustedKeys lists the IDs of the keys that make an apt root trusted.
func (r *Resolver) TrustedKeys() []string {
	if r.cfg.AptKeyring == nil {
		return []string{}
	}
	return r.cfg.AptKeyring.KeyIDs()
}
