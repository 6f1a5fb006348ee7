"""What a student meets on a tab before pressing Train, measured in the browser (issue 42's
reading): where Train is, how many words come before it, which long texts are too small or too
faint to read, and whether deployment words show. Shared by tests/test_browser.py and
benchmarks/page.py, which keeps the before-and-after table and the screenshots."""

import re

# The control a tab is run from: Train, or on Final CNN the photo it classifies.
START = {"Final CNN": "photo"}
MIN_FONT_PX = 14
MIN_CONTRAST = 4.5  # WCAG AA for body text
LONG_BLOCK_WORDS = 40
# A deployer's words: an environment variable (two or more capitalised words joined by "_") or a
# command. Class names in the page (CIFAR-10) have no underscore.
DEPLOYMENT_WORDS = re.compile(r"\b[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+\b|python -m|\bpip install\b")

MEASURE = """([startKind, minFont, minContrast, longWords]) => {
  const shown = e => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden';
  const top = e => e.getBoundingClientRect().top + window.scrollY;
  let start;
  if (startKind === 'photo') {
    start = [...document.querySelectorAll('.block')].filter(shown).find(b => /^\\s*Photo\\b/.test(b.innerText));
  } else {
    start = [...document.querySelectorAll('button')].filter(shown).find(b => b.innerText.trim() === 'Train');
  }
  const startY = start ? top(start) : null;
  const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  const luminance = rgb => 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2]);
  const rgba = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const background = e => {
    for (let n = e; n; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  const words = s => (s.match(/[\\p{L}\\p{N}][\\p{L}\\p{N}'’.,%-]*/gu) || []).length;
  let before = 0;
  const faint = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const blocks = new Map();  // block -> [its words, those too small, those too faint]
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const e = node.parentElement;
    if (!e || !node.textContent.trim() || !shown(e)) continue;
    // Not counted: tables, plots, buttons (the tab bar's too), formulas' hidden MathML.
    if (e.closest('table, .vega-embed, button, [role=tab], .katex-mathml, script, style, svg')) continue;
    const n = words(node.textContent);
    if (startY !== null && top(e) < startY) before += n;
    const style = getComputedStyle(e);
    const [hi, lo] = [luminance(rgba(style.color)), luminance(background(e))].sort((a, b) => b - a);
    const block = e.closest('p, li, label, div') || e;
    const [w, small, faint] = blocks.get(block) || [0, 0, 0];
    blocks.set(block, [w + n, small + (parseFloat(style.fontSize) < minFont ? n : 0), faint + ((hi + 0.05) / (lo + 0.05) < minContrast ? n : 0)]);
  }
  // A block is hard to read when most of its words are (inline code or a formula's piece may be smaller).
  for (const [block, [n, small, dim]] of blocks)
    if (n > longWords && (2 * small > n || 2 * dim > n))
      faint.push(`${n} words, ${small} under ${minFont} px, ${dim} under ${minContrast}:1: ${block.innerText.slice(0, 60)}`);
  return {start: startY, words: before, faint, height: document.documentElement.scrollHeight};
}"""


def reading(page, tab: str) -> dict:
    """The open tab as a student meets it: Train's (or the photo's) distance from the page's top
    in px, the words before it, the long texts too small or faint, the page's height and any
    deployment words shown."""
    measured = page.evaluate(MEASURE, [START.get(tab, "train"), MIN_FONT_PX, MIN_CONTRAST, LONG_BLOCK_WORDS])
    measured["deployment"] = sorted(set(DEPLOYMENT_WORDS.findall(page.locator("body").inner_text())))
    return measured
