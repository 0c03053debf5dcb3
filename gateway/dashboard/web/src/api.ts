// The dashboard's only data source: infera-gateway's public /api/v1 (the
// same document as /api/v1/openapi.json), called with the signed-in bearer
// token. JSON is protojson: lowerCamelCase names, int64 values as strings.

export type Int64 = string | number;

export interface TierUsage {
  tier: string;
  pods: number;
  requestMilli: Int64;
  limitMilli: Int64;
}

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime?: string;
}

export interface Fleet {
  nodes: number;
  agentStates: Record<string, number>;
  safeModeRequested: number;
  staleTierLoad: number;
  tiers: TierUsage[];
  allocatableMilli: Int64;
  fencedMilli: Int64;
  nodeQosReportsInstalled: boolean;
  time?: string;
}

export interface NodeView {
  name: string;
  ready: boolean;
  internalIp: string;
  agentStatus: string;
  agentState: string;
  agentStatusError: string;
  safeModeRequested: boolean;
  backend: string;
  tierLoadFresh: boolean;
  tierLoadError: string;
  generation: Int64;
  allocatableMilli: Int64;
  fencedMilli: Int64;
  tiers: TierUsage[];
  report?: { lastHeartbeatTime?: string; conditions: Condition[]; observedGeneration: Int64 } | null;
  labels: Record<string, string>;
}

export interface ClusterPod {
  namespace: string;
  name: string;
  uid: string;
  tier: string;
  tierSource: string;
  qosClass: string;
  priority: number;
  priorityClassName: string;
  requestMilli: Int64;
  limitMilli: Int64;
  overcommitted: boolean;
  phase: string;
  findings: string[];
  /** From the node's agent; empty when it was not reached or does not know the pod. */
  agentTier?: string;
  cgroupPath?: string;
  enforcement?: string;
  enforcementReason?: string;
}

/** AgentReach says whether the gateway reached a node's agent, and why not. */
export interface AgentReach {
  node: string;
  reached: boolean;
  error: string;
  address: string;
}

/** The agent's GetStatus answer (GET /api/v1/nodes/{node}/agentStatus). */
export interface AgentStatus {
  agentStatus: string;
  backend: string;
  safeMode: boolean;
  generation: Int64;
  enforcementVerified: boolean;
  enforcementReason: string;
  nodeName: string;
  version: string;
}

/** The scx_layered config in force (GET /api/v1/nodes/{node}/layeredConfig). */
export interface LayeredConfig {
  configJson: string;
  configHash: string;
  generation: Int64;
  backend: string;
  appliedTime?: string | null;
}

/** enforcementName shortens ENFORCEMENT_STATE_ENFORCED to "enforced"; "" for unspecified. */
export function enforcementName(e: string | undefined): string {
  if (!e || e === "ENFORCEMENT_STATE_UNSPECIFIED") return "";
  return e.replace(/^ENFORCEMENT_STATE_/, "").toLowerCase();
}

export interface Thresholds {
  system: number;
  critical: number;
  high: number;
  normal: number;
  low: number;
}

export interface TierExplanation {
  namespace: string;
  name: string;
  node: string;
  priority: number;
  priorityClassName: string;
  qosClass: string;
  priorityTier: string;
  tierAnnotation: string;
  annotationOutcome: string;
  tier: string;
  decidingRule: string;
  rule: string;
  thresholds?: Thresholds | null;
  findings: string[];
  originalCpuRequests: Record<string, string>;
  cpuRequests: Record<string, string>;
}

export interface PodEvent {
  type: string;
  reason: string;
  message: string;
  count: number;
  lastTime?: string;
  source: string;
}

export interface PodDetails {
  namespace: string;
  name: string;
  node: string;
  manifest: string;
  manifestError: string;
  manifestErrorCode: number;
  events: PodEvent[];
  eventsError: string;
  eventsErrorCode: number;
}

export interface SafeModeResult {
  node: string;
  safeModeRequested: boolean;
  changed: boolean;
  error: string;
  errorCode: number;
}

export interface NamespaceSavings {
  namespace: string;
  podsDeflated: number;
  originalRequestMilli: Int64;
  currentRequestMilli: Int64;
  freedMilli: Int64;
}

export interface Savings {
  podsDeflated: number;
  originalRequestMilli: Int64;
  currentRequestMilli: Int64;
  freedMilli: Int64;
  namespaces: NamespaceSavings[];
  invalid: string[];
}

export interface OvercommitProfile {
  name: string;
  namespaceSelector: string;
  ratios: Record<string, number>;
  floorMilli: Int64;
  dryRun: boolean;
  matchedNamespaces: number;
  podsDeflated: number;
  cpuFreedMilli: Int64;
  conditions: Condition[];
}

export interface AuditEvent {
  auditID: string;
  requestURI: string;
  verb: string;
  user?: { username: string; uid: string; groups: string[] } | null;
  sourceIPs: string[];
  objectRef?: { resource: string; namespace: string; name: string; apiGroup: string; subresource: string } | null;
  responseStatus?: { code: number; message: string; status: string } | null;
  requestReceivedTimestamp?: string;
  stageTimestamp?: string;
  annotations: Record<string, string>;
}

export interface ClusterEvent {
  sequence: Int64;
  time?: string;
  type: string;
  node: string;
  message: string;
  dropped: Int64;
}

/** ApiError is a non-2xx answer: the HTTP status and the gateway's message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** num reads a protojson int64 (a string) or int32 (a number). */
export function num(v: Int64 | undefined | null): number {
  if (v === undefined || v === null || v === "") return 0;
  return typeof v === "number" ? v : Number(v);
}

export class Client {
  constructor(
    private readonly token: string,
    private readonly onUnauthenticated: (msg: string) => void,
  ) {}

  private headers(json: boolean): HeadersInit {
    const h: Record<string, string> = { Authorization: "Bearer " + this.token, Accept: "application/json" };
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  private async fail(resp: Response): Promise<never> {
    let msg = resp.statusText;
    try {
      const body = await resp.json();
      if (body && typeof body.message === "string" && body.message) msg = body.message;
    } catch {
      // not JSON: keep the status text
    }
    if (resp.status === 401) this.onUnauthenticated(msg);
    throw new ApiError(resp.status, msg);
  }

  async get<T>(path: string, signal?: AbortSignal): Promise<T> {
    const resp = await fetch(path, { headers: this.headers(false), signal });
    if (!resp.ok) return this.fail(resp);
    return (await resp.json()) as T;
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    const resp = await fetch(path, { method: "POST", headers: this.headers(true), body: JSON.stringify(body) });
    if (!resp.ok) return this.fail(resp);
    return (await resp.json()) as T;
  }

  /** all follows nextPageToken until the last page of a list call. */
  async all<T>(path: string, field: string, signal?: AbortSignal): Promise<T[]> {
    const out: T[] = [];
    let token = "";
    const sep = path.includes("?") ? "&" : "?";
    for (let i = 0; i < 1000; i++) {
      const page = await this.get<Record<string, unknown>>(
        path + sep + "pageSize=500" + (token ? "&pageToken=" + encodeURIComponent(token) : ""),
        signal,
      );
      out.push(...((page[field] as T[] | undefined) ?? []));
      token = (page.nextPageToken as string | undefined) ?? "";
      if (!token) break;
    }
    return out;
  }

  /**
   * nodePods reads every page of a node's pods and the gateway's reach of
   * the node's agent (from the last page).
   */
  async nodePods(node: string, signal?: AbortSignal): Promise<{ pods: ClusterPod[]; agent?: AgentReach }> {
    const pods: ClusterPod[] = [];
    let agent: AgentReach | undefined;
    let token = "";
    for (let i = 0; i < 1000; i++) {
      const page = await this.get<{ pods?: ClusterPod[]; agent?: AgentReach | null; nextPageToken?: string }>(
        "/api/v1/nodes/" +
          encodeURIComponent(node) +
          "/pods?pageSize=500" +
          (token ? "&pageToken=" + encodeURIComponent(token) : ""),
        signal,
      );
      pods.push(...(page.pods ?? []));
      agent = page.agent ?? agent;
      token = page.nextPageToken ?? "";
      if (!token) break;
    }
    return { pods, agent };
  }

  /**
   * watch reads the NDJSON event stream until signal aborts; onEvent gets
   * each event. It rejects with an ApiError when the stream is refused.
   */
  async watch(node: string, signal: AbortSignal, onEvent: (e: ClusterEvent) => void): Promise<void> {
    const q = node ? "?node=" + encodeURIComponent(node) : "";
    const resp = await fetch("/api/v1/events" + q, { headers: this.headers(false), signal });
    if (!resp.ok) return this.fail(resp);
    if (!resp.body) return;
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        try {
          const msg = JSON.parse(line);
          if (msg.result) onEvent(msg.result as ClusterEvent);
        } catch {
          // a torn line cannot happen with NDJSON over one response; skip
        }
      }
    }
  }
}

export const TIER_ORDER = ["system", "critical", "high", "normal", "low", "background"];

export function tierRank(t: string): number {
  const i = TIER_ORDER.indexOf(t);
  return i < 0 ? TIER_ORDER.length : i;
}

/** cpu formats millicores for people: 250m, 1.5 CPU. */
export function cpu(milli: Int64): string {
  const m = num(milli);
  if (m < 1000) return m + "m";
  const c = m / 1000;
  return (Number.isInteger(c) ? c.toString() : c.toFixed(2).replace(/0$/, "")) + " CPU";
}

export function when(ts?: string): string {
  if (!ts) return "";
  const d = new Date(ts);
  if (isNaN(d.getTime())) return ts;
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
