// Package swarmtier is the fetch pipeline's tier beyond the site: a
// fetch.Source for files with a signed SHA-256 and size (1 MiB and up) that
// no LAN peer holds.
//
// It announces that this node downloads the file beyond its site (the
// swarm's flight key) and looks the file up on the DHT. A holder that seeds
// the file is fetched from by BitTorrent (package swarm; pieces checked by
// their hashes). Otherwise the other sites' downloads in flight are read by
// the peer protocol (package lan with Wide set; Source.PeersFor is its peer
// set), and the sites' leaders elect one to go to the origin, so that a fleet
// fetches a file from the origin once, not once per site.
//
// It passes no web seeds: when the swarm fails, the pipeline resumes from
// the origin itself (Range), which keeps origin traffic counted and the
// origin's address and port rules enforced. The pipeline verifies every
// byte by the whole-file digest, whichever way it came.
package swarmtier
