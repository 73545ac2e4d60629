/* sheetgen quiz mode: on a section page, "Quiz me" hides each formula (with the code and
   conventions under it) behind a button named after its card, and folds every rapid-fire answer.
   A click, or Enter/Space on the focused button, reveals one; "Reveal all" / "Hide all" do every one.
   The choice is kept in localStorage. No network, no dependencies; Material's instant navigation
   (document$) is supported when enabled. The page without JavaScript shows everything. */
(function () {
  "use strict";

  var KEY = "sheetgen.quiz";

  function stored() {
    try {
      return window.localStorage.getItem(KEY) === "on";
    } catch (error) {
      return false; // storage blocked (private mode, file://): quiz stays off until toggled
    }
  }

  function store(on) {
    try {
      window.localStorage.setItem(KEY, on ? "on" : "off");
    } catch (error) {
      /* nothing to remember with */
    }
  }

  function button(label, className) {
    var element = document.createElement("button");
    element.type = "button";
    element.className = className;
    element.textContent = label;
    return element;
  }

  /* The card's name: its heading's text, math read from the hidden plain form, no permalink. */
  function cardName(heading) {
    if (!heading) return "this formula";
    var copy = heading.cloneNode(true);
    copy.querySelectorAll(".headerlink, sg-m").forEach(function (node) { node.remove(); });
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  /* A formula and what gives it away: the code tabs and the framework conventions of its card. */
  function answerOf(formula) {
    var parts = [formula];
    var heading = null;
    for (var node = formula.previousElementSibling; node; node = node.previousElementSibling) {
      if (node.tagName === "H2") { heading = node; break; }
    }
    for (var next = formula.nextElementSibling; next && next.tagName !== "H2"; next = next.nextElementSibling) {
      if (next.classList.contains("tabbed-set") || next.classList.contains("admonition")) parts.push(next);
    }
    return { heading: heading, parts: parts };
  }

  function setup() {
    var bar = document.querySelector(".md-content .sg-section-bar");
    if (!bar || bar.querySelector(".sg-quiz-controls")) return;
    var article = bar.closest("article") || document.body;
    var formulas = Array.prototype.slice.call(article.querySelectorAll(".sg-formula"));
    var questions = Array.prototype.slice.call(article.querySelectorAll("details.question"));
    if (!formulas.length && !questions.length) return;

    var controls = document.createElement("span");
    controls.className = "sg-quiz-controls";
    var toggle = button("Quiz me", "md-button sg-quiz-toggle");
    var revealAll = button("Reveal all", "md-button sg-quiz-all");
    var hideAll = button("Hide all", "md-button sg-quiz-all");
    controls.append(toggle, revealAll, hideAll);
    bar.appendChild(controls);

    var cards = formulas.map(function (formula, index) {
      var answer = answerOf(formula);
      var name = cardName(answer.heading);
      var cover = button("", "sg-quiz-cover");
      cover.innerHTML = '<span class="sg-quiz-cover__name"></span>' +
        '<span class="sg-quiz-cover__hint">Show the formula</span>';
      cover.firstChild.textContent = name;
      cover.setAttribute("aria-label", "Show the formula: " + name);
      formula.id = formula.id || "sg-formula-" + (index + 1);
      cover.setAttribute("aria-controls", formula.id);
      formula.parentNode.insertBefore(cover, formula);
      var card = { cover: cover, parts: answer.parts, formula: formula };
      cover.addEventListener("click", function () {
        show(card, true);
        formula.setAttribute("tabindex", "-1"); // keyboard users carry on from the formula
        formula.focus({ preventScroll: true });
      });
      return card;
    });

    function show(card, visible) {
      card.parts.forEach(function (part) { part.classList.toggle("sg-quiz-hidden", !visible); });
      card.cover.hidden = visible;
      card.cover.setAttribute("aria-expanded", String(visible));
    }

    function setAll(visible) {
      cards.forEach(function (card) { show(card, visible); });
      questions.forEach(function (details) { details.open = visible; });
    }

    function apply(on) {
      toggle.setAttribute("aria-pressed", String(on));
      toggle.classList.toggle("md-button--primary", on);
      revealAll.hidden = hideAll.hidden = !on;
      document.body.classList.toggle("sg-quiz-on", on);
      if (on) {
        setAll(false);
      } else {
        cards.forEach(function (card) {
          card.parts.forEach(function (part) { part.classList.remove("sg-quiz-hidden"); });
          card.cover.hidden = true;
        });
      }
    }

    toggle.addEventListener("click", function () {
      var on = toggle.getAttribute("aria-pressed") !== "true";
      store(on);
      apply(on);
    });
    revealAll.addEventListener("click", function () { setAll(true); });
    hideAll.addEventListener("click", function () { setAll(false); });
    apply(stored());
  }

  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(setup);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
