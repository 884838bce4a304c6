// Package store is pkgswarm's content store: verified blobs as plain files plus a
// small badger index.
//
// Layout of DIR: blobs/sha256/ab/abcd… (blob files, lowercase hex SHA-256;
// Open makes all 256 shard directories, so no commit makes one), tmp/
// (downloads in progress), index/ (badger), lock (held while open).
//
// Blobs are content-addressed files. A blob is written through a Writer into a
// temporary file under DIR/tmp, hashed while it streams, and renamed into
// place only when its digest equals the one the caller expected; the file is then read-only (mode 0444) and is
// never modified again, only deleted (DeleteBlob, Evict, Verify). Any number of
// Followers may read a Writer's bytes while they arrive; a Follower reports io.EOF
// only after a successful Commit, so a reader can never take a partial or
// mismatching download for a whole one. Follower.CopyTo (and WriteTo, which
// io.Copy calls) keeps the same promises and hands a connection the file, so
// that the kernel sends the bytes from the page cache (sendfile(2)).
//
// badger/v4 holds only small index values, each under a one-byte key prefix:
// URL → digest and response headers, path → expected digest, accepted roots per
// repository, pin sets, per-blob size and last access, and a generic metadata
// namespace for other tiers. Badger never holds blob bytes.
//
// Durability comes in batches (Options.SyncDelay, default one second): a commit
// marks its blob not-yet-synced in the index, and a background loop makes every
// blob committed in the window durable (an fsync of each and of its directory),
// then clears their marks; Close syncs what is left. A negative SyncDelay fsyncs each blob and its
// directory before Commit returns instead.
//
// Crash safety: a kill -9 at any moment loses at most the downloads in flight;
// a power loss also the blobs committed since the last batch sync. Open deletes
// everything under DIR/tmp and reconciles the index with the blob files: a
// record without a file is dropped, and a file that is marked not-yet-synced or
// has no record is hashed and kept only if it hashes to its name. Nothing
// partial or torn is ever served.
//
// Size bound: when Options.MaxBytes is set, a Commit that takes the store over the
// bound evicts least-recently-used blobs down to 95% of the bound. Blobs in a pin
// set (for example those referenced by the newest signed roots) are evicted only
// after every unpinned blob. Accesses are recorded in memory and written to the
// index in batches, not once per hit.
//
// Every "not found" error wraps ErrNotFound; every digest mismatch wraps
// ErrDigestMismatch. A Store is safe for concurrent use; one directory can be
// opened by one Store at a time (Open takes a lock file).
package store
