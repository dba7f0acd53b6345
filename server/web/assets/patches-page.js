// Rollout progress updates in place: the page re-reads itself and swaps the #rollout section.
(() => {
  function tick() {
    void fetch(location.pathname, { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.text() : null))
      .then((text) => {
        if (!text) return;
        const next = new DOMParser().parseFromString(text, 'text/html').getElementById('rollout');
        const cur = document.getElementById('rollout');
        if (next && cur) cur.innerHTML = next.innerHTML;
      })
      .catch(() => {})
      .then(() => setTimeout(tick, 3000));
  }
  setTimeout(tick, 3000);
})();
