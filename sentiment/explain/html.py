"""An explanation as one self-contained HTML page.

Each review's tokens are highlighted from red (towards the other class) to
green (towards the explained class); hovering a token shows its score (a
``title`` attribute). For a single review, an inline SVG plots the score as
the tokens are read: the bias term, then each token's contribution added in
turn, ending at the model's score (for the exact split). The page loads
nothing: inline CSS and SVG, no script, no font, no image, no link. The
results are :meth:`sentiment.explain.scores.Explainer.explain_ids`'s dicts.
"""
import html

from sentiment.explain.scores import top_tokens
from sentiment.explain.text import (TOWARDS_TARGET, TOWARDS_VERSUS, display, number,
                                    score_rgb, score_scale)
from sentiment.common.files import atomic_write

STYLE = """
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 62em; margin: 1.2em auto; padding: 0 1em; background: #fff; }
h1 { font-size: 1.35em; margin: 0 0 .2em; }
.meta, .note { color: #555; font-size: .9em; margin: .2em 0; }
.review { border: 1px solid #d8d8d8; border-radius: 6px; padding: .6em 1em .8em; margin: 1em 0; }
.head { margin: 0 0 .4em; }
.label { font-weight: 600; font-size: 1.1em; }
.wrong { color: #b02020; font-weight: 600; }
.text { margin: .4em 0; }
.t { padding: 1px 2px; border-radius: 3px; }
.t:hover { outline: 2px solid #333; }
.unk { text-decoration: underline dotted #555; }
.cut { color: #aaa; text-decoration: line-through; }
.scale { display: inline-block; width: 12em; height: .8em; vertical-align: middle;
         border: 1px solid #ccc; background: linear-gradient(to right, %s, #fff, %s); }
.top { font-size: .92em; margin: .3em 0 0; }
.top span.w { padding: 0 3px; border-radius: 3px; }
svg { display: block; margin: .6em 0 0; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
""" % ("rgb(%d,%d,%d)" % TOWARDS_VERSUS, "rgb(%d,%d,%d)" % TOWARDS_TARGET)


def esc(text):
    """Text escaped for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def token_span(token, scale):
    """One token: a ``<span class="t">`` coloured by its score, the score in its title."""
    word = display(token["token"])
    if token["cut"]:
        return '<span class="t cut" title="%s: cut by pad_to (not read)">%s</span>' % (
            esc(word), esc(word))
    kind = " unk" if token["unknown"] else ""
    note = " (unknown word)" if token["unknown"] else ""
    return ('<span class="t%s" style="background:rgb(%d,%d,%d)" title="%s: %s%s">%s</span>'
            % (kind, *score_rgb(token["score"], scale), esc(word),
               number(token["score"], scale), note, esc(word)))


def review_head(result, scale):
    """The review's first line: label, probability, the score and its split."""
    tokens = sum(t["score"] for t in result["tokens"] if t["score"] is not None)
    wrong = ('<span class="wrong">true %s</span> · predicted ' % esc(result["true_name"])
             if "true_name" in result else "")
    split = "bias %s + tokens %s" % (number(result["bias"], scale), number(tokens, scale))
    if result["method"] != "exact":
        split += " + residual %s" % number(result["residual"], scale)
    return ('<p class="head">%s<span class="label">%s</span> %.4f · score %s − %s = %s = %s'
            ' <span class="note">(%s)</span></p>'
            % (wrong, esc(result["name"]), result["probability"], esc(result["target_name"]),
               esc(result["versus_name"]), number(result["score"], scale), split,
               esc(result["method_text"])))


def top_lists(result, k, scale):
    """The ``k`` strongest tokens each way, as two short lines."""
    up, down = top_tokens(result, k)
    lines = []
    for name, rows in ((result["target_name"], up), (result["versus_name"], down)):
        words = " ".join('<span class="w" style="background:rgb(%d,%d,%d)">%s %s</span>'
                         % (*score_rgb(s, scale), esc(display(w)), number(s, scale))
                         for w, s in rows) or "–"
        lines.append('<p class="top">towards <b>%s</b>: %s</p>' % (esc(name), words))
    return "\n".join(lines)


def _ticks(lo, hi):
    """Three y-axis values: the bottom, 0 (when inside) and the top."""
    return sorted({lo, hi} | ({0.0} if lo < 0 < hi else set()))


def score_plot(result, width=860, height=190):
    """An inline SVG: the score after each token read (bias first), one step a token;
    each point coloured by its token's contribution, its token and values on hover."""
    rows = [t for t in result["tokens"] if t["score"] is not None]
    values, total = [result["bias"]], result["bias"]
    for t in rows:
        total += t["score"]
        values.append(total)
    lo, hi = min(values + [0.0]), max(values + [0.0])
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 58, 10, 10, 26
    def px(i):
        return left + (width - left - right) * i / max(len(values) - 1, 1)
    def py(v):
        return top + (height - top - bottom) * (hi - v) / (hi - lo)
    scale = score_scale(result)
    parts = ['<svg width="%d" height="%d" role="img" '
             'aria-label="score as the tokens are read">' % (width, height)]
    for v in _ticks(lo + pad, hi - pad):
        parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>'
                     '<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                     % (left, width - right, py(v), py(v), "#999" if v == 0 else "#eee",
                        left - 4, py(v) + 4, number(v, scale)))
    parts.append('<polyline fill="none" stroke="#555" stroke-width="1.2" points="%s"/>'
                 % " ".join("%.1f,%.1f" % (px(i), py(v)) for i, v in enumerate(values)))
    for i, (t, v) in enumerate(zip(rows, values[1:]), start=1):
        parts.append('<circle cx="%.1f" cy="%.1f" r="3" fill="rgb(%d,%d,%d)" stroke="#666" '
                     'stroke-width=".5"><title>%d %s: %s, score %s</title></circle>'
                     % (px(i), py(v), *score_rgb(t["score"], scale), i, esc(display(t["token"])),
                        number(t["score"], scale), number(v, scale)))
    parts.append('<text transform="translate(12,%.1f) rotate(-90)" text-anchor="middle">'
                 '← %s · %s →</text>' % (top + (height - top - bottom) / 2,
                                         esc(result["versus_name"]), esc(result["target_name"])))
    parts.append('<text x="%d" y="%d">bias</text><text x="%d" y="%d" text-anchor="end">'
                 'tokens read → (score %s − %s)</text></svg>'
                 % (left, height - 6, width - right, height - 6, esc(result["target_name"]),
                    esc(result["versus_name"])))
    return "\n".join(parts)


def review_section(result, top, plot):
    """One review: its head, its highlighted tokens, the plot, the top tokens."""
    scale = score_scale(result)
    words = " ".join(token_span(t, scale) for t in result["tokens"])
    body = [review_head(result, scale), '<p class="text">%s</p>' % words]
    if plot:
        body.append(score_plot(result))
    if top:
        body.append(top_lists(result, top, scale))
    return '<section class="review">\n%s\n</section>' % "\n".join(body)


def page(results, title="Which words moved the prediction", subtitle="", top=10):
    """The whole page, as a string (``subtitle``: e.g. the model's file)."""
    sections = "\n".join(review_section(r, top, len(results) == 1) for r in results)
    legend = ('<p class="note"><span class="scale"></span> red: towards the other class, '
              'green: towards the class explained; full colour at each review\'s strongest '
              'token. Hover a word for its score. <span class="unk">Underlined</span>: '
              'unknown word; <span class="cut">struck through</span>: cut by pad_to.</p>')
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n<h1>%s</h1>\n'
            '<p class="meta">%s</p>\n%s\n%s\n</body>\n</html>\n'
            % (esc(title), STYLE, esc(title), esc(subtitle), legend, sections))


def write_page(path, results, **kw):
    """Write :func:`page` to ``path``, atomically (a one-line DataError naming
    ``path`` when it cannot be written)."""
    text = page(results, **kw)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
