package proxy

// SetQuickLane turns the quick lane of s on or off (tests compare its
// answers with net/http's).
func SetQuickLane(s *Server, on bool) { s.noQuick = !on }

// SetPeerLookupHook makes every peer blob request run f before it looks at
// the downloads in flight; the returned func puts the old hook back. Set it
// while no request runs.
func SetPeerLookupHook(f func()) (restore func()) {
	old := testHookPeerLookup
	testHookPeerLookup = f
	return func() { testHookPeerLookup = old }
}
