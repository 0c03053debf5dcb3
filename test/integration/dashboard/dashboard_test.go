package dashboard

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const safeModeKey = "infera.io/safe-mode-requested"

func saName(who string) string { return "system:serviceaccount:" + callerNS + ":" + who }

// safeMode reads a Node's safe-mode annotation from the API server.
func safeMode(t *testing.T, node string) (string, bool) {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := n.Annotations[safeModeKey]
	return v, ok
}

func waitSafeMode(t *testing.T, node string, want bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		v, _ := safeMode(t, node)
		if (v == "true") == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %s=%q, want requested=%v", node, safeModeKey, v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOperatorJourney: sign in, the fleet, filter and sort, drill down to a
// node and a pod, safe mode on and off with a reason through the
// confirmation step, a cancelled selector action, the audit entries and
// the savings.
func TestOperatorJourney(t *testing.T) {
	ctx := browser(t)
	signIn(t, ctx, operator)

	// Fleet.
	do(t, ctx, "fleet",
		waitFor(textOf("#fleet-count", "4 of 4 nodes match; rows 1–4 shown.")),
		waitFor(textOf("#summary-h", "Summary")),
		waitFor(textOf("#fleet-table", "dash-n1")),
	)
	focused, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.activeElement.textContent"))
	if focused != "Fleet" {
		t.Errorf("after sign-in the focus is on %q, want the Fleet heading", focused)
	}
	checkLabels(t, ctx, "fleet")
	screenshot(t, ctx, "fleet")
	do(t, ctx, "filter the fleet by label",
		fill("#fleet-filter", "pool=b"),
		waitFor(textOf("#fleet-count", "2 of 4 nodes match")),
	)
	rows, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#fleet-table tbody th")].map(e => e.innerText.trim())`))
	if strings.Join(rows, ",") != "dash-n2,dash-n3" {
		t.Errorf("fleet filtered by pool=b shows %v, want dash-n2, dash-n3", rows)
	}
	do(t, ctx, "sort by node, descending",
		fill("#fleet-filter", ""),
		waitFor(textOf("#fleet-count", "4 of 4 nodes match; rows 1–4 shown.")),
		chromedp.Click(chromedp.CSS(`#fleet-table thead th:first-child button`)),
		waitFor(`document.querySelector("#fleet-table thead th").getAttribute("aria-sort") === "descending"`),
	)
	rows, _ = chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#fleet-table tbody th")].map(e => e.innerText.trim())`))
	if len(rows) != 4 || rows[0] != "dash-n4" || rows[3] != "dash-n1" {
		t.Errorf("fleet sorted by name descending = %v", rows)
	}
	do(t, ctx, "select by agent state",
		chromedp.SetValue(chromedp.ID("fleet-state"), "refused"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("fleet-state").dispatchEvent(new Event("change", {bubbles: true}))`),
		waitFor(textOf("#fleet-count", "1 of 4 nodes match")),
		waitFor(textOf("#fleet-table tbody", "dash-n3")),
		chromedp.SetValue(chromedp.ID("fleet-state"), ""),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("fleet-state").dispatchEvent(new Event("change", {bubbles: true}))`),
		waitFor(textOf("#fleet-count", "4 of 4 nodes match; rows 1–4 shown.")),
	)

	// Node: tiers → pods, and the panels this gateway cannot fill yet.
	do(t, ctx, "open node dash-n1",
		chromedp.Click(chromedp.CSS(`#fleet-table a[href="#/nodes/dash-n1"]`)),
		waitFor(textOf("h1", "Node dash-n1")),
		waitFor(textOf("#pods-h ~ details", "critical: 1 pod")),
		waitFor(textOf("main", "default/crit")),
		waitFor(textOf("main", "enforcing/cgroup")),
		// This gateway has no agents section: the node's agent is not
		// reached, and the view says so per node instead of agent columns.
		waitFor(textOf(`[data-testid="agent-unreached"]`, "The agent of node dash-n1 was not reached: the gateway is not configured to reach the node agents")),
		waitFor(textOf("#config-in-force", "Could not load the status of the agent of node dash-n1")),
		waitFor(textOf("#config-in-force", "not configured to reach the node agents")),
	)
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#pods-h ~ details th")].filter(e => e.innerText.trim() === "Agent tier").length`)); n != 0 {
		t.Errorf("the pods table shows %d Agent tier columns although no agent was reached", n)
	}
	text := pageText(ctx)
	for _, want := range []string{"normal: 2 pods", "default/deflated", "overcommitted", "Top threads", "Config in force", "Cgroup knobs in force", "Live performance"} {
		if !strings.Contains(text, want) {
			t.Errorf("node view does not show %q", want)
		}
	}
	// The agent's panels say why they are empty, in the gateway's words.
	do(t, ctx, "the agent's panels without an agent",
		waitFor(textOf("#top-threads", "Could not load the observation of the agent of node dash-n1")),
		waitFor(textOf("#cgroup-knobs", "not configured to reach the node agents")),
		waitFor(textOf("#live-perf", "not configured to reach the node agents")),
	)
	screenshot(t, ctx, "node")

	// Pod: explain-tier, the manifest and the Events (read as the caller).
	do(t, ctx, "open pod default/crit",
		chromedp.Click(chromedp.CSS(`a[href="#/pods/default/crit"]`)),
		waitFor(textOf("#pod-tier", "Tier critical")),
		waitFor(textOf("main", "infera-critical")),
		waitFor(textOf("#pod-manifest", "kind: Pod")),
		waitFor(textOf("#pod-manifest", "priorityClassName: infera-critical")),
		waitFor(textOf("#pod-events", "Successfully assigned default/crit to dash-n1")),
	)
	screenshot(t, ctx, "pod")

	// Actions: from the node, safe mode on with a reason.
	do(t, ctx, "node → change safe mode",
		chromedp.Click(chromedp.CSS(`.crumbs a[href="#/nodes/dash-n1"]`)),
		waitFor(textOf("h1", "Node dash-n1")),
		chromedp.Click(chromedp.CSS(`a[href="#/actions/dash-n1"]`)),
		waitFor(textOf("h1", "Actions")),
		waitFor(`document.getElementById("action-target").value === "dash-n1"`),
	)
	checkLabels(t, ctx, "actions")
	do(t, ctx, "review without a reason",
		chromedp.Click(chromedp.ID("action-review")),
		waitFor(textOf("#reason-error", "A reason is required")),
		waitFor(`document.activeElement.id === "action-reason"`),
	)
	if _, ok := safeMode(t, "dash-n1"); ok {
		t.Fatalf("node dash-n1 has %s before any confirmed action", safeModeKey)
	}
	do(t, ctx, "request safe mode: review",
		chromedp.SendKeys(chromedp.ID("action-reason"), "kernel upgrade on dash-n1"),
		chromedp.Click(chromedp.ID("action-review")),
		waitFor(textOf(".confirm", "Request safe mode on node dash-n1, because: “kernel upgrade on dash-n1”.")),
	)
	if _, ok := safeMode(t, "dash-n1"); ok {
		t.Fatalf("the review step alone set %s on dash-n1", safeModeKey)
	}
	screenshot(t, ctx, "actions-confirm")
	do(t, ctx, "request safe mode: confirm",
		chromedp.Click(chromedp.ID("action-confirm")),
		waitFor(textOf("#action-result", "changed")),
	)
	waitSafeMode(t, "dash-n1", true)
	screenshot(t, ctx, "actions-result")

	do(t, ctx, "withdraw safe mode",
		chromedp.Click(chromedp.ID("mode-off")),
		chromedp.SendKeys(chromedp.ID("action-reason"), "upgrade done"),
		chromedp.Click(chromedp.ID("action-review")),
		waitFor(textOf(".confirm", "Withdraw the safe-mode request on node dash-n1")),
		chromedp.Click(chromedp.ID("action-confirm")),
		waitFor(textOf("#action-result", "changed")),
	)
	waitSafeMode(t, "dash-n1", false)

	// A selector action lists the matching nodes; Escape cancels it.
	do(t, ctx, "selector action, cancelled",
		chromedp.Click(chromedp.ID("target-selector")),
		fill("#action-target", "pool=b"),
		chromedp.Click(chromedp.ID("mode-on")),
		chromedp.SendKeys(chromedp.ID("action-reason"), "drill"),
		chromedp.Click(chromedp.ID("action-review")),
		waitFor(textOf(".confirm", "2 nodes now: dash-n2, dash-n3")),
		waitFor(`document.activeElement.classList.contains("confirm")`),
		chromedp.SendKeys(chromedp.CSS(".confirm"), kb.Escape),
		waitFor(`document.querySelector(".confirm") === null`),
	)
	for _, n := range []string{"dash-n2", "dash-n3"} {
		if _, ok := safeMode(t, n); ok {
			t.Errorf("a cancelled action set %s on %s", safeModeKey, n)
		}
	}

	// Audit: who, what, when, why, result.
	do(t, ctx, "audit",
		chromedp.Click(chromedp.CSS(`nav a[href="#/audit"]`)),
		// The view loads once; the last action's entry may land just
		// after, so refresh until both are listed.
		waitRefreshing(textOf("#audit-table", "kernel upgrade on dash-n1")+" && "+textOf("#audit-table", "upgrade done"), "#audit-refresh"),
	)
	rowsText, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#audit-table tbody tr")].map(r => r.innerText)`))
	var on, off bool
	for _, r := range rowsText {
		if strings.Contains(r, "kernel upgrade on dash-n1") {
			on = strings.Contains(r, saName(operator)) && strings.Contains(r, "safe-mode-on") && strings.Contains(r, "dash-n1") && strings.Contains(r, "200")
		}
		if strings.Contains(r, "upgrade done") {
			off = strings.Contains(r, saName(operator)) && strings.Contains(r, "safe-mode-off") && strings.Contains(r, "200")
		}
	}
	if !on || !off {
		t.Errorf("audit rows %q: want the safe-mode-on and -off actions by %s on dash-n1 with their reasons and 200", rowsText, saName(operator))
	}
	screenshot(t, ctx, "audit")

	// Savings.
	do(t, ctx, "savings",
		chromedp.Click(chromedp.CSS(`nav a[href="#/savings"]`)),
		waitFor(textOf("#savings-pods", "1")),
		waitFor(textOf("#savings-freed", "750m")),
		// The rightsizer is its own view now.
		waitFor(`document.querySelector('main a[href="#/rightsizing"]') !== null`),
		waitFor(textOf("main", "No OvercommitProfiles.")),
	)
	screenshot(t, ctx, "savings")
}

// TestDenied: a caller without a role, and a viewer on operator views, see
// what they may not do, in words, and nothing changes.
func TestDenied(t *testing.T) {
	ctx := browser(t)
	signIn(t, ctx, nobody)
	do(t, ctx, "fleet as nobody",
		waitFor(`document.querySelector("[data-testid=denied]") !== null`),
		waitFor(textOf("[data-testid=denied]", "Not allowed")),
		waitFor(textOf("[data-testid=denied]", saName(nobody))),
	)
	screenshot(t, ctx, "denied")

	ctx = browser(t)
	signIn(t, ctx, viewer)
	do(t, ctx, "fleet as viewer",
		waitFor(textOf("#fleet-table", "dash-n2")),
		chromedp.Navigate(server.URL+"/#/audit"),
		waitFor(textOf("[data-testid=denied]", "You may not see the audit log")),
		waitFor(textOf("[data-testid=denied]", "auditevents")),
	)
	do(t, ctx, "pod as viewer: the tier, but not the manifest",
		chromedp.Navigate(server.URL+"/#/pods/default/crit"),
		waitFor(textOf("#pod-tier", "Tier critical")),
		waitFor(textOf("main", "You may not see this pod's manifest: the API server refused your own identity")),
		waitFor(textOf("main", `User "`+saName(viewer)+`" cannot get resource "pods"`)),
	)
	screenshot(t, ctx, "denied-manifest")
	do(t, ctx, "safe mode as viewer",
		chromedp.Navigate(server.URL+"/#/actions/dash-n2"),
		waitFor(`document.getElementById("action-target")?.value === "dash-n2"`),
		chromedp.SendKeys(chromedp.ID("action-reason"), "should be refused"),
		chromedp.Click(chromedp.ID("action-review")),
		chromedp.WaitVisible(chromedp.ID("action-confirm")),
		chromedp.Click(chromedp.ID("action-confirm")),
		waitFor(textOf("#action-result [data-testid=denied]", "You may not change safe mode")),
		waitFor(textOf("#action-result", "safemodes")),
	)
	if v, ok := safeMode(t, "dash-n2"); ok {
		t.Errorf("a viewer's refused action left %s=%q on dash-n2", safeModeKey, v)
	}
	screenshot(t, ctx, "denied-action")
}

// TestSignIn: a token the API server rejects returns to the sign-in page
// with the reason; signing out forgets the token.
func TestSignIn(t *testing.T) {
	ctx := browser(t)
	tokens["forged"] = "not-a-token"
	signIn(t, ctx, "forged")
	do(t, ctx, "forged token",
		waitFor(textOf("#signin-message", "The gateway did not accept the token")),
		chromedp.WaitVisible(chromedp.ID("token")),
	)
	stored, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("temper.dashboard.token") ?? ""`))
	if stored != "" {
		t.Errorf("a rejected token stays in session storage")
	}
	checkLabels(t, ctx, "sign-in")

	signIn(t, ctx, viewer)
	do(t, ctx, "signed in; reload keeps the session",
		waitFor(textOf("#fleet-table", "dash-n1")),
		chromedp.Reload(),
		waitFor(textOf("#fleet-table", "dash-n1")),
		chromedp.Click(chromedp.ID("signout")),
		waitFor(textOf("#signin-message", "You signed out.")),
	)
	stored, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("temper.dashboard.token") ?? ""`))
	if stored != "" {
		t.Errorf("after sign-out the token is still in session storage")
	}
}

// TestContrastCheckFails: the contrast check that every screenshot runs
// reports light grey text on white, so a passing check means something.
func TestContrastCheckFails(t *testing.T) {
	ctx := browser(t)
	do(t, ctx, "sign-in page", chromedp.Navigate(server.URL+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
		const p = document.createElement("p"); p.textContent = "faint text"; p.style.color = "#bbbbbb";
		document.querySelector("main").appendChild(p);
		return `+lowContrast+`; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || !strings.HasPrefix(bad[0], "faint text") {
		t.Errorf("low-contrast check on #bbb text over white = %v, want exactly that text", bad)
	}
}

// tabTo presses Tab until the focused element satisfies the JavaScript
// predicate (on document.activeElement, named e), at most 40 times.
func tabTo(t *testing.T, ctx context.Context, pred string) {
	t.Helper()
	for range 40 {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(e => !!(`+pred+`))(document.activeElement)`))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("40 Tabs did not reach %s; page text: %s", pred, pageText(ctx))
}

// TestKeyboard: the whole journey to a safe-mode action works with the
// keyboard alone: sign in, filter, open a node, open the action, give the
// reason, review and confirm.
func TestKeyboard(t *testing.T) {
	ctx := browser(t)
	t.Cleanup(func() {
		n, err := kube.CoreV1().Nodes().Get(context.Background(), "dash-n4", metav1.GetOptions{})
		if err == nil && n.Annotations[safeModeKey] != "" {
			delete(n.Annotations, safeModeKey)
			_, _ = kube.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		}
	})
	do(t, ctx, "sign-in page",
		chromedp.Navigate(server.URL+"/"),
		waitFor(`document.activeElement.id === "token"`),
		fill("#token", tokens[operator]), // pasted
	)
	tabTo(t, ctx, `e.id === "signin"`)
	do(t, ctx, "Enter signs in", chromedp.KeyEvent(kb.Enter), waitFor(textOf("#fleet-count", "4 of 4 nodes match")))
	tabTo(t, ctx, `e.id === "fleet-filter"`)
	do(t, ctx, "type a filter", chromedp.KeyEvent("dash-n4"), waitFor(textOf("#fleet-count", "1 of 4 nodes match")))
	tabTo(t, ctx, `e.getAttribute("href") === "#/nodes/dash-n4"`)
	do(t, ctx, "Enter opens the node", chromedp.KeyEvent(kb.Enter), waitFor(textOf("h1", "Node dash-n4")))
	tabTo(t, ctx, `e.getAttribute("href") === "#/actions/dash-n4"`)
	do(t, ctx, "Enter opens the action", chromedp.KeyEvent(kb.Enter),
		waitFor(`document.getElementById("action-target")?.value === "dash-n4"`))
	tabTo(t, ctx, `e.id === "action-reason"`)
	do(t, ctx, "type the reason", chromedp.KeyEvent("keyboard only"))
	tabTo(t, ctx, `e.id === "action-review"`)
	do(t, ctx, "Enter reviews", chromedp.KeyEvent(kb.Enter),
		waitFor(textOf(".confirm", "Request safe mode on node dash-n4, because: “keyboard only”.")))
	tabTo(t, ctx, `e.id === "action-confirm"`)
	do(t, ctx, "Enter confirms", chromedp.KeyEvent(kb.Enter), waitFor(textOf("#action-result", "changed")))
	waitSafeMode(t, "dash-n4", true)
}

// setSafeModeAsAdmin changes a Node's safe-mode annotation behind the
// dashboard's back, as an operator with kubectl would.
func setSafeModeAsAdmin(t *testing.T, node string, on bool) {
	t.Helper()
	patch := `{"metadata":{"annotations":{"` + safeModeKey + `":null}}}`
	if on {
		patch = `{"metadata":{"annotations":{"` + safeModeKey + `":"true"}}}`
	}
	if _, err := kube.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestLiveViews: a change made outside the dashboard reaches an open node
// view and the fleet through /api/v1/events, without a reload.
func TestLiveViews(t *testing.T) {
	ctx := browser(t)
	t.Cleanup(func() { setSafeModeAsAdmin(t, "dash-n3", false) })
	signIn(t, ctx, viewer)
	do(t, ctx, "node view",
		waitFor(textOf("#fleet-count", "4 of 4 nodes match")),
		chromedp.Navigate(server.URL+"/#/nodes/dash-n3"),
		waitFor(textOf("#node-safe-mode", "not requested")),
		waitFor(textOf("#events-h + p", "nothing has happened")),
	)
	setSafeModeAsAdmin(t, "dash-n3", true)
	do(t, ctx, "the node view follows the change",
		waitFor(textOf(".events", "SafeModeRequestChanged")),
		waitFor(textOf(".events", "dash-n3: safe mode requested")),
		waitFor(`document.getElementById("node-safe-mode").innerText.trim() === "requested"`),
	)
	do(t, ctx, "fleet view",
		chromedp.Click(chromedp.CSS(`nav a[href="#/fleet"]`)),
		waitFor(textOf("#fleet-count", "4 of 4 nodes match")),
		chromedp.Click(chromedp.CSS(`.filters input[type=checkbox]`)), // "Safe mode requested"
		waitFor(textOf("#fleet-count", "1 of 4 nodes match")),
	)
	setSafeModeAsAdmin(t, "dash-n3", false)
	do(t, ctx, "the fleet follows the change",
		waitFor(textOf(".events", "safe-mode request withdrawn")),
		waitFor(textOf("#fleet-count", "0 of 4 nodes match")),
	)
}
