// Package rpmmd parses and verifies rpm-md ("repodata", dnf/yum) repository
// metadata: repodata/repomd.xml, its detached OpenPGP signature
// repomd.xml.asc, and the primary.xml package list.
//
// The chain of trust is repomd.xml (signature checked by VerifyRepomd with
// ProtonMail go-crypto before anything is parsed) -> the SHA-256 of each
// metadata file it lists -> the SHA-256 and size of each package in
// primary.xml. Only SHA-256 counts: entries with other checksum types (sha1,
// md5, sha512...) are parsed but give no digest (SHA256 nil), so no
// Expectation is made from them. Package locations with ".." segments, an
// absolute path or a URL scheme are refused outright, and so is a field or
// attribute given twice, which two parsers could read differently.
//
// Memory is bounded whatever the input. encoding/xml holds a whole token in
// memory and keeps no limit of its own, so both parsers read it through a
// reader that stops it at an exact byte offset, one token at a time:
//
//   - one token (a tag with its attributes, a text node, a comment, CDATA,
//     a directive): MaxToken, 256 KiB; real ones are at most some KiB
//     (package descriptions);
//   - one <package> of primary.xml: MaxPackageSize, 16 MiB; the largest
//     real ones (kernel modules, TeX Live) are some hundred KiB;
//   - element nesting 64 deep (primary.xml uses 5), 64 attributes per
//     element (rpm:entry has 6), 64 KiB of text per kept field (a name, a
//     checksum, a location: paths are at most 4 KiB);
//   - repomd.xml: MaxRepomd (4 MiB) in all and 1024 <data> entries (real
//     ones: a few KiB, about 20 entries); repomd.xml.asc: MaxRepomdSignature
//     (64 KiB; one signature takes about 1 KiB), checked before any
//     signature work.
//
// A bound stops parsing with an error wrapping repoindex.ErrTooLarge that
// names the file, the byte offset and the bound, before the bytes past it
// are read. ParsePrimary streams: memory does not grow with the number of
// packages; it stays under a few MiB (a tag of MaxToken bytes costs at most
// 13 MiB of transient attributes in the tests). Callers decompress
// primary.xml.gz/.xz/.zst themselves (repoindex/decompress) and bound the
// decompressed size. The package does no I/O beyond the readers it is given.
package rpmmd
