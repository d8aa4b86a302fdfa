// MathJax 3 (website/vendor/mathjax), loaded from the site itself: the docs' math (pymdownx.arithmatex writes
// \( \) and \[ \]) and the notebooks' markdown cells ($ and $$, as Jupyter writes them).
// The widgets' HTML manager typesets through MathJax 2's API (MathJax.Hub.Queue): a two-line bridge to
// MathJax 3 keeps its HTML widgets from raising an error, before MathJax has loaded and after.
(function () {
  const hub = {
    Queue: function (cmd) {
      const el = Array.isArray(cmd) ? cmd[2] : undefined;
      if (window.MathJax && window.MathJax.typesetPromise) {
        window.MathJax.typesetPromise(el ? [el] : undefined).catch(function () {});
      }
    },
  };
  window.MathJax = {
    Hub: hub,
    tex: {
      inlineMath: [["$", "$"], ["\\(", "\\)"]],
      displayMath: [["$$", "$$"], ["\\[", "\\]"]],
      processEscapes: true,
    },
    options: {
      ignoreHtmlClass: "md-typeset|jupyter-wrapper",
      processHtmlClass: "arithmatex|jp-RenderedMarkdown|jp-MarkdownOutput",
    },
    startup: {
      ready: function () {
        window.MathJax.startup.defaultReady();
        window.MathJax.Hub = hub;
      },
    },
  };
})();
