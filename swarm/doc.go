// Package swarm is pkgswarm's BitTorrent tier, built on anacrolix/torrent.
//
// Every verified blob can be seeded as a single-file torrent whose info dict
// is derived from the bytes alone (name = lower-case hex SHA-256, length =
// size, piece length from a fixed table, see PieceLength; no other key), so
// every holder of a file joins one swarm. Seeding reads the blob file in
// place through Blobs: no copy, piece completion known from the blob being
// verified. Its piece hashes are computed once: from the bytes as they were
// downloaded (PieceHasher, handed over with PrimeInfo), else by reading the
// blob at its first Seed; either way cached under DataDir. Downloads go to a
// scratch file under DataDir that Close deletes.
//
// Rendezvous. A downloader knows only the digest and size, not the infohash.
// Holders announce on the DHT under K = SHA1(namespace + "/sha256:" + hex)
// with the port of their pkgswarm HTTP server, where Handler serves
// GET /_pkgswarm/v1/torrent/sha256/<hex> (a .torrent holding the canonical
// info dict, plus the holder's BitTorrent port in a header). Holders also
// announce the real infohash with their BitTorrent port, so plain BitTorrent
// clients find them from a magnet link (Magnet). Fetch looks K up (get_peers),
// asks the holders found (and AddPeerHints addresses) for the metainfo,
// rejects and bans any whose info dict is not byte for byte the canonical one
// for (digest, size), takes the infohash most holders agree on (the SHA-1 of
// the info bytes, computed here: anacrolix/torrent v1.61.0 would accept info
// bytes that do not hash to a torrent's infohash, so the library is never
// asked to fetch metadata), and downloads from every holder and every other
// downloader it finds under the infohash at once, with the origin as a BEP 19
// web seed. The reader streams in order, only pieces that passed their SHA-1;
// at the end it checks the SHA-256 and fails (banning the metainfo's
// vouchers) on a mismatch. The caller verifies again before storing.
//
// Transport: peers connect over TCP only (the pure-Go uTP stalled transfers);
// the UDP socket on the same port carries the DHT.
//
// Reach: mode "lan" bootstraps the DHT only from configured and runtime
// (AddBootstrap) addresses and never contacts public routers; "public" adds
// the library's public routers; "off" disables everything. The library's
// periodic per-torrent DHT announces are off: the node re-announces seeded
// blobs itself, paced (see announcer): every 30 minutes the blobs read within
// Config.AnnounceIdle, and a re-announce whose walk found SaturatedPeers
// holders under a key sends no announce_peer there (a first announce always
// does). A bootstrap address is pinged until it
// answers (a node may start before its bootstrap node). A lookup starts with
// the holders announced to the node itself, since a traversal never queries
// the node it runs on. A node answers get_peers for its own blobs: at its
// listen address, or, listening on every address, at the addresses DHT nodes
// report seeing it at (BEP 42's "ip"), kept only when the node can bind them.
//
// Downloads in flight (flight.go): a node downloading a blob beyond its site
// announces it under a flight key with its pkgswarm HTTP port (AnnounceFlight),
// and Lookup returns the HTTP addresses of the nodes downloading and of those
// seeding a blob; the peer protocol (package proxy, proxy/fetch/lan) moves the
// bytes. The swarm package moves none of them itself.
//
// Trust: a peer that sends a piece failing its hash is banned by the library
// (logged at Warn and listed in Stats); a holder serving non-canonical
// metainfo, or metainfo whose data does not hash to the digest, is banned by
// IP for an hour. The package never decides that a blob is verified: it only
// seeds what Blobs returns, which must be verified.
package swarm
