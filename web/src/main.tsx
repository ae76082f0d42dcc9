/**
 * The operator's page of `tapas serve`: the topology as a graph coloured by
 * status, a live table and charts of every tap flow, tap mirror and tap
 * service fed by the stats stream, the selected resource's details, and
 * forms to create and delete (for writers). Same origin as the API; in token
 * mode the token lives in sessionStorage and travels only as X-Auth-Token.
 */
import 'uplot/dist/uPlot.min.css';
import './style.css';

import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';

import { Api, ApiError, forgetToken, storedToken, storeToken } from './api.js';
import { Details } from './details.js';
import { plural } from './format.js';
import { ConfirmDelete, CreateForm } from './forms.js';
import { TopologyGraph } from './graph.js';
import { RateHistory } from './history.js';
import { RatesTable } from './table.js';
import { buildTopology, layoutKey, layoutTopology } from './topology.js';
import type { Inventory, Kind, Session, StatsReport } from './types.js';

/** The resources are read again this often, and at once when the stats stream shows one came or went. */
const POLL_MS = 5000;
const STREAM_INTERVAL_S = 1;
const EMPTY: Inventory = { ports: [], tap_services: [], tap_flows: [], tap_mirrors: [], agents: null };

type Dialog = { create: Exclude<Kind, 'port'> } | { delete: { kind: Kind; id: string; name: string } } | null;

function Login({ message, onToken }: { message: string | null; onToken: (token: string) => void }) {
  const [token, setToken] = useState('');
  return (
    <main class="login">
      <form onSubmit={(event) => { event.preventDefault(); if (token !== '') onToken(token); }} aria-label="sign in">
        <h1>tapas</h1>
        <p>This daemon runs with token auth. Enter your token: it is kept in this tab only (sessionStorage) and sent as X-Auth-Token.</p>
        <label>Token<input type="password" name="token" value={token} onInput={(event) => setToken((event.currentTarget as HTMLInputElement).value)} autocomplete="off" autofocus /></label>
        {message && <p class="form-error" role="alert">{message}</p>}
        <button type="submit" class="primary" data-action="sign-in">Sign in</button>
      </form>
    </main>
  );
}

function App() {
  const [token, setToken] = useState<string | null>(storedToken());
  const api = useMemo(() => new Api(token), [token]);
  const [session, setSession] = useState<Session | null>(null);
  const [needsToken, setNeedsToken] = useState<string | null | false>(false);
  const [inventory, setInventory] = useState<Inventory>(EMPTY);
  const [stats, setStats] = useState<StatsReport | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [dialog, setDialog] = useState<Dialog>(null);
  const [connection, setConnection] = useState<{ live: boolean; text: string }>({ live: false, text: 'connecting…' });
  const history = useRef(new RateHistory()).current;
  const [refreshTick, setRefreshTick] = useState(0);
  const refresh = () => setRefreshTick((tick) => tick + 1);

  const unauthorized = (message: string) => {
    forgetToken();
    setSession(null);
    setNeedsToken(message);
  };

  // Who am I: noauth answers without a token; token mode asks for one.
  useEffect(() => {
    let cancelled = false;
    api.session().then((found) => {
      if (cancelled) return;
      if (found === null) {
        setNeedsToken(null);
        return;
      }
      setSession(found);
      setNeedsToken(false);
    }, (error: unknown) => {
      if (cancelled) return;
      if (error instanceof ApiError && error.status === 401) unauthorized(token ? `The daemon refused this token: ${error.message}` : '');
      else setConnection({ live: false, text: `cannot reach the daemon: ${(error as Error).message}` });
    });
    return () => { cancelled = true; };
  }, [api]);

  // The resources: now, after every change made here, and every POLL_MS.
  useEffect(() => {
    if (!session) return undefined;
    let cancelled = false;
    const load = () => api.inventory(session.admin).then((found) => { if (!cancelled) setInventory(found); }, (error: unknown) => {
      if (!cancelled && error instanceof ApiError && error.status === 401) unauthorized('The token is no longer accepted.');
    });
    void load();
    const timer = setInterval(load, POLL_MS);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, [session, api, refreshTick]);

  // The stats stream, reconnected after a failure.
  useEffect(() => {
    if (!session) return undefined;
    const abort = new AbortController();
    let lastIds: string | null = null;
    void (async () => {
      while (!abort.signal.aborted) {
        try {
          setConnection({ live: false, text: 'connecting…' });
          await api.stream(STREAM_INTERVAL_S, abort.signal, (report) => {
            history.add(report);
            setStats(report);
            // A tap flow, tap mirror or tap service came or went (here or elsewhere): read the lists now.
            const ids = [...report.tap_flows, ...report.tap_mirrors, ...report.tap_services].map((item) => item.id).sort().join();
            if (lastIds !== null && ids !== lastIds) refresh();
            lastIds = ids;
            setConnection({ live: true, text: `live · ${new Date(report.time).toLocaleTimeString()}` });
          });
          setConnection({ live: false, text: 'stream ended: reconnecting…' });
        } catch (error) {
          if (abort.signal.aborted) return;
          if (error instanceof ApiError && error.status === 401) {
            unauthorized('The token is no longer accepted.');
            return;
          }
          setConnection({ live: false, text: `stream failed (${(error as Error).message}): reconnecting…` });
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    })();
    return () => abort.abort();
  }, [session, api]);

  const topology = useMemo(() => buildTopology(inventory, stats), [inventory, stats]);
  const structure = layoutKey(topology);
  const layout = useMemo(() => layoutTopology(topology), [structure]);
  // Statuses change without moving anything: the laid-out nodes take the latest.
  for (const node of topology.nodes) {
    const placed = layout.nodes.get(node.key);
    if (placed) placed.item = node;
  }
  for (const laid of layout.edges) {
    const edge = topology.edges.find((candidate) => candidate.from === laid.edge.from && candidate.to === laid.edge.to);
    if (edge) laid.edge = edge;
  }
  const selectedNode = topology.nodes.find((node) => node.key === selected);

  if (needsToken !== false) {
    return <Login message={needsToken} onToken={(value) => { storeToken(value); setToken(value); }} />;
  }
  if (!session) return <main class="loading"><p>{connection.text}</p></main>;

  const counts = [plural(inventory.ports.length, 'port'), plural(inventory.tap_services.length, 'tap service'),
    plural(inventory.tap_flows.length, 'tap flow'), plural(inventory.tap_mirrors.length, 'tap mirror')].join(' · ');
  const hostsText = topology.hosts.length === 1 ? `host ${topology.hosts[0]!.name}` : `${topology.hosts.length} hosts`;
  return (
    <div class="app">
      <header>
        <h1>tapas</h1>
        <span class="counts">{counts} · {hostsText}</span>
        <span class={connection.live ? 'connection live' : 'connection'} data-testid="connection">{connection.text}</span>
        <span class="spacer" />
        {session.can_write && (
          <span class="create">
            <button type="button" data-action="create-tap_service" onClick={() => setDialog({ create: 'tap_service' })}>+ Tap service</button>
            <button type="button" data-action="create-tap_flow" onClick={() => setDialog({ create: 'tap_flow' })}>+ Tap flow</button>
            <button type="button" data-action="create-tap_mirror" onClick={() => setDialog({ create: 'tap_mirror' })}>+ Tap mirror</button>
          </span>
        )}
        <span class="who" data-testid="session">project {session.project_id} · {session.roles.join(', ')}{token ? '' : ' (noauth)'}</span>
        {token && <button type="button" data-testid="sign-out" onClick={() => { forgetToken(); setToken(null); setSession(null); }}>Sign out</button>}
      </header>
      <main class="panes">
        <section class="topology" aria-label="topology">
          {topology.nodes.length === 0
            ? <p class="muted center">Nothing here yet. Register ports with <code>tapas port create</code>, then create tap services, tap flows and tap mirrors.</p>
            : <TopologyGraph layout={layout} selected={selected} onSelect={setSelected} />}
        </section>
        <Details node={selectedNode} inventory={inventory} stats={stats} history={history} canWrite={session.can_write}
          onSelect={setSelected} onDelete={(kind, id, name) => setDialog({ delete: { kind, id, name } })} />
        <section class="table" aria-label="live rates">
          <RatesTable stats={stats} inventory={inventory} history={history} selected={selected} onSelect={setSelected} />
        </section>
      </main>
      {dialog && 'create' in dialog && (
        <CreateForm kind={dialog.create} api={api} inventory={inventory} onClose={() => setDialog(null)}
          onCreated={(key) => { setDialog(null); setSelected(key); refresh(); }} />
      )}
      {dialog && 'delete' in dialog && (
        <ConfirmDelete {...dialog.delete} api={api} inventory={inventory} onClose={() => setDialog(null)}
          onDeleted={() => { setDialog(null); setSelected(null); refresh(); }} />
      )}
    </div>
  );
}

render(<App />, document.getElementById('app')!);
