//go:build linux

package browser

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/imcluster/imcluster/test/testdeps"
)

// TestWebChat drives the web chat page (web/, served by `imctl web`) in
// headless Chromium against a real cluster: two pages, as two users in
// separate browser contexts (own localStorage), chat both ways with
// delivered/read marks and an image; one reloads and sees the history and
// the right unread count; one goes away (its page closed) and gets the
// messages sent meanwhile when it returns; a recall reaches the other
// side. Screenshots go to the test's artifact folder (go test -artifacts)
// or .run/test-artifacts/<test>/.
func TestWebChat(t *testing.T) {
	chromium := findChromium(t)
	c := newCluster(t)
	a, b := c.startPush("push-a"), c.startPush("push-b")
	webURL := startWeb(t, c, a.wsURL+","+b.wsURL)
	shots := artifactDir(t)
	t.Logf("screenshots in %s", shots)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
			chromedp.WindowSize(1100, 720))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	alice, bob := testdeps.Unique("alice"), testdeps.Unique("bob")
	pa := newPage(t, browser, "alice", shots)
	pb := newPage(t, browser, "bob", shots)

	// Both log in with dev tokens.
	for _, p := range []struct {
		*page
		user string
	}{{pa, alice}, {pb, bob}} {
		p.do(chromedp.Navigate(webURL), chromedp.WaitVisible(chromedp.ID("login-user")),
			chromedp.SendKeys(chromedp.ID("login-user"), p.user), chromedp.Click(chromedp.ID("login-btn")))
		p.waitConnected()
	}

	// alice opens a chat with bob and writes.
	pa.do(chromedp.SendKeys(chromedp.ID("new-peer"), bob), chromedp.Click(chromedp.ID("new-open")),
		chromedp.WaitVisible(chromedp.ID("compose")))
	pa.sendText("hello bob")
	pa.waitMsg("hello bob", true)

	// bob sees the conversation with one unread message, opens it.
	pb.wait("alice's conversation with 1 unread in bob's list", fmt.Sprintf(`unreadOf(%q) === "1"`, alice))
	pb.shot("1-bob-unread")
	pb.openConv(alice)
	pb.waitMsg("hello bob", false)

	// alice's message shows delivered, then read (bob has it open).
	pa.wait("the read mark on alice's message", `markOf("hello bob") === "read"`)

	// bob answers; alice (conversation open) gets it.
	pb.sendText("hi alice")
	pa.waitMsg("hi alice", false)

	// An image by URL (the page's sample, served by imctl web).
	pa.do(chromedp.SetValue(chromedp.ID("image-url"), "/sample.svg"), chromedp.Click(chromedp.ID("send-image-btn")))
	pb.wait("the image on bob's page, loaded", `[...document.querySelectorAll("#messages img")].some(i => i.src.endsWith("/sample.svg") && i.complete && i.naturalWidth > 0)`)
	pa.shot("2-alice-chat")
	pb.shot("2-bob-chat")

	// bob reloads: logged in again (saved session), nothing unread, history there.
	pb.do(chromedp.Reload())
	pb.waitConnected()
	pb.wait("alice's conversation in bob's list after the reload, nothing unread", fmt.Sprintf(`unreadOf(%q) === ""`, alice))
	pb.openConv(alice)
	pb.waitMsg("hello bob", false)
	pb.waitMsg("hi alice", true)
	pb.wait("the image in bob's history", `document.querySelectorAll("#messages img").length === 1`)
	pb.shot("3-bob-after-reload")

	// bob goes away (his page closed); alice writes twice; bob comes back.
	pb.do(chromedp.Navigate("about:blank"))
	pa.sendText("while you were away 1")
	pa.sendText("while you were away 2")
	pa.waitMsg("while you were away 2", true)
	pb.do(chromedp.Navigate(webURL))
	pb.waitConnected()
	pb.wait("2 unread for bob on his return", fmt.Sprintf(`unreadOf(%q) === "2"`, alice))
	pb.shot("4-bob-back-unread")
	pb.openConv(alice)
	pb.waitMsg("while you were away 1", false)
	pb.waitMsg("while you were away 2", false)
	pb.wait("messages in order", `texts().join("|").includes("hi alice|while you were away 1|while you were away 2")`)
	pa.wait("the read mark on alice's last message", `markOf("while you were away 2") === "read"`)

	// alice recalls her last message; bob sees it recalled.
	pa.do(chromedp.Click(chromedp.JSPath(`(() => { ` + helpers + `; return [msgOf("while you were away 2").querySelector(".recall-btn")]; })()`)))
	pb.wait("the recall on bob's page", `document.querySelectorAll("#messages .msg.recalled").length === 1 && !texts().includes("while you were away 2")`)
	pa.wait("the recall on alice's page", `document.querySelectorAll("#messages .msg.recalled").length === 1`)
	pa.shot("5-alice-final")
	pb.shot("5-bob-final")

	// No message twice on either page.
	for _, p := range []*page{pa, pb} {
		var dup bool
		p.eval(`(() => { const s = [...document.querySelectorAll("#messages .msg[data-seq]")].map(e => e.dataset.seq); return new Set(s).size !== s.length })()`, &dup)
		if dup {
			t.Fatalf("%s's page shows a message twice", p.name)
		}
	}
}

// TestWebDistUpToDate rebuilds the page (web/build.sh into a temporary
// folder) and compares it with the committed web/dist that imctl embeds.
func TestWebDistUpToDate(t *testing.T) {
	npmInstall(t)
	out := t.TempDir()
	if o, err := run(t, 10*time.Minute, filepath.Join(root, "web"), []string{"OUT=" + out}, "./build.sh"); err != nil {
		t.Fatalf("web/build.sh: %v\n%s", err, o)
	}
	committed := filepath.Join(root, "web", "dist")
	seen := map[string]bool{}
	err := filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		seen[rel] = true
		want, _ := os.ReadFile(path)
		got, err := os.ReadFile(filepath.Join(committed, rel))
		if err != nil || string(got) != string(want) {
			t.Errorf("web/dist/%s is not what web/build.sh makes from the sources: run web/build.sh and commit web/dist", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(committed, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if rel, _ := filepath.Rel(committed, path); !seen[rel] {
				t.Errorf("web/dist/%s is not made by web/build.sh any more: delete it", rel)
			}
		}
		return err
	})
}

// helpers is evaluated in each page before a look (idempotent).
const helpers = `
window.msgOf = (text) => [...document.querySelectorAll("#messages .msg")].find(m => m.querySelector(".text")?.textContent === text);
window.markOf = (text) => msgOf(text)?.querySelector(".mark")?.dataset.mark ?? "";
window.texts = () => [...document.querySelectorAll("#messages .msg .text")].map(e => e.textContent);
window.unreadOf = (peer) => { const li = document.querySelector('#conv-list li[data-peer="' + peer + '"]'); return li ? li.querySelector(".unread").textContent : null; };
`

type page struct {
	t     *testing.T
	name  string
	ctx   context.Context
	shots string
}

func newPage(t *testing.T, browser context.Context, name, shots string) *page {
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{t: t, name: name, ctx: ctx, shots: shots}
	// The first action creates the tab and must run on the page's own
	// context (a timeout context would close the tab when it ends): it
	// is bounded by cancelling the page.
	timer := time.AfterFunc(30*time.Second, cancel)
	err := chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	if !timer.Stop() || err != nil {
		t.Fatalf("opening %s's page: %v", name, err)
	}
	return p
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail("steps", err)
	}
}

func (p *page) eval(expr string, out any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](helpers+";"+expr))
	if err == nil {
		err = json.Unmarshal(v, out)
	}
	if err != nil {
		p.fail("eval "+expr, err)
	}
}

// wait polls the JavaScript predicate cond (with the helpers) until true,
// for at most 45 s (the shared box runs at a load of 20 and more).
func (p *page) wait(what, cond string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 50*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("(() => { "+helpers+"; return !!("+cond+"); })()",
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		p.fail("waiting for "+what, err)
	}
}

func (p *page) waitConnected() {
	p.t.Helper()
	p.wait("the page to connect, the login form gone", `document.getElementById("status").dataset.state === "connected" && getComputedStyle(document.getElementById("login")).display === "none"`)
}

func (p *page) sendText(text string) {
	p.t.Helper()
	p.do(chromedp.SendKeys(chromedp.ID("compose-text"), text), chromedp.Click(chromedp.ID("send-btn")))
}

// waitMsg waits for the message text in the open conversation: stored (it
// has a seq) and from this page's user (mine) or the other.
func (p *page) waitMsg(text string, mine bool) {
	p.t.Helper()
	p.wait(fmt.Sprintf("message %q (mine: %v)", text, mine),
		fmt.Sprintf(`(m => !!m && m.dataset.seq !== undefined && m.classList.contains("mine") === %v)(msgOf(%q))`, mine, text))
}

func (p *page) openConv(peer string) {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#conv-list li[data-peer=%q]`, peer))))
	p.wait("the conversation with "+peer+" open", fmt.Sprintf(`document.getElementById("conv-title").dataset.peer === %q`, peer))
}

func (p *page) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		p.t.Logf("screenshot %s of %s: %v", name, p.name, err)
		return
	}
	f := filepath.Join(p.shots, p.name+"-"+name+".png")
	if err := os.WriteFile(f, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// fail ends the test with what the page showed.
func (p *page) fail(what string, err error) {
	p.t.Helper()
	p.shot("failure")
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	p.t.Fatalf("%s page: %s: %v\npage text:\n%s", p.name, what, err, body)
}

func findChromium(t *testing.T) string {
	t.Helper()
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium (apt-get install chromium)")
	}
	t.Skip("no chromium installed (apt-get install chromium)")
	return ""
}

// startWeb runs `imctl web` with dev tokens for the cluster and returns
// its URL once it answers.
func startWeb(t *testing.T, c *cluster, push string) string {
	t.Helper()
	addr := testdeps.FreeAddr(t)
	log := &lockedBuffer{}
	cmd := exec.Command(filepath.Join(binDir, "imctl"), "web", "--listen", addr, "--api", c.apiURL, "--push", push,
		"--dev-tokens", "--user-key-file", c.userKey)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- imctl web log ---\n%s", tail(log.String(), 4000))
		}
	})
	url := "http://" + addr + "/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("imctl web exited:\n%s", log.String())
		default:
		}
		resp, err := http.Get(url + "config.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("imctl web not answering within 20 s:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// artifactDir is where a test's screenshots go: its artifact directory
// with go test -artifacts (under -outputdir), else .run/test-artifacts/<test>
// in the repository (kept after the test; .run is not committed).
func artifactDir(t *testing.T) string {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	dir := filepath.Join(root, ".run", "test-artifacts", strings.ReplaceAll(t.Name(), "/", "_"))
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}
