// Package decompress opens the compressed forms in which apt repositories
// publish their indexes: gzip (.gz), xz (.xz), bzip2 (.bz2), zstd (.zst),
// lz4 frames (.lz4) and xz's legacy "lzma alone" format (.lzma), plus
// uncompressed data.
//
// NewReader chooses the decoder by the file name's extension, as apt does;
// Sniff chooses it by magic bytes, for data whose name says nothing. Both
// return a reader of the decompressed bytes whose Close releases the decoder
// but never closes the underlying reader. The *Limit variants stop with an
// error wrapping ErrTooLarge (repoindex.ErrTooLarge) once the output would
// exceed a byte limit, so a small compressed file cannot expand into an
// unbounded amount of data (a "decompression bomb"); callers pick the limit
// (NewReader and Sniff have none).
//
// The memory of one decoder is bounded whatever its input: a decoder
// allocates the window or dictionary a header asks for, and a few bytes of
// header can ask for GiBs. zstd windows and xz/lzma dictionaries over
// 64 MiB are refused with an error wrapping ErrTooLarge (the highest presets
// use 64 MiB: xz -9 and zstd --ultra -21; zstd -22 and --long=27 ask for
// 128 MiB). xz files are walked as the decoder reads them (streams, blocks,
// LZMA2 chunk headers, index, padding) so that the dictionary of every
// block of every stream is checked before the decoder allocates it, not
// only the first. The rest is small: gzip 32 KiB, bzip2 under 4 MiB, lz4
// at most 8 MiB of block buffers. Tests check each format's bomb against a
// heap budget. Corrupt input gives an error naming the file and the
// format; nothing here touches the network or the file system.
package decompress
