// The pod view's logs panel: the tail of one container's log, read by the
// gateway with the caller's own identity (GET .../pods/NAME/log), so the
// API server's RBAC on pods/log decides what the caller sees.
import { Fragment } from "preact";
import { useState } from "preact/hooks";
import { ApiError } from "./api";
import { Loading, Problem, useLoad } from "./ui";

/** PodLogs is GET /api/v1/namespaces/NS/pods/NAME/log. */
export interface PodLogsAnswer {
  namespace: string;
  name: string;
  container: string;
  containers: string[];
  text: string;
  truncated: boolean;
  tailLines: number;
  error: string;
  errorCode: number;
}

const TAILS = [50, 200, 1000, 5000];

export function LogsPanel(props: { namespace: string; name: string }) {
  const { namespace, name } = props;
  const [container, setContainer] = useState("");
  const [tail, setTail] = useState(200);
  const [previous, setPrevious] = useState(false);
  const [logs, reload] = useLoad((c, s) => {
    const q = new URLSearchParams({ tailLines: String(tail) });
    if (container) q.set("container", container);
    if (previous) q.set("previous", "true");
    return c.get<PodLogsAnswer>(
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}/log?${q}`,
      s,
    );
  }, [namespace, name, container, tail, previous]);
  const containers = logs.state === "ok" ? logs.data.containers : container ? [container] : [];
  const shown = logs.state === "ok" ? logs.data.container : container;
  return (
    <section class="panel" aria-labelledby="logs-h">
      <h2 id="logs-h">Logs</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          reload();
        }}
      >
        <label>
          Container
          <select id="log-container" value={shown} onChange={(e) => setContainer((e.target as HTMLSelectElement).value)}>
            {containers.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </label>
        <label>
          Last lines
          <select id="log-tail" value={String(tail)} onChange={(e) => setTail(Number((e.target as HTMLSelectElement).value))}>
            {TAILS.map((n) => (
              <option key={n} value={String(n)}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <label class="check">
          <input type="checkbox" id="log-previous" checked={previous} onChange={(e) => setPrevious((e.target as HTMLInputElement).checked)} />
          Previous instance (before the last restart)
        </label>
        <button type="submit" id="log-reload">
          Reload
        </button>
      </form>
      {logs.state === "loading" && <Loading what="the log" />}
      {logs.state === "error" && <Problem error={logs.error} what="this pod's logs" />}
      {logs.state === "ok" && logs.data.errorCode !== 0 && (
        <Problem error={new ApiError(logs.data.errorCode, logs.data.error)} what={`the log of container ${logs.data.container}`} core />
      )}
      {logs.state === "ok" && logs.data.errorCode === 0 && (
        <Fragment>
          <p class="hint" id="log-summary">
            Container <code>{logs.data.container}</code>: {lineCount(logs.data.text)} lines (the last {logs.data.tailLines} asked)
            {logs.data.truncated ? ", cut to 1 MiB" : ""}.
          </p>
          <pre class="manifest" id="pod-log" tabIndex={0} aria-label={`Log of container ${logs.data.container}`}>
            {logs.data.text || "(empty)"}
          </pre>
        </Fragment>
      )}
    </section>
  );
}

function lineCount(s: string): number {
  if (!s) return 0;
  return s.split("\n").length - (s.endsWith("\n") ? 1 : 0);
}
