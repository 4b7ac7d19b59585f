// MathJax 2.7, served from the site itself (assets/mathjax/, copied from the jupyter-server-mathjax package by
// docs/hooks.py): no CDN, the site works offline. That copy ships the combined configuration
// TeX-AMS-MML_HTMLorMML-full (TeX input, HTML-CSS output) and the STIX-Web fonts, as Jupyter uses them.
// pymdownx.arithmatex (generic) wraps the maths in \( \) and \[ \] inside elements of class "arithmatex".
window.MathJax = {
  config: ["TeX-AMS-MML_HTMLorMML-full.js"],
  MMLorHTML: { prefer: "HTML" },
  tex2jax: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    ignoreClass: ".*|",
    processClass: "arithmatex"
  },
  "HTML-CSS": { availableFonts: [], imageFont: null, preferredFont: null, webFont: "STIX-Web" },
  messageStyle: "none",
  showMathMenu: false
};
