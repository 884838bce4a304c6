package proxy

import "net/http"

// RPMConfig configures urpmi media and rpm-md repositories.
type RPMConfig struct{}

// serveRPMFamily answers urpmi media files and rpm-md repositories
// (KindVolatile and KindImmutable paths).
func (s *Server) serveRPMFamily(w http.ResponseWriter, r *http.Request, t Target) {
	exp, err := s.expectationFor(r.Context(), t)
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	if exp != nil && exp.SHA256 != nil {
		s.serveVerified(w, r, t, exp)
		return
	}
	s.serveByURL(w, r, t, t.Kind == KindVolatile)
}
