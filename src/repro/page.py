"""What every section page does around its own figures: `begin` (what the data are, device, rehearsal banner,
synthetic data, provenance) right after the title and the parameters, `figure` for each figure (the image at column size, then its caption) and
`finish` (the provenance table) as the last cell; `prose` for a paragraph that names a parameter, which it shows
with the value of this build. Notebooks hold no functions, so this is where they live.
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from repro import device as devices
from repro import files, hparams, provenance, rehearse, report


@dataclass(frozen=True)
class Setup:
    """A page in progress: its profile, datasets, the models they use, and the provenance record."""
    profile: str
    datasets: tuple
    record: provenance.Record
    model_overrides: dict = field(default_factory=dict)
    backbones: str = ""
    values: dict = field(default_factory=dict)  # the template's parameters as this page runs them (`parameters`)

    @property
    def twin(self) -> bool:
        """Whether the page runs on synthetic twins (a profile of repro.hparams.TWIN_PROFILES)."""
        return self.profile in hparams.TWIN_PROFILES


def _show(*objs) -> None:
    from IPython.display import display

    display(*objs)


def markdown(text: str) -> None:
    """Display Markdown (MyST: roles and directives render)."""
    from IPython.display import Markdown

    _show(Markdown(text))


def parameters(template: Path, namespace: dict) -> dict:
    """Name -> value of the parameters of `template`'s `parameters` cell (less repro.book.RUNNER_KEYS) as the
    kernel's `namespace` holds them: the values this page runs with. Empty where the template is not a file."""
    from repro import book

    if not Path(template).is_file():
        return {}
    names = book.template_parameters(Path(template))
    return {k: namespace[k] for k in names if k not in book.RUNNER_KEYS and k in namespace}


def shown(value) -> str:
    """A parameter's value as the pages write it: a number as written (10, 2.5), a list of numbers as a set
    ({0.2, 1}), anything else as one line of YAML, the spelling of the params files (true, [waterbirds])."""
    from repro import params

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if number(value):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple)) and value and all(number(v) for v in value):
        return "{" + ", ".join(shown(v) for v in value) + "}"
    return params.yaml_value(value)


NAMED = re.compile(r"(?<![}\w])`([A-Za-z_]\w*)`(?! = )")  # `name` in prose, not a role's {download}`...`


def valued(text: str, values: dict) -> str:
    """`text` with every backticked name of `values` followed by its value: `svm_factor` = 10."""
    return NAMED.sub(lambda m: f"{m[0]} = {shown(values[m[1]])}" if m[1] in values else m[0], text)


def prose(setup: Setup, text: str) -> None:
    """Display a paragraph of Markdown that names parameters of the page (`svm_factor`): each is shown with its
    value in this build (`valued`), so that no page names a parameter without saying what it was."""
    markdown(valued(text, setup.values))


COMPANIONS_LINE = ("**What these numbers are:** real data, not the paper's datasets: two companion datasets built "
                   "from real images (Fashion-MNIST items under MNIST digits) and real texts (Rotten Tomatoes critic "
                   "snippets) that install without a data portal, with a core label, a spurious attribute correlated "
                   "with it in training, and group-balanced held-out and test sets. They test whether the paper's "
                   "general claims hold on real data of this kind, trained with the cpu profile's models; they "
                   "do not reproduce a number of the paper (see [Deviations from the paper](deviations.md)).")


FIXTURE_LINE = ("**What these numbers are:** tiny generated files in the companion datasets' real formats "
                "(`repro.fixtures`, the smoke profile), not real data: they show that the page builds, nothing more "
                "(see [Deviations from the paper](deviations.md)).")


def data_line(profile: str, toy: bool = False, companions: bool = False, fixture: bool = False) -> str:
    """The line that opens every section page on a twin profile (repro.hparams.TWIN_PROFILES): what the page's
    numbers come from, what they can and cannot show, and a link to the deviations page. `toy`: the page draws
    a toy problem (the same in every profile) instead. "" on other profiles: the paper profile reads the real
    data, and a rehearsal of it shows its own banner (repro.rehearse). `companions`: the page runs the real companion
    datasets (repro.datasets.COMPANIONS), in every profile."""
    if companions:
        return FIXTURE_LINE if fixture else COMPANIONS_LINE
    if profile not in hparams.TWIN_PROFILES:
        return ""
    limits = ("They can show whether a mechanism the paper describes appears on such stand-ins; they are not the "
              "paper's data, so no number here reproduces or refutes one of the paper's "
              "(see [Deviations from the paper](deviations.md)).")
    if toy:
        return (f"**What these numbers are:** a two-feature toy problem (`repro.toy`), the same in every profile; "
                f"the other pages of this `{profile}` build run on synthetic twins of the benchmarks. The toy "
                "illustrates the hypothesis in two dimensions; it cannot show that the hypothesis holds for the "
                "paper's networks (see [Deviations from the paper](deviations.md)).")
    return (f"**What these numbers are:** synthetic twins of the `{profile}` profile, small generated stand-ins "
            "for the four benchmarks with the paper's group proportions, trained with CPU-sized models. " + limits)


def _kernel_namespace() -> dict | None:
    """The user namespace of the IPython kernel this code runs in, else None."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return None if shell is None else shell.user_ns


def console_progress_bars() -> None:
    """Where ipywidgets is missing, make tqdm.auto (which transformers and huggingface_hub use) the console
    bar now, without its "IProgress not found" warning, which it would otherwise print in a notebook."""
    if "tqdm.autonotebook" in sys.modules or importlib.util.find_spec("ipywidgets") is not None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import tqdm.autonotebook  # noqa: F401  (falls back to tqdm.std once, for every later import)


def at_root(namespace: dict | None) -> Path | None:
    """In a kernel (`namespace` not None): make the book tree above the current folder (repro.files.find_tree)
    the working directory, so that a notebook opened in book/ (Jupyter's working directory is the notebook's
    folder) reads and writes data/, runs/ and _build/ where `repro book` does. Returns the tree, if any."""
    root = files.find_tree()
    if namespace is not None and root is not None and Path.cwd().resolve() != root:
        os.chdir(root)
    return root


def begin(profile: str, params_yaml: str, datasets=(), device: str = "", data_root: str = "",
          synth_profile: str = "", model_overrides: dict | None = None, backbones: str = "",
          toy: bool = False, notebook: str = "", companions: bool = False,
          fixture: bool = False) -> Setup:
    """Set up a page: work in the repository root (`at_root`), check the parameters papermill or Jupyter passed
    to the template `notebook` (repro.params.check_kernel), say what its data are (`data_line`; the first output
    of the page), select the device, show the rehearsal banner if this is one, write the synthetic twins (when
    `synth_profile` names a scale) or build the real companions (`companions`: fetched and constructed on first
    use, repro.companions) and start the provenance record."""
    namespace = _kernel_namespace()
    root = at_root(namespace)
    values = {}
    if namespace is not None and root is not None and notebook:
        from repro import params

        params.check_kernel(notebook, namespace, root)
        values = parameters(root / "book" / f"{notebook}.ipynb", namespace)
    console_progress_bars()
    line = data_line(profile, toy, companions, fixture)
    if line:
        markdown(line)
    devices.select(device)
    if rehearse.active():
        markdown(rehearse.banner())
    if companions and datasets:
        from repro import companions as real

        real.ensure(data_root, list(datasets), fixture=fixture)
    elif synth_profile and datasets:
        from repro import synth

        synth.ensure(data_root, list(datasets), scale=synth_profile)
    return Setup(profile, tuple(datasets), provenance.start(profile, params_yaml), dict(model_overrides or {}),
                 backbones, values)


def png(fig) -> bytes:
    """The figure as a PNG at its own size and dpi (no tight bounding box: the width stays the column's)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def figure(setup: Setup, plot, label: str) -> None:
    """Show a `repro.plots.Plot` at column width, then the same figure one panel per row (which the book's
    stylesheet, book/_static/narrow.css, shows instead on a narrow screen), then its caption (from what the
    plot draws)."""
    from IPython.display import Image

    from repro import plots, sections

    models = sections.model_names(plot.datasets, setup.profile, setup.model_overrides, setup.backbones) if plot.datasets else ""
    _show(Image(data=png(plot.figure), format="png"))
    _show(Image(data=png(plots.one_column(plot.figure)), format="png"))
    markdown(report.caption(label, plot, setup.profile, models))


def table(frame, floatfmt: str = ".3f") -> None:
    """Display a table as Markdown."""
    markdown(report.markdown(frame, floatfmt=floatfmt))


def finish(setup: Setup) -> None:
    """The provenance table: the last cell of every page."""
    provenance.finish(setup.record)
