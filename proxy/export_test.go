package proxy

// SetQuickLane turns the quick lane of s on or off (tests compare its
// answers with net/http's).
func SetQuickLane(s *Server, on bool) { s.noQuick = !on }
