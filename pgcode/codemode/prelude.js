// pgcode code-mode prelude: evaluated first in every fresh QuickJS context, before the request arrives
// (each worker prepares its next context while idle). It closes the routes to code generation, removes
// the engine's bridge globals and builds `console`; `pg` (narrowed by an allow-list), `input` and `args`
// are built when the request arrives. Tool calls return pending Promises; once the code has queued what it
// will queue (the queue stopped growing for a few microtask turns), the batch goes to the server through the
// worker and its results settle the Promises in the same eval. A batch still queued when the eval ends goes
// out the same way and settles in a later eval (research/sandbox-probe.md, 4). Tampering with built-ins
// after this point only affects the tamperer's own run (one context per execution) and the server checks
// every call, so only the API objects are frozen. Parsing costs about 0.3 us per token here: keep this
// file small, and the method table is one string (API) expanded per group on first use.
(function (API, L) {
  'use strict';
  const G = globalThis, hostBridge = G.call_python, str = JSON.stringify, def = Object.defineProperty;
  const resolved = Promise.resolve(), then = Promise.prototype.then;
  const freeze = Object.freeze, E = Error, S = String, apply = Reflect.apply;
  const kinds = new WeakMap(), wmSet = WeakMap.prototype.set, wmGet = WeakMap.prototype.get;
  const mark = (e, k) => { apply(wmSet, kinds, [e, k]); return e; };
  const fixed = (o, k, value) => def(o, k, {value, writable: false, enumerable: false, configurable: false});

  // No code generation from strings: eval, Function and the four .constructor routes throw.
  const blocked = function () {
    const e = new E('code generation from strings (eval, Function, .constructor) is disabled in code mode');
    e.name = 'SecurityError';
    e.code = 'SECURITY_ERROR';
    throw mark(e, 'security');
  };
  blocked.prototype = Function.prototype;  // `f instanceof Function` keeps working
  freeze(blocked);
  for (const f of [function () {}, async function () {}, function* () {}, async function* () {}]) {
    fixed(Object.getPrototypeOf(f), 'constructor', blocked);
  }
  fixed(G, 'eval', blocked);
  fixed(G, 'Function', blocked);
  for (const n of ['call_python', 'dukpy', 'SharedArrayBuffer', 'Atomics', 'WeakRef', 'FinalizationRegistry']) delete G[n];

  // console: captured with levels, capped.
  let logs = [], nLogs = 0, nChars = 0, dropped = 0;
  const show = (v) => {
    try {
      if (typeof v === 'string') return v;
      if (typeof v === 'bigint') return S(v) + 'n';
      if (typeof v === 'function') return '[Function ' + (v.name || 'anonymous') + ']';
      if (v instanceof E) return v.name + ': ' + v.message;
      const s = str(v, (k, x) => (typeof x === 'bigint' ? S(x) + 'n' : x));
      return s === undefined ? S(v) : s;
    } catch (e) {
      try { return S(v); } catch (e2) { return '[unprintable]'; }
    }
  };
  const logger = (level) => (...values) => {
    if (nLogs >= L.maxLogs || nChars >= L.maxLogChars) { dropped++; return; }
    let message = values.map(show).join(' ');
    if (message.length > L.maxLogEntryChars) message = message.slice(0, L.maxLogEntryChars) + ' [truncated]';
    nLogs++;
    nChars += message.length;
    logs.push({level, message});
  };
  fixed(G, 'console', freeze({log: logger('log'), info: logger('info'), warn: logger('warn'),
                              error: logger('error'), debug: logger('debug')}));

  // The async bridge: a call queues [id, tool, argsJson] and returns a pending Promise.
  const pending = new Map();
  let queue = [], nextId = 0;
  const call = (tool, args) => {
    const json = args === undefined || args === null ? '{}' : str(args);
    if (typeof json !== 'string') throw new TypeError(tool + ': the arguments must be a JSON object');
    if (json.length > L.maxArgsChars) throw new RangeError(tool + ': the arguments are larger than ' + L.maxArgsChars + ' characters of JSON');
    const site = new E().stack;  // where the call was made: the line of an uncaught tool error
    return new Promise((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, {resolve, reject, tool, site});
      queue.push([id, tool, json]);
      if (!scheduled) { scheduled = true; seen = -1; hop(); }
    });
  };
  // A Promise.all queues its calls in one turn, a chain of awaits a turn later each: the batch goes out once the
  // queue stopped growing for IDLE_TURNS turns, so the calls made together still travel and run together.
  const IDLE_TURNS = 3;
  let scheduled = false, seen = 0, idle = 0;
  const hop = () => apply(then, resolved, [flush]);
  const flush = () => {
    if (queue.length !== seen) { seen = queue.length; idle = 0; hop(); return; }
    if (++idle < IDLE_TURNS) { hop(); return; }
    scheduled = false;
    if (!queue.length || box.done) return;  // calls the code did not await before it returned do not run
    const out = {calls: queue, logs};
    queue = [];
    logs = [];
    const answer = hostBridge('calls', out);  // blocks until the server has run the batch
    if (answer !== null && typeof answer === 'object') settleResults(answer.r);
  };
  const settle = (results) => {
    delete G.call_python;
    delete G.dukpy;
    settleResults(results);
    return {toJSON: state};
  };
  const settleResults = (results) => {
    for (const [id, ok, v] of results) {
      const p = pending.get(id);
      if (p === undefined) continue;
      pending.delete(id);
      if (ok) { p.resolve(v); continue; }
      const e = new E(S(v.message));
      e.name = 'ToolError';
      e.code = S(v.code);
      e.tool = p.tool;
      if (v.hint) e.hint = S(v.hint);
      if (v.details) e.details = v.details;  // sqlstate, transactionId (IN_DOUBT), retryAfterSeconds ...
      e.site = p.site;
      p.reject(mark(e, e.code === 'SECURITY_ERROR' ? 'security' : 'tool'));
    }
  };

  // pg: "group:method=tool,method=tool;group:..." becomes one frozen object per group, built on first use.
  const help = (group) => hostBridge('help', group === undefined ? null : group);
  const build = (group, list) => {
    const o = {};
    for (const pair of list.split(',')) {
      const j = pair.indexOf('='), tool = pair.slice(j + 1);
      o[pair.slice(0, j)] = (args) => call(tool, args);
    }
    o.help = () => help(group);
    return freeze(o);
  };
  const makePg = (api) => {  // api: this run's map (an allow-list narrows it), or all of API
    const pg = {};
    for (const spec of api ? api.split(';') : []) {
      const i = spec.indexOf(':'), group = spec.slice(0, i), list = spec.slice(i + 1);
      let built;
      def(pg, group, {enumerable: true, get: () => built || (built = build(group, list))});
    }
    pg.call = (tool, args) => {
      if (typeof tool !== 'string') throw new TypeError('pg.call(name, args): name is a tool name such as "pg_read_query"');
      return call(tool, args);
    };
    pg.help = help;
    return freeze(pg);
  };

  // Completion: the user's function settles the box; every eval ends by serialising state().
  const box = {done: false};
  const field = (e, k) => { try { const v = e[k]; return v == null ? undefined : S(v); } catch (x) { return undefined; } };
  const detailsOf = (e) => { try { const d = e.details; return d !== null && typeof d === 'object' ? str(d) : undefined; } catch (x) { return undefined; } };
  const describe = (e) => (e !== null && (typeof e === 'object' || typeof e === 'function')
    ? {kind: apply(wmGet, kinds, [e]), name: field(e, 'name'), message: field(e, 'message'), stack: field(e, 'stack'),
       code: field(e, 'code'), tool: field(e, 'tool'), hint: field(e, 'hint'), site: field(e, 'site'),
       details: detailsOf(e)}
    : {name: 'Error', message: 'uncaught ' + show(e), null: e === null});
  const ok = (value) => {
    try {
      const json = str(value);
      box.value = json === undefined ? 'null' : json;
      if (box.value.length > L.maxResultChars) {
        box.value = undefined;
        box.error = {kind: 'limit', code: 'RESULT_TOO_LARGE', name: 'RangeError',
                     message: 'the result is larger than ' + L.maxResultChars + ' characters of JSON'};
      }
    } catch (e) {
      box.error = describe(e);
      box.error.message = 'the result cannot be turned into JSON: ' + box.error.message;
    }
    box.done = true;
  };
  const fail = (e) => { box.error = describe(e); box.done = true; };
  const state = () => {
    const out = {calls: queue, logs};
    queue = [];
    logs = [];
    if (box.done) Object.assign(out, {done: true, value: box.value, error: box.error, logsDropped: dropped,
                                      unawaited: pending.size});
    return out;
  };
  let started = false;
  const start = () => {  // first statement of the eval that carries the user's code
    if (started) throw mark(new E('the code-mode bridge was called out of turn'), 'security');
    started = true;
    const vars = G.dukpy || {};
    delete G.call_python;
    delete G.dukpy;
    def(G, 'pg', {value: makePg(typeof vars.api === 'string' ? vars.api : API), enumerable: true});
    def(G, 'input', {value: vars.input === undefined ? null : vars.input, enumerable: true});
    def(G, 'args', {value: vars.args === undefined ? null : vars.args, enumerable: true});
  };
  fixed(G, '__pgcode_start', start);
  fixed(G, '__pgcode_ok', ok);
  fixed(G, '__pgcode_fail', fail);
  fixed(G, '__pgcode_state', state);
  fixed(G, '__pgcode_settle', settle);
})(__API__, __LIMITS__);
