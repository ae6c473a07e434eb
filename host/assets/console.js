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
