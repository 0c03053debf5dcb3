// The rightsizer: per workload, the CPU requested against the CPU its pods
// used (the samples the node agents hold), with a suggested request and
// the evidence behind it. Reads GET /api/v1/rightsizing.
import { Fragment } from "preact";
import { useState } from "preact/hooks";
import { type AgentReach, cpu, type Int64 } from "./api";
import { Badge, Loading, Problem, Title, useLoad } from "./ui";

interface UsageStats {
  samples: number;
  currentCores: number;
  meanCores: number;
  p50Cores: number;
  p95Cores: number;
  maxCores: number;
}

interface Workload {
  namespace: string;
  kind: string;
  name: string;
  pods: number;
  requestMilli: Int64;
  podRequestMilli: Int64;
  usage: UsageStats;
  windowSeconds: number;
  suggestedRequestMilli: Int64;
  suggestedTotalMilli: Int64;
  verdict: string;
  evidence: string;
  nodes: string[];
  podNames: string[];
}

interface Rightsizing {
  policy: { headroom: number; roundMilli: Int64; floorMilli: Int64; minSamples: number; tolerance: number };
  workloads: Workload[];
  agents: AgentReach[];
  unreachable: number;
}

/** milli renders cores as millicores, rounded. */
function milli(cores: number): string {
  return Math.round(cores * 1000) + "m";
}

function span(seconds: number): string {
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

const VERDICT_KIND: Record<string, string> = {
  "over-requested": "warn",
  "under-requested": "bad",
  "right-sized": "ok",
  "no-request": "info",
  "insufficient-data": "info",
};

export function RightsizingView() {
  const [ns, setNs] = useState("");
  const [applied, setApplied] = useState("");
  const [load] = useLoad(
    (c, s) => c.get<Rightsizing>("/api/v1/rightsizing" + (applied ? "?namespace=" + encodeURIComponent(applied) : ""), s),
    [applied],
  );
  return (
    <Fragment>
      <Title>Rightsizing</Title>
      <p>
        Per workload, the CPU its pods request against the CPU they used, from the samples the node agents hold of the
        pods' threads. The suggested per-pod request is the p95 of those samples times the headroom, rounded up.
      </p>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(ns.trim());
        }}
      >
        <label for="rs-namespace">Namespace</label>
        <input id="rs-namespace" value={ns} placeholder="all" onInput={(e) => setNs((e.target as HTMLInputElement).value)} />
        <button type="submit" id="rs-apply">
          Show
        </button>
      </form>
      {load.state === "loading" && <Loading what="the rightsizing" />}
      {load.state === "error" && <Problem error={load.error} what="the rightsizing" />}
      {load.state === "ok" && <RightsizingTable r={load.data} />}
    </Fragment>
  );
}

function RightsizingTable(props: { r: Rightsizing }) {
  const r = props.r;
  const p = r.policy;
  const down = r.agents.filter((a) => !a.reached);
  return (
    <Fragment>
      <p id="rs-policy">
        Rule: p95 × {p.headroom}, rounded up to {cpu(p.roundMilli)}, at least {cpu(p.floorMilli)}; at least{" "}
        {p.minSamples} samples for a confident suggestion; within {Math.round(p.tolerance * 100)}% of the request is
        right-sized.
      </p>
      {down.length > 0 && (
        <p class="hint" id="rs-unreached">
          {down.length} of {r.agents.length} agents did not answer; their pods' samples are missing:{" "}
          {down.map((a) => a.node).join(", ")}.
        </p>
      )}
      {r.workloads.length === 0 ? (
        <p>No workload has usage samples yet.</p>
      ) : (
        <table class="compact" id="rightsizing">
          <caption>Request vs observed usage per workload</caption>
          <thead>
            <tr>
              <th scope="col">Workload</th>
              <th scope="col">Pods</th>
              <th scope="col">Request per pod</th>
              <th scope="col">Used p50</th>
              <th scope="col">Used p95</th>
              <th scope="col">Used max</th>
              <th scope="col">Suggested per pod</th>
              <th scope="col">Verdict</th>
              <th scope="col">Evidence</th>
            </tr>
          </thead>
          <tbody>
            {r.workloads.map((w) => (
              <tr key={w.namespace + "/" + w.kind + "/" + w.name} data-workload={w.namespace + "/" + w.kind + "/" + w.name}>
                <th scope="row">
                  {w.namespace}/{w.name} <span class="hint">{w.kind}</span>
                </th>
                <td class="num">{w.pods}</td>
                <td class="num">
                  {cpu(w.podRequestMilli)}
                  <span class="hint"> ({cpu(w.requestMilli)} total)</span>
                </td>
                <td class="num">{milli(w.usage.p50Cores)}</td>
                <td class="num" data-col="p95">
                  {milli(w.usage.p95Cores)}
                </td>
                <td class="num">{milli(w.usage.maxCores)}</td>
                <td class="num" data-col="suggested">
                  {cpu(w.suggestedRequestMilli)}
                  <span class="hint"> ({cpu(w.suggestedTotalMilli)} total)</span>
                </td>
                <td>
                  <Badge kind={VERDICT_KIND[w.verdict] ?? "info"}>{w.verdict}</Badge>
                </td>
                <td class="evidence">
                  {w.evidence}; {w.usage.samples} samples over {span(w.windowSeconds)} from {w.podNames.join(", ")} on{" "}
                  {w.nodes.join(", ")}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Fragment>
  );
}

