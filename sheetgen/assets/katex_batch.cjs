// Renders a batch of TeX formulas with KaTeX in one process (node startup dominates the cost).
// stdin:  {"katex": "/abs/path/node_modules/katex", "options": {...}, "requests": [{"tex", "display"}]}
// stdout: [{"html": "..."} | {"error": "...", "kind": "parse"|"refused"|"size"}], one per request, in order.
"use strict";

const fs = require("fs");

const job = JSON.parse(fs.readFileSync(0, "utf8"));
const katex = require(job.katex);
const options = job.options;

// TeX sizes have no exponent notation; KaTeX's size parser finds "5em" inside "1e5em" and
// draws that instead of refusing it, so refuse it here.
const EXPONENT_SIZE = /\d\s*[eE]\s*[+-]?\d+(?:\.\d*)?\s*(?:em|ex|pt|mu|cm|mm|in|bp|pc|dd|cc|nd|nc|sp|px)/;

function describe(error, tex) {
  if (!(error instanceof katex.ParseError)) {
    return String(error && error.message ? error.message : error);
  }
  // KaTeX's own message ends with the source underlined by combining characters; say the
  // position in words instead, which survives a terminal and a log file.
  let where = "";
  if (typeof error.position === "number") {
    where = error.position >= tex.length ? " at end of input" : ` at position ${error.position + 1}`;
  }
  return `KaTeX parse error: ${error.rawMessage}${where}`;
}

function renderOne(request) {
  const tex = request.tex;
  const refused = [];
  const settings = {
    ...options,
    displayMode: Boolean(request.display),
    output: "html",
    throwOnError: true,
    // Links, images, raw HTML: KaTeX would draw them as red text with trust off; we record
    // every request instead and fail the build, so nothing untrusted is silently printed.
    trust: (context) => {
      refused.push(`${context.command}{${context.url || context.class || context.id || ""}}`);
      return false;
    },
  };
  try {
    if (EXPONENT_SIZE.test(tex)) {
      const size = EXPONENT_SIZE.exec(tex)[0];
      return { error: `invalid TeX size '${size}' (TeX has no exponent notation; KaTeX would misread it)`, kind: "size" };
    }
    const html = katex.renderToString(tex, settings);
    if (refused.length) {
      const commands = [...new Set(refused)].join(", ");
      return { error: `refused ${commands}: links, images and HTML extensions are not allowed`, kind: "refused" };
    }
    // KaTeX clamps sizes above maxSize silently; a render without the limit differs iff
    // something was clamped, and then the TeX asks for more than the sheet allows.
    if (Number.isFinite(settings.maxSize)) {
      const unclamped = katex.renderToString(tex, { ...settings, maxSize: Infinity });
      if (unclamped !== html) {
        return { error: `a size in this TeX exceeds the limit of ${settings.maxSize}em`, kind: "size" };
      }
    }
    return { html };
  } catch (error) {
    return { error: describe(error, tex), kind: "parse" };
  }
}

process.stdout.write(JSON.stringify(job.requests.map(renderOne)));
