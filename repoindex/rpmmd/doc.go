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
// absolute path or a URL scheme are refused outright.
//
// ParsePrimary streams: it walks encoding/xml tokens and decodes one
// <package> element at a time, so memory stays bounded by the largest
// package entry, not the file. Callers decompress primary.xml.gz/.xz/.zst
// themselves (repoindex/decompress) and bound the decompressed size.
// The package does no I/O beyond the readers it is given.
package rpmmd
