"""``python -m helpers reports``: render notebooks into offline, code-free HTML reports.

jupytext turns ``notebooks/<name>.py`` into a notebook, papermill executes it on the project's
own ``mimamori`` kernel with the run's parameters, nbconvert's *basic* template turns it into a
code-free HTML fragment that we wrap in our own page (`helpers.reports.api.page_html`). The
basic template is used because the full *lab*/*classic* templates load require.js, MathJax and
mermaid from a CDN; reports must open offline on a municipal PC, so the page carries its own CSS
and PNG images as data URIs and is checked for any remaining external
script/stylesheet/font/image source.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers import MimamoriError
from helpers.config import REPO_ROOT, Settings
from helpers.io import atomic_path, write_text
from helpers.paths import paths
from helpers.reports.api import page_html
from helpers.reports.index import write_index

KERNEL_NAME = "mimamori"
PER_TARGET_NOTEBOOKS = ("03_model",)
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BUILD_DIR = REPO_ROOT / "build" / "notebooks"
MAX_REPORT_BYTES = 5 * 1024 * 1024


def skip_iri_grammar() -> None:
    """Keep jsonschema from compiling the ``iri`` format's grammar in this process.

    nbformat validates notebooks with jsonschema; jsonschema loads the optional rfc3987-syntax
    checker (installed because jupyter-events asks for ``jsonschema[format-nongpl]``), which
    builds a parser at import: 1.5 s of every report's process, for a format that no notebook
    schema uses. Marked unavailable, jsonschema leaves that one format unchecked.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def check_kernel(name: str = KERNEL_NAME) -> Path:
    """The project's own kernel must exist and run this environment's Python."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise MimamoriError(
            f"Jupyter kernel {name!r} is not registered; run `make setup` "
            "(it installs the kernel into .venv)"
        ) from None
    exe = Path(spec.argv[0]) if spec.argv else Path("?")
    venv_bin = Path(os.path.abspath(Path(sys.prefix) / "bin"))
    if Path(os.path.abspath(exe)).parent != venv_bin:
        raise MimamoriError(
            f"Jupyter kernel {name!r} runs {exe}, not this environment's "
            f"Python in {venv_bin}; run `make setup` to re-register it"
        )
    return Path(spec.resource_dir)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_OBJECT_REPR = re.compile(r"^<[^<>]*>$", re.S)


def clean_outputs(nb: Any) -> Any:
    """Drop what a reader must not see: stderr (warnings, progress bars) and bare object reprs."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.get("name") == "stderr":
                continue
            if out.output_type == "execute_result":
                data = out.get("data", {})
                if set(data) == {"text/plain"} and _OBJECT_REPR.match(str(data["text/plain"])):
                    continue
            kept.append(out)
        cell["outputs"] = kept
    return nb


_EXTERNAL_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>", re.I
)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I)
_EXTERNAL_ANY = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*\b(?:src|href)\s*=\s*"
    r"[\"']?(?:https?:)?//|@import|url\(\s*[\"']?(?:https?:)?//",
    re.I,
)


def make_offline(page: str) -> str:
    """Strip CDN scripts/stylesheets; fail if any other external resource remains."""
    page = _EXTERNAL_SCRIPT.sub("", page)
    page = _EXTERNAL_LINK.sub("", page)
    hit = _EXTERNAL_ANY.search(page)
    if hit:
        raise MimamoriError(
            f"report would load an external resource: {page[hit.start() : hit.end() + 60]!r}"
        )
    return page


_TITLE_RE = re.compile(r"data-report-title=['\"]([^'\"]*)['\"]")


def notebook_to_html(nb: Any, fallback_title: str) -> str:
    """Executed notebook → one self-contained, code-free, offline HTML page."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(clean_outputs(nb))
    match = _TITLE_RE.search(body)
    title = html.unescape(match.group(1)) if match else fallback_title
    return make_offline(page_html(body, title))


def _output_stem(name: str, target: str | None) -> str:
    return f"{name}_{target}" if target else name


def render_report(
    name: str,
    cfg: Settings,
    target: str | None = None,
    *,
    notebooks_dir: str | Path | None = None,
    build_dir: str | Path | None = None,
    config_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Convert, execute and render ``notebooks/<name>.py`` into ``reports/<name>[_<target>].html``.

    A failing notebook raises MimamoriError with the cell and the notebook's own error, and
    leaves no HTML (a stale report of the same name is removed so it cannot be mistaken for
    this run's result).
    """
    skip_iri_grammar()
    import jupytext
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebooks_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    build_dir = Path(build_dir) if build_dir else BUILD_DIR
    source = notebooks_dir / f"{name}.py"
    if not source.exists():
        known = sorted(p.stem for p in notebooks_dir.glob("*.py"))
        raise MimamoriError(f"{source}: notebook not found (known: {known})")
    if name in PER_TARGET_NOTEBOOKS and not target:
        raise MimamoriError(
            f"{name} is rendered once per target; pass --target (one of {cfg.run.targets})"
        )
    stem = _output_stem(name, target)
    out_html = paths(cfg).report_html(stem)
    check_kernel()

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Mimamori (.venv)",
        "language": "python",
    }
    nb.metadata.setdefault("language_info", {"name": "python"})
    converted = build_dir / f"{stem}.ipynb"
    with atomic_path(converted) as tmp:
        nbformat.write(nb, str(tmp))

    params: dict[str, Any] = {
        "profile": cfg.profile or "",
        "data_dir": str(paths(cfg).data.resolve()),
        "config_dir": str(Path(config_dir or cfg.config_dir).resolve()),
    }
    if target:
        params["target"] = target
    try:
        with _env(MPLBACKEND="module://matplotlib_inline.backend_inline"):
            executed = pm.execute_notebook(
                nb,
                None,
                parameters=params,
                kernel_name=KERNEL_NAME,
                cwd=str(REPO_ROOT),
                progress_bar=progress,
                log_output=False,
                request_save_on_cell_execute=False,
            )
    except PapermillExecutionError as exc:
        out_html.unlink(missing_ok=True)
        first_line = next((ln for ln in str(exc.source).splitlines() if ln.strip()), "")
        raise MimamoriError(
            f"notebooks/{name}.py{f' (target {target})' if target else ''}: cell "
            f"{exc.exec_count or exc.cell_index} `{first_line[:80]}` failed: "
            f"{exc.ename}: {exc.evalue}"
        ) from None
    except Exception as exc:  # kernel died, timeout, missing parameters ...
        out_html.unlink(missing_ok=True)
        if isinstance(exc, MimamoriError):
            raise
        raise MimamoriError(
            f"notebooks/{name}.py: execution failed: {type(exc).__name__}: {exc}"
        ) from None
    with atomic_path(build_dir / f"{stem}.executed.ipynb") as tmp:
        nbformat.write(executed, str(tmp))
    page = notebook_to_html(executed, fallback_title=stem)
    write_text(page, out_html)
    size = out_html.stat().st_size
    if size > MAX_REPORT_BYTES:
        print(
            f"warning: {out_html.name} is {size / 1e6:.1f} MB (> 5 MB); use fewer or "
            "smaller figures",
            file=sys.stderr,
        )
    return out_html


def report_jobs(
    cfg: Settings, only: str | None = None, target: str | None = None
) -> list[tuple[str, str | None]]:
    """(notebook, target) pairs to render: 03_model once per target."""
    names = [only] if only else list(cfg.reports.notebooks)
    targets = list(cfg.run.targets)
    if target and target not in targets:
        raise MimamoriError(f"--target {target!r}: not in models.targets {targets}")
    if target and not (only and only in PER_TARGET_NOTEBOOKS):
        raise MimamoriError(f"--target only applies to {list(PER_TARGET_NOTEBOOKS)}")
    jobs: list[tuple[str, str | None]] = []
    for name in names:
        if name in PER_TARGET_NOTEBOOKS:
            jobs += [(name, t) for t in ([target] if target else targets)]
        else:
            jobs.append((name, None))
    return jobs


def main(cfg: Settings, argv: list[str]) -> int:
    """``python -m helpers reports [--only NAME] [--target T] [--index]``."""
    from tqdm.auto import tqdm

    parser = argparse.ArgumentParser(prog="python -m helpers reports")
    parser.add_argument("--only", help="render one notebook (notebooks/<NAME>.py)")
    parser.add_argument("--target", help="for 03_model: one target (default: every target)")
    parser.add_argument("--index", action="store_true", help="only write reports/index.html")
    args = parser.parse_args(argv)
    out_dir = paths(cfg).reports
    if args.index:
        path = write_index(out_dir)
        print(f"wrote {path}")
        return 0
    jobs = report_jobs(cfg, args.only, args.target)
    failures = []
    for name, target in tqdm(jobs, desc="reports", unit="report"):
        try:
            path = render_report(name, cfg, target)
            tqdm.write(f"wrote {path}")
        except MimamoriError as exc:
            if args.only:
                raise
            failures.append(str(exc))
            tqdm.write(f"FAILED {_output_stem(name, target)}: {exc}")
    if not args.only:
        write_index(out_dir)
    if failures:
        raise MimamoriError(f"{len(failures)} of {len(jobs)} reports failed; first: {failures[0]}")
    return 0
