"""An explanation in the terminal: each token coloured from red (it pushed
towards the other class) to green (towards the explained class), or, when the
output is not a terminal, plain numbers: ``word(+0.12)``.

Colours are ANSI escapes (ECMA-48 SGR): 24-bit ``48;2;R;G;B`` when the
terminal says it has them (``COLORTERM=truecolor`` or ``24bit``), else the
xterm 256-colour cube ``48;5;N``; none when the output is not a terminal,
``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``. The results are
:meth:`sentiment.explain.scores.Explainer.explain_ids`'s dicts.
"""
import html
import json
import math
import os

from sentiment.explain.scores import top_tokens

TOWARDS_TARGET = (44, 160, 44)  # green
TOWARDS_VERSUS = (214, 39, 40)  # red
NEUTRAL = 0.05  # below this share of the review's strongest token: no colour in a terminal
CUBE = (0, 95, 135, 175, 215, 255)  # the xterm 256-colour cube's levels


def display(token):
    """A token as a reader writes it: the Moses tokenizer's XML escapes
    (``&amp;``, ``&quot;``, ``&apos;``, ...) turned back into characters."""
    return html.unescape(token)


def score_scale(result):
    """The largest ``|score|`` of the review's tokens (1 when all are 0 or cut):
    the score shown in full colour."""
    scores = [abs(t["score"]) for t in result["tokens"] if t["score"] is not None]
    return max(scores, default=0.0) or 1.0


def score_rgb(score, scale):
    """White blended towards green (``score > 0``) or red, by ``|score| / scale``."""
    share = min(abs(score) / scale, 1.0) if scale else 0.0
    colour = TOWARDS_TARGET if score > 0 else TOWARDS_VERSUS
    return tuple(int(round(255 + (c - 255) * share)) for c in colour)


def number(value, scale):
    """``value`` signed, with two decimals, more when ``scale`` is small (so the
    review's strongest token shows two significant digits)."""
    digits = 2 if scale >= 0.1 else min(8, 1 - int(math.floor(math.log10(scale))))
    return "%+.*f" % (digits, value if round(value, digits) else 0.0)  # no "-0.00"


def colour_mode(stream, environ=None):
    """``"24bit"``, ``"256"`` or ``"none"`` for the output ``stream``."""
    environ = os.environ if environ is None else environ
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()) or "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return "none"
    return "24bit" if environ.get("COLORTERM", "").lower() in ("truecolor", "24bit") else "256"


def cube_index(rgb):
    """The nearest colour of the xterm 256-colour cube (16 + 36 r + 6 g + b)."""
    r, g, b = (min(range(6), key=lambda i: abs(CUBE[i] - c)) for c in rgb)
    return 16 + 36 * r + 6 * g + b


def plain_token(token, scale):
    """``word(+0.12)``; ``word(unk +0.01)`` for an unknown word; ``word(cut)``."""
    word = display(token["token"])
    if token["cut"]:
        return "%s(cut)" % word
    return "%s(%s%s)" % (word, "unk " if token["unknown"] else "", number(token["score"], scale))


def ansi_token(token, scale, mode):
    """The word on a background of its colour (black letters), underlined when
    unknown; dim and struck through when cut; no colour when near zero."""
    word = display(token["token"])
    if token["cut"]:
        return "\x1b[2;9m%s\x1b[0m" % word
    style = ["4"] if token["unknown"] else []
    if abs(token["score"]) >= NEUTRAL * scale:
        rgb = score_rgb(token["score"], scale)
        style += (["48;2;%d;%d;%d" % rgb, "38;2;0;0;0"] if mode == "24bit"
                  else ["48;5;%d" % cube_index(rgb), "30"])
    return "\x1b[%sm%s\x1b[0m" % (";".join(style), word) if style else word


def header(result):
    """The first line: label, probability, the score and how it splits."""
    tokens = sum(t["score"] for t in result["tokens"] if t["score"] is not None)
    scale = max(abs(result["score"]), score_scale(result))
    if result["method"] == "exact":
        split = "bias %s + tokens %s" % (number(result["bias"], scale), number(tokens, scale))
    else:
        split = "bias %s, tokens %s, residual %s" % (
            number(result["bias"], scale), number(tokens, scale),
            number(result["residual"], scale))
    true = "true %s, predicted " % result["true_name"] if "true_name" in result else ""
    return "%s%s\t%.4f\tscore %s-%s %s = %s (%s)" % (
        true, result["name"], result["probability"], result["target_name"],
        result["versus_name"], number(result["score"], scale), split, result["method_text"])


def format_result(result, mode="none", top=0):
    """One review's explanation as lines of text (``mode``: :func:`colour_mode`)."""
    scale = score_scale(result)
    if mode == "none":
        words = [plain_token(t, scale) for t in result["tokens"]]
    else:
        words = [ansi_token(t, scale, mode) for t in result["tokens"]]
    lines = [header(result), " ".join(words)]
    if mode != "none":
        lines.append("(green: towards %s, red: towards %s, full colour at ±%s; underlined: "
                     "unknown word; struck through: cut by pad_to)"
                     % (result["target_name"], result["versus_name"], number(scale, scale)[1:]))
    if top:
        up, down = top_tokens(result, top)
        for name, rows in ((result["target_name"], up), (result["versus_name"], down)):
            lines.append("top %d towards %s: %s" % (top, name, " ".join(
                "%s(%s)" % (display(w), number(s, scale)) for w, s in rows) or "-"))
    return "\n".join(lines)


def json_record(result, top=0):
    """The JSON object of one review (``top``: with the ``top`` lists)."""
    record = dict(result)
    if top:
        up, down = top_tokens(result, top)
        record["top"] = {result["target_name"]: [dict(token=w, score=s) for w, s in up],
                         result["versus_name"]: [dict(token=w, score=s) for w, s in down]}
    return record


def print_results(results, out, top=0, as_json=False):
    """Print explanations to ``out``: JSON lines, or text (coloured in a terminal)."""
    if as_json:
        for r in results:
            print(json.dumps(json_record(r, top), ensure_ascii=False), file=out)
        return
    mode = colour_mode(out)
    print("\n\n".join(format_result(r, mode, top) for r in results), file=out)
