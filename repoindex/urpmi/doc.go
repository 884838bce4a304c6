// Package urpmi parses the metadata of urpmi media (Mageia, OpenMandriva and
// Mandriva trees) and classifies urpmi request paths.
//
// A tree is distrib/<ver>/<arch>/ with a global media/media_info/media.cfg
// (INI: a [media_info] section of globals, then one section per medium named
// by its path under media/) and, per medium, media/<section>/<repo>/ holding
// the rpms and a media_info/ directory with MD5SUM (md5sum(1) output),
// synthesis.hdlist.cz (the package index), hdlist.cz, pubkey (the armored
// signing key), descriptions and {info,files,changelog}.xml.lzma, sometimes
// with immutable copies named YYYYMMDD-HHMMSS-<name>.
//
// Nothing in that metadata is signed. What it gives is identity, not proof:
// the synthesis names each package (NEVRA) and its exact file size, and
// MD5SUM pins the synthesis. Proof comes from the rpm header signatures
// (package repoindex/rpmsig); peers are asked for an rpm by NameKey, which
// binds the medium's signing keys, the NEVRA and the size.
//
// The parsers stream, bound the memory any one line or file can take, and
// return errors that name the line and what was wrong; a bound's error
// wraps repoindex.ErrTooLarge. A synthesis line is at most 8 MiB (real
// @provides@ lines are some hundred KiB), read into a doubling buffer and
// never split into more than the fields used; a decompressed synthesis at
// most MaxSynthesis (1 GiB); MD5SUM at most 1 MiB; media.cfg at most 4 MiB,
// 1,024 sections and 16Ki keys in all (real ones: some 50 sections). ParseSynthesis takes
// decompressed bytes and says so when handed a compressed stream;
// ParseSynthesisCompressed sniffs and decompresses with repoindex/decompress.
// ExpectMD5 turns an MD5SUM entry into a repoindex.Expectation that never
// lets the file come from peers (MD5 proves no origin). No I/O happens
// beyond the readers and files given; the only pkgswarm packages imported
// are repoindex and repoindex/decompress.
package urpmi
