// Long-lived compile server for benchmarks/render.py, so node start-up and module loading
// are paid once and only the compile is measured.
// Protocol: one JSON object per line on stdin, {"mjml": "..."}; one JSON reply per line on
// stdout, {"html_bytes": n, "ms": t, "errors": k} or {"error": "..."}.
"use strict";

const readline = require("readline");
const mjml2html = require("mjml");

// Same settings as newsletter.render.email.compile_mjml: no comments, no web fonts, no minify.
const OPTIONS = { keepComments: false, fonts: {}, validationLevel: "soft", minify: false, beautify: false };

const lines = readline.createInterface({ input: process.stdin, terminal: false });

lines.on("line", async (line) => {
  let reply;
  try {
    const request = JSON.parse(line);
    const start = process.hrtime.bigint();
    const result = await Promise.resolve(mjml2html(request.mjml, OPTIONS));
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    reply = { html_bytes: Buffer.byteLength(result.html, "utf8"), ms, errors: result.errors.length };
  } catch (err) {
    reply = { error: String((err && err.message) || err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
});
