// Site search (sheetgen.render.site.search_worker): Material's own search worker, run unchanged, whose
// results are reordered by name before the page gets them. Material turns each typed word w into the
// prefix query w*, and lunr weighs a match by how rare the matched word is, so "adam" ranked the AdamW
// card (the rarer title word "adamw") above the Adam card, and a title that *is* the query ties with
// titles that merely contain it ("Softmax" vs "Softmax with temperature").
// Order, kept stable within each tier (Material's score order):
//   0. results whose title is the query's words ("Adam" for "adam"),
//   1. results whose title starts with them ("Adam defaults", "NDCG@k" for "ndcg"),
//   2. the rest.
// Within a page's group the named card comes first; groups are ordered by their best tier.
"use strict";

var QUERY = 2;   // Material's SearchMessageType.QUERY
var RESULT = 3;  // Material's SearchMessageType.RESULT

function words(text) {
  return String(text)
    .replace(/<[^>]*>/g, " ")       // <mark> of highlighted matches, KaTeX markup
    .replace(/&[#\w]+;/g, " ")      // entities
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter(function (word) { return word.length > 0; });
}

function tier(item, query) {
  var title = words(item.title);
  if (!query.length || title.length < query.length) return 2;
  for (var i = 0; i < query.length; i++)
    if (title[i] !== query[i]) return 2;
  return title.length === query.length ? 0 : 1;
}

function namedFirst(groups, query) {
  var ranked = groups.map(function (items, order) {
    var tiers = items.map(function (item) { return tier(item, query); });
    var sorted = items
      .map(function (item, i) { return {item: item, tier: tiers[i], order: i}; })
      .sort(function (a, b) { return a.tier - b.tier || a.order - b.order; })
      .map(function (entry) { return entry.item; });
    return {items: sorted, tier: Math.min.apply(null, tiers.concat([2])), order: order};
  });
  return ranked
    .sort(function (a, b) { return a.tier - b.tier || a.order - b.order; })
    .map(function (group) { return group.items; });
}

// One RESULT answers each QUERY, in order.
var queries = [];
addEventListener("message", function (event) {
  var message = event.data;
  if (message && message.type === QUERY) queries.push(words(message.data));
});

var postToPage = self.postMessage.bind(self);
self.postMessage = function (message) {
  if (message && message.type === RESULT && queries.length) {
    var query = queries.shift();
    if (message.data && Array.isArray(message.data.items))
      message.data.items = namedFirst(message.data.items, query);
  }
  return postToPage(message);
};

importScripts(MATERIAL_WORKER);
