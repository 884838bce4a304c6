package swarmtier

import (
	"context"
	"errors"
	"fmt"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/swarm"
)

// Source is the swarm tier.
type Source struct {
	Node *swarm.Node
}

var _ fetch.Source = Source{}

// Name implements fetch.Source.
func (s Source) Name() string { return "swarm" }

// Fetch implements fetch.Source. The swarm serves whole files: Body.Start
// is 0 and the pipeline skips what it holds.
func (s Source) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	exp := a.Request.Expect
	if exp == nil || exp.SHA256 == nil || exp.Size < 0 {
		return nil, fmt.Errorf("swarm: %s has no signed digest and size: %w", a.Request.URL, fetch.ErrNotFound)
	}
	body, err := s.Node.Fetch(ctx, exp.Hex(), exp.Size, nil)
	if errors.Is(err, swarm.ErrNotFound) || errors.Is(err, swarm.ErrTooSmall) {
		return nil, fmt.Errorf("%w: %w", fetch.ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return &fetch.Body{ReadCloser: body, Size: exp.Size}, nil
}
