package repoindex

import "errors"

// ErrTooLarge is wrapped by every error that a bound of a repoindex parser
// returns: a file, line, token, header or entry count beyond what any real
// repository needs, or a decompressed size past the caller's limit. The
// input is refused whole; callers can tell it apart (errors.Is) from a
// malformed or badly signed file, e.g. to stop retrying a hostile mirror
// rather than report a corrupt transfer. The message says which file, which
// limit and its value.
var ErrTooLarge = errors.New("input exceeds a size limit")
