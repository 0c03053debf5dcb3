// Shared pieces of the views: the session context, data loading with the
// gateway's errors shown in words, and the "not available yet" panel.
import { createContext, type ComponentChildren } from "preact";
import { useContext, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { ApiError, type Client } from "./api";

export interface Session {
  client: Client;
  signOut: (msg: string) => void;
}

export const Ctx = createContext<Session | null>(null);

export function useClient(): Client {
  return useContext(Ctx)!.client;
}

export type Load<T> = { state: "loading" } | { state: "ok"; data: T } | { state: "error"; error: unknown };

/**
 * useLoad runs fetcher on mount and whenever deps or reload() change it;
 * an older answer never overwrites a newer one.
 */
export function useLoad<T>(fetcher: (c: Client, signal: AbortSignal) => Promise<T>, deps: unknown[]): [Load<T>, () => void] {
  const client = useClient();
  const [n, setN] = useState(0);
  const [load, setLoad] = useState<Load<T>>({ state: "loading" });
  useEffect(() => {
    const ac = new AbortController();
    fetcher(client, ac.signal).then(
      (data) => !ac.signal.aborted && setLoad({ state: "ok", data }),
      (error) => !ac.signal.aborted && setLoad({ state: "error", error }),
    );
    return () => ac.abort();
  }, [client, n, ...deps]);
  return [load, () => setN((x) => x + 1)];
}

/**
 * Title is a view's h1; it takes focus when the view opens. A layout effect
 * runs before the browser paints: a plain effect runs up to a frame later and
 * would take the focus back from a field the person already moved to.
 */
export function Title(props: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useLayoutEffect(() => {
    const t = ref.current?.textContent ?? "";
    document.title = t + " · Temper";
    ref.current?.focus();
  }, []);
  return (
    <h1 ref={ref} tabIndex={-1}>
      {props.children}
    </h1>
  );
}

/** Problem shows a failed call: denied views say so, in the gateway's words. */
export function Problem(props: { error: unknown; what: string; act?: string; core?: boolean }) {
  const e = props.error;
  if (e instanceof ApiError && e.status === 403) {
    return (
      <div class="problem denied" role="alert" data-testid="denied">
        <h2>Not allowed</h2>
        {props.core ? (
          <p>
            You may not see {props.what}: the API server refused your own identity. Reading it needs core Kubernetes
            read access in the namespace, such as the built-in <code>view</code> role.
          </p>
        ) : props.act ? (
          <p>
            You may not {props.act}. Ask an administrator for the <code>infera-operator</code> role.
          </p>
        ) : (
          <p>
            You may not see {props.what}. Ask an administrator for the <code>infera-viewer</code> or{" "}
            <code>infera-operator</code> role.
          </p>
        )}
        <p class="detail">The gateway said: {e.message}</p>
      </div>
    );
  }
  const msg = e instanceof ApiError ? `${e.status}: ${e.message}` : e instanceof Error ? e.message : String(e);
  return (
    <div class="problem" role="alert">
      <h2>{props.act ? "Could not " + props.act : "Could not load " + props.what}</h2>
      <p class="detail">{msg}</p>
    </div>
  );
}

/** Loading is announced politely to screen readers. */
export function Loading(props: { what: string }) {
  return (
    <p class="loading" role="status">
      Loading {props.what}…
    </p>
  );
}

export function Badge(props: { kind: string; children: ComponentChildren }) {
  return <span class={"badge " + props.kind}>{props.children}</span>;
}

export function stateKind(state: string): string {
  switch (state) {
    case "enforcing":
      return "ok";
    case "observe-only":
      return "info";
    case "safe-mode":
      return "warn";
    case "refused":
    case "degraded":
      return "bad";
    default:
      return "muted";
  }
}
