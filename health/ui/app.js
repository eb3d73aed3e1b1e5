// understudy status page: polls ui/state.json every second and renders it.
//
// Safety rules of this file (the page must not become a way to run someone's text):
//   - data from the agent is only ever put into the DOM with textContent, dataset or
//     title; never innerHTML, insertAdjacentHTML, document.write or a URL.
//   - read-only: the only request is a GET of ui/state.json.
'use strict';

(function () {
  const POLL_MS = 1000;    // how often the page asks the agent
  const TIMEOUT_MS = 4000; // an answer later than this counts as "agent unreachable"

  const $ = (id) => document.getElementById(id);
  let lastOK = null; // Date of the last good answer, for the connection line

  // el makes an element with text (never parsed as HTML) and data attributes.
  function el(tag, text, data) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) {
      e.textContent = String(text);
    }
    if (data) {
      for (const [k, v] of Object.entries(data)) {
        e.dataset[k] = v === undefined || v === null ? '' : String(v);
      }
    }
    return e;
  }

  function row(data, cells) {
    const tr = el('tr', null, data);
    for (const c of cells) {
      tr.appendChild(c instanceof Node ? c : el('td', c));
    }
    return tr;
  }

  function dash(s) {
    return s === undefined || s === null || s === '' ? '—' : String(s);
  }

  // fmtDur mirrors the CLI's compact durations: 850µs, 12ms, 1.23s.
  function fmtDur(ns) {
    if (!ns || ns <= 0) {
      return '0s';
    }
    if (ns < 1e6) {
      return Math.round(ns / 1e3) + 'µs';
    }
    if (ns < 1e9) {
      return Math.round(ns / 1e6) + 'ms';
    }
    return (ns / 1e9).toFixed(2) + 's';
  }

  // ago is how long before now (the agent's clock) the wall-clock time t was.
  function ago(t, now) {
    const d = (now - t) / 1000;
    if (!isFinite(d)) {
      return '—';
    }
    if (d < 1) {
      return 'just now';
    }
    if (d < 120) {
      return Math.round(d) + 's ago';
    }
    if (d < 7200) {
      return Math.round(d / 60) + 'm ago';
    }
    if (d < 172800) {
      return Math.round(d / 3600) + 'h ago';
    }
    return Math.round(d / 86400) + 'd ago';
  }

  // sinceCell shows a wall-clock time relative to the agent's clock, exact on hover.
  function sinceCell(iso, now) {
    if (!iso) {
      return el('td', '—');
    }
    const t = new Date(iso);
    const td = el('td', ago(t, now));
    td.title = t.toLocaleString();
    return td;
  }

  function clock(iso) {
    const t = new Date(iso);
    if (isNaN(t)) {
      return '—';
    }
    const pad = (n, w) => String(n).padStart(w, '0');
    return pad(t.getHours(), 2) + ':' + pad(t.getMinutes(), 2) + ':' + pad(t.getSeconds(), 2) +
      '.' + pad(t.getMilliseconds(), 3);
  }

  function renderRoles(roles, now) {
    const rows = (roles || []).map((r) => {
      const holder = el('td', r.holder ? r.holder : 'unheld', { held: r.holder ? 'yes' : 'no' });
      if (r.target) {
        holder.appendChild(el('span', ' → ' + r.target, { note: 'move' }));
      }
      // As in `understudy status`: a last record naming the holder is its own tenure.
      let last = '—';
      if (r.last_holder && r.last_holder !== r.holder) {
        last = r.last_holder + (r.last_clean ? ' (clean)' : ' (unclean)');
      }
      return row({ role: r.name, holder: r.holder || '' }, [
        el('td', r.name, { name: '' }), holder, r.token ? String(r.token) : '—',
        sinceCell(r.since, now), last, dash(r.vip),
      ]);
    });
    $('roles').tBodies[0].replaceChildren(...rows);
  }

  function renderNodes(nodes, now) {
    const rows = (nodes || []).map((n) => {
      const state = el('td', n.state + (n.cordoned ? ' (cordoned)' : ''), { state: n.state });
      const qual = el('td', dash(n.qualified), { qualified: n.qualified });
      const left = n.lease_left_ms > 0 ? (n.lease_left_ms / 1000).toFixed(1) + ' s' : '—';
      return row({ node: n.name, state: n.state }, [
        el('td', n.name, { name: '' }), String(n.id), state,
        n.roles && n.roles.length ? n.roles.join(', ') : '—', qual, left,
        sinceCell(n.since, now), dash(n.version),
      ]);
    });
    $('nodes').tBodies[0].replaceChildren(...rows);
  }

  // stepsCell draws the steps as a bar (widths proportional to their durations) over
  // the text form "detect=3ms fence=81µs …"; a failed step is marked and its error
  // shown on hover.
  function stepsCell(ev) {
    const td = el('td');
    const steps = ev.steps || [];
    if (steps.length === 0) {
      td.textContent = '—';
      return td;
    }
    const sum = steps.reduce((a, s) => a + Math.max(0, s.duration_ns || 0), 0);
    const scale = Math.max(sum, ev.total_ns || 0) || 1;
    const bar = el('div', null, { bar: '' });
    const words = [];
    steps.forEach((s, i) => {
      const seg = el('span', null, { step: s.name, failed: s.error ? 'yes' : 'no', n: i % 8 });
      seg.style.width = (100 * Math.max(0, s.duration_ns || 0) / scale).toFixed(2) + '%';
      seg.title = s.name + ' ' + fmtDur(s.duration_ns) + (s.error ? ': ' + s.error : '');
      bar.appendChild(seg);
      words.push(s.name + '=' + fmtDur(s.duration_ns) + (s.error ? '!' : ''));
    });
    td.appendChild(bar);
    td.appendChild(el('div', words.join(' '), { steptext: '' }));
    return td;
  }

  function renderEvents(events, note) {
    const rows = (events || []).slice().reverse().map((ev) => {
      const t = el('td', clock(ev.time));
      t.title = new Date(ev.time).toLocaleString();
      return row({ kind: ev.kind, role: ev.role || '', node: ev.node || '' }, [
        t, el('td', ev.kind, { kind: ev.kind }), dash(ev.role), dash(ev.node),
        ev.token ? String(ev.token) : '—', dash(ev.from),
        ev.total_ns ? fmtDur(ev.total_ns) : '—', stepsCell(ev), dash(ev.detail),
      ]);
    });
    $('events').tBodies[0].replaceChildren(...rows);
    const n = $('events-note');
    n.hidden = !note;
    n.textContent = note || '';
  }

  function setBanner(kind, text) {
    const b = $('banner');
    b.hidden = !text;
    b.dataset.kind = kind || '';
    b.textContent = text || '';
  }

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function render(st) {
    const now = new Date(st.time);
    const local = st.local || {};
    $('served-by').textContent = dash(local.node) + ' (' + dash(local.state) + ')';
    const cs = st.cluster;
    if (!cs) {
      // Keep the last tables: stale data marked as such beats an empty page.
      setBanner('bad', st.error || 'cluster status unavailable');
      document.body.dataset.stale = 'yes';
    } else {
      document.body.dataset.stale = 'no';
      $('cluster').textContent = 'cluster ' + cs.cluster + ' · revision ' + cs.revision;
      const unheld = cs.unheld || [];
      if (unheld.length) {
        setBanner('bad', 'Degraded: nobody holds ' + unheld.join(', '));
      } else {
        setBanner('', '');
      }
      renderRoles(cs.roles, now);
      renderNodes(cs.nodes, now);
    }
    renderEvents(st.events, st.events_error || (st.events && st.events.length ? '' : 'no events yet'));
  }

  function poll() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
    fetch('ui/state.json', { cache: 'no-store', signal: ctrl.signal })
      .then((resp) => resp.json())
      .then((st) => {
        render(st);
        lastOK = new Date();
        setConn(st.cluster ? 'live' : 'stale', (st.cluster ? 'live' : 'agent answers, cluster unknown') +
          ' · updated ' + lastOK.toLocaleTimeString());
      })
      .catch((err) => {
        document.body.dataset.stale = 'yes';
        setConn('down', 'agent unreachable (' + (err && err.name === 'AbortError' ? 'timeout' : String(err)) +
          ')' + (lastOK ? ' · last update ' + lastOK.toLocaleTimeString() : ''));
      })
      .finally(() => {
        clearTimeout(timer);
        setTimeout(poll, POLL_MS);
      });
  }

  poll();
})();
