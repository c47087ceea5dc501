"""What every section page does around its own figures: `begin` (what the data are, device, rehearsal banner,
synthetic data, provenance) right after the title and the parameters, `figure` for each figure (the image at column size, then its caption) and
`finish` (the provenance table) as the last cell. Notebooks hold no functions, so this is where they live.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from repro import device as devices
from repro import hparams, provenance, rehearse, report


@dataclass(frozen=True)
class Setup:
    """A page in progress: its profile, datasets, the models they use, and the provenance record."""
    profile: str
    datasets: tuple
    record: provenance.Record
    model_overrides: dict = field(default_factory=dict)
    backbones: str = ""

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


def data_line(profile: str, toy: bool = False) -> str:
    """The line that opens every section page on a twin profile (repro.hparams.TWIN_PROFILES): what the page's
    numbers come from, what they can and cannot show, and a link to the deviations page. `toy`: the page draws
    a toy problem (the same in every profile) instead. "" on other profiles: the paper profile reads the real
    data, and a rehearsal of it shows its own banner (repro.rehearse)."""
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


def begin(profile: str, params_yaml: str, datasets=(), device: str = "", data_root: str = "",
          synth_profile: str = "", model_overrides: dict | None = None, backbones: str = "",
          toy: bool = False) -> Setup:
    """Set up a page: say what its data are (`data_line`; the first output of the page), select the device,
    show the rehearsal banner if this is one, write the synthetic twins (when `synth_profile` names a scale)
    and start the provenance record."""
    line = data_line(profile, toy)
    if line:
        markdown(line)
    devices.select(device)
    if rehearse.active():
        markdown(rehearse.banner())
    if synth_profile and datasets:
        from repro import synth

        synth.ensure(data_root, list(datasets), scale=synth_profile)
    return Setup(profile, tuple(datasets), provenance.start(profile, params_yaml), dict(model_overrides or {}),
                 backbones)


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


def remove_injected(path) -> None:
    """Tag papermill's injected-parameters cell of an executed notebook `remove-cell`: the values it sets are
    the params file, which the provenance table prints."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, str(path))
