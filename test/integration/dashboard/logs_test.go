package dashboard

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestPodLogs: the pod view shows the tail of a container's log, read by
// the gateway as the caller through the API server's pods/log (served by
// the stand-in kubelet of dash-n1); a smaller tail is one choice away; a
// viewer, who may not read pods/log, sees "Not allowed" naming it while the
// rest of the pod view works.
func TestPodLogs(t *testing.T) {
	ctx := browser(t)
	var b strings.Builder
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&b, "2026-12-03T22:00:%02dZ crit serving request %d\n", i%60, i)
	}
	kubelet.Set("default", "crit", "app", b.String())

	signIn(t, ctx, operator)
	do(t, ctx, "the pod's log, as the operator",
		waitFor(textOf("#fleet-count", "4 of 4 nodes match")),
		chromedp.Navigate(server.URL+"/#/pods/default/crit"),
		waitFor(textOf("#pod-log", "crit serving request 300")),
		waitFor(textOf("#log-summary", "Container app: 200 lines (the last 200 asked)")),
	)
	first, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("pod-log").innerText.split("\n")[0]`))
	if !strings.HasSuffix(first, "crit serving request 101") {
		t.Errorf("the log's first line is %q, want request 101 (the last 200 of 300 lines)", first)
	}
	checkLabels(t, ctx, "pod logs")
	do(t, ctx, "the last 50 lines",
		chromedp.SetValue(chromedp.ID("log-tail"), "50"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("log-tail").dispatchEvent(new Event("change", {bubbles: true}))`),
		waitFor(textOf("#log-summary", "50 lines (the last 50 asked)")),
		waitFor(`document.getElementById("pod-log").innerText.split("\n")[0].endsWith("crit serving request 251")`),
	)
	do(t, ctx, "scroll to the log", chromedp.ScrollIntoView(chromedp.ID("logs-h")))
	screenshot(t, ctx, "pod-logs")

	ctx = browser(t)
	signIn(t, ctx, viewer)
	do(t, ctx, "the pod's log, as a viewer",
		waitFor(textOf("#fleet-count", "4 of 4 nodes match")),
		chromedp.Navigate(server.URL+"/#/pods/default/crit"),
		waitFor(textOf("#pod-tier", "Tier critical")),
		waitFor(textOf("#logs-h ~ [data-testid=denied]", "You may not see the log of container app")),
		waitFor(textOf("#logs-h ~ [data-testid=denied]", `user "`+saName(viewer)+`" cannot get pods/log in namespace default named crit`)),
	)
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#pod-log").length`)); n != 0 {
		t.Errorf("a viewer refused pods/log is shown a log")
	}
	do(t, ctx, "scroll to the log", chromedp.ScrollIntoView(chromedp.ID("logs-h")))
	screenshot(t, ctx, "denied-logs")
}
