"""Griffe extension: nondiff's reStructuredText habits in docstrings, read as Markdown.

The docstrings are Google style with Sphinx roles and a few reST constructs. Once a
package is loaded, every docstring is rewritten:

- A role (``:class:`~nondiff.optim.spaces.Space```, ``:func:`minimize```,
  ``:meth:`tell```) becomes an mkdocstrings cross-reference,
  ``[`Space`][nondiff.optim.spaces.Space]``, that must resolve: ``mkdocs build
  --strict`` fails on one that does not. A ``nondiff.``-qualified name is kept as
  written; a relative one (also Sphinx's ``.name``) is looked up from the documented
  object outwards (its members, inherited ones included, then its parents'; a
  module's docstring also searches its classes' members) and replaced by the full
  path of what it names.
  Names the site has no page for stay plain code: builtins and other libraries'
  names (``TypeError``, ``torch.nn.Module``), private names (``_run``), and the
  members of scripts (modules with a ``__main__`` block, whose members the reference
  leaves out); so does an ``:attr:`` that names nothing griffe sees (an instance
  attribute set by tuple assignment or at run time). (The lookup replaces the
  handler's own ``scoped_crossrefs``.)
- reST simple tables (``====  ====`` borders) become Markdown tables.
- ``Example:`` is read as the ``Examples:`` section (so ``>>>`` lines render as code).
- Command lines (``nondiff bench run ...``) indented under a paragraph or standing
  as a paragraph of their own, and reST's ``::`` literal blocks, become fenced code.
"""

from __future__ import annotations

import builtins
import importlib.util
import re
import sys
from functools import cache
from typing import Any

from griffe import Alias, Extension, Module, Object

ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")
SCRIPT = re.compile(r"^if __name__ == ['\"]__main__['\"]:", re.MULTILINE)
SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
BORDER = re.compile(r"^\s*=+( +=+)+\s*$")
COMMAND = re.compile(r"^(\$ |nondiff |python |OMP_NUM_THREADS=|make |torchrun |pip )")


@cache
def _external(name: str) -> bool:
    """Whether a top-level name is a builtin or another library's module."""
    if name == "nondiff":
        return False
    if hasattr(builtins, name) or name in sys.stdlib_module_names:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@cache
def _is_script(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as file:
            return bool(SCRIPT.search(file.read()))
    except OSError:
        return False


def _members(obj: Object | Alias) -> dict[str, Any]:
    return dict(obj.all_members) if obj.is_class else dict(obj.members)


def lookup(scope: Object, identifier: str) -> Object | Alias | None:
    """What a relative ``identifier`` names from ``scope``, or ``None``."""
    first, *rest = identifier.split(".")
    found, here = None, scope
    while here is not None and found is None:
        found = _members(here).get(first)
        here = here.parent
    if found is None and scope.is_module:  # a module's docstring naming a method
        classes = [m for m in scope.members.values() if not m.is_alias and m.is_class]
        found = next((_members(c)[first] for c in classes if first in _members(c)), None)
    for part in rest:
        if found is None:
            return None
        found = _members(found).get(part)
    return found


def _private(path: str) -> bool:
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__"))
               for p in path.split("."))


def crossref(scope: Object, role: str, short: str, target: str) -> str:
    """The Markdown of one role met in ``scope``'s docstring."""
    target = target.strip().lstrip(".")  # Sphinx's ".name": search from here (as below)
    identifier = target.removesuffix("()")
    title = target.rsplit(".", 1)[-1] if short else target
    first = identifier.split(".")[0]
    if _private(identifier):
        return f"`{title}`"
    if first != "nondiff":
        found = lookup(scope, identifier)
        if found is None:  # a builtin, another library, or a broken reference
            # (griffe sees no attribute set at run time or by tuple assignment)
            if _external(first) or role == "attr":
                return f"`{title}`"
            return f"[`{title}`][{identifier}]"
        try:
            identifier = found.canonical_path
            filepath = "" if found.is_module else str(found.module.filepath)
        except Exception:  # an alias to something outside nondiff
            return f"`{title}`"
        if not identifier.startswith("nondiff.") or _private(identifier) \
                or _is_script(filepath):
            return f"`{title}`"
    return f"[`{title}`][{identifier}]"


def _fence(lines: list[str]) -> list[str]:
    """Indented command lines outside the Google sections become fenced code blocks."""
    out: list[str] = []
    in_section = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line and not line[0].isspace():
            in_section = bool(SECTION.match(line))
        indented = line.startswith("    ") and line.strip()
        literal = out and out[-1].rstrip().endswith("::")
        paragraph = []
        while i + len(paragraph) < len(lines) and lines[i + len(paragraph)].strip():
            paragraph.append(lines[i + len(paragraph)])
        if (not in_section and (not out or not out[-1].strip()) and paragraph
                and all(COMMAND.match(p) for p in paragraph)):  # only command lines
            out += ["```text", *paragraph, "```"]
            i += len(paragraph)
            continue
        if indented and not in_section and (COMMAND.match(line.strip()) or literal):
            block = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
                i -= 1
            if literal:
                out[-1] = out[-1].rstrip()[:-1]
            if out and out[-1].strip():
                out.append("")
            depth = min(len(b) - len(b.lstrip()) for b in block if b.strip())
            out += ["```text", *(b[depth:] for b in block), "```"]
            continue
        out.append(line)
        i += 1
    return out


def _cells(row: str, starts: list[int]) -> list[str]:
    return [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]


def _tables(lines: list[str]) -> list[str]:
    """reST simple tables (``===  ===`` borders around a header row) as Markdown tables."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if (BORDER.match(lines[i]) and i + 2 < len(lines)
                and lines[i + 2].strip() == lines[i].strip()):
            starts = [m.start() for m in re.finditer("=+", lines[i])]
            rows = [_cells(lines[i + 1], starts)]
            i += 3
            while i < len(lines) and not BORDER.match(lines[i]):
                if lines[i].strip():
                    rows.append(_cells(lines[i], starts))
                i += 1
            i += 1  # the closing border
            if out and out[-1].strip():
                out.append("")
            out += ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
            out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
            continue
        out.append(lines[i])
        i += 1
    return out


def convert(scope: Object, text: str) -> str:
    """``scope``'s docstring ``text`` rewritten as the module docstring says."""
    text = "\n".join(_tables(text.split("\n")))
    text = re.sub(r"^(\s*)Example:[ \t]*$", r"\1Examples:", text, flags=re.MULTILINE)
    text = "\n".join(_fence(text.split("\n")))
    return ROLE.sub(lambda m: crossref(scope, *m.groups()), text)


def _walk(obj: Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


class SphinxRoles(Extension):
    """Rewrites every docstring of a package once the package is loaded."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj, obj.docstring.value)

    on_package_loaded = on_package  # the event's name before griffe 2 (convert is idempotent)
