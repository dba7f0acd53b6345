// The copy buttons ([data-copy] names the element whose text is copied).
document.addEventListener('click', (ev) => {
  const b = ev.target.closest?.('[data-copy]');
  if (!b) return;
  const el = document.getElementById(b.getAttribute('data-copy'));
  const text = el ? el.textContent : '';
  const done = () => {
    b.textContent = b.getAttribute('data-done');
    setTimeout(() => {
      b.textContent = b.getAttribute('data-label');
    }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, () => {});
  else {
    const r = document.createRange();
    r.selectNodeContents(el);
    const s = getSelection();
    s.removeAllRanges();
    s.addRange(r);
    try {
      document.execCommand('copy');
      done();
    } catch {}
  }
});
