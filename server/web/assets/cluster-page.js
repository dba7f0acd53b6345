// Polls the JSON endpoint, swaps the tables, and draws one small SVG line chart per server and
// metric. Labels and the poll interval come from the #charts element's data attributes.
(() => {
  const clean = (s) => s.replace(/[<>"&]/g, '');
  const root = document.getElementById('charts');
  const LABEL_RPS = clean(root?.dataset.labelRps ?? 'req/s');
  const LABEL_LAT = clean(root?.dataset.labelLat ?? 'ms');
  const POLL_MS = Number(root?.dataset.pollMs) || 2000;
  const MAX = 60;
  const series = {};
  let prev = null;
  function line(points, w, h, max) {
    if (!points.length) return '';
    const step = w / (MAX - 1);
    return points
      .map((v, i) => `${i ? 'L' : 'M'}${(w - (points.length - 1 - i) * step).toFixed(1)} ${(h - (max ? v / max : 0) * (h - 4) - 2).toFixed(1)}`)
      .join(' ');
  }
  function draw() {
    if (!root) return;
    let out = '';
    for (const id of Object.keys(series).sort()) {
      const s = series[id];
      for (const k of ['rps', 'lat']) {
        const pts = s[k];
        const max = Math.max(...pts, k === 'rps' ? 1 : 5);
        const last = pts.length ? pts[pts.length - 1] : 0;
        out +=
          `<figure class="chart" data-server="${clean(id)}" data-metric="${k}"><svg width="240" height="60" viewBox="0 0 240 60" role="img">` +
          `<rect width="240" height="60" fill="#f6f7f9"/><path d="${line(pts, 240, 60, max)}" fill="none" stroke="${k === 'rps' ? '#1f5fbf' : '#b35c00'}" stroke-width="1.5"/></svg>` +
          `<figcaption>${clean(id)} · ${last.toFixed(1)} ${k === 'rps' ? LABEL_RPS : LABEL_LAT}</figcaption></figure>`;
      }
    }
    root.innerHTML = out;
  }
  function tick() {
    void fetch('/admin/cluster/data', { headers: { accept: 'application/json' }, credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : null))
      .then((d) => {
        if (!d) return;
        for (const k of ['boosters', 'maintenance', 'servers', 'quarantined', 'events']) {
          const el = document.getElementById(`${k}-box`);
          if (el && d.html[k]) el.innerHTML = d.html[k];
        }
        if (prev) {
          const dt = Math.max(0.001, (d.at - prev.at) / 1000);
          for (const id of Object.keys(d.counters)) {
            const c = d.counters[id];
            const p = prev.counters[id] || { requests: 0, latencySum: 0, latencyCount: 0 };
            const s = series[id] || (series[id] = { rps: [], lat: [] });
            const n = Math.max(0, c.requests - p.requests);
            const lc = Math.max(0, c.latencyCount - p.latencyCount);
            s.rps.push(n / dt);
            s.lat.push(lc ? ((c.latencySum - p.latencySum) / lc) * 1000 : 0);
            if (s.rps.length > MAX) {
              s.rps.shift();
              s.lat.shift();
            }
          }
          draw();
        }
        prev = d;
        document.body.setAttribute('data-polls', String(Number(document.body.getAttribute('data-polls') || 0) + 1));
      })
      .catch(() => {})
      .then(() => setTimeout(tick, POLL_MS));
  }
  tick();
})();
