// The node view's panels from the node's agent, through
// GET /api/v1/nodes/NAME/observation: the busiest threads of the last thread
// sample, the cgroup knobs the cgroup backend keeps asserting, and live
// per-tier performance (CPU, throttling, CPU pressure, run-queue latency).
//
// The agent serves cumulative counters; the view polls every few seconds
// while the tab is visible and draws the rates between consecutive
// samples. The agent's event stream carries state changes, not counters,
// so a poll is the only way to get them; a sample the agent took is never
// interpolated or invented.
import { Fragment, type ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, type Int64, num, when } from "./api";
import { Badge, Loading, Problem, useClient } from "./ui";

export interface LatencyBucket {
  leSeconds: number;
  count: Int64;
}

export interface TierPerformance {
  tier: string;
  pods: number;
  podsRead: number;
  cpuSeconds: number;
  throttledPeriods: Int64;
  throttledSeconds: number;
  pressureSomeSeconds: number;
  sampledMilliCpu: number;
  runQueue?: { count: Int64; sumSeconds: number; buckets: LatencyBucket[] } | null;
}

export interface BusyThread {
  tid: number;
  pid: number;
  comm: string;
  pod: string;
  tier: string;
  layer: string;
  cpu: number;
  milliCpu: number;
}

export interface CgroupKnob {
  path: string;
  file: string;
  value: string;
  applied: string;
  reason: string;
  pod: string;
  tier: string;
}

export interface PlacementExample {
  pod: string;
  tier: string;
  layer: string;
  tid: number;
  pid: number;
  comm: string;
  cpu: number;
  milliCpu: number;
  detail: string;
}

export interface PlacementVerdict {
  invariant: string;
  ok: boolean;
  violations: number;
  checked: number;
  message: string;
  examples: PlacementExample[];
}

export interface CgroupWriteCounters {
  writes: Int64;
  drift: Int64;
  errors: Int64;
  gone: Int64;
  unchanged: Int64;
}

/** Observation is GET /api/v1/nodes/NAME/observation. */
export interface Observation {
  nodeName: string;
  time: string;
  backend: string;
  tiers: TierPerformance[];
  pressure: { available: boolean; reason: string; someAvg10: number; someAvg60: number; someTotalSeconds: number; fullAvg10: number };
  runQueueUnavailable: string;
  topThreads: BusyThread[];
  sampleTime?: string;
  sampleIntervalSeconds: number;
  threadsUnavailable: string;
  cgroupKnobs: CgroupKnob[];
  cgroupKnobsUnavailable: string;
  cgroupV2: boolean;
  placement?: PlacementVerdict[];
  placementUnavailable?: string;
  cgroupWrites?: CgroupWriteCounters | null;
}

/** How often the view asks, and how many samples the charts keep. */
export const POLL_MS = 2000;
const KEEP = 60;

type ObsState = { samples: Observation[]; error: unknown; loading: boolean };

/** useObservation polls the node's observation while the tab is visible. */
function useObservation(node: string): ObsState {
  const client = useClient();
  const [st, setSt] = useState<ObsState>({ samples: [], error: null, loading: true });
  useEffect(() => {
    const ac = new AbortController();
    let timer = 0;
    setSt({ samples: [], error: null, loading: true });
    const tick = async () => {
      if (!document.hidden) {
        try {
          const o = await client.get<Observation>(`/api/v1/nodes/${encodeURIComponent(node)}/observation`, ac.signal);
          if (ac.signal.aborted) return;
          setSt((s) => ({ samples: [...s.samples, o].slice(-KEEP), error: null, loading: false }));
        } catch (err) {
          if (ac.signal.aborted) return;
          setSt((s) => ({ ...s, error: err, loading: false }));
          // A refusal, an unknown node or a gateway not configured to reach
          // the agents (400: FAILED_PRECONDITION) do not change by asking again.
          if (err instanceof ApiError && [400, 403, 404].includes(err.status)) return;
        }
      }
      timer = window.setTimeout(tick, POLL_MS);
    };
    tick();
    return () => {
      ac.abort();
      window.clearTimeout(timer);
    };
  }, [client, node]);
  return st;
}

/**
 * AgentPanels renders the agent's part of the node view: top threads, the
 * config in force (children) with the cgroup knobs, and live performance.
 */
export function AgentPanels(props: { node: string; children: ComponentChildren }) {
  const st = useObservation(props.node);
  const last = st.samples.length ? st.samples[st.samples.length - 1] : null;
  const failed = st.error && !last;
  return (
    <Fragment>
      <section class="config" aria-labelledby="threads-h" id="top-threads">
        <h3 id="threads-h">Top threads</h3>
        {st.loading && <Loading what="the agent's thread sample" />}
        {failed && <Problem error={st.error} what={"the observation of the agent of node " + props.node} />}
        {last && <TopThreads o={last} />}
      </section>
      {props.children}
      <section class="config" aria-labelledby="knobs-h" id="cgroup-knobs">
        <h3 id="knobs-h">Cgroup knobs in force</h3>
        {st.loading && <Loading what="the cgroup knobs" />}
        {failed && <Problem error={st.error} what={"the cgroup knobs of node " + props.node} />}
        {last && <Knobs o={last} />}
        {last && <Writes o={last} />}
      </section>
      <section class="config" aria-labelledby="placement-h" id="placement">
        <h3 id="placement-h">Placement linter</h3>
        {st.loading && <Loading what="the placement linter's verdicts" />}
        {failed && <Problem error={st.error} what={"the placement linter of node " + props.node} />}
        {last && <Placement o={last} />}
      </section>
      <section class="config" aria-labelledby="perf-h" id="live-perf">
        <h3 id="perf-h">Live performance</h3>
        {st.loading && <Loading what="the agent's counters" />}
        {failed && <Problem error={st.error} what={"the counters of the agent of node " + props.node} />}
        {last && <Perf samples={st.samples} error={st.error} />}
      </section>
    </Fragment>
  );
}

function TopThreads(props: { o: Observation }) {
  const o = props.o;
  if (o.threadsUnavailable) return <p id="threads-unavailable">No thread sample: {o.threadsUnavailable}.</p>;
  if (!o.topThreads.length) {
    return <p>No pod thread used CPU in the last sample ({o.sampleIntervalSeconds.toFixed(1)} s, {when(o.sampleTime)}).</p>;
  }
  return (
    <div class="scroll">
      <table class="compact" id="threads-table">
        <caption>
          Busiest pod threads over {o.sampleIntervalSeconds.toFixed(1)} s, sampled {when(o.sampleTime)}
        </caption>
        <thead>
          <tr>
            <th scope="col">Pod</th>
            <th scope="col">Tier</th>
            <th scope="col">Thread</th>
            <th scope="col">TID</th>
            <th scope="col">PID</th>
            <th scope="col">Last CPU</th>
            <th scope="col">CPU use</th>
          </tr>
        </thead>
        <tbody>
          {o.topThreads.map((t) => (
            <tr key={t.tid}>
              <td>{t.pod}</td>
              <td>
                <span class={"swatch t-" + t.tier} aria-hidden="true" />
                {t.tier}
                {t.layer && t.layer !== t.tier ? ` (layer ${t.layer})` : ""}
              </td>
              <th scope="row">
                <code>{t.comm}</code>
              </th>
              <td class="num">{t.tid}</td>
              <td class="num">{t.pid}</td>
              <td class="num">{t.cpu}</td>
              <td class="num">{t.milliCpu.toFixed(1)}m</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Knobs(props: { o: Observation }) {
  const o = props.o;
  if (o.cgroupKnobsUnavailable) return <p id="knobs-unavailable">None: {o.cgroupKnobsUnavailable}.</p>;
  if (!o.cgroupKnobs.length) return <p id="knobs-unavailable">The cgroup backend asserts no value now (no pod needs one).</p>;
  const drifted = o.cgroupKnobs.filter((k) => k.applied !== k.value).length;
  return (
    <div class="scroll">
      <table class="compact" id="knobs-table">
        <caption>
          {o.cgroupKnobs.length} values the agent keeps asserting
          {drifted ? `, ${drifted} reading back otherwise` : ", each reading back as set"}
        </caption>
        <thead>
          <tr>
            <th scope="col">Pod</th>
            <th scope="col">Tier</th>
            <th scope="col">Knob</th>
            <th scope="col">Value</th>
            <th scope="col">Read back</th>
            <th scope="col">Why</th>
            <th scope="col">Cgroup</th>
          </tr>
        </thead>
        <tbody>
          {o.cgroupKnobs.map((k) => (
            <tr key={k.path + "/" + k.file}>
              <td>{k.pod || "–"}</td>
              <td>{k.tier || "–"}</td>
              <th scope="row">
                <code>{k.file}</code>
              </th>
              <td>
                <code>{k.value}</code>
              </td>
              <td>{k.applied === k.value ? <Badge kind="ok">same</Badge> : <Badge kind="warn">{k.applied || "unread"}</Badge>}</td>
              <td>{k.reason}</td>
              <td class="path">
                <code>{k.path}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * Writes shows the cgroup writer's counters since the agent started: how
 * often a value was found changed behind the agent's back (drift) and put
 * back, and how many writes failed.
 */
function Writes(props: { o: Observation }) {
  const w = props.o.cgroupWrites;
  if (!w) return null;
  const drift = num(w.drift);
  const errors = num(w.errors);
  return (
    <dl class="facts" id="cgroup-writes" aria-label="Cgroup writes since the agent started">
      <dt>Drift re-asserted</dt>
      <dd data-counter="drift">
        {drift ? <Badge kind="warn">{String(drift)}</Badge> : <Badge kind="ok">0</Badge>} values changed behind the agent's back and put back
      </dd>
      <dt>Writes</dt>
      <dd data-counter="writes">
        {String(num(w.writes))} ({String(num(w.unchanged))} checks found the value in place, {String(num(w.gone))} on vanished cgroups)
      </dd>
      <dt>Write errors</dt>
      <dd data-counter="errors">{errors ? <Badge kind="bad">{String(errors)}</Badge> : <Badge kind="ok">0</Badge>}</dd>
    </dl>
  );
}

/**
 * Placement shows the placement linter's verdicts on the last thread
 * sample: per invariant the enforcement promises, whether a thread broke
 * it, and some of the threads that did.
 */
function Placement(props: { o: Observation }) {
  const o = props.o;
  if (o.placementUnavailable) return <p id="placement-unavailable">No verdicts: {o.placementUnavailable}.</p>;
  // An older gateway's answer has no verdicts at all.
  if (!o.placement?.length) return <p id="placement-unavailable">This gateway does not report the placement linter.</p>;
  const broken = o.placement.filter((v) => !v.ok).length;
  return (
    <div class="scroll">
      <table class="compact" id="placement-table">
        <caption>
          {broken ? `${broken} of ${o.placement.length} invariants broken` : `All ${o.placement.length} invariants hold`} in the sample of{" "}
          {when(o.sampleTime)}
        </caption>
        <thead>
          <tr>
            <th scope="col">Invariant</th>
            <th scope="col">Verdict</th>
            <th scope="col">Threads checked</th>
            <th scope="col">Violations</th>
            <th scope="col">What was judged</th>
            <th scope="col">Examples</th>
          </tr>
        </thead>
        <tbody>
          {o.placement.map((v) => (
            <tr key={v.invariant} data-invariant={v.invariant}>
              <th scope="row">
                <code>{v.invariant}</code>
              </th>
              <td>{v.ok ? <Badge kind="ok">holds</Badge> : <Badge kind="warn">broken</Badge>}</td>
              <td class="num">{v.checked}</td>
              <td class="num">{v.violations}</td>
              <td>{v.message}</td>
              <td>
                {v.examples.length
                  ? v.examples.map((e) => (
                      <div key={e.tid}>
                        {e.pod} <code>{e.comm}</code> (TID {e.tid}, CPU {e.cpu}): {e.detail}
                      </div>
                    ))
                  : "–"}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Rates of one tier between two samples; null where they cannot be told. */
interface Rates {
  cpu: number | null; // cores, from the cgroups
  sampled: number; // cores, from the thread sample
  throttled: number | null; // seconds throttled per second
  pressure: number | null; // share of time some task stalled, %
  rqMean: number | null; // ms
  rqP99: number | null; // ms (bucket upper bound)
}

function rate(d: number, dt: number): number | null {
  return dt > 0 && d >= 0 ? d / dt : null;
}

function quantile(a: LatencyBucket[] | undefined, b: LatencyBucket[], q: number): number | null {
  const prev = new Map((a ?? []).map((x) => [x.leSeconds, num(x.count)]));
  const d = b.map((x) => ({ le: x.leSeconds, n: num(x.count) - (prev.get(x.leSeconds) ?? 0) }));
  const total = d.length ? Math.max(...d.map((x) => x.n)) : 0;
  if (total <= 0) return null;
  for (const x of d) if (x.n >= q * total) return x.le * 1000;
  return null;
}

function rates(a: TierPerformance | undefined, b: TierPerformance, dt: number): Rates {
  const r: Rates = { cpu: null, sampled: b.sampledMilliCpu / 1000, throttled: null, pressure: null, rqMean: null, rqP99: null };
  if (!a) return r;
  r.cpu = rate(b.cpuSeconds - a.cpuSeconds, dt);
  r.throttled = rate(b.throttledSeconds - a.throttledSeconds, dt);
  const p = rate(b.pressureSomeSeconds - a.pressureSomeSeconds, dt);
  r.pressure = p === null ? null : p * 100;
  if (a.runQueue && b.runQueue) {
    const n = num(b.runQueue.count) - num(a.runQueue.count);
    if (n > 0) r.rqMean = ((b.runQueue.sumSeconds - a.runQueue.sumSeconds) / n) * 1000;
    r.rqP99 = quantile(a.runQueue.buckets, b.runQueue.buckets, 0.99);
  }
  return r;
}

function series(samples: Observation[], tier: string): Rates[] {
  const out: Rates[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1],
      b = samples[i];
    const dt = (Date.parse(b.time) - Date.parse(a.time)) / 1000;
    const tb = b.tiers.find((t) => t.tier === tier);
    if (tb) out.push(rates(a.tiers.find((t) => t.tier === tier), tb, dt));
  }
  return out;
}

function fmt(v: number | null, unit: string, digits = 2): string {
  return v === null ? "–" : v.toFixed(digits) + unit;
}

/** Spark is a small line chart of the last values; gaps are left open. */
export function Spark(props: { values: (number | null)[]; label: string; kind: string }) {
  const w = 120,
    h = 28;
  const vs = props.values;
  const max = Math.max(1e-9, ...vs.map((v) => v ?? 0));
  // The samples so far fill the width; the chart keeps the last KEEP.
  const step = vs.length > 1 ? w / (vs.length - 1) : 0;
  const x0 = vs.length > 1 ? 0 : w;
  let d = "";
  let pen = false;
  vs.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    const x = (x0 + i * step).toFixed(1),
      y = (h - 2 - (v / max) * (h - 4)).toFixed(1);
    d += (pen ? "L" : "M") + x + " " + y;
    pen = true;
  });
  return (
    <svg class={"spark " + props.kind} viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={props.label}>
      <line x1="0" y1={h - 2} x2={w} y2={h - 2} class="axis" />
      {d && <path d={d} />}
    </svg>
  );
}

function Cell(props: { values: (number | null)[]; unit: string; what: string; tier: string; digits?: number; kind: string }) {
  const last = props.values.length ? props.values[props.values.length - 1] : null;
  const text = fmt(last, props.unit, props.digits);
  return (
    <td class="num perf" data-metric={props.kind}>
      <span class="perf-value">{text}</span>
      <Spark values={props.values} kind={props.kind} label={`${props.what} of tier ${props.tier}: ${text} now, last ${props.values.length} samples`} />
    </td>
  );
}

function Perf(props: { samples: Observation[]; error: unknown }) {
  const samples = props.samples;
  const last = samples[samples.length - 1];
  // Tiers with pods, and the system tier's run-queue latency (every task
  // outside the pods) when the agent measures it.
  const tiers = last.tiers.filter((t) => t.pods > 0 || num(t.runQueue?.count) > 0);
  return (
    <Fragment>
      <p class="hint" id="perf-status" aria-live="off">
        {samples.length} sample{samples.length === 1 ? "" : "s"} every {POLL_MS / 1000} s, the last at {when(last.time)}. Backend{" "}
        {last.backend}; per-pod counters from cgroup {last.cgroupV2 ? "v2" : "v1"}.
        {props.error ? " The last poll failed; the charts keep what was read." : ""}
      </p>
      <dl class="cards" id="node-psi">
        <div>
          <dt>Node CPU pressure (some, 10 s)</dt>
          <dd>{last.pressure.available ? last.pressure.someAvg10.toFixed(2) + "%" : "–"}</dd>
        </div>
        <div>
          <dt>Node CPU pressure (some, 60 s)</dt>
          <dd>{last.pressure.available ? last.pressure.someAvg60.toFixed(2) + "%" : "–"}</dd>
        </div>
      </dl>
      {!last.pressure.available && <p>Node PSI is not available: {last.pressure.reason}.</p>}
      {last.runQueueUnavailable && <p id="runq-unavailable">Run-queue latency is not measured on this node: {last.runQueueUnavailable}.</p>}
      {tiers.length === 0 ? (
        <p>No tier holds a pod on this node.</p>
      ) : (
        <div class="scroll">
          <table class="compact" id="perf-table">
            <caption>Per tier, the rate between the last two samples, and the last {KEEP} samples</caption>
            <thead>
              <tr>
                <th scope="col">Tier</th>
                <th scope="col">Pods (read)</th>
                <th scope="col">CPU, cgroups (cores)</th>
                <th scope="col">CPU, thread sample (cores)</th>
                <th scope="col">Throttled (s/s)</th>
                <th scope="col">CPU pressure (some)</th>
                <th scope="col">Run-queue wait, mean</th>
                <th scope="col">Run-queue wait, p99</th>
              </tr>
            </thead>
            <tbody>
              {tiers.map((t) => {
                const s = series(samples, t.tier);
                const col = (f: (r: Rates) => number | null) => s.map(f);
                return (
                  <tr key={t.tier} data-tier={t.tier}>
                    <th scope="row">
                      <span class={"swatch t-" + t.tier} aria-hidden="true" />
                      {t.tier}
                    </th>
                    <td class="num">
                      {t.pods} ({t.podsRead})
                    </td>
                    <Cell values={col((r) => r.cpu)} unit="" what="CPU use" tier={t.tier} kind="cpu" />
                    <Cell values={col((r) => r.sampled)} unit="" what="sampled CPU use" tier={t.tier} kind="sampled" />
                    <Cell values={col((r) => r.throttled)} unit="" what="throttled time" tier={t.tier} kind="throttled" />
                    <Cell values={col((r) => r.pressure)} unit="%" what="CPU pressure" tier={t.tier} digits={1} kind="pressure" />
                    <Cell values={col((r) => r.rqMean)} unit=" ms" what="mean run-queue wait" tier={t.tier} digits={3} kind="rq" />
                    <Cell values={col((r) => r.rqP99)} unit=" ms" what="p99 run-queue wait" tier={t.tier} digits={3} kind="rq" />
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </Fragment>
  );
}
