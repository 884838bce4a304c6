package fetch

// SetAfterLookup makes Get call fn between its look into the store and its
// look for a running download.
func SetAfterLookup(f *Fetcher, fn func()) { f.afterLookup = fn }
