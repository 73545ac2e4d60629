// Notebook pages (sheetgen.render.site.notebook_page): each code cell's copy button, as mkdocs-jupyter
// writes it, added here rather than repeated in the page; it copies the cell's <pre> (its text is the code).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".jupyter-wrapper .highlight-ipynb > pre[id]").forEach(function (pre) {
    if (pre.parentElement.previousElementSibling?.classList.contains("zeroclipboard-container")) return;
    var box = document.createElement("div");
    box.className = "zeroclipboard-container";
    box.innerHTML = '<clipboard-copy data-search-exclude aria-label="Copy to Clipboard"><div>' +
      '<span class="notice" hidden>Copied!</span> ' +
      '<span class="clipboard-copy-icon sg-copy-icon" aria-hidden="true"></span></div></clipboard-copy>';
    box.firstChild.setAttribute("for", pre.id);
    pre.parentElement.before(box);
  });
});
