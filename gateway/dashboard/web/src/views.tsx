// The dashboard's views. Each reads only /api/v1; what the gateway could
// not get (a refused call, an agent out of reach) is said, never made up.
import { Component, Fragment, type ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  ApiError,
  cpu,
  enforcementName,
  num,
  tierRank,
  when,
  type AgentReach,
  type AgentStatus,
  type AuditEvent,
  type ClusterEvent,
  type ClusterPod,
  type Fleet,
  type LayeredConfig,
  type NodeView as NodeT,
  type OvercommitProfile,
  type PodDetails,
  type SafeModeResult,
  type Savings,
  type TierExplanation,
  type TierUsage,
} from "./api";
import { Badge, Loading, Problem, stateKind, Title, useClient, useLoad } from "./ui";
import { LogsPanel } from "./logs";
import { AgentPanels } from "./observation";

const STATES = ["enforcing", "observe-only", "safe-mode", "refused", "degraded", "unknown"];

function podsOf(tiers: TierUsage[]): number {
  return tiers.reduce((s, t) => s + t.pods, 0);
}

function requestOf(tiers: TierUsage[], tier: string): number {
  return num(tiers.find((t) => t.tier === tier)?.requestMilli);
}

// ---------------------------------------------------------------- events

/**
 * useEvents keeps the latest fleet events from the NDJSON stream (for one
 * node, or all), and calls onEvent for each.
 */
function useEvents(node: string, onEvent?: (e: ClusterEvent) => void): { events: ClusterEvent[]; error: unknown } {
  const client = useClient();
  const [events, setEvents] = useState<ClusterEvent[]>([]);
  const [error, setError] = useState<unknown>(null);
  const cb = useRef(onEvent);
  cb.current = onEvent;
  useEffect(() => {
    const ac = new AbortController();
    client
      .watch(node, ac.signal, (e) => {
        setEvents((old) => [e, ...old].slice(0, 20));
        cb.current?.(e);
      })
      .catch((err) => {
        if (!ac.signal.aborted) setError(err);
      });
    return () => ac.abort();
  }, [client, node]);
  return { events, error };
}

function EventsPanel(props: { events: ClusterEvent[]; error: unknown }) {
  return (
    <section aria-labelledby="events-h" class="panel">
      <h2 id="events-h">Live events</h2>
      {props.error ? (
        <Problem error={props.error} what="the event stream" />
      ) : props.events.length === 0 ? (
        <p class="hint">Listening on /api/v1/events; nothing has happened since this view opened.</p>
      ) : (
        <ol class="events" aria-live="polite">
          {props.events.map((e) => (
            <li key={String(e.sequence)}>
              <time>{when(e.time)}</time> <strong>{e.type}</strong> {e.node && <a href={"#/nodes/" + e.node}>{e.node}</a>}:{" "}
              {e.message}
              {num(e.dropped) > 0 && ` (${e.dropped} events dropped before this one)`}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

// ----------------------------------------------------------------- fleet

type SortKey = "name" | "state" | "backend" | "safe" | "pods" | "alloc" | "fenced" | "critical" | "fresh";

const COLUMNS: [SortKey, string][] = [
  ["name", "Node"],
  ["state", "Agent"],
  ["backend", "Backend"],
  ["safe", "Safe mode"],
  ["fresh", "Tier load"],
  ["pods", "Pods"],
  ["alloc", "Allocatable"],
  ["fenced", "Fenced"],
  ["critical", "Critical requests"],
];

function sortValue(n: NodeT, k: SortKey): string | number {
  switch (k) {
    case "name":
      return n.name;
    case "state":
      return n.agentState;
    case "backend":
      return n.backend;
    case "safe":
      return n.safeModeRequested ? 1 : 0;
    case "fresh":
      return n.tierLoadFresh ? 1 : 0;
    case "pods":
      return podsOf(n.tiers);
    case "alloc":
      return num(n.allocatableMilli);
    case "fenced":
      return num(n.fencedMilli);
    case "critical":
      return requestOf(n.tiers, "critical");
  }
}

function FleetSummary(props: { fleet: Fleet }) {
  const f = props.fleet;
  return (
    <section aria-labelledby="summary-h" class="panel">
      <h2 id="summary-h">Summary</h2>
      <dl class="cards">
        <div>
          <dt>Nodes</dt>
          <dd>{f.nodes}</dd>
        </div>
        {STATES.filter((s) => f.agentStates[s]).map((s) => (
          <div key={s}>
            <dt>{s}</dt>
            <dd>{f.agentStates[s]}</dd>
          </div>
        ))}
        <div>
          <dt>Safe mode requested</dt>
          <dd>{f.safeModeRequested}</dd>
        </div>
        <div>
          <dt>Stale agents (tier load)</dt>
          <dd>{f.staleTierLoad}</dd>
        </div>
        <div>
          <dt>Allocatable CPU</dt>
          <dd>{cpu(f.allocatableMilli)}</dd>
        </div>
        <div>
          <dt>Fenced for critical</dt>
          <dd>{cpu(f.fencedMilli)}</dd>
        </div>
      </dl>
      {f.tiers.length > 0 && (
        <table class="compact">
          <caption>CPU per tier (nodes with a fresh tier load)</caption>
          <thead>
            <tr>
              <th scope="col">Tier</th>
              <th scope="col">Pods</th>
              <th scope="col">Requests</th>
              <th scope="col">Limits</th>
            </tr>
          </thead>
          <tbody>
            {f.tiers.map((t) => (
              <tr key={t.tier}>
                <th scope="row">{t.tier}</th>
                <td>{t.pods}</td>
                <td>{cpu(t.requestMilli)}</td>
                <td>{num(t.limitMilli) ? cpu(t.limitMilli) : "unlimited"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** TierBar draws a node's requests per tier against its allocatable CPU. */
function TierBar(props: { node: NodeT }) {
  const n = props.node;
  const alloc = num(n.allocatableMilli);
  if (!n.tierLoadFresh || alloc <= 0) return <span class="muted">–</span>;
  const parts = [...n.tiers].sort((a, b) => tierRank(a.tier) - tierRank(b.tier));
  const label = parts.map((t) => `${t.tier} ${cpu(t.requestMilli)}`).join(", ");
  return (
    <span class="tierbar" title={label} role="img" aria-label={label || "no pods"}>
      {parts.map((t) => (
        <span key={t.tier} class={"t-" + t.tier} style={{ width: Math.min(100, (num(t.requestMilli) / alloc) * 100) + "%" }} />
      ))}
    </span>
  );
}

/**
 * FleetRow renders one node; it re-renders only when its node changes, so
 * a filter or a sort of 500 rows only moves rows.
 */
class FleetRow extends Component<{ n: NodeT }> {
  shouldComponentUpdate(next: { n: NodeT }) {
    return next.n !== this.props.n;
  }

  render() {
    const n = this.props.n;
    return (
      <tr>
        <th scope="row">
          <a href={"#/nodes/" + encodeURIComponent(n.name)}>{n.name}</a>
          {!n.ready && <Badge kind="bad">NotReady</Badge>}
        </th>
        <td>
          <Badge kind={stateKind(n.agentState)}>{n.agentState}</Badge>
        </td>
        <td>{n.backend || <span class="muted">–</span>}</td>
        <td>{n.safeModeRequested ? <Badge kind="warn">requested</Badge> : "no"}</td>
        <td>{n.tierLoadFresh ? "fresh" : <Badge kind="muted">stale</Badge>}</td>
        <td class="num">{n.tierLoadFresh ? podsOf(n.tiers) : "–"}</td>
        <td class="num">{cpu(n.allocatableMilli)}</td>
        <td class="num">{n.tierLoadFresh ? cpu(n.fencedMilli) : "–"}</td>
        <td class="num">{n.tierLoadFresh ? cpu(requestOf(n.tiers, "critical")) : "–"}</td>
        <td>
          <TierBar node={n} />
        </td>
      </tr>
    );
  }
}

// Rows per page of the fleet table: the whole fleet is loaded, filtered
// and sorted in memory; the DOM holds one page (the choice is kept for the
// tab).
const PAGE_SIZES = [50, 100, 250, 500, 1000];
const PAGE_SIZE_KEY = "temper.dashboard.rows";

function readPageSize(): number {
  try {
    const n = Number(sessionStorage.getItem(PAGE_SIZE_KEY));
    return PAGE_SIZES.includes(n) ? n : 100;
  } catch {
    return 100;
  }
}

function writePageSize(n: number) {
  try {
    sessionStorage.setItem(PAGE_SIZE_KEY, String(n));
  } catch {
    // storage disabled: this view only
  }
}

export function FleetView() {
  const [fleet, reloadFleet] = useLoad((c, s) => c.get<Fleet>("/api/v1/fleet", s), []);
  const [nodes, reloadNodes] = useLoad((c, s) => c.all<NodeT>("/api/v1/nodes", "nodes", s), []);
  const [filter, setFilter] = useState("");
  const [state, setState] = useState("");
  const [safeOnly, setSafeOnly] = useState(false);
  const [staleOnly, setStaleOnly] = useState(false);
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: "name", desc: false });
  const [pageSize, setPageSize] = useState(readPageSize);
  const [page, setPage] = useState(0);
  // A node's state changed: reload the lists once things settle.
  const timer = useRef<number>(0);
  const ev = useEvents("", () => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      reloadFleet();
      reloadNodes();
    }, 1000) as unknown as number;
  });
  useEffect(() => () => clearTimeout(timer.current), []);

  const rows = useMemo(() => {
    if (nodes.state !== "ok") return [];
    const q = filter.trim().toLowerCase();
    const out = nodes.data.filter(
      (n) =>
        (!state || n.agentState === state) &&
        (!safeOnly || n.safeModeRequested) &&
        (!staleOnly || !n.tierLoadFresh) &&
        (!q ||
          n.name.toLowerCase().includes(q) ||
          n.agentStatus.toLowerCase().includes(q) ||
          n.backend.toLowerCase().includes(q) ||
          Object.entries(n.labels).some(([k, v]) => (k + "=" + v).toLowerCase().includes(q))),
    );
    const dir = sort.desc ? -1 : 1;
    out.sort((a, b) => {
      const x = sortValue(a, sort.key);
      const y = sortValue(b, sort.key);
      const c = x < y ? -1 : x > y ? 1 : 0;
      return c ? c * dir : a.name < b.name ? -1 : 1;
    });
    return out;
  }, [nodes, filter, state, safeOnly, staleOnly, sort]);

  // A new filter or order starts at the first page.
  useEffect(() => setPage(0), [filter, state, safeOnly, staleOnly, sort, pageSize]);
  const pages = Math.max(1, Math.ceil(rows.length / pageSize));
  const first = Math.min(page, pages - 1) * pageSize;
  const shown = rows.slice(first, first + pageSize);

  const rendered = nodes.state === "ok";
  useEffect(() => {
    // The benchmark (test/bench/dashboard) reads this standard mark.
    if (rendered) performance.mark("fleet-rendered");
  }, [rendered]);

  const sortBy = (k: SortKey) => setSort((s) => ({ key: k, desc: s.key === k ? !s.desc : false }));

  return (
    <Fragment>
      <Title>Fleet</Title>
      {fleet.state === "loading" && <Loading what="the fleet summary" />}
      {fleet.state === "error" && <Problem error={fleet.error} what="the fleet" />}
      {fleet.state === "ok" && <FleetSummary fleet={fleet.data} />}
      <section aria-labelledby="nodes-h" class="panel">
        <h2 id="nodes-h">Nodes</h2>
        <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
          <label>
            Filter
            <input
              type="search"
              id="fleet-filter"
              placeholder="name, label k=v, status"
              value={filter}
              onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
            />
          </label>
          <label>
            Agent state
            <select id="fleet-state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
              <option value="">any</option>
              {STATES.map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <label class="check">
            <input type="checkbox" checked={safeOnly} onChange={(e) => setSafeOnly((e.target as HTMLInputElement).checked)} />
            Safe mode requested
          </label>
          <label class="check">
            <input type="checkbox" checked={staleOnly} onChange={(e) => setStaleOnly((e.target as HTMLInputElement).checked)} />
            Stale agents only
          </label>
        </form>
        {nodes.state === "loading" && <Loading what="the nodes" />}
        {nodes.state === "error" && <Problem error={nodes.error} what="the nodes" />}
        {nodes.state === "ok" && (
          <Fragment>
            <div class="filters pager">
              <p role="status" id="fleet-count">
                {rows.length} of {nodes.data.length} nodes match
                {rows.length > 0 && `; rows ${first + 1}–${first + shown.length} shown`}.
              </p>
              <label>
                Rows per page
                <select
                  id="fleet-page-size"
                  value={String(pageSize)}
                  onChange={(e) => {
                    const v = Number((e.target as HTMLSelectElement).value);
                    writePageSize(v);
                    setPageSize(v);
                  }}
                >
                  {PAGE_SIZES.map((n) => (
                    <option key={n} value={String(n)}>
                      {n}
                    </option>
                  ))}
                </select>
              </label>
              <button type="button" id="fleet-prev" disabled={first === 0} onClick={() => setPage(Math.max(0, page - 1))}>
                Previous page
              </button>
              <button type="button" id="fleet-next" disabled={first + pageSize >= rows.length} onClick={() => setPage(page + 1)}>
                Next page
              </button>
            </div>
            <div class="scroll">
              <table id="fleet-table">
                <thead>
                  <tr>
                    {COLUMNS.map(([k, label]) => (
                      <th
                        key={k}
                        scope="col"
                        aria-sort={sort.key === k ? (sort.desc ? "descending" : "ascending") : undefined}
                      >
                        <button type="button" class="sort" onClick={() => sortBy(k)}>
                          {label}
                          <span aria-hidden="true">{sort.key === k ? (sort.desc ? " ▼" : " ▲") : ""}</span>
                        </button>
                      </th>
                    ))}
                    <th scope="col">Requests by tier</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((n) => (
                    <FleetRow key={n.name} n={n} />
                  ))}
                </tbody>
              </table>
            </div>
          </Fragment>
        )}
      </section>
      <EventsPanel events={ev.events} error={ev.error} />
    </Fragment>
  );
}

// ------------------------------------------------------------------ node

/** AgentUnreached is the per-node error of a node whose agent did not answer the gateway. */
function AgentUnreached(props: { reach: AgentReach }) {
  const r = props.reach;
  return (
    <p class="error" role="status" data-testid="agent-unreached">
      The agent of node {r.node} was not reached{r.address ? ` at ${r.address}` : ""}: {r.error}. The pods below are
      from the API server only.
    </p>
  );
}

/**
 * ConfigInForce shows what the node's agent enforces: its status
 * (backend, verified and why) and the scx_layered config in force, read
 * through the gateway from the agent.
 */
function ConfigInForce(props: { node: string }) {
  const base = "/api/v1/nodes/" + encodeURIComponent(props.node);
  const [st] = useLoad((c, s) => c.get<AgentStatus>(base + "/agentStatus", s), [props.node]);
  const [lc] = useLoad((c, s) => c.get<LayeredConfig>(base + "/layeredConfig", s), [props.node]);
  return (
    <section class="config" aria-labelledby="config-h" id="config-in-force">
      <h3 id="config-h">Config in force</h3>
      {st.state === "loading" && <Loading what="the agent's status" />}
      {st.state === "error" && <Problem error={st.error} what={"the status of the agent of node " + props.node} />}
      {st.state === "ok" && (
        <dl class="facts">
          <dt>Backend</dt>
          <dd>{st.data.backend || "–"}</dd>
          <dt>Agent status</dt>
          <dd>
            <code>{st.data.agentStatus || "–"}</code>
            {st.data.safeMode && <Badge kind="warn">safe mode</Badge>}
          </dd>
          <dt>Enforcement</dt>
          <dd id="config-verified">
            {st.data.enforcementVerified ? <Badge kind="ok">verified</Badge> : <Badge kind="warn">not verified</Badge>}{" "}
            {st.data.enforcementReason}
          </dd>
          <dt>Generation</dt>
          <dd>{num(st.data.generation)}</dd>
          <dt>Agent version</dt>
          <dd>{st.data.version || "–"}</dd>
        </dl>
      )}
      {lc.state === "error" && st.state === "ok" && (
        <Problem error={lc.error} what={"the scx_layered config of node " + props.node} />
      )}
      {lc.state === "ok" &&
        (lc.data.configJson ? (
          <details>
            <summary>
              scx_layered config, generation {num(lc.data.generation)}, sha256 <code>{lc.data.configHash.slice(0, 12)}</code>
              {lc.data.appliedTime && <Fragment>, applied {when(lc.data.appliedTime)}</Fragment>}
            </summary>
            <pre class="scroll">{lc.data.configJson}</pre>
          </details>
        ) : (
          <p id="config-layered">
            No scx_layered config is in force (backend {lc.data.backend || "none"}).
            {lc.data.backend === "cgroup" && " The agent enforces the tiers through cgroup knobs."}
          </p>
        ))}
    </section>
  );
}

function NodeFacts(props: { n: NodeT }) {
  const n = props.n;
  return (
    <dl class="facts">
      <dt>Ready</dt>
      <dd>{n.ready ? "yes" : <Badge kind="bad">no</Badge>}</dd>
      <dt>Agent status</dt>
      <dd>
        <Badge kind={stateKind(n.agentState)}>{n.agentState}</Badge> {n.agentStatus && <code>{n.agentStatus}</code>}
        {n.agentStatusError && <span class="error"> {n.agentStatusError}</span>}
      </dd>
      <dt>Safe mode</dt>
      <dd id="node-safe-mode">{n.safeModeRequested ? <Badge kind="warn">requested</Badge> : "not requested"}</dd>
      <dt>Backend</dt>
      <dd>{n.backend || "–"}</dd>
      <dt>Tier load</dt>
      <dd>
        {n.tierLoadFresh ? `fresh (generation ${n.generation})` : <span class="error">{n.tierLoadError || "stale"}</span>}
      </dd>
      <dt>CPU</dt>
      <dd>
        {cpu(n.allocatableMilli)} allocatable, {cpu(n.fencedMilli)} fenced for critical pods
      </dd>
      <dt>Internal IP</dt>
      <dd>{n.internalIp || "–"}</dd>
      <dt>Labels</dt>
      <dd>
        {Object.entries(n.labels).map(([k, v]) => (
          <code key={k} class="label">
            {k}={v}
          </code>
        ))}
      </dd>
      {n.report && (
        <Fragment>
          <dt>NodeQoSReport</dt>
          <dd>
            heartbeat {when(n.report.lastHeartbeatTime) || "never"}
            {n.report.conditions.map((c) => (
              <div key={c.type}>
                {c.type}={c.status} {c.reason}: {c.message}
              </div>
            ))}
          </dd>
        </Fragment>
      )}
    </dl>
  );
}

export function NodeView(props: { name: string }) {
  const name = props.name;
  const path = "/api/v1/nodes/" + encodeURIComponent(name);
  const [node, reload] = useLoad((c, s) => c.get<NodeT>(path, s), [name]);
  const [podsLoad] = useLoad((c, s) => c.nodePods(name, s), [name]);
  const pods = podsLoad.state === "ok" ? { state: "ok" as const, data: podsLoad.data.pods } : podsLoad;
  const reach = podsLoad.state === "ok" ? podsLoad.data.agent : undefined;
  const ev = useEvents(name, () => reload());
  const byTier = useMemo(() => {
    const m = new Map<string, ClusterPod[]>();
    if (podsLoad.state === "ok") for (const p of podsLoad.data.pods) m.set(p.tier, [...(m.get(p.tier) ?? []), p]);
    return [...m.entries()].sort((a, b) => tierRank(a[0]) - tierRank(b[0]));
  }, [podsLoad]);
  // The agent's columns appear once the agent said something of a pod.
  const agentCols = podsLoad.state === "ok" && podsLoad.data.pods.some((p) => p.agentTier || enforcementName(p.enforcement));
  return (
    <Fragment>
      <p class="crumbs">
        <a href="#/fleet">Fleet</a> › node
      </p>
      <Title>Node {name}</Title>
      {node.state === "loading" && <Loading what="the node" />}
      {node.state === "error" && <Problem error={node.error} what={"node " + name} />}
      {node.state === "ok" && (
        <section class="panel" aria-labelledby="facts-h">
          <h2 id="facts-h">State</h2>
          <NodeFacts n={node.data} />
          <p>
            <a class="button" href={"#/actions/" + encodeURIComponent(name)}>
              Change safe mode…
            </a>
          </p>
        </section>
      )}
      <section class="panel" aria-labelledby="pods-h">
        <h2 id="pods-h">Tiers and pods</h2>
        {pods.state === "loading" && <Loading what="the pods" />}
        {pods.state === "error" && <Problem error={pods.error} what={"the pods of node " + name} />}
        {pods.state === "ok" && pods.data.length === 0 && <p>No pods are bound to this node.</p>}
        {reach && !reach.reached && <AgentUnreached reach={reach} />}
        {byTier.map(([tier, list]) => (
          <details open key={tier} class="tier">
            <summary>
              <span class={"swatch t-" + tier} aria-hidden="true" />
              {tier}: {list.length} pod{list.length === 1 ? "" : "s"},{" "}
              {cpu(list.reduce((s, p) => s + num(p.requestMilli), 0))} requested
            </summary>
            <div class="scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Pod</th>
                    <th scope="col">QoS</th>
                    <th scope="col">Priority</th>
                    <th scope="col">Decided by</th>
                    <th scope="col">Request</th>
                    <th scope="col">Limit</th>
                    <th scope="col">Phase</th>
                    {agentCols && <th scope="col">Agent tier</th>}
                    {agentCols && <th scope="col">Enforcement</th>}
                    <th scope="col">Findings</th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((p) => (
                    <tr key={p.uid || p.namespace + "/" + p.name}>
                      <th scope="row">
                        <a href={`#/pods/${encodeURIComponent(p.namespace)}/${encodeURIComponent(p.name)}`}>
                          {p.namespace}/{p.name}
                        </a>
                        {p.overcommitted && <Badge kind="info">overcommitted</Badge>}
                      </th>
                      <td>{p.qosClass}</td>
                      <td>
                        {p.priority}
                        {p.priorityClassName && <span class="muted"> ({p.priorityClassName})</span>}
                      </td>
                      <td>{p.tierSource}</td>
                      <td class="num">{cpu(p.requestMilli)}</td>
                      <td class="num">{num(p.limitMilli) ? cpu(p.limitMilli) : "none"}</td>
                      <td>{p.phase || "–"}</td>
                      {agentCols && <td>{p.agentTier || "–"}</td>}
                      {agentCols && (
                        <td title={p.cgroupPath || undefined}>
                          {enforcementName(p.enforcement) || "–"}
                          {p.enforcementReason && <span class="muted"> ({p.enforcementReason})</span>}
                        </td>
                      )}
                      <td>{p.findings.join("; ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </details>
        ))}
      </section>
      <section class="panel" aria-labelledby="agent-h">
        <h2 id="agent-h">From the node's agent</h2>
        <AgentPanels node={name}>
          <ConfigInForce node={name} />
        </AgentPanels>
      </section>
      <EventsPanel events={ev.events} error={ev.error} />
    </Fragment>
  );
}

// ------------------------------------------------------------------- pod

export function PodView(props: { namespace: string; name: string }) {
  const { namespace, name } = props;
  const [ex] = useLoad(
    (c, s) =>
      c.get<TierExplanation>(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}:explainTier`,
        s,
      ),
    [namespace, name],
  );
  const [details] = useLoad(
    (c, s) =>
      c.get<PodDetails>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}/details`, s),
    [namespace, name],
  );
  return (
    <Fragment>
      <p class="crumbs">
        <a href="#/fleet">Fleet</a> ›{" "}
        {ex.state === "ok" && ex.data.node ? <a href={"#/nodes/" + encodeURIComponent(ex.data.node)}>node {ex.data.node}</a> : "node"}{" "}
        › pod
      </p>
      <Title>
        Pod {namespace}/{name}
      </Title>
      {ex.state === "loading" && <Loading what="the tier explanation" />}
      {ex.state === "error" && <Problem error={ex.error} what={`pod ${namespace}/${name}`} />}
      {ex.state === "ok" && <Explanation ex={ex.data} />}
      <section class="panel" aria-labelledby="manifest-h">
        <h2 id="manifest-h">Manifest</h2>
        {details.state === "loading" && <Loading what="the manifest" />}
        {details.state === "error" && <Problem error={details.error} what="this pod's details" />}
        {details.state === "ok" && (
          <PodPart code={details.data.manifestErrorCode} error={details.data.manifestError} what="this pod's manifest">
            <pre class="manifest" id="pod-manifest" tabIndex={0} aria-label="Pod manifest (YAML)">
              {details.data.manifest}
            </pre>
          </PodPart>
        )}
      </section>
      <section class="panel" aria-labelledby="podevents-h">
        <h2 id="podevents-h">Events</h2>
        {details.state === "ok" && (
          <PodPart code={details.data.eventsErrorCode} error={details.data.eventsError} what="this pod's Events">
            {details.data.events.length === 0 ? (
              <p>No Events for this pod (the API server keeps them for an hour by default).</p>
            ) : (
              <table class="compact" id="pod-events">
                <thead>
                  <tr>
                    <th scope="col">Last seen</th>
                    <th scope="col">Type</th>
                    <th scope="col">Reason</th>
                    <th scope="col">Message</th>
                    <th scope="col">Count</th>
                    <th scope="col">From</th>
                  </tr>
                </thead>
                <tbody>
                  {details.data.events.map((e, i) => (
                    <tr key={i}>
                      <td>
                        <time>{when(e.lastTime)}</time>
                      </td>
                      <td>{e.type === "Warning" ? <Badge kind="warn">Warning</Badge> : e.type}</td>
                      <td>{e.reason}</td>
                      <td>{e.message}</td>
                      <td class="num">{e.count}</td>
                      <td>{e.source}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </PodPart>
        )}
      </section>
      <LogsPanel namespace={namespace} name={name} />
    </Fragment>
  );
}

/**
 * PodPart shows one part of GET .../details, or why the caller could not
 * read it (the API server's own answer to the caller's identity).
 */
function PodPart(props: { code: number; error: string; what: string; children: ComponentChildren }) {
  if (!props.code) return <Fragment>{props.children}</Fragment>;
  return <Problem error={new ApiError(props.code, props.error)} what={props.what} core />;
}

function Explanation(props: { ex: TierExplanation }) {
  const ex = props.ex;
  const th = ex.thresholds;
  const containers = [...new Set([...Object.keys(ex.cpuRequests), ...Object.keys(ex.originalCpuRequests)])].sort();
  return (
    <section class="panel" aria-labelledby="explain-h">
      <h2 id="explain-h">Why this tier</h2>
      <p class="verdict" id="pod-tier">
        Tier <strong>{ex.tier}</strong>, decided by <strong>{ex.decidingRule}</strong>: {ex.rule}
      </p>
      <dl class="facts">
        <dt>Node</dt>
        <dd>{ex.node ? <a href={"#/nodes/" + encodeURIComponent(ex.node)}>{ex.node}</a> : "not scheduled"}</dd>
        <dt>Priority</dt>
        <dd>
          {ex.priority}
          {ex.priorityClassName && ` (PriorityClass ${ex.priorityClassName})`}
        </dd>
        <dt>QoS class</dt>
        <dd>{ex.qosClass}</dd>
        <dt>Tier from priority</dt>
        <dd>{ex.priorityTier}</dd>
        <dt>infera.io/tier annotation</dt>
        <dd>
          {ex.tierAnnotation ? <code>{ex.tierAnnotation}</code> : "none"} ({ex.annotationOutcome})
        </dd>
        {th && (
          <Fragment>
            <dt>Thresholds (minimum priority)</dt>
            <dd>
              system {th.system}, critical {th.critical}, high {th.high}, normal {th.normal}, low {th.low}; below is
              background
            </dd>
          </Fragment>
        )}
        {ex.findings.length > 0 && (
          <Fragment>
            <dt>Findings</dt>
            <dd>
              <ul>
                {ex.findings.map((f) => (
                  <li key={f}>{f}</li>
                ))}
              </ul>
            </dd>
          </Fragment>
        )}
      </dl>
      {containers.length > 0 && (
        <table class="compact">
          <caption>CPU requests per container</caption>
          <thead>
            <tr>
              <th scope="col">Container</th>
              <th scope="col">Current</th>
              <th scope="col">Original (before overcommit)</th>
            </tr>
          </thead>
          <tbody>
            {containers.map((c) => (
              <tr key={c}>
                <th scope="row">{c}</th>
                <td>{ex.cpuRequests[c] ?? "–"}</td>
                <td>{ex.originalCpuRequests[c] ?? "not deflated"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

// --------------------------------------------------------------- actions

interface Plan {
  target: "node" | "selector";
  value: string;
  enabled: boolean;
  reason: string;
  nodes: string[] | null; // the selector's matches when known
}

export function ActionsView(props: { node: string }) {
  const client = useClient();
  const [target, setTarget] = useState<"node" | "selector">("node");
  const [node, setNode] = useState(props.node);
  const [selector, setSelector] = useState("");
  const [enabled, setEnabled] = useState(true);
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [plan, setPlan] = useState<Plan | null>(null);
  const [busy, setBusy] = useState(false);
  const [results, setResults] = useState<SafeModeResult[] | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const confirmRef = useRef<HTMLElement>(null);
  const resultRef = useRef<HTMLElement>(null);

  // Layout effects, so that focus moves before the next paint (see Title).
  useLayoutEffect(() => {
    if (plan) confirmRef.current?.focus();
  }, [plan]);
  useLayoutEffect(() => {
    if (results || failure) resultRef.current?.focus();
  }, [results, failure]);

  const review = async (e: Event) => {
    e.preventDefault();
    const errs: Record<string, string> = {};
    const value = (target === "node" ? node : selector).trim();
    if (!value) errs.target = target === "node" ? "Name the node." : "Give a label selector, e.g. pool=gpu.";
    if (!reason.trim()) errs.reason = "A reason is required: it goes into the audit log and the Node Event.";
    setErrors(errs);
    setResults(null);
    setFailure(null);
    if (Object.keys(errs).length) {
      document.getElementById(errs.target ? "action-target" : "action-reason")?.focus();
      return;
    }
    let nodes: string[] | null = null;
    if (target === "selector") {
      try {
        const list = await client.all<NodeT>("/api/v1/nodes?labelSelector=" + encodeURIComponent(value), "nodes");
        nodes = list.map((n) => n.name);
      } catch (err) {
        if (err instanceof ApiError && err.status === 400) {
          setErrors({ target: err.message });
          return;
        }
        nodes = null; // may not list: the action itself still decides
      }
    }
    setPlan({ target, value, enabled, reason: reason.trim(), nodes });
  };

  const confirm = async () => {
    if (!plan) return;
    setBusy(true);
    try {
      if (plan.target === "node") {
        const r = await client.post<SafeModeResult>(`/api/v1/nodes/${encodeURIComponent(plan.value)}:setSafeMode`, {
          enabled: plan.enabled,
          reason: plan.reason,
        });
        setResults([r]);
      } else {
        const r = await client.post<{ results: SafeModeResult[] }>("/api/v1/nodes:setSafeMode", {
          labelSelector: plan.value,
          enabled: plan.enabled,
          reason: plan.reason,
        });
        setResults(r.results);
      }
      setReason("");
    } catch (err) {
      setFailure(err);
    } finally {
      setBusy(false);
      setPlan(null);
    }
  };

  const verb = (on: boolean) => (on ? "Request safe mode" : "Withdraw the safe-mode request");
  return (
    <Fragment>
      <Title>Actions</Title>
      <p>
        Safe mode makes a node's agent stand down to stock kernel behaviour. The change is made through the gateway
        with your identity; the gateway records it in its audit log and as an Event on the Node.
      </p>
      <form class="panel action" onSubmit={review} noValidate>
        <fieldset>
          <legend>Target</legend>
          <label class="check">
            <input type="radio" name="target" checked={target === "node"} onChange={() => setTarget("node")} />
            One node
          </label>
          <label class="check">
            <input
              type="radio"
              name="target"
              id="target-selector"
              checked={target === "selector"}
              onChange={() => setTarget("selector")}
            />
            Every node matching a label selector
          </label>
          <label for="action-target">{target === "node" ? "Node name" : "Label selector"}</label>
          <input
            id="action-target"
            type="text"
            autocomplete="off"
            value={target === "node" ? node : selector}
            aria-invalid={errors.target ? "true" : undefined}
            aria-describedby={errors.target ? "target-error" : undefined}
            onInput={(e) => {
              const v = (e.target as HTMLInputElement).value;
              if (target === "node") setNode(v);
              else setSelector(v);
            }}
          />
          {errors.target && (
            <p id="target-error" class="error">
              {errors.target}
            </p>
          )}
        </fieldset>
        <fieldset>
          <legend>Safe mode</legend>
          <label class="check">
            <input type="radio" name="mode" id="mode-on" checked={enabled} onChange={() => setEnabled(true)} />
            Request safe mode (stand down)
          </label>
          <label class="check">
            <input type="radio" name="mode" id="mode-off" checked={!enabled} onChange={() => setEnabled(false)} />
            Withdraw the request (enforce again)
          </label>
        </fieldset>
        <label for="action-reason">Reason (required)</label>
        <textarea
          id="action-reason"
          rows={2}
          maxLength={1024}
          required
          value={reason}
          aria-invalid={errors.reason ? "true" : undefined}
          aria-describedby={errors.reason ? "reason-error" : undefined}
          onInput={(e) => setReason((e.target as HTMLTextAreaElement).value)}
        />
        {errors.reason && (
          <p id="reason-error" class="error">
            {errors.reason}
          </p>
        )}
        <button type="submit" id="action-review" disabled={busy || plan !== null}>
          Review…
        </button>
      </form>

      {plan && (
        <section
          class="panel confirm"
          role="alertdialog"
          aria-labelledby="confirm-h"
          aria-describedby="confirm-text"
          tabIndex={-1}
          ref={confirmRef}
          onKeyDown={(e) => e.key === "Escape" && setPlan(null)}
        >
          <h2 id="confirm-h">Confirm: {verb(plan.enabled).toLowerCase()}</h2>
          <p id="confirm-text">
            {verb(plan.enabled)} on{" "}
            {plan.target === "node" ? (
              <strong>node {plan.value}</strong>
            ) : (
              <Fragment>
                every node matching <code>{plan.value}</code>
                {plan.nodes !== null &&
                  ` (${plan.nodes.length} node${plan.nodes.length === 1 ? "" : "s"} now${
                    plan.nodes.length ? ": " + plan.nodes.slice(0, 20).join(", ") + (plan.nodes.length > 20 ? ", …" : "") : ""
                  })`}
              </Fragment>
            )}
            , because: “{plan.reason}”.
          </p>
          <div class="buttons">
            <button type="button" id="action-confirm" class="danger" disabled={busy} onClick={confirm}>
              {busy ? "Working…" : "Confirm"}
            </button>
            <button type="button" id="action-cancel" disabled={busy} onClick={() => setPlan(null)}>
              Cancel
            </button>
          </div>
        </section>
      )}

      {(results || failure) && (
        <section class="panel" aria-labelledby="result-h" tabIndex={-1} ref={resultRef} id="action-result">
          <h2 id="result-h">Result</h2>
          {failure ? (
            <Problem error={failure} what="this action" act="change safe mode on these nodes" />
          ) : (
            <table class="compact">
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">Safe mode requested</th>
                  <th scope="col">Outcome</th>
                </tr>
              </thead>
              <tbody>
                {results!.map((r) => (
                  <tr key={r.node}>
                    <th scope="row">
                      <a href={"#/nodes/" + encodeURIComponent(r.node)}>{r.node}</a>
                    </th>
                    <td>{r.safeModeRequested ? "yes" : "no"}</td>
                    <td>{r.error ? <span class="error">{`${r.errorCode}: ${r.error}`}</span> : r.changed ? "changed" : "already so"}</td>
                  </tr>
                ))}
                {results!.length === 0 && (
                  <tr>
                    <td colSpan={3}>No node matched.</td>
                  </tr>
                )}
              </tbody>
            </table>
          )}
          <p>
            <a href="#/audit">See the audit log</a>
          </p>
        </section>
      )}
    </Fragment>
  );
}

// ----------------------------------------------------------------- audit

export function AuditView() {
  const client = useClient();
  const [actionsOnly, setActionsOnly] = useState(true);
  const [first, reload] = useLoad(
    (c, s) => c.get<{ events: AuditEvent[]; nextPageToken: string }>("/api/v1/auditEvents?pageSize=500", s),
    [],
  );
  const [more, setMore] = useState<AuditEvent[]>([]);
  const [next, setNext] = useState("");
  useEffect(() => {
    if (first.state === "ok") {
      setMore([]);
      setNext(first.data.nextPageToken);
    }
  }, [first]);
  const loadMore = async () => {
    const page = await client.get<{ events: AuditEvent[]; nextPageToken: string }>(
      "/api/v1/auditEvents?pageSize=500&pageToken=" + encodeURIComponent(next),
    );
    setMore((m) => [...m, ...page.events]);
    setNext(page.nextPageToken);
  };
  const all = first.state === "ok" ? [...first.data.events, ...more] : [];
  const rows = actionsOnly ? all.filter((e) => e.annotations["infera.io/action"]) : all;
  return (
    <Fragment>
      <Title>Audit</Title>
      <p>
        The gateway's recent audit events, newest first (a bounded in-memory ring; the full log is the gateway's audit
        file). Each is shaped like an <code>audit.k8s.io/v1</code> Event.
      </p>
      <div class="filters">
        <label class="check">
          <input
            type="checkbox"
            id="audit-actions-only"
            checked={actionsOnly}
            onChange={(e) => setActionsOnly((e.target as HTMLInputElement).checked)}
          />
          Actions only
        </label>
        <button type="button" id="audit-refresh" onClick={reload}>
          Refresh
        </button>
      </div>
      {first.state === "loading" && <Loading what="the audit log" />}
      {first.state === "error" && <Problem error={first.error} what="the audit log" />}
      {first.state === "ok" && (
        <div class="scroll">
          <table id="audit-table">
            <caption>
              {rows.length} event{rows.length === 1 ? "" : "s"}
              {actionsOnly ? " (actions only)" : ""}
            </caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
                <th scope="col">On</th>
                <th scope="col">Why</th>
                <th scope="col">Result</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((e) => {
                const a = e.annotations;
                const code = e.responseStatus?.code ?? 0;
                const ref = e.objectRef;
                return (
                  <tr key={e.auditID}>
                    <td>
                      <time>{when(e.requestReceivedTimestamp)}</time>
                    </td>
                    <td>{e.user?.username ?? "(unauthenticated)"}</td>
                    <td>
                      {a["infera.io/action"] ? <strong>{a["infera.io/action"]}</strong> : e.verb}{" "}
                      {ref && (
                        <span class="muted">
                          {ref.resource}
                          {ref.subresource && "/" + ref.subresource}
                        </span>
                      )}
                    </td>
                    <td>
                      {a["infera.io/nodes"] ||
                        (a["infera.io/label-selector"] && <code>{a["infera.io/label-selector"]}</code>) ||
                        (ref && (ref.namespace ? ref.namespace + "/" : "") + ref.name) ||
                        e.requestURI}
                    </td>
                    <td>{a["infera.io/reason"] ?? ""}</td>
                    <td>
                      <Badge kind={code >= 400 ? "bad" : "ok"}>{code}</Badge>{" "}
                      {e.responseStatus?.message && <span class="muted">{e.responseStatus.message}</span>}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {next && (
            <button type="button" onClick={loadMore}>
              Load older events
            </button>
          )}
        </div>
      )}
    </Fragment>
  );
}

// --------------------------------------------------------------- savings

export function SavingsView() {
  const [savings] = useLoad((c, s) => c.get<Savings>("/api/v1/savings", s), []);
  const [profiles] = useLoad(
    (c, s) => c.get<{ profiles: OvercommitProfile[]; crdInstalled: boolean }>("/api/v1/overcommitProfiles?pageSize=500", s),
    [],
  );
  return (
    <Fragment>
      <Title>Savings</Title>
      <p>CPU freed by overcommit: each deflated pod's original requests against its current ones.</p>
      {savings.state === "loading" && <Loading what="the savings" />}
      {savings.state === "error" && <Problem error={savings.error} what="the savings" />}
      {savings.state === "ok" && <SavingsTables s={savings.data} />}
      <section class="panel" aria-labelledby="profiles-h">
        <h2 id="profiles-h">Overcommit profiles</h2>
        {profiles.state === "loading" && <Loading what="the profiles" />}
        {profiles.state === "error" && <Problem error={profiles.error} what="the overcommit profiles" />}
        {profiles.state === "ok" && !profiles.data.crdInstalled && (
          <p>The OvercommitProfile CRD is not installed in this cluster.</p>
        )}
        {profiles.state === "ok" && profiles.data.crdInstalled && profiles.data.profiles.length === 0 && (
          <p>No OvercommitProfiles.</p>
        )}
        {profiles.state === "ok" && profiles.data.profiles.length > 0 && (
          <table class="compact">
            <thead>
              <tr>
                <th scope="col">Profile</th>
                <th scope="col">Namespaces</th>
                <th scope="col">Ratios</th>
                <th scope="col">Pods deflated</th>
                <th scope="col">CPU freed</th>
              </tr>
            </thead>
            <tbody>
              {profiles.data.profiles.map((p) => (
                <tr key={p.name}>
                  <th scope="row">
                    {p.name}
                    {p.dryRun && <Badge kind="info">dry run</Badge>}
                  </th>
                  <td>
                    {p.matchedNamespaces} (<code>{p.namespaceSelector || "all"}</code>)
                  </td>
                  <td>
                    {Object.entries(p.ratios)
                      .map(([t, r]) => `${t} ${r}`)
                      .join(", ")}
                  </td>
                  <td class="num">{p.podsDeflated}</td>
                  <td class="num">{cpu(p.cpuFreedMilli)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section class="panel" aria-labelledby="rightsizer-h">
        <h2 id="rightsizer-h">Rightsizer</h2>
        <p>
          Request vs observed usage per workload, with a suggested request and its evidence:{" "}
          <a href="#/rightsizing">Rightsizing</a>.
        </p>
      </section>
    </Fragment>
  );
}

function SavingsTables(props: { s: Savings }) {
  const s = props.s;
  const max = Math.max(1, ...s.namespaces.map((n) => num(n.freedMilli)));
  return (
    <section class="panel" aria-labelledby="freed-h">
      <h2 id="freed-h">Freed</h2>
      <dl class="cards">
        <div>
          <dt>Pods deflated</dt>
          <dd id="savings-pods">{s.podsDeflated}</dd>
        </div>
        <div>
          <dt>Original requests</dt>
          <dd>{cpu(s.originalRequestMilli)}</dd>
        </div>
        <div>
          <dt>Current requests</dt>
          <dd>{cpu(s.currentRequestMilli)}</dd>
        </div>
        <div>
          <dt>CPU freed</dt>
          <dd id="savings-freed">{cpu(s.freedMilli)}</dd>
        </div>
      </dl>
      {s.namespaces.length > 0 && (
        <table class="compact">
          <caption>Per namespace</caption>
          <thead>
            <tr>
              <th scope="col">Namespace</th>
              <th scope="col">Pods</th>
              <th scope="col">Original</th>
              <th scope="col">Current</th>
              <th scope="col">Freed</th>
            </tr>
          </thead>
          <tbody>
            {s.namespaces.map((n) => (
              <tr key={n.namespace}>
                <th scope="row">{n.namespace}</th>
                <td class="num">{n.podsDeflated}</td>
                <td class="num">{cpu(n.originalRequestMilli)}</td>
                <td class="num">{cpu(n.currentRequestMilli)}</td>
                <td>
                  <span class="bar" aria-hidden="true" style={{ width: (num(n.freedMilli) / max) * 8 + "em" }} />{" "}
                  {cpu(n.freedMilli)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {s.invalid.length > 0 && (
        <p class="error">Not counted (unreadable annotation): {s.invalid.join("; ")}</p>
      )}
    </section>
  );
}
