// drover console: plain JavaScript, no framework, no third-party code.
// It polls the admin API (GET /api/v1/pools every POLL_MS), keeps a few
// minutes of history in memory for the charts, and draws them as SVG.
// The admin token lives in sessionStorage and travels only in the
// Authorization header, never in a cookie or a URL.
'use strict';
(function () {
  const LANGS = { en: 'English', id: 'Bahasa Indonesia', fa: 'فارسی', zh: '中文' };
  const RTL = new Set(['fa']);
  const POLL_MS = 1500;
  const HISTORY_S = 300;
  const TOKEN_KEY = 'drover.token';
  const LANG_KEY = 'drover.lang';
  const SVGNS = 'http://www.w3.org/2000/svg';

  let lang = 'en';
  let catalog = {};
  let fallback = {};
  let tokenRequired = true;
  let pools = [];
  let requests = [];
  const history = new Map(); // pool name -> [{t, rps, queue, busy, idle, starting, other}]
  let pollTimer = null;
  let eventsAbort = null;
  let eventsList = [];
  let lastEventID = 0;

  // ---- i18n -------------------------------------------------------------

  function t(key, vars) {
    let s = catalog[key] ?? fallback[key] ?? key;
    if (vars) {
      for (const [k, v] of Object.entries(vars)) s = s.split('{' + k + '}').join(String(v));
    }
    return s;
  }

  function pickLang() {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved && LANGS[saved]) return saved;
    for (const l of navigator.languages || [navigator.language || 'en']) {
      const base = String(l).toLowerCase().split('-')[0];
      if (LANGS[base]) return base;
    }
    return 'en';
  }

  async function loadCatalog(l) {
    const res = await fetch('/console/i18n/' + l + '.json', { cache: 'no-cache' });
    return res.json();
  }

  async function setLang(l) {
    catalog = l === 'en' ? fallback : await loadCatalog(l);
    lang = l;
    localStorage.setItem(LANG_KEY, l);
    const root = document.documentElement;
    root.lang = l;
    root.dir = RTL.has(l) ? 'rtl' : 'ltr';
    document.getElementById('lang').value = l;
    for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
    document.title = t('app.title');
    render(true);
  }

  function num(v, digits) {
    return new Intl.NumberFormat(lang, { maximumFractionDigits: digits ?? 0, minimumFractionDigits: digits ?? 0 }).format(v);
  }

  function duration(sec) {
    sec = Math.max(0, Math.floor(sec));
    const h = Math.floor(sec / 3600), m = Math.floor(sec / 60) % 60, s = sec % 60;
    const two = (n) => String(n).padStart(2, '0');
    return h > 0 ? h + ':' + two(m) + ':' + two(s) : m + ':' + two(s);
  }

  function latency(seconds) {
    if (!seconds) return '–';
    return seconds < 1 ? num(seconds * 1000, 0) + ' ms' : num(seconds, 2) + ' s';
  }

  function timeOfDay(iso) {
    return new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date(iso));
  }

  // ---- DOM helpers ------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function banner(msg) {
    const b = document.getElementById('banner');
    b.textContent = msg || '';
    b.hidden = !msg;
  }

  // ---- API --------------------------------------------------------------

  class AuthError extends Error {}

  async function api(path, opts) {
    opts = opts || {};
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const res = await fetch('/api/v1' + path, { method: opts.method || 'GET', headers, cache: 'no-store', signal: opts.signal });
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(true);
      throw new AuthError('unauthorized');
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || res.status + ' ' + res.statusText);
    return body;
  }

  function showLogin(refused) {
    stopPolling();
    document.getElementById('login').hidden = false;
    document.getElementById('view').hidden = true;
    document.getElementById('logout').hidden = true;
    const err = document.getElementById('login-error');
    err.hidden = !refused;
    err.textContent = refused ? t('login.refused') : '';
    document.getElementById('token').focus();
  }

  function signedIn() {
    document.getElementById('login').hidden = true;
    document.getElementById('view').hidden = false;
    document.getElementById('logout').hidden = !tokenRequired;
    startPolling();
    route();
  }

  // ---- polling and history ---------------------------------------------

  function startPolling() {
    if (pollTimer) return;
    const tick = async () => {
      try {
        await poll();
        banner('');
      } catch (e) {
        if (e instanceof AuthError) return;
        banner(t('err.unreachable', { msg: e.message }));
      }
      if (pollTimer) pollTimer = setTimeout(tick, POLL_MS);
    };
    pollTimer = setTimeout(tick, 0);
  }

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }

  async function poll() {
    const view = currentView();
    const [list, reqs] = await Promise.all([
      api('/pools'),
      view.name === 'pool' ? api('/pools/' + encodeURIComponent(view.pool) + '/requests').catch(() => []) : Promise.resolve([]),
    ]);
    pools = list;
    requests = reqs;
    const now = Date.now() / 1000;
    for (const p of pools) {
      let h = history.get(p.name);
      if (!h) history.set(p.name, (h = []));
      const c = p.counters.instances || {};
      const busy = p.counters.busy || 0;
      h.push({
        t: now,
        rps: p.counters.req_per_sec || 0,
        queue: p.waiting || 0,
        busy,
        idle: Math.max(0, (c.ready || 0) - busy),
        starting: c.starting || 0,
        other: (c.draining || 0) + (c.stopping || 0) + (c.killed || 0),
      });
      while (h.length && h[0].t < now - HISTORY_S) h.shift();
    }
    for (const name of history.keys()) {
      if (!pools.some((p) => p.name === name)) history.delete(name);
    }
    render(false);
  }

  // ---- charts -------------------------------------------------------------

  const W = 300, H = 90, TOP = 6;

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // span is the time the x axis covers: the history there is, between one
  // and HISTORY_S seconds, so that a fresh chart is not a sliver at the end.
  let span = 60;
  function setSpan(samples, now) {
    span = samples.length ? Math.min(HISTORY_S, Math.max(60, Math.ceil((now - samples[0].t) / 60) * 60)) : 60;
  }
  function xOf(t, now) { return (W - ((now - t) / span) * W).toFixed(1); }
  function yOf(v, max) { return (H - (v / max) * (H - TOP)).toFixed(1); }

  function linePath(samples, key, max, now) {
    return samples.map((s, i) => (i ? 'L' : 'M') + xOf(s.t, now) + ' ' + yOf(s[key], max)).join(' ');
  }

  // areaPath is the band between the stacked sums below and below+key.
  function areaPath(samples, keys, upto, max, now) {
    if (!samples.length) return '';
    const sum = (s, n) => keys.slice(0, n).reduce((a, k) => a + s[k], 0);
    const top = samples.map((s) => xOf(s.t, now) + ' ' + yOf(sum(s, upto + 1), max));
    const bottom = samples.slice().reverse().map((s) => xOf(s.t, now) + ' ' + yOf(sum(s, upto), max));
    return 'M' + top.join(' L') + ' L' + bottom.join(' L') + ' Z';
  }

  function newChart(kind) {
    const box = el('div', { class: 'chart-box' });
    const max = el('span', { class: 'chart-max' });
    box.append(el('div', { class: 'chart-title' }, el('span', { text: t('chart.' + kind) }), max));
    const s = svg('svg', { class: 'chart chart-' + kind, viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': t('chart.' + kind) });
    for (const y of [TOP, H / 2 + TOP / 2]) s.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: y, y2: y, 'vector-effect': 'non-scaling-stroke' }));
    if (kind === 'instances') {
      for (const k of ['busy', 'idle', 'starting', 'other']) s.append(svg('path', { class: 'area ' + k, d: '' }));
      box.append(s, el('div', { class: 'legend' }, ['busy', 'idle', 'starting', 'other'].map((k) => el('span', {}, el('i', { class: k }), t('legend.' + k)))));
    } else {
      s.append(svg('path', { class: 'line', d: '', 'vector-effect': 'non-scaling-stroke' }));
      box.append(s);
    }
    box.update = (samples) => {
      const now = Date.now() / 1000;
      setSpan(samples, now);
      if (kind === 'instances') {
        const keys = ['busy', 'idle', 'starting', 'other'];
        const m = niceMax(Math.max(1, ...samples.map((x) => x.busy + x.idle + x.starting + x.other)));
        max.textContent = num(m);
        s.querySelectorAll('path.area').forEach((p, i) => p.setAttribute('d', areaPath(samples, keys, i, m, now)));
      } else {
        const key = kind === 'rps' ? 'rps' : 'queue';
        const m = niceMax(Math.max(1, ...samples.map((x) => x[key])));
        max.textContent = num(m);
        s.querySelector('path.line').setAttribute('d', linePath(samples, key, m, now));
      }
    };
    return box;
  }

  function chartsFor(name) {
    const charts = ['rps', 'queue', 'instances'].map(newChart);
    const wrap = el('div', { class: 'charts', dataset: { pool: name } }, charts);
    wrap.update = () => charts.forEach((c) => c.update(history.get(name) || []));
    return wrap;
  }

  // ---- views ----------------------------------------------------------------

  function currentView() {
    const h = location.hash.replace(/^#/, '');
    const m = h.match(/^\/pool\/(.+)$/);
    if (m) return { name: 'pool', pool: decodeURIComponent(m[1]) };
    if (h === '/events') return { name: 'events' };
    return { name: 'pools' };
  }

  let mounted = null; // {key, update()}

  function route() {
    if (document.getElementById('view').hidden) return;
    mounted = null;
    if (eventsAbort) {
      eventsAbort.abort();
      eventsAbort = null;
    }
    const v = currentView();
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('active', a.dataset.nav === (v.name === 'events' ? 'events' : 'pools'));
    }
    if (v.name === 'events') followEvents();
    render(true);
    if (v.name === 'pool') poll().catch(() => {});
  }

  function render(full) {
    const view = document.getElementById('view');
    if (view.hidden) return;
    const v = currentView();
    const key = v.name + ':' + (v.pool || '') + ':' + lang + ':' + pools.map((p) => p.name).join(',');
    if (full || !mounted || mounted.key !== key) {
      const m = v.name === 'events' ? eventsView() : v.name === 'pool' ? poolView(v.pool) : poolsView();
      m.key = key;
      view.replaceChildren(m.node);
      mounted = m;
    }
    mounted.update();
  }

  function stat(k) {
    const v = el('span', { class: 'v', text: '–' });
    return { node: el('div', { class: 'stat' }, v, el('span', { class: 'k', text: t(k) })), set: (s) => (v.textContent = s) };
  }

  function stateLabel(p) {
    let s = t('state.' + p.state);
    if (p.state !== 'running' && p.stop_reason) s = t('stopped.reason', { state: s, reason: t('reason.' + p.stop_reason) });
    return s;
  }

  function actions(name) {
    return el('div', { class: 'actions' }, ['recycle', 'stop', 'start'].map((a) =>
      el('button', { type: 'button', class: a === 'stop' ? 'danger' : '', dataset: { action: a, pool: name }, text: t('action.' + a), onclick: () => act(a, name) })));
  }

  async function act(action, name) {
    if (!window.confirm(t('confirm.' + action, { pool: name }))) return;
    try {
      await api('/pools/' + encodeURIComponent(name) + '/' + action, { method: 'POST' });
      banner('');
      await poll();
    } catch (e) {
      if (!(e instanceof AuthError)) banner(t('err.action', { action: t('action.' + action), msg: e.message }));
    }
  }

  function poolCard(p) {
    const badge = el('span', { class: 'badge' });
    const stats = ['stat.instances', 'stat.queue', 'stat.rps', 'stat.p99'].map(stat);
    const charts = chartsFor(p.name);
    const node = el('article', { class: 'card', dataset: { pool: p.name } },
      el('div', { class: 'card-head' }, el('a', { class: 'name', href: '#/pool/' + encodeURIComponent(p.name), text: p.name }), badge, actions(p.name)),
      el('div', { class: 'stats' }, stats.map((s) => s.node)),
      charts);
    const update = () => {
      const cur = pools.find((x) => x.name === p.name);
      if (!cur) return;
      badge.textContent = stateLabel(cur);
      badge.className = 'badge ' + cur.state;
      const c = cur.counters.instances || {};
      stats[0].set(num(cur.counters.busy || 0) + ' / ' + num(c.ready || 0) + ' / ' + num(c.starting || 0));
      stats[1].set(num(cur.waiting));
      stats[2].set(num(cur.counters.req_per_sec || 0, 1));
      stats[3].set(latency(cur.counters.p99_seconds));
      charts.update();
    };
    return { node, update };
  }

  function poolsView() {
    const cards = pools.map(poolCard);
    const node = el('section', {}, el('h1', { text: t('nav.pools') }),
      cards.length ? el('div', { class: 'cards' }, cards.map((c) => c.node)) : el('p', { class: 'muted', text: t('pools.empty') }));
    return { node, update: () => cards.forEach((c) => c.update()) };
  }

  function table(cols, cls) {
    const body = el('tbody');
    const node = el('table', { class: cls }, el('thead', {}, el('tr', {}, cols.map(([k, c]) => el('th', { class: c || '', text: t(k) })))), body);
    return { node, body };
  }

  function poolView(name) {
    const p = pools.find((x) => x.name === name);
    if (!p) {
      return { node: el('section', {}, el('p', {}, el('a', { href: '#/', text: t('back') })), el('p', { class: 'muted', text: pools.length ? t('pool.unknown', { pool: name }) : '…' })), update() {} };
    }
    const card = poolCard(p);
    const settings = el('dl', { class: 'settings' }, Object.entries(p.settings).map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: String(v) }))));
    const inst = table([['inst.id', 'num'], ['inst.pid', 'num'], ['inst.state'], ['inst.uptime', 'num'], ['inst.requests', 'num'], ['inst.inflight', 'num'], ['inst.rss', 'num'], ['inst.cpu', 'num']], 'instances');
    inst.node.id = 'instances';
    const reqs = table([['req.method'], ['req.url'], ['req.client'], ['req.pid', 'num'], ['req.elapsed', 'num']], 'requests');
    reqs.node.id = 'requests';
    const node = el('section', {}, el('p', {}, el('a', { href: '#/', text: t('back') })),
      card.node, el('h2', { text: t('inst.title') }), inst.node, el('h2', { text: t('req.title') }), reqs.node,
      el('h2', { text: t('settings.title') }), settings);
    const update = () => {
      card.update();
      const cur = pools.find((x) => x.name === name);
      if (!cur) return;
      inst.body.replaceChildren(...(cur.instances.length ? cur.instances.map((i) => el('tr', { dataset: { id: i.id } },
        el('td', { class: 'num', text: i.id }),
        el('td', { class: 'num pid', text: i.pid || '–' }),
        el('td', { text: t('state.' + i.state) }),
        el('td', { class: 'num', text: duration(i.uptime_seconds) }),
        el('td', { class: 'num', text: num(i.requests) }),
        el('td', { class: 'num', text: num(i.in_flight) }),
        el('td', { class: 'num', text: num(i.rss_bytes / 1048576, 1) + ' MiB' }),
        el('td', { class: 'num', text: num(i.cpu_seconds, 2) }))) : [el('tr', {}, el('td', { colspan: 8, class: 'muted', text: t('inst.none') }))]));
      reqs.body.replaceChildren(...(requests.length ? requests.map((r) => el('tr', {},
        el('td', { text: r.method }),
        el('td', { class: 'url', title: r.url, text: r.url }),
        el('td', { class: 'mono', text: r.client }),
        el('td', { class: 'num pid', text: r.pid || t('req.waiting') }),
        el('td', { class: 'num', text: num(r.elapsed_ns / 1e9, 1) + ' s' }))) : [el('tr', {}, el('td', { colspan: 5, class: 'muted', text: t('req.none') }))]));
    };
    return { node, update };
  }

  const BAD = new Set(['crash', 'startup-failure', 'spawn-failure', 'ping-failure', 'timeout-kill', 'cpu-kill', 'rapid-fail']);

  function eventsView() {
    const tb = table([['ev.id', 'num'], ['ev.time'], ['ev.kind'], ['ev.source'], ['ev.pid', 'num'], ['ev.reason'], ['ev.detail']], 'events');
    tb.node.id = 'events';
    const node = el('section', {}, el('h1', { text: t('ev.title') }), tb.node);
    const update = () => {
      const rows = eventsList.slice(-300).reverse().map((e) => el('tr', {},
        el('td', { class: 'num', text: e.id }),
        el('td', { text: timeOfDay(e.time) }),
        el('td', { class: 'ev-kind' + (BAD.has(e.kind) ? ' bad' : ''), text: e.kind }),
        el('td', { text: e.pool || e.service || '' }),
        el('td', { class: 'num pid', text: e.pid || '' }),
        el('td', { text: e.reason || '' }),
        el('td', { class: 'mono', text: e.detail || '' })));
      tb.body.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 7, class: 'muted', text: t('ev.none') }))]));
    };
    return { node, update };
  }

  // followEvents long-polls /events while the events view is shown.
  async function followEvents() {
    const ctl = new AbortController();
    eventsAbort = ctl;
    while (!ctl.signal.aborted) {
      try {
        const wait = lastEventID ? '&wait=25s' : '';
        const evs = await api('/events?since=' + lastEventID + wait, { signal: ctl.signal });
        if (evs.length) {
          eventsList = eventsList.concat(evs).slice(-1000);
          lastEventID = evs[evs.length - 1].id;
          if (mounted && currentView().name === 'events') mounted.update();
        }
      } catch (e) {
        if (ctl.signal.aborted || e instanceof AuthError) return;
        banner(t('err.unreachable', { msg: e.message }));
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  // ---- start ------------------------------------------------------------------

  async function main() {
    const sel = document.getElementById('lang');
    for (const [code, label] of Object.entries(LANGS)) sel.append(el('option', { value: code, lang: code, text: label }));
    sel.addEventListener('change', () => setLang(sel.value).catch((e) => banner(String(e))));
    fallback = await loadCatalog('en');
    try {
      const conf = await (await fetch('/console/config.json', { cache: 'no-store' })).json();
      tokenRequired = conf.token_required !== false;
    } catch (e) {
      tokenRequired = true;
    }
    await setLang(pickLang());
    document.getElementById('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = document.getElementById('token').value.trim();
      if (!v) return;
      sessionStorage.setItem(TOKEN_KEY, v);
      document.getElementById('token').value = '';
      signedIn();
    });
    document.getElementById('logout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(false);
    });
    window.addEventListener('hashchange', route);
    if (tokenRequired && !sessionStorage.getItem(TOKEN_KEY)) showLogin(false);
    else signedIn();
  }

  main().catch((e) => banner(String(e)));
})();
