// The action-link page (/n/<token>): open the approval at once. The form posts the link
// (which uses it, once) and the sidecar sends the browser on to the approval; link previews
// and mail scanners, which do not run scripts, only ever see the page.
const form = document.getElementById('open-link');
if (form) form.submit();
