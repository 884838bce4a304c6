// Package fetchtest is the conformance suite every fetch.Source runs, and an
// in-memory Source (Static) that runs it too.
//
// The suite puts the source under test ahead of a good fallback and makes it
// misbehave in each way a real tier can: die after some bytes, lie (other
// bytes), stall, send too much, or not have the file. Whatever the source
// does, the pipeline must commit exactly the expected bytes, resume from the
// fallback at the right offset, and blame (Penalizer, Observer) only a source
// that sent bad bytes or stalled.
package fetchtest
