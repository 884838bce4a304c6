package rig

import (
	"strings"
	"testing"
)

// TestStoreLogsGoToTheNodesLog: the store a rig node runs on logs where the
// node does (the test's log and Node.Logs, or nowhere with Quiet), not to
// the process's default logger, which a benchmark prints between its
// results.
func TestStoreLogsGoToTheNodesLog(t *testing.T) {
	n := Start(t, Options{})
	n.Stop()
	if logs := n.Logs.String(); !strings.Contains(logs, "content store open") {
		t.Errorf("the node's log has no line of its store (want %q):\n%s", "content store open", logs)
	}
}
