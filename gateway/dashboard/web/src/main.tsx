// The shell of Temper's dashboard: sign-in, navigation and the hash router.
// Every view reads infera-gateway's /api/v1 with the signed-in token.
import { render } from "preact";
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import { Client } from "./api";
import { Ctx, type Session } from "./ui";
import { ActionsView, AuditView, FleetView, NodeView, PodView, SavingsView } from "./views";
import { RightsizingView } from "./rightsizing";
import "./style.css";

const STORAGE_KEY = "temper.dashboard.token";

/** route is the parsed location hash: #/nodes/n1 → ["nodes", "n1"]. */
function parseHash(): string[] {
  const h = location.hash.replace(/^#\/?/, "");
  return h ? h.split("/").map((s) => decodeURIComponent(s)) : [];
}

function useRoute(): string[] {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

function readStored(): string {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? "";
  } catch {
    return "";
  }
}

function SignIn(props: { message: string; onSignIn: (token: string, remember: boolean) => void }) {
  const [token, setToken] = useState("");
  const [remember, setRemember] = useState(true);
  const [error, setError] = useState("");
  const submit = (e: Event) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) {
      setError("Paste a bearer token first.");
      return;
    }
    props.onSignIn(t, remember);
  };
  useEffect(() => document.getElementById("token")?.focus(), []);
  return (
    <main id="main" class="signin">
      <h1>Sign in to Temper</h1>
      <p>
        Paste a Kubernetes bearer token: a ServiceAccount token (<code>kubectl create token NAME</code>) or an OIDC id
        token. The gateway checks it with a TokenReview and every view with a SubjectAccessReview.
      </p>
      {props.message && (
        <p class="error" role="alert" id="signin-message">
          {props.message}
        </p>
      )}
      <form onSubmit={submit} aria-describedby="token-help">
        <label for="token">Bearer token</label>
        <textarea
          id="token"
          name="token"
          rows={4}
          autocomplete="off"
          spellcheck={false}
          value={token}
          aria-invalid={error ? "true" : undefined}
          aria-describedby={error ? "token-error" : "token-help"}
          onInput={(e) => setToken((e.target as HTMLTextAreaElement).value)}
        />
        {error && (
          <p id="token-error" class="error">
            {error}
          </p>
        )}
        <p id="token-help" class="hint">
          The token stays in this browser tab: in memory, and in the tab's session storage when the box below is
          ticked (it is gone when the tab closes). It is sent only to this gateway.
        </p>
        <label class="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember((e.target as HTMLInputElement).checked)} />
          Keep me signed in in this tab (session storage)
        </label>
        <button type="submit" id="signin">
          Sign in
        </button>
      </form>
    </main>
  );
}

const NAV: [string, string][] = [
  ["fleet", "Fleet"],
  ["actions", "Actions"],
  ["audit", "Audit"],
  ["savings", "Savings"],
  ["rightsizing", "Rightsizing"],
];

function App() {
  const route = useRoute();
  const [token, setToken] = useState(readStored);
  const [message, setMessage] = useState("");
  const signOut = useCallback((msg: string) => {
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // storage disabled: nothing was kept
    }
    setToken("");
    setMessage(msg);
  }, []);
  const session: Session | null = useMemo(
    () =>
      token
        ? { client: new Client(token, (m) => signOut("The gateway did not accept the token: " + m)), signOut }
        : null,
    [token, signOut],
  );
  const signIn = (t: string, remember: boolean) => {
    try {
      if (remember) sessionStorage.setItem(STORAGE_KEY, t);
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // storage disabled: memory only
    }
    setMessage("");
    setToken(t);
  };
  if (!session) return <SignIn message={message} onSignIn={signIn} />;

  const [section = "fleet", ...rest] = route;
  let view;
  switch (section) {
    case "nodes":
      view = rest[0] ? <NodeView key={rest[0]} name={rest[0]} /> : <FleetView />;
      break;
    case "pods":
      view = <PodView key={rest.join("/")} namespace={rest[0] ?? ""} name={rest[1] ?? ""} />;
      break;
    case "actions":
      view = <ActionsView key={rest[0] ?? ""} node={rest[0] ?? ""} />;
      break;
    case "audit":
      view = <AuditView />;
      break;
    case "savings":
      view = <SavingsView />;
      break;
    case "rightsizing":
      view = <RightsizingView />;
      break;
    default:
      view = <FleetView />;
  }
  const current = section === "nodes" || section === "pods" ? "fleet" : section;
  return (
    <Ctx.Provider value={session}>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Temper</span>
        <nav aria-label="Views">
          <ul>
            {NAV.map(([id, label]) => (
              <li key={id}>
                <a href={"#/" + id} aria-current={current === id ? "page" : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" class="link" id="signout" onClick={() => signOut("You signed out.")}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {view}
      </main>
    </Ctx.Provider>
  );
}

render(<App />, document.getElementById("app")!);
