package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Small is a small file read whole from an origin (a signed root, a urpmi
// MD5SUM or pubkey), for the caller to verify before anything is stored.
type Small struct {
	Data []byte
	Meta Meta
	URL  string // the candidate that answered
}

// GetSmall fetches a small file from the first origin candidate of url (its
// mirrors, in order) that has it, conditionally on held. It returns an error
// wrapping ErrNotModified when held is current, ErrNotFound when every
// candidate said so, ErrTooLarge past max bytes, and ErrOffline in offline
// mode. Nothing is stored: the caller verifies first.
func (f *Fetcher) GetSmall(ctx context.Context, url string, held *store.URLEntry, max int64) (*Small, error) {
	if f.Offline() {
		return nil, fmt.Errorf("%s: %w", url, ErrOffline)
	}
	req := &Request{URL: url}
	var lastErr error
	for _, at := range f.attempts(req) {
		at.a.Conditional = held
		body, cut, err := f.open(ctx, &at)
		switch {
		case errors.Is(err, ErrNotModified):
			if held != nil {
				return nil, err
			}
			lastErr = fmt.Errorf("origin %s: 304 Not Modified for an unconditional request", at.a.URL)
			continue
		case err != nil:
			lastErr = err
			continue
		}
		data, err := io.ReadAll(io.LimitReader(body, max+1))
		err = cut.finish(body, err)
		f.obs.Fetched(at.src.Name(), int64(len(data)))
		if err != nil {
			lastErr = fmt.Errorf("origin %s: reading: %w", at.a.URL, err)
			continue
		}
		if int64(len(data)) > max {
			lastErr = fmt.Errorf("origin %s: larger than the %d bytes a file of this kind may have: %w", at.a.URL, max, ErrTooLarge)
			continue
		}
		return &Small{Data: data, Meta: body.Meta, URL: at.a.URL}, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no origin has %s: %w", url, ErrNotFound)
	}
	return nil, lastErr
}
