// Package decompress opens the compressed forms in which apt repositories
// publish their indexes: gzip (.gz), xz (.xz), bzip2 (.bz2), zstd (.zst),
// lz4 frames (.lz4) and xz's legacy "lzma alone" format (.lzma), plus
// uncompressed data.
//
// NewReader chooses the decoder by the file name's extension, as apt does;
// Sniff chooses it by magic bytes, for data whose name says nothing. Both
// return a reader of the decompressed bytes whose Close releases the decoder
// but never closes the underlying reader. The *Limit variants stop with an
// error wrapping ErrTooLarge once the output would exceed a byte limit, so a
// small compressed file cannot expand into an unbounded amount of data (a
// "decompression bomb"). Decoders refuse windows and dictionaries larger
// than the biggest presets of their tools use (zstd 128 MiB, lzma 256 MiB);
// an xz stream's dictionary is allocated as its header asks, and only the
// part the output limit lets it write is ever touched. Corrupt input gives an error naming the file and the
// format; nothing here touches the network or the file system.
package decompress
