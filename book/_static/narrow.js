// The book on a narrow screen: a table wider than the text column is first set in smaller type ("compact");
// if it still does not fit it is shown as one card per row, each cell beside the name of its column
// ("stacked"); book/_static/narrow.css styles both. A table that fits is left alone. Checked once the page's
// formulas are typeset, and again whenever the window is resized.
(function () {
  "use strict";

  const NARROW = "(max-width: 599.98px)";

  function label(table) {
    // each cell gets a copy of its column's header (typeset formulas included), shown only when stacked
    const heads = [...table.querySelectorAll("thead th")];
    table.querySelectorAll("tbody tr").forEach((row) => {
      [...row.children].forEach((cell, i) => {
        if (!cell.innerText.trim()) cell.classList.add("blank");
        if (i === 0 || !heads[i]) return;
        const name = document.createElement("span");
        name.className = "column-name";
        heads[i].childNodes.forEach((node) => name.appendChild(node.cloneNode(true)));
        cell.prepend(name);
      });
    });
    table.setAttribute("data-labelled", "");
  }

  function overflows(table) {
    const width = Math.max(table.scrollWidth, table.getBoundingClientRect().width);
    return width > table.parentElement.clientWidth;
  }

  function fit() {
    const narrow = window.matchMedia(NARROW).matches;
    document.querySelectorAll("article.bd-article table").forEach((table) => {
      if (table.querySelector(".sd-badge")) return; // claims tables: narrow.css makes them cards by itself
      table.classList.remove("compact", "stacked");
      if (!narrow || !overflows(table)) return;
      table.classList.add("compact");
      if (!overflows(table)) return;
      table.classList.remove("compact");
      if (!table.hasAttribute("data-labelled")) label(table);
      table.classList.add("stacked");
    });
  }

  function start() {
    window.addEventListener("resize", fit);
    // after MathJax, if the page has formulas: they change widths, and a header is copied as typeset
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(fit);
    else fit();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
