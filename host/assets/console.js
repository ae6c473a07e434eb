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
