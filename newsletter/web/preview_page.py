"""The live preview's HTML: the editor's page and the numbered source view its findings link to.

One self-contained page (inline CSS and script, nothing fetched from elsewhere) so the preview
works offline. The script listens to ``/events``; each ``render`` event carries the whole state,
so an update costs the page no extra request except reloading the two frames, and only when the
render changed (a broken save leaves them as they are). The frames keep their scroll position.

Findings link to ``/source#L<line>``, the issue file as saved with numbered lines and the line
highlighted: it works with any editor and any browser, and shows exactly the text the finding is
about. (An ``vscode://`` link would work for one editor only, and do nothing without it.)
"""

from __future__ import annotations

import html

NO_RENDER_YET = """<!doctype html><meta charset="utf-8">
<body style="font:15px/1.5 system-ui,sans-serif;color:#6b7280;padding:24px">
No good render yet: fix the problems shown above and save.</body>"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview · __FILE__</title>
<style>
  :root { --ink:#1f2933; --muted:#616e7c; --line:#d9dee4; --bg:#eef1f4; --card:#fff;
          --ok:#1f7a4d; --warn:#a86200; --err:#c0262d; --accent:#2457c5; }
  * { box-sizing: border-box; }
  body { margin:0; background:var(--bg); color:var(--ink);
         font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
  header { display:flex; align-items:center; gap:16px; padding:10px 18px; background:var(--card);
           border-bottom:1px solid var(--line); position:sticky; top:0; z-index:2; }
  header h1 { font-size:15px; margin:0; font-weight:600; white-space:nowrap; }
  header h1 small { font-weight:400; color:var(--muted); margin-left:6px; }
  .inbox { flex:1; min-width:0; overflow:hidden; white-space:nowrap; text-overflow:ellipsis;
           color:var(--muted); border-left:1px solid var(--line); padding-left:16px; }
  .inbox b { color:var(--ink); font-weight:600; }
  .status { font-size:12px; padding:3px 10px; border-radius:999px; white-space:nowrap;
            background:#e3f4ea; color:var(--ok); }
  .status.broken { background:#fde8e8; color:var(--err); }
  .status.waiting { background:#eceff3; color:var(--muted); }
  .toggle { display:inline-flex; border:1px solid var(--line); border-radius:8px; overflow:hidden; }
  .toggle button { border:0; background:transparent; padding:5px 12px; font:inherit; cursor:pointer;
                   color:var(--muted); }
  .toggle button[aria-pressed="true"] { background:var(--ink); color:#fff; }
  main { display:flex; gap:18px; padding:16px 18px; align-items:flex-start; }
  .device { flex:none; display:flex; flex-direction:column; gap:6px; }
  .device h2, aside h2 { margin:0; font-size:12px; font-weight:600; color:var(--muted);
                         text-transform:uppercase; letter-spacing:.06em; }
  .device iframe { display:block; border:1px solid var(--line); border-radius:10px; background:#fff;
                   height:calc(100vh - 112px); min-height:420px;
                   box-shadow:0 1px 2px rgba(16,24,40,.06),0 4px 14px rgba(16,24,40,.06); }
  body.dark .device iframe { background:#111; }
  #phone { width:377px; } #desktop { width:602px; }
  aside { flex:1; min-width:300px; display:flex; flex-direction:column; gap:16px; }
  .card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
  .card h2 { margin-bottom:8px; display:flex; justify-content:space-between; }
  .card h2 span { text-transform:none; letter-spacing:0; font-weight:400; }
  #broken { display:none; border-color:#f3b4b7; background:#fff5f5; }
  #broken.shown { display:block; }
  #broken p { margin:0 0 6px; color:var(--err); font-weight:600; }
  ul.problems { list-style:none; margin:0; padding:0; }
  ul.problems li { padding:6px 0; border-top:1px solid #eef0f3; display:grid;
                   grid-template-columns:auto 1fr; column-gap:8px; }
  ul.problems li:first-child { border-top:0; }
  .sev { font-size:11px; font-weight:600; text-transform:uppercase; padding:1px 6px; border-radius:4px;
         align-self:start; margin-top:2px; }
  .sev.error { background:#fde8e8; color:var(--err); } .sev.warning { background:#fff3dc; color:var(--warn); }
  .where { font:12px ui-monospace,SFMono-Regular,Menlo,monospace; color:var(--accent);
           text-decoration:none; }
  .where:hover { text-decoration:underline; }
  .field { font:12px ui-monospace,SFMono-Regular,Menlo,monospace; color:var(--muted); }
  .msg { grid-column:2; }
  .clean { color:var(--ok); margin:0; }
  pre#text { margin:0; max-height:46vh; overflow:auto; white-space:pre;
             font:11.5px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace; color:#323f4b; }
  body.broken .device iframe { border-color:#f3b4b7; box-shadow:0 0 0 3px #fde8e8; }
</style>
</head>
<body>
<header>
  <h1>__FILE__<small id="version"></small></h1>
  <div class="inbox" id="inbox"></div>
  <span class="status waiting" id="status">connecting…</span>
  <div class="toggle" role="group" aria-label="Colour scheme">
    <button type="button" id="light" aria-pressed="true">Light</button>
    <button type="button" id="dark" aria-pressed="false">Dark</button>
  </div>
</header>
<main>
  <section class="device"><h2>Phone · 375 px</h2>
    <iframe id="phone" title="The email 375 px wide" sandbox="__SANDBOX__"></iframe></section>
  <section class="device"><h2>Desktop · 600 px</h2>
    <iframe id="desktop" title="The email 600 px wide" sandbox="__SANDBOX__"></iframe></section>
  <aside>
    <div class="card" id="broken"><p>The last save does not load; this is the last good render.</p>
      <ul class="problems" id="broken-list"></ul></div>
    <div class="card"><h2>Check <span id="summary"></span></h2><ul class="problems" id="findings"></ul></div>
    <div class="card"><h2>Plain text <span id="size"></span></h2><pre id="text"></pre></div>
  </aside>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const frames = [$("phone"), $("desktop")];
let theme = localStorage.getItem("nl-preview-theme") === "dark" ? "dark" : "light";
let shown = -1;  // the good_version the frames show

function loadFrames(version) {
  for (const frame of frames) {
    let y = 0;
    try { y = frame.contentWindow.scrollY; } catch (e) {}
    frame.onload = () => { try { frame.contentWindow.scrollTo(0, y); } catch (e) {} };
    frame.src = "/email/" + theme + "?v=" + version;
  }
  document.body.dataset.shown = version;
}

function setTheme(next) {
  theme = next;
  localStorage.setItem("nl-preview-theme", theme);
  document.body.classList.toggle("dark", theme === "dark");
  $("light").setAttribute("aria-pressed", String(theme === "light"));
  $("dark").setAttribute("aria-pressed", String(theme === "dark"));
  if (shown >= 0) loadFrames(shown);
}

function problemItem(p) {
  const li = document.createElement("li");
  const sev = document.createElement("span");
  sev.className = "sev " + p.severity; sev.textContent = p.severity;
  const head = document.createElement("span");
  const link = document.createElement("a");
  link.className = "where"; link.href = "/source#L" + p.line; link.target = "nl-source";
  link.textContent = p.where.split("/").pop();
  link.title = "Open " + p.where + " in the numbered source";
  head.append(link);
  if (p.field) {
    const field = document.createElement("span");
    field.className = "field"; field.textContent = " " + p.field;
    head.append(field);
  }
  const msg = document.createElement("span");
  msg.className = "msg"; msg.textContent = p.message;
  li.append(sev, head, msg);
  return li;
}

function apply(s) {
  document.body.dataset.version = s.version;
  $("version").textContent = " v" + s.version;
  $("broken").classList.toggle("shown", s.broken.length > 0);
  document.body.classList.toggle("broken", s.broken.length > 0);
  $("broken-list").replaceChildren(...s.broken.map(problemItem));
  const status = $("status");
  const at = new Date(s.finished_at * 1000).toLocaleTimeString();
  if (s.broken.length) {
    status.className = "status broken"; status.textContent = "save broken · " + at;
  } else {
    status.className = "status"; status.textContent = "rendered in " + s.render_ms + " ms · " + at;
  }
  if (s.good_version === 0) { if (shown !== 0) { shown = 0; loadFrames(0); } return; }
  const inbox = $("inbox"); inbox.replaceChildren();
  const subject = document.createElement("b"); subject.textContent = s.subject;
  inbox.append(subject, " — " + s.preheader);
  const errors = s.findings.filter((p) => p.severity === "error").length;
  const warnings = s.findings.length - errors;
  $("summary").textContent = errors + " error(s), " + warnings + " warning(s)";
  if (s.findings.length) {
    $("findings").replaceChildren(...s.findings.map(problemItem));
  } else {
    const ok = document.createElement("li");
    ok.className = "clean"; ok.textContent = "No findings: ready to send.";
    $("findings").replaceChildren(ok);
  }
  $("size").textContent = "HTML " + (s.html_bytes / 1024).toFixed(1) + " KB";
  $("text").textContent = s.text;
  if (s.good_version !== shown) { shown = s.good_version; loadFrames(shown); }
}

$("light").onclick = () => setTheme("light");
$("dark").onclick = () => setTheme("dark");
setTheme(theme);
const events = new EventSource("/events");
events.addEventListener("render", (e) => apply(JSON.parse(e.data)));
events.onerror = () => {
  const status = $("status");
  status.className = "status waiting"; status.textContent = "reconnecting…";
};
</script>
</body>
</html>
"""

_SOURCE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__FILE__</title>
<style>
  body { margin:0; font:13px/1.55 ui-monospace,SFMono-Regular,Menlo,monospace; color:#1f2933; }
  h1 { font:600 14px system-ui,sans-serif; margin:0; padding:10px 16px; background:#eef1f4;
       border-bottom:1px solid #d9dee4; position:sticky; top:0; }
  table { border-collapse:collapse; width:100%; }
  td { padding:0 12px; vertical-align:top; white-space:pre-wrap; word-break:break-word; }
  td.n { width:1%; white-space:nowrap; text-align:right; color:#9aa5b1; user-select:none;
         border-right:1px solid #eef0f3; }
  td.n a { color:inherit; text-decoration:none; }
  tr { scroll-margin-top:40vh; }
  tr:target { background:#fff3c4; } tr:target td.n { color:#1f2933; font-weight:700; }
</style></head>
<body><h1>__FILE__</h1><table>
"""


#: The email runs no script and may open its links in a new tab; same origin so the page can keep
#: each frame's scroll position across renders.
_SANDBOX = "allow-same-origin allow-popups allow-popups-to-escape-sandbox"


def page(file_name: str) -> str:
    """The editor's page for the issue file ``file_name``."""
    return _PAGE.replace("__SANDBOX__", _SANDBOX).replace("__FILE__", html.escape(file_name))


def source_page(path: str, text: str) -> str:
    """The file with numbered lines; line ``n`` is the element ``#L<n>``, highlighted when targeted."""
    rows = "\n".join(
        f'<tr id="L{n}"><td class="n"><a href="#L{n}">{n}</a></td><td>{html.escape(line)}</td></tr>'
        for n, line in enumerate(text.splitlines() or [""], start=1)
    )
    return _SOURCE.replace("__FILE__", html.escape(path)) + rows + "\n</table></body></html>\n"
