// Package lan is the LAN tier of the fetch pipeline: the client side of the
// peer protocol. It asks every LAN peer at once whether it holds (or is
// fetching) a file, and streams from the best answer.
//
// Only files whose expectation gives a signed SHA-256 (by digest) or a name
// key and exact size (urpmi rpms) are ever asked for; the pipeline verifies
// whatever a peer sends. One node of a site fetches a file that several miss
// at once; the others stream from it (see Source.Fetch).
//
// A peer that lies (bytes failing verification), stalls or sends too slowly
// (cut by the pipeline), or promises a file and does not deliver it (answers
// "starting" or is elected to fetch and never starts; answers "complete" and
// then refuses the GET) is banned, by node id through the PeerSet and by
// address here, so that a peer changing its id cannot come straight back.
package lan
