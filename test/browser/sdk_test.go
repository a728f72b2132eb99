//go:build linux

package browser

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/model"
)

// TestSDK runs the TypeScript SDK's tests (sdk/ts/test, under Node's test
// runner) against a real cluster: one message and two push processes on
// the shared Kafka, Cassandra and etcd. The node tests get the endpoints
// in their environment and ask the harness's control endpoint for user
// tokens and to stop (drain) or restart a push node.
func TestSDK(t *testing.T) {
	npmInstall(t)
	if out, err := run(t, 10*time.Minute, sdkDir(), nil, "npm", "run", "--silent", "build:test"); err != nil {
		t.Fatalf("building the SDK and its tests: %v\n%s", err, out)
	}
	c := newCluster(t)
	a, b := c.startPush("push-a"), c.startPush("push-b")
	// A cursor ahead of the log (every partition far beyond its end), as a
	// device keeps after the deployment was restored from an older backup:
	// sync answers 410 cursor_expired and the SDK must resync.
	ahead := model.NewSyncCursor(int(c.msgCfg.Kafka.Partitions))
	for i := range ahead.Next {
		ahead.Next[i] = 1 << 40
	}
	ahead.SinceMs = time.Now().UnixMilli()
	env := []string{
		"IM_SDK_API=" + c.apiURL,
		"IM_SDK_PUSH=" + a.wsURL + "," + b.wsURL,
		"IM_SDK_PUSH_NAMES=push-a,push-b",
		"IM_SDK_CTL=" + c.control(),
		"IM_SDK_AHEAD_CURSOR=" + ahead.Encode(),
	}
	files, _ := filepath.Glob(filepath.Join(sdkDir(), "build-test", "test", "*.test.js"))
	if len(files) < 2 {
		t.Fatalf("no compiled tests: %v", files)
	}
	args := append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)
	out, err := run(t, 10*time.Minute, sdkDir(), env, "node", args...)
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	// Every test ran: none skipped for want of the stack.
	if !strings.Contains(out, "ℹ skipped 0") || !strings.Contains(out, "ℹ fail 0") {
		t.Fatal("some SDK tests were skipped or failed (see the output above)")
	}
}
