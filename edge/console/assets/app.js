// caregrid console: signs in through the embedded OpenID Provider (a
// public client, authorization code with PKCE), then fills the page from
// the API. The API decides who sees what; this script holds no privilege.
// Plain ES module, no build step; every text a person reads comes from
// the page (the server's catalogue, in the reader's language).

const body = document.body;
const lang = body.dataset.lang || 'en';
const issuer = body.dataset.issuer;
const page = body.dataset.page;
const TEXTS = JSON.parse(document.getElementById('texts').textContent || '{}');
const CLIENT = 'caregrid-console';
const STORE = 'caregrid-console-session';
const PENDING = 'caregrid-console-pending';
const redirectURI = location.origin + '/console/callback';

const t = (key) => TEXTS[key] ?? key;
const $ = (sel, root = document) => root.querySelector(sel);
const num = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });
const num3 = new Intl.NumberFormat(lang, { maximumFractionDigits: 3 });
const pct = new Intl.NumberFormat(lang, { style: 'percent', maximumFractionDigits: 1 });
const when = new Intl.DateTimeFormat(lang, { dateStyle: 'short', timeStyle: 'medium' });

// el builds an element: el('td', {class: 'x'}, 'text', child...).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function say(text) { $('#status').textContent = text; }
function showError(text) {
  const e = $('#error');
  e.textContent = text;
  e.hidden = !text;
}

// ---- Sign-in ----------------------------------------------------------

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

let discovered;
async function discovery() {
  if (!discovered) {
    const r = await fetch(issuer + '/.well-known/openid-configuration');
    if (!r.ok) throw new Error(t('signInUnavailable'));
    discovered = await r.json();
  }
  return discovered;
}

async function signIn() {
  const verifier = random(32);
  const state = random(16);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back: location.pathname + location.search }));
  const d = await discovery();
  const u = new URL(d.authorization_endpoint);
  u.search = new URLSearchParams({
    client_id: CLIENT, response_type: 'code', scope: 'openid profile offline_access',
    redirect_uri: redirectURI, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: 'S256',
    state, ui_locales: lang,
  }).toString();
  location.assign(u.toString());
}

function session() {
  try { return JSON.parse(sessionStorage.getItem(STORE)); } catch { return null; }
}

function keep(tok) {
  const s = {
    access: tok.access_token, refresh: tok.refresh_token || session()?.refresh,
    idToken: tok.id_token || session()?.idToken, expires: Date.now() + (tok.expires_in || 300) * 1000,
  };
  sessionStorage.setItem(STORE, JSON.stringify(s));
  return s;
}

async function tokenRequest(params) {
  const d = await discovery();
  const r = await fetch(d.token_endpoint, {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: CLIENT, ...params }),
  });
  if (!r.ok) return null;
  return r.json();
}

async function finishSignIn() {
  const q = new URLSearchParams(location.search);
  let pending = null;
  try { pending = JSON.parse(sessionStorage.getItem(PENDING)); } catch { /* none */ }
  sessionStorage.removeItem(PENDING);
  if (!pending || !q.get('code') || q.get('state') !== pending.state) {
    showError(t('signInFailed'));
    return;
  }
  const tok = await tokenRequest({
    grant_type: 'authorization_code', code: q.get('code'), redirect_uri: redirectURI, code_verifier: pending.verifier,
  });
  if (!tok) {
    showError(t('signInFailed'));
    return;
  }
  keep(tok);
  const back = pending.back && pending.back.startsWith('/console/') && !pending.back.startsWith('/console/callback')
    ? pending.back : '/console/cluster?lang=' + lang;
  location.replace(back);
}

async function refreshed() {
  const s = session();
  if (!s?.refresh) return null;
  const tok = await tokenRequest({ grant_type: 'refresh_token', refresh_token: s.refresh });
  return tok ? keep(tok) : null;
}

async function signOut() {
  const s = session();
  sessionStorage.removeItem(STORE);
  const d = await discovery();
  const u = new URL(d.end_session_endpoint);
  u.search = new URLSearchParams({
    client_id: CLIENT, post_logout_redirect_uri: location.origin + '/console/',
    ...(s?.idToken ? { id_token_hint: s.idToken } : {}),
  }).toString();
  location.assign(u.toString());
}

// claims are the ID token's claims, for showing who is signed in (the
// API's answers, not these, decide what the user may do).
function claims() {
  try {
    const part = session().idToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch { return {}; }
}

// ---- The API ----------------------------------------------------------

class Problem extends Error {
  constructor(status, p) {
    const fields = (p?.errors || []).map((e) => `${e.field}: ${e.message}`).join('; ');
    super([p?.title, p?.detail, fields].filter(Boolean).join(': ') || String(status));
    this.status = status;
  }
}

// api calls the API as the signed-in user; a refused token is refreshed
// once, then the user signs in again.
async function api(path, { method = 'GET', json, headers = {}, raw = false } = {}) {
  let s = session();
  if (!s || s.expires < Date.now() + 10_000) s = await refreshed();
  if (!s) { await signIn(); throw new Error(t('signingIn')); }
  const send = (tok) => fetch(path, {
    method,
    headers: {
      Authorization: 'Bearer ' + tok, 'Accept-Language': lang,
      ...(json !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers,
    },
    body: json !== undefined ? JSON.stringify(json) : undefined,
  });
  let r = await send(s.access);
  if (r.status === 401) {
    s = await refreshed();
    if (!s) { await signIn(); throw new Error(t('signingIn')); }
    r = await send(s.access);
  }
  if (!r.ok) {
    let p = null;
    try { p = await r.json(); } catch { /* not a problem document */ }
    throw new Problem(r.status, p);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

// act runs an action and reports its outcome in the status line.
async function act(fn, done) {
  showError('');
  try {
    await fn();
    if (done) say(done);
  } catch (e) {
    showError(e.message);
  }
}

function download(blob, name) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name, id: 'download-link', hidden: true });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 60_000);
}

function fmtWhen(s) { return s ? when.format(new Date(s)) : ''; }

function fmtDuration(seconds) {
  if (seconds === undefined || seconds === null || Number.isNaN(seconds)) return '–';
  if (seconds < 1) return num.format(seconds * 1000) + ' ' + t('ms');
  if (seconds < 120) return num.format(seconds) + ' ' + t('s');
  if (seconds < 7200) return num.format(seconds / 60) + ' ' + t('min');
  if (seconds < 172800) return num.format(seconds / 3600) + ' ' + t('h');
  return num.format(seconds / 86400) + ' ' + t('d');
}

// rfc turns a datetime-local value into an RFC 3339 instant.
function rfc(local) { return local ? new Date(local).toISOString().replace(/\.\d{3}Z$/, 'Z') : ''; }

// ---- Cluster ----------------------------------------------------------

const statLabels = [
  ['request_rate', 'statRequests', (v) => num.format(v) + ' /s'],
  ['error_rate', 'statErrors', (v) => num3.format(v) + ' /s'],
  ['p99_seconds', 'statP99', fmtDuration],
  ['grain_request_rate', 'statGrainRequests', (v) => num.format(v) + ' /s'],
  ['grain_unavailable_rate', 'statGrainUnavailable', (v) => num3.format(v) + ' /s'],
  ['audit_pending', 'statAuditPending', (v) => num.format(v)],
  ['audit_pending_age_seconds', 'statAuditLag', fmtDuration],
  ['outbox_lag_seconds', 'statOutboxLag', fmtDuration],
  ['notifications_waiting', 'statNotificationsWaiting', (v) => num.format(v)],
  ['notifications_dead', 'statNotificationsDead', (v) => num.format(v)],
  ['notifications_breakers_open', 'statBreakersOpen', (v) => num.format(v)],
  ['db_pool_acquired', 'statPoolInUse', (v) => num.format(v)],
  ['db_pool_max', 'statPoolMax', (v) => num.format(v)],
  ['members_seen', 'statMembersSeen', (v) => num.format(v)],
  ['goroutines', 'statGoroutines', (v) => num.format(v)],
  ['memory_bytes', 'statMemory', (v) => num.format(v / 1048576) + ' MiB'],
];

function clusterPage() {
  const tbody = $('#members tbody');
  let selected = new URLSearchParams(location.search).get('member');
  let members = [];

  const cells = (m) => {
    const st = m.stats || {};
    const activations = Object.values(m.activations || {}).reduce((a, b) => a + b, 0);
    const up = m.status === 'up';
    const started = m.started_at ? (Date.now() - new Date(m.started_at).getTime()) / 1000 : undefined;
    return [
      up && started !== undefined ? fmtDuration(started) : (m.last_seen ? t('lastSeen') + ' ' + fmtWhen(m.last_seen) : '–'),
      up ? num.format(activations) : '–',
      up && st.request_rate !== undefined ? num.format(st.request_rate) : '–',
      up && st.error_rate !== undefined ? num3.format(st.error_rate) : '–',
      up && st.p99_seconds !== undefined ? fmtDuration(st.p99_seconds) : '–',
      up && st.audit_pending_age_seconds !== undefined ? fmtDuration(st.audit_pending_age_seconds) : '–',
      up && st.outbox_lag_seconds !== undefined ? fmtDuration(st.outbox_lag_seconds) : '–',
      up && st.notifications_waiting !== undefined ? num.format(st.notifications_waiting) : '–',
      up && st.db_pool_max ? `${num.format(st.db_pool_acquired || 0)} / ${num.format(st.db_pool_max)}` : '–',
    ];
  };

  function render(view) {
    members = view.members || [];
    const seen = new Set();
    for (const m of members) {
      seen.add(m.address);
      let row = tbody.querySelector(`tr[data-address="${CSS.escape(m.address)}"]`);
      if (!row) {
        row = el('tr', { dataset: { address: m.address } },
          el('th', { scope: 'row' }, el('button', { type: 'button', class: 'link', onclick: () => select(m.address) }, m.address)),
          el('td', {}, el('span', { class: 'badge' })),
          ...Array.from({ length: 9 }, () => el('td')));
        tbody.append(row);
      }
      row.dataset.status = m.status;
      row.dataset.id = m.id;
      row.className = 'member-' + m.status;
      const badge = row.children[1].firstChild;
      badge.className = 'badge status-' + m.status;
      badge.textContent = t(m.status);
      cells(m).forEach((v, i) => { row.children[i + 2].textContent = v; });
    }
    for (const row of [...tbody.rows]) if (!seen.has(row.dataset.address)) row.remove();
    const count = (s) => members.filter((m) => m.status === s).length;
    $('#cluster-summary').textContent = `${t('membersUp')}: ${count('up')} · ${t('membersDown')}: ${count('down') + count('unreachable')}`;
    if (selected) detail(members.find((m) => m.address === selected));
  }

  function select(address) {
    selected = address;
    const u = new URL(location.href);
    u.searchParams.set('member', address);
    history.replaceState(null, '', u);
    detail(members.find((m) => m.address === address));
    $('#member-detail-title').focus();
  }

  function detail(m) {
    const section = $('#member-detail');
    if (!m) { section.hidden = true; return; }
    section.hidden = false;
    $('#member-detail-title').textContent = `${m.address} · ${t(m.status)}`;
    const dl = $('#member-stats');
    dl.replaceChildren(el('dt', {}, t('memberId')), el('dd', {}, m.id),
      el('dt', {}, t('roles')), el('dd', {}, (m.roles || []).join(', ')),
      el('dt', {}, t('startedAt')), el('dd', {}, fmtWhen(m.started_at)));
    for (const [key, label, fmt] of statLabels) {
      if (m.stats && m.stats[key] !== undefined) dl.append(el('dt', {}, t(label)), el('dd', {}, fmt(m.stats[key])));
    }
    $('#member-activations').replaceChildren(...Object.entries(m.activations || {}).map(([k, v]) => el('li', {}, `${k}: ${num.format(v)}`)));
    $('#member-connections').replaceChildren(...(m.connections || []).map((c) => el('li', {}, `${c.peer} ${c.address} · ${fmtWhen(c.connected_at)}`)));
  }

  async function poll() {
    try {
      render(await api('/v1/ops/cluster'));
      showError('');
    } catch (e) {
      showError(e.message);
    }
  }
  poll();
  setInterval(poll, 2000);
}

// ---- Accounts ---------------------------------------------------------

function accountStatus(a) {
  if (a.disabled) return 'disabled';
  if (a.locked_until && new Date(a.locked_until) > new Date()) return 'locked';
  if (!a.password_set) return 'awaitingPassword';
  return 'active';
}

function accountsPage() {
  const tbody = $('#accounts tbody');
  let cursor = '';

  function row(a) {
    const status = accountStatus(a);
    const action = (name, label, done) => el('button', {
      type: 'button', dataset: { action: name },
      onclick: () => act(async () => {
        const updated = await api(`/v1/accounts/${a.id}/${name}`, { method: 'POST' });
        tbody.replaceChild(row(updated || a), tr);
      }, done),
    }, label);
    const tr = el('tr', { dataset: { id: a.id, username: a.username, status } },
      el('th', { scope: 'row' }, a.username),
      el('td', {}, a.display_name || ''),
      el('td', {}, t(a.role)),
      el('td', {}, t(status)),
      el('td', {}, a.totp_enrolled ? t('enrolled') : t('notEnrolled')),
      el('td', { class: 'actions' },
        a.disabled ? action('enable', t('enable'), t('accountEnabled')) : action('disable', t('disable'), t('accountDisabled')),
        status === 'locked' ? action('unlock', t('unlock'), t('accountUnlocked')) : null,
        a.totp_enrolled ? action('reset-totp', t('resetTOTP'), t('totpReset')) : null,
        a.email ? action('send-reset', t('sendReset'), t('resetSent')) : null));
    return tr;
  }

  async function load(more) {
    const f = new FormData($('#account-filter'));
    const q = new URLSearchParams({ limit: '50' });
    for (const k of ['q', 'role', 'status']) if (f.get(k)) q.set(k, f.get(k));
    if (more && cursor) q.set('cursor', cursor);
    await act(async () => {
      const out = await api('/v1/accounts?' + q);
      if (!more) tbody.replaceChildren();
      for (const a of out.accounts) tbody.append(row(a));
      cursor = out.next_cursor || '';
      $('#accounts-more').hidden = !cursor;
    });
  }

  $('#account-filter').addEventListener('submit', (e) => { e.preventDefault(); load(false); });
  $('#accounts-more').addEventListener('click', () => load(true));
  $('#create-account').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.target;
    const f = new FormData(form);
    const input = { username: f.get('username').trim(), email: f.get('email').trim(), role: f.get('role') };
    if (f.get('record_id').trim()) input.record_id = f.get('record_id').trim();
    if (f.get('display_name').trim()) input.display_name = f.get('display_name').trim();
    act(async () => {
      await api('/v1/accounts', { method: 'POST', json: input, headers: { 'Idempotency-Key': crypto.randomUUID() } });
      form.reset();
      await load(false);
    }, t('accountCreated'));
  });
  load(false);
}

// ---- Clinics and doctors ----------------------------------------------

const weekdays = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

function directoryPage() {
  let clinics = [];

  async function loadClinics() {
    const out = await api('/v1/clinics');
    clinics = out.clinics;
    $('#clinics tbody').replaceChildren(...clinics.map((c) => el('tr', { dataset: { id: c.id } },
      el('th', { scope: 'row' }, c.name), el('td', {}, c.address), el('td', {}, c.time_zone),
      el('td', {}, el('button', { type: 'button', onclick: () => editClinic(c) }, t('edit'))))));
    $('#doctor-clinic').replaceChildren(...clinics.map((c) => el('option', { value: c.id }, c.name)));
  }

  async function loadDoctors() {
    const out = await api('/v1/doctors?limit=200');
    const names = Object.fromEntries(clinics.map((c) => [c.id, c.name]));
    $('#doctors tbody').replaceChildren(...out.doctors.map((d) => el('tr', { dataset: { id: d.id } },
      el('th', { scope: 'row' }, `${d.family_name} ${d.given_name}`), el('td', {}, d.specialty), el('td', {}, names[d.clinic_id] || ''),
      el('td', {}, el('button', { type: 'button', onclick: () => editDoctor(d) }, t('edit')),
        el('button', { type: 'button', onclick: () => hours(d) }, t('workingHours'))))));
  }

  function editDoctor(d) {
    const form = $('#doctor-form');
    for (const k of ['id', 'version', 'given_name', 'family_name', 'specialty', 'clinic_id', 'time_zone']) form.elements[k].value = d[k];
    $('#doctor-form-title').textContent = `${t('editDoctor')}: ${d.family_name} ${d.given_name}`;
    form.elements.given_name.focus();
  }

  function editClinic(c) {
    const form = $('#clinic-form');
    form.elements.id.value = c.id;
    form.elements.version.value = c.version;
    form.elements.name.value = c.name;
    form.elements.address.value = c.address;
    form.elements.time_zone.value = c.time_zone;
    $('#clinic-form-title').textContent = t('editClinic') + ': ' + c.name;
    form.elements.name.focus();
  }

  $('#clinic-form').addEventListener('reset', () => { $('#clinic-form-title').textContent = t('createClinic'); });
  $('#clinic-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.target;
    const f = new FormData(form);
    const input = { name: f.get('name').trim(), address: f.get('address').trim(), time_zone: f.get('time_zone').trim() };
    act(async () => {
      if (f.get('id')) {
        await api('/v1/clinics/' + f.get('id'), { method: 'PATCH', json: input, headers: { 'If-Match': `"${f.get('version')}"` } });
      } else {
        await api('/v1/clinics', { method: 'POST', json: input, headers: { 'Idempotency-Key': crypto.randomUUID() } });
      }
      form.reset();
      await loadClinics();
      await loadDoctors();
    }, t('clinicSaved'));
  });

  $('#doctor-form').addEventListener('reset', () => { $('#doctor-form-title').textContent = t('createDoctor'); });
  $('#doctor-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.target;
    const f = new FormData(form);
    const input = Object.fromEntries(['given_name', 'family_name', 'specialty', 'clinic_id', 'time_zone'].map((k) => [k, f.get(k).trim()]));
    act(async () => {
      if (f.get('id')) {
        await api('/v1/doctors/' + f.get('id'), {
          method: 'PATCH', json: input, headers: { 'If-Match': `"${f.get('version')}"`, 'Content-Type': 'application/merge-patch+json' },
        });
      } else {
        await api('/v1/doctors', { method: 'POST', json: input, headers: { 'Idempotency-Key': crypto.randomUUID() } });
      }
      form.reset();
      await loadDoctors();
    }, t('doctorSaved'));
  });

  async function hours(d) {
    await act(async () => {
      let av = { slot_minutes: d.slot_minutes || 15, weekly: [] };
      try { av = await api(`/v1/doctors/${d.id}/availability`); } catch (e) { if (e.status !== 404) throw e; }
      const form = $('#hours-form');
      form.elements.doctor.value = d.id;
      form.elements.slot_minutes.value = av.slot_minutes;
      const byDay = Object.fromEntries((av.weekly || []).map((w) => [w.weekday, w.ranges.map((r) => `${r.start}-${r.end}`).join(', ')]));
      $('#hours-days tbody').replaceChildren(...weekdays.map((day) => el('tr', {},
        el('th', { scope: 'row' }, el('label', { for: 'hours-' + day }, t(day))),
        el('td', {}, el('input', { id: 'hours-' + day, name: day, value: byDay[day] || '', pattern: '^\\s*(\\d\\d:\\d\\d-\\d\\d:\\d\\d\\s*(,\\s*\\d\\d:\\d\\d-\\d\\d:\\d\\d\\s*)*)?$' })))));
      $('#hours').hidden = false;
      $('#hours-title').textContent = `${t('workingHours')}: ${d.family_name} ${d.given_name}`;
      $('#hours-title').focus();
    });
  }

  $('#hours-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.target;
    const weekly = [];
    for (const day of weekdays) {
      const v = form.elements[day].value.trim();
      if (!v) continue;
      weekly.push({ weekday: day, ranges: v.split(',').map((r) => { const [start, end] = r.trim().split('-'); return { start, end }; }) });
    }
    act(() => api(`/v1/doctors/${form.elements.doctor.value}/availability`, {
      method: 'PUT', json: { slot_minutes: Number(form.elements.slot_minutes.value), weekly },
    }), t('hoursSaved'));
  });

  act(async () => { await loadClinics(); await loadDoctors(); });
}

// ---- Service clients --------------------------------------------------

function clientsPage() {
  async function load() {
    const out = await api('/v1/clients');
    $('#clients tbody').replaceChildren(...out.clients.map((c) => el('tr', { dataset: { id: c.id } },
      el('th', { scope: 'row' }, c.id), el('td', {}, c.name), el('td', {}, t(c.kind)), el('td', {}, c.role ? t(c.role) : ''),
      el('td', {}, (c.redirect_uris || []).join(' ')))));
  }
  $('#create-client').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.target;
    const f = new FormData(form);
    act(async () => {
      const out = await api('/v1/clients', { method: 'POST', json: { name: f.get('name').trim(), role: f.get('role') } });
      $('#client-id-value').textContent = out.id;
      $('#client-secret-value').textContent = out.secret;
      $('#client-secret').hidden = false;
      form.reset();
      await load();
    }, t('clientCreated'));
  });
  act(load);
}

// ---- Privacy reviews --------------------------------------------------

function reviewsPage() {
  // decide builds a note field and decision buttons for one queue entry.
  function decide(path, id, decisions, reload) {
    const noteId = 'note-' + id;
    return el('div', { class: 'decide' },
      el('label', { for: noteId }, t('note')), el('input', { id: noteId, maxlength: 1000 }),
      ...decisions.map(([decision, label]) => el('button', {
        type: 'button', dataset: { decision },
        onclick: () => act(async () => {
          await api(`${path}/${id}`, { method: 'POST', json: { decision, note: $('#' + noteId).value } });
          await reload();
        }, t('decisionRecorded')),
      }, label)));
  }
  async function emergency() {
    const out = await api('/v1/reviews?status=pending');
    $('#emergency tbody').replaceChildren(...out.reviews.map((r) => el('tr', { dataset: { id: r.id } },
      el('td', {}, fmtWhen(r.granted_at)), el('td', {}, r.doctor_name || r.doctor_id), el('td', {}, r.patient_name || r.patient_id),
      el('td', {}, r.reason), el('td', {}, decide('/v1/reviews', r.id, [['approve', t('approve')], ['flag', t('flag')]], emergency)))));
  }
  async function erasures() {
    const out = await api('/v1/erasure-requests?status=pending');
    $('#erasures tbody').replaceChildren(...out.erasure_requests.map((r) => el('tr', { dataset: { id: r.id } },
      el('td', {}, fmtWhen(r.requested_at)), el('td', {}, r.patient_name || r.patient_id), el('td', {}, t(r.state)),
      el('td', {}, decide('/v1/erasure-requests', r.id, [['approve', t('approve')], ['refuse', t('refuse')]], erasures)))));
  }
  async function dead() {
    const out = await api('/v1/notifications?status=dead');
    $('#dead tbody').replaceChildren(...out.notifications.map((n) => el('tr', { dataset: { id: n.id } },
      el('td', {}, fmtWhen(n.created_at)), el('td', {}, t(n.channel)), el('td', {}, n.event), el('td', {}, n.last_error || ''),
      el('td', {}, el('button', {
        type: 'button', onclick: () => act(async () => { await api(`/v1/notifications/${n.id}/retry`, { method: 'POST' }); await dead(); }, t('retried')),
      }, t('retry'))))));
  }
  act(async () => { await Promise.all([emergency(), erasures(), dead()]); });
}

// ---- Audit trail ------------------------------------------------------

function auditPage() {
  const tbody = $('#audit-events tbody');
  let cursor = '';

  function query() {
    const f = new FormData($('#audit-filter'));
    const q = new URLSearchParams();
    for (const k of ['patient', 'actor', 'action', 'outcome']) if (f.get(k)?.trim()) q.set(k, f.get(k).trim());
    for (const k of ['from', 'to']) if (f.get(k)) q.set(k, rfc(f.get(k)));
    return q;
  }

  async function search(more) {
    const q = query();
    q.set('limit', '100');
    if (more && cursor) q.set('cursor', cursor);
    await act(async () => {
      const out = await api('/v1/audit-events?' + q);
      if (!more) tbody.replaceChildren();
      for (const e of out.events) {
        tbody.append(el('tr', { dataset: { outcome: e.outcome } },
          el('td', {}, fmtWhen(e.occurred_at)), el('td', {}, e.subject_name ? `${e.subject_name} (${e.subject})` : e.subject),
          el('td', {}, t(e.role)), el('td', {}, e.action), el('td', {}, e.patient_id || ''), el('td', {}, t(e.outcome)),
          el('td', {}, e.detail || '')));
      }
      cursor = out.next_cursor || '';
      $('#audit-more').hidden = !cursor;
      $('#audit-events').dataset.query = q.toString(); // what the rows answer
      say(`${t('eventsShown')}: ${tbody.rows.length}`);
    });
  }

  async function checks() {
    const out = await api('/v1/audit-verifications');
    const vs = out.verifications;
    $('#checks tbody').replaceChildren(...vs.map((v) => el('tr', { dataset: { status: v.status } },
      el('td', {}, fmtWhen(v.started_at)), el('td', {}, el('span', { class: 'badge check-' + v.status }, t(v.status))),
      el('td', {}, num.format(v.events)), el('td', {}, v.requested_by === 'schedule' ? t('schedule') : v.requested_by), el('td', {}, v.problem || ''))));
    const last = vs.find((v) => v.status !== 'running');
    $('#trail-state').textContent = last ? `${t('latestCheck')}: ${t(last.status)} · ${fmtWhen(last.started_at)}` : t('neverChecked');
    return vs.some((v) => v.status === 'running');
  }

  async function pollChecks() {
    try {
      if (await checks()) setTimeout(pollChecks, 1000);
    } catch (e) { showError(e.message); }
  }

  $('#audit-filter').addEventListener('submit', (e) => { e.preventDefault(); search(false); });
  $('#audit-more').addEventListener('click', () => search(true));
  $('#audit-csv').addEventListener('click', () => act(async () => {
    const q = query();
    q.set('format', 'csv');
    const r = await api('/v1/audit-events?' + q, { raw: true });
    download(await r.blob(), 'caregrid-audit.csv');
  }, t('downloaded')));
  $('#check-now').addEventListener('click', () => act(async () => {
    try {
      await api('/v1/audit-verifications', { method: 'POST' });
    } catch (e) { if (e.status !== 409) throw e; }
    await pollChecks();
  }, t('checkStarted')));
  pollChecks();
  search(false);
}

// ---- Analytics --------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

// chart draws grouped bars, one group per period; the table beside it
// holds the same figures for screen readers.
function chart(periods, series) {
  const w = 760; const h = 260; const pad = 36;
  const max = Math.max(1, ...periods.flatMap((p) => series.map(([key]) => p[key] || 0)));
  const groupW = (w - pad * 2) / Math.max(1, periods.length);
  const barW = Math.max(2, (groupW - 6) / series.length);
  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-labelledby': 'trend-title', class: 'chart' });
  root.append(svg('line', { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, class: 'axis' }));
  root.append(svg('text', { x: 4, y: pad - 8, class: 'tick' }, num.format(max)));
  periods.forEach((p, i) => {
    series.forEach(([key, , cls], j) => {
      const v = p[key] || 0;
      const bh = (h - pad * 2) * v / max;
      root.append(svg('rect', { x: pad + i * groupW + j * barW, y: h - pad - bh, width: barW - 1, height: bh, class: cls }));
    });
    if (periods.length <= 16 || i % Math.ceil(periods.length / 16) === 0) {
      root.append(svg('text', { x: pad + i * groupW, y: h - pad + 14, class: 'tick' }, p.period.slice(5)));
    }
  });
  const legend = el('ul', { class: 'legend' }, ...series.map(([, label, cls]) => el('li', {}, el('span', { class: 'swatch ' + cls }), label)));
  return [root, legend];
}

function analyticsPage() {
  const today = new Date();
  const from = new Date(today.getTime() - 90 * 86400000);
  $('#analytics-from').value = from.toISOString().slice(0, 10);
  $('#analytics-to').value = new Date(today.getTime() + 30 * 86400000).toISOString().slice(0, 10);

  function query() {
    const f = new FormData($('#analytics-filter'));
    const q = new URLSearchParams({ from: f.get('from'), to: f.get('to'), interval: f.get('interval') });
    if (f.get('clinic')) q.set('clinic', f.get('clinic'));
    if (f.get('doctor')) q.set('doctor', f.get('doctor'));
    return q;
  }

  async function show() {
    await act(async () => {
      const q = query();
      const [appts, diags] = await Promise.all([api('/v1/analytics/appointments?' + q), api('/v1/analytics/diagnoses?' + q)]);
      const series = [['appointments', t('appointments'), 'bar-booked'], ['completed', t('completed'), 'bar-completed'],
        ['cancelled', t('cancelled'), 'bar-cancelled'], ['no_shows', t('noShows'), 'bar-noshow']];
      $('#trend-chart').replaceChildren(...chart(appts.periods, series));
      $('#trend tbody').replaceChildren(...appts.periods.map((p) => el('tr', {},
        el('th', { scope: 'row' }, p.period), el('td', {}, num.format(p.appointments)), el('td', {}, num.format(p.completed)),
        el('td', {}, num.format(p.cancelled)), el('td', {}, num.format(p.no_shows)))));
      $('#per-doctor tbody').replaceChildren(...appts.doctors.map((d) => el('tr', { dataset: { id: d.doctor_id } },
        el('th', { scope: 'row' }, d.doctor_name || d.doctor_id), el('td', {}, d.clinic_name || ''),
        el('td', {}, num.format(d.appointments)),
        el('td', {}, d.available_minutes ? pct.format(d.booked_minutes / d.available_minutes) : '–'),
        el('td', {}, d.appointments ? pct.format(d.cancelled / d.appointments) : '–'),
        el('td', {}, d.appointments ? pct.format(d.no_shows / d.appointments) : '–'),
        el('td', {}, d.median_lead_seconds !== undefined ? fmtDuration(d.median_lead_seconds) : '–'))));
      $('#diagnoses tbody').replaceChildren(...diags.diagnoses.map((d) => el('tr', {},
        el('th', { scope: 'row' }, d.code), el('td', {}, num.format(d.visits)))));
    });
  }

  $('#analytics-filter').addEventListener('submit', (e) => { e.preventDefault(); show(); });
  $('#analytics-csv').addEventListener('click', () => act(async () => {
    const q = query();
    q.set('format', 'csv');
    const r = await api('/v1/analytics/appointments?' + q, { raw: true });
    download(await r.blob(), 'caregrid-appointments.csv');
  }, t('downloaded')));
  act(async () => {
    const [clinics, doctors] = await Promise.all([api('/v1/clinics'), api('/v1/doctors?limit=500')]);
    $('#analytics-clinic').append(...clinics.clinics.map((c) => el('option', { value: c.id }, c.name)));
    $('#analytics-doctor').append(...doctors.doctors.map((d) => el('option', { value: d.id }, `${d.family_name} ${d.given_name}`)));
  }).then(show);
}

// ---- Start ------------------------------------------------------------

const pages = {
  '/console/cluster': clusterPage,
  '/console/accounts': accountsPage,
  '/console/directory': directoryPage,
  '/console/clients': clientsPage,
  '/console/reviews': reviewsPage,
  '/console/audit': auditPage,
  '/console/analytics': analyticsPage,
};

async function start() {
  // The sign-in returns only to the node's public URL: a page opened under
  // another name for the same node (localhost for 127.0.0.1) moves there.
  const home = new URL(issuer).origin;
  if (home !== location.origin) {
    location.replace(home + location.pathname + location.search);
    return;
  }
  if (page === '/console/callback') {
    await finishSignIn();
    return;
  }
  let me;
  try {
    me = await api('/v1/me');
  } catch (e) {
    showError(e.message);
    return;
  }
  $('#who').textContent = `${claims().preferred_username || me.subject} · ${t(me.role)}`;
  const out = $('#sign-out');
  out.hidden = false;
  out.addEventListener('click', signOut);
  if (me.role !== 'admin') {
    $('#denied').hidden = false;
    return;
  }
  $('#content').hidden = false;
  body.dataset.ready = 'true';
  pages[page]?.();
}

start();
