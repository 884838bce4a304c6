package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// newTransport is the default origin transport: no proxy from the
// environment (pkgswarm is the proxy), bounded dials and header waits, and
// enough idle connections to keep a mirror's connection warm.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Bytes are verified and stored as the origin sent them; asking
		// for gzip would make Go decode transparently and break digests.
		DisableCompression: true,
	}
}

// originSource is the last tier: the origin mirrors, by HTTP(S).
type originSource struct {
	client *http.Client
	s      *Server
}

func (o *originSource) Name() string { return "origin" }

func (o *originSource) Fetch(ctx context.Context, req *Request, offset int64) (io.ReadCloser, int64, error) {
	hdr := http.Header{}
	if offset > 0 {
		hdr.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := o.s.originGet(ctx, req.FetchURL, hdr)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, 0, nil
	case http.StatusPartialContent:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("origin %s: 206 with unusable Content-Range %q", req.FetchURL, resp.Header.Get("Content-Range"))
		}
		return resp.Body, start, nil
	case http.StatusNotFound, http.StatusGone:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("origin %s: %s: %w", req.FetchURL, resp.Status, ErrNotFound)
	default:
		resp.Body.Close()
		return nil, 0, &originStatusError{url: req.FetchURL, status: resp.Status, code: resp.StatusCode}
	}
}

type originStatusError struct {
	url, status string
	code        int
}

func (e *originStatusError) Error() string { return "origin " + e.url + ": " + e.status }

func contentRangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil && n >= 0
}

// errOffline is returned instead of contacting an origin in offline mode.
var errOffline = errors.New("offline mode: origins are not contacted")

// originGet performs one GET against an origin URL, counting it. The caller
// closes the body. Bytes read from the body are counted as origin bytes.
func (s *Server) originGet(ctx context.Context, u string, hdr http.Header) (*http.Response, error) {
	if s.cfg.Offline {
		return nil, fmt.Errorf("%s: %w", u, errOffline)
	}
	t, err := ParseTarget(u)
	if err != nil && !errors.Is(err, ErrNotAllowed) {
		return nil, err
	}
	if !s.cfg.portAllowed(t.Port) {
		return nil, fmt.Errorf("origin %s: port %d is not allowed (see --allow-ports)", u, t.Port)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "pkgswarm/"+s.version())
	s.metrics.originRequests.Inc()
	resp, err := s.client.Do(req)
	if err != nil {
		s.metrics.originErrors.Inc()
		return nil, fmt.Errorf("origin %s: %w", u, err)
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, add: func(n int) { s.metrics.originBytes.Add(float64(n)) }}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	add func(int)
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		c.add(n)
	}
	return n, err
}
