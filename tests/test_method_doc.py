"""docs/METHOD.md stays honest: its excerpts are the code, its links point at real names.

1. Every fenced ```python block must name its source file, ``sits_ref/<module>.py``, on
   one of the 3 lines before the fence, and must appear in that file verbatim: as a
   contiguous run of lines, once a common indentation is stripped from both (trailing
   spaces ignored).
2. Every relative link (``../sits_ref/train.py``, ``../README.md``, ...) points at an
   existing file, and every name written as [`name`](../sits_ref/file.py) is defined in
   that file: a top-level function, class or assigned name, or ``Class.member`` for a
   method or class-level attribute of a top-level class (found with ``ast``, the module
   is not imported).
"""
from __future__ import annotations

import ast
import difflib
import os
import re
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "METHOD.md")
DOC_NAME = os.path.relpath(DOC, ROOT)
LOOKBACK = 3      # lines before a fence that may name its source

SOURCE = re.compile(r"sits_ref/([A-Za-z_][A-Za-z0-9_]*)\.py")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
NAME_LINK = re.compile(r"\[`([^`]+)`\]\(([^)\s#]+\.py)\)")


def _doc_lines() -> list[str]:
    with open(DOC, encoding="utf-8") as f:
        return f.read().splitlines()


def python_blocks(lines: list[str]) -> list[dict]:
    """Fenced ```python blocks: {"line" (1-based, of the opening fence), "code" (lines),
    "source" (module name or None), "problem" (why the source is unclear, or None)}."""
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(`{3,}|~{3,})\s*(\S*)", lines[i])
        if not fence:
            i += 1
            continue
        marker, lang = fence.group(2), fence.group(3).lower()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(marker):
            end += 1
        if lang in ("python", "py"):
            source, problem = None, None
            for back in range(i - 1, max(i - 1 - LOOKBACK, -1), -1):
                named = sorted(set(SOURCE.findall(lines[back])))
                if named:
                    if len(named) > 1:
                        problem = (f"line {back + 1} names several modules "
                                   f"({', '.join(named)}): name exactly one")
                    source = named[0]
                    break
            blocks.append({"line": i + 1, "code": lines[i + 1:end], "source": source,
                           "problem": problem})
        i = end + 1
    return blocks


def _normalise(lines: list[str]) -> list[str]:
    """Trailing spaces dropped, common indentation stripped (blank lines ignored for it)."""
    return textwrap.dedent("\n".join(line.rstrip() for line in lines)).split("\n")


def find_excerpt(code: list[str], text: list[str]):
    """(True, None) if ``code`` is a contiguous run of ``text`` up to common
    indentation; else (False, description of the closest run and its first difference)."""
    want = _normalise(code)
    n = len(want)
    best, best_at = -1.0, 0
    for start in range(0, max(len(text) - n, 0) + 1):
        got = _normalise(text[start:start + n])
        if got == want:
            return True, None
        score = difflib.SequenceMatcher(None, "\n".join(want), "\n".join(got)).quick_ratio()
        if score > best:
            best, best_at = score, start
    got = _normalise(text[best_at:best_at + n])
    for k, (a, b) in enumerate(zip(want, got + [""] * n)):
        if a != b:
            return False, (f"closest run starts at line {best_at + 1} of the file; first "
                           f"difference at excerpt line {k + 1}:\n  doc:  {a!r}\n  file: {b!r}")
    return False, f"closest run starts at line {best_at + 1} of the file"


def defined_names(path: str) -> set[str]:
    """Top-level functions, classes and assigned names of a module, and
    ``Class.member`` for the methods and class-level attributes of its classes."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    names = set()

    def targets(node):
        if isinstance(node, ast.Assign):
            return [t.id for t in node.targets if isinstance(t, ast.Name)]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return [node.target.id]
        return []

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        names.update(targets(node))
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(f"{node.name}.{member.name}")
                names.update(f"{node.name}.{t}" for t in targets(member))
    return names


# ----------------------------------------------------------------------------- tests

BLOCKS = python_blocks(_doc_lines()) if os.path.exists(DOC) else []


def test_doc_exists_and_has_excerpts():
    assert os.path.exists(DOC), f"{DOC_NAME} is missing"
    assert BLOCKS, f"{DOC_NAME} has no ```python block: nothing would be checked"


@pytest.mark.parametrize("block", BLOCKS,
                         ids=[f"{DOC_NAME}:{b['line']}:{b['source']}" for b in BLOCKS])
def test_excerpt_is_verbatim(block):
    where = f"{DOC_NAME} line {block['line']}"
    assert block["problem"] is None, f"{where}: python block: {block['problem']}"
    assert block["source"], (
        f"{where}: python block without a source: name its file as sits_ref/<module>.py "
        f"on one of the {LOOKBACK} lines before the fence")
    assert any(line.strip() for line in block["code"]), f"{where}: empty python block"
    path = os.path.join(ROOT, "sits_ref", block["source"] + ".py")
    rel = os.path.relpath(path, ROOT)
    assert os.path.exists(path), f"{where}: names {rel}, which does not exist"
    with open(path, encoding="utf-8") as f:
        text = f.read().splitlines()
    found, why = find_excerpt(block["code"], text)
    assert found, (f"{where}: the {len(block['code'])}-line python block is not a verbatim "
                   f"excerpt of {rel} (the code changed, or the excerpt was edited); {why}")


def test_links_point_at_existing_files_and_names():
    lines = _doc_lines()
    base = os.path.dirname(DOC)
    problems, checked, defs, in_code = [], 0, {}, False
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_code = not in_code                         # code is not markdown
        if in_code:
            continue
        for text, target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue                                  # URL or in-page anchor
            path = os.path.normpath(os.path.join(base, target.split("#")[0]))
            checked += 1
            if not os.path.exists(path):
                problems.append(f"line {number}: link [{text}]({target}): "
                                f"{os.path.relpath(path, ROOT)} does not exist")
        for name, target in NAME_LINK.findall(line):
            path = os.path.normpath(os.path.join(base, target))
            if "/" in name or name.endswith(".py") or not os.path.exists(path):
                continue                                  # a file link; existence above
            if path not in defs:
                defs[path] = defined_names(path)
            if name not in defs[path]:
                problems.append(f"line {number}: [`{name}`]({target}): no function, class, "
                                f"method or top-level name {name!r} in "
                                f"{os.path.relpath(path, ROOT)}")
    assert checked, f"{DOC_NAME} has no relative link: nothing was checked"
    assert not problems, f"{DOC_NAME}: {len(problems)} broken link(s):\n" + "\n".join(problems)
