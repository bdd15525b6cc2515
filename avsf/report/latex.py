"""The one LaTeX escaper of avsf, the plain-text form of LaTeX math, and standalone documents.

`tex_escape` turns plain text (Unicode) into LaTeX that pdflatex sets with the packages
`PREAMBLE` loads (T1 fontenc, utf8 inputenc, textcomp, booktabs, graphicx): LaTeX specials are escaped,
Greek letters and mathematical symbols become math ("α" -> "$\\alpha$", "≥" -> "$\\geq$"),
accented Latin letters become accent commands ("ï" -> "\\\"{\\i}"), so the fragment also works
in a document without inputenc; nothing becomes "?". `plain` goes the other way for Markdown
and terminal text: "$\\beta_A$" -> "βA", "$P_d$" -> "Pd" (the paper's own spelling).
"""

from __future__ import annotations

import re
import unicodedata

PREAMBLE = (
    "\\usepackage[T1]{fontenc}",
    "\\usepackage[utf8]{inputenc}",
    "\\usepackage{textcomp}",
    "\\usepackage{booktabs}",
    "\\usepackage{graphicx}",  # resizebox: tables wider than the text (EPIC's verb/noun/action columns)
)
"""What a generated fragment needs; `standalone` loads exactly these."""

# LaTeX's special characters in text mode
_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
# Unicode -> math-mode command (both directions: `plain` maps the commands back)
_MATH = {
    "→": r"\rightarrow", "←": r"\leftarrow", "↔": r"\leftrightarrow", "⇒": r"\Rightarrow",
    "×": r"\times", "±": r"\pm", "∓": r"\mp", "·": r"\cdot", "÷": r"\div", "−": "-",
    "≥": r"\geq", "≤": r"\leq", "≠": r"\neq", "≈": r"\approx", "∼": r"\sim", "≡": r"\equiv",
    "∞": r"\infty", "∑": r"\sum", "∏": r"\prod", "√": r"\surd", "∈": r"\in", "∝": r"\propto",
    "°": r"^\circ", "′": r"'", "∂": r"\partial", "∇": r"\nabla", "µ": r"\mu",
    "²": "^2", "³": "^3", "¹": "^1",
}
# text-mode replacements
_TEXT = {
    "–": "--", "—": "---", "“": "``", "”": "''", "‘": "`", "’": "'", "…": r"\ldots{}",
    "\u00a0": "~", "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "ø": r"\o{}", "Ø": r"\O{}",
    "œ": r"\oe{}", "Œ": r"\OE{}", "ł": r"\l{}", "Ł": r"\L{}", "å": r"\aa{}", "Å": r"\AA{}",
    "€": r"\texteuro{}", "£": r"\pounds{}", "©": r"\textcopyright{}", "§": r"\S{}", "¶": r"\P{}",
    "•": r"\textbullet{}", "½": r"\textonehalf{}", "¼": r"\textonequarter{}", "¾": r"\textthreequarters{}", "†": r"\dag{}", "‡": r"\ddag{}", "¿": r"?`", "¡": r"!`",
}
# combining accents -> LaTeX accent commands
_ACCENTS = {
    "\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u",
    "\u0307": ".", "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0327": "c",
    "\u0328": "k",
}
# Greek capitals that LaTeX math writes as Latin letters (there is no \Alpha)
_GREEK_AS_LATIN = {"Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
                   "Ο": "O", "Ρ": "P", "Τ": "T", "Χ": "X", "ο": "o", "ς": r"\varsigma"}
_SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉ₐₑₒₓₕₖₗₘₙₚₛₜ", "0123456789aeoxhklmnpst")
_SUPERSCRIPTS = str.maketrans("⁰⁴⁵⁶⁷⁸⁹⁺⁻", "0456789+-")


def _greek(ch: str) -> str | None:
    """"\\alpha" for α, "\\Gamma" for Γ, "A" for Α; None for a non-Greek character."""
    if ch in _GREEK_AS_LATIN:
        return _GREEK_AS_LATIN[ch]
    m = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER ([A-Z]+)", unicodedata.name(ch, ""))
    if not m:
        return None
    word = m.group(2).lower().replace("lamda", "lambda")
    return "\\" + (word if m.group(1) == "SMALL" else word.capitalize())


def _accented(ch: str) -> str | None:
    parts = unicodedata.normalize("NFD", ch)
    base, marks = parts[0], parts[1:]
    if not base.isascii() or not marks or any(m not in _ACCENTS for m in marks):
        return None
    out = {"i": r"\i", "j": r"\j"}.get(base, base)
    for m in marks:
        out = f"\\{_ACCENTS[m]}{{{out}}}"
    return out


def _one(ch: str) -> str:
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    if ord(ch) < 128:
        return ch
    if ch in _TEXT:
        return _TEXT[ch]
    if ch in _MATH:
        return f"${_MATH[ch]}$"
    if (g := _greek(ch)) is not None:
        return f"${g}$" if g.startswith("\\") else g
    if ch in "₀₁₂₃₄₅₆₇₈₉ₐₑₒₓₕₖₗₘₙₚₛₜ":
        return f"$_{{{ch.translate(_SUBSCRIPTS)}}}$"
    if ch in "⁰⁴⁵⁶⁷⁸⁹⁺⁻":
        return f"$^{{{ch.translate(_SUPERSCRIPTS)}}}$"
    if (a := _accented(ch)) is not None:
        return a
    compat = unicodedata.normalize("NFKD", ch)
    if compat != ch and all(ord(c) < 128 for c in compat):
        return "".join(_one(c) for c in compat)  # ligatures, full-width forms, ...
    # no LaTeX spelling known: name the code point rather than drop it or print "?"
    return f"\\texttt{{[U+{ord(ch):04X}]}}"


def tex_escape(text: str) -> str:
    """Plain (Unicode) text -> LaTeX text for pdflatex with `PREAMBLE`; adjacent math merges."""
    out: list[str] = []
    for piece in map(_one, text):
        math = len(piece) > 1 and piece[0] == "$" and piece[-1] == "$"
        if math and out and len(out[-1]) > 1 and out[-1][0] == "$" and out[-1][-1] == "$":
            out[-1] = out[-1][:-1] + piece[1:]
        else:
            out.append(piece)
    return "".join(out)


_MATH_BACK = {v: k for k, v in _MATH.items() if v.startswith("\\") and v != r"\mu"} | {r"\circ": "°", r"\ldots": "…"}


def plain(text: str) -> str:
    """LaTeX (typically a row header like "$\\beta_A$") -> readable Unicode text ("βA").

    Math commands become their symbols, Greek letters their letters, subscripts and
    superscripts are written inline ("P_d" -> "Pd", as the paper spells it), braces and
    dollars go, and escaped specials ("\\%") become the character.
    """

    def command(m: re.Match) -> str:
        name = m.group(0)
        if name in _MATH_BACK:
            return _MATH_BACK[name]
        word = name[1:]
        if word.lower() in _GREEK_NAMES:
            return _GREEK_NAMES[word.lower()].upper() if word[0].isupper() else _GREEK_NAMES[word.lower()]
        return ""  # formatting commands (\mathrm, \textbf, ...) go; their arguments stay

    out = re.sub(r"\\([%&#_$])", r"\1", text)
    out = re.sub(r"\\[A-Za-z]+", command, out)
    out = re.sub(r"[_^]\{([^{}]*)\}", r"\1", out)
    out = re.sub(r"[_^](\S)", r"\1", out)
    return re.sub(r"[${}]", "", out)


_GREEK_NAMES = {
    unicodedata.name(chr(c)).split()[-1].lower().replace("lamda", "lambda"): chr(c)
    for c in range(0x3B1, 0x3CA)
    if unicodedata.name(chr(c), "").startswith("GREEK SMALL LETTER") and chr(c) != "ς"
}


def standalone(body: str) -> str:
    """A complete article around `body` (usually "\\input{fragment.tex}"), loading `PREAMBLE`,
    so that `pdflatex NAME_standalone.tex` checks the fragment compiles."""
    return "\n".join(["\\documentclass{article}", *PREAMBLE, "\\begin{document}", body, "\\end{document}", ""])


def table_float(caption: str, label: str, tabular: list[str], *, comment: str = "", fit_width: bool = False) -> list[str]:
    """A booktabs table float with the caption above the table and a gap below the caption (in
    LaTeX's standard classes a top caption sits on the top rule otherwise); `fit_width` scales a
    table with many columns down to the text width."""
    if fit_width:
        tabular = ["\\resizebox{\\linewidth}{!}{%", *tabular, "}"]
    lines = [f"% {line}" for line in comment.splitlines()] if comment else []
    return [
        *lines,
        "% Needs: " + " ".join(PREAMBLE),
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        "\\setlength{\\abovecaptionskip}{0pt}",
        "\\setlength{\\belowcaptionskip}{6pt}",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        *tabular,
        "\\end{table}",
        "",
    ]


def tex_label(name: str) -> str:
    """A \\label key from a name: letters, digits, '-' and ':' only."""
    return re.sub(r"[^A-Za-z0-9:-]+", "-", name).strip("-") or "table"
