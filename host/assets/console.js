// The web console's one script, served at /assets/console.js (the Content-Security-Policy
// allows scripts from this site only, never inline). Everything works without it; it adds
// conveniences: copy buttons, and tables that fill in new rows without a reload.
'use strict';

// <button data-copy="ID">: copies the text of the element with that id.
document.addEventListener('click', (event) => {
  const button = event.target.closest('[data-copy]');
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// <tbody data-follow="URL?...&after=" data-after="ID">: every few seconds, asks for the rows
// newer than ID (the server renders them with the page's own template) and puts them on top.
// Without the script, the page's "Show newer" link does the same by reloading.
for (const body of document.querySelectorAll('tbody[data-follow]')) {
  const table = body.closest('[data-log-table]');
  const follow = async () => {
    if (document.hidden) return;
    let answer;
    try {
      answer = await fetch(body.dataset.follow + encodeURIComponent(body.dataset.after),
        { credentials: 'same-origin', headers: { Accept: 'text/html' } });
    } catch (_) {
      return;
    }
    if (!answer.ok) return;
    const rows = document.createElement('template');
    rows.innerHTML = await answer.text();
    const fresh = rows.content.querySelectorAll('tr[data-id]');
    if (fresh.length === 0) return;
    body.dataset.after = fresh[0].dataset.id;
    body.prepend(rows.content);
    if (table) table.classList.remove('hidden-until-rows');
    const empty = document.querySelector('[data-log-empty]');
    if (empty) empty.remove();
  };
  setInterval(follow, 4000);
}

// The service form (<select id="auth-type">): only the chosen auth type's fields are shown.
// With JavaScript off all are, and the server reads only the chosen type's.
(() => {
  const select = document.getElementById('auth-type');
  if (!select) return;
  const show = () => {
    for (const fields of document.querySelectorAll('.auth-fields[data-auth]')) {
      fields.hidden = fields.dataset.auth !== select.value;
    }
  };
  select.addEventListener('change', show);
  show();
})();
