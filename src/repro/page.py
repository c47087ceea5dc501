"""What every section page does around its own figures: `begin` (device, rehearsal banner, synthetic data,
provenance) after the parameters, `figure` for each figure (the image at column size, then its caption) and
`finish` (the provenance table) as the last cell. Notebooks hold no functions, so this is where they live.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from repro import device as devices
from repro import provenance, rehearse, report


@dataclass(frozen=True)
class Setup:
    """A page in progress: its profile, datasets, the models they use, and the provenance record."""
    profile: str
    datasets: tuple
    record: provenance.Record
    model_overrides: dict = field(default_factory=dict)
    backbones: str = ""


def _show(*objs) -> None:
    from IPython.display import display

    display(*objs)


def markdown(text: str) -> None:
    """Display Markdown (MyST: roles and directives render)."""
    from IPython.display import Markdown

    _show(Markdown(text))


def begin(profile: str, params_yaml: str, datasets=(), device: str = "", data_root: str = "",
          synth_profile: str = "", model_overrides: dict | None = None, backbones: str = "") -> Setup:
    """Set up a page: select the device, show the rehearsal banner if this is one, write the synthetic twins
    (when `synth_profile` names a scale) and start the provenance record."""
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
    """Show a `repro.plots.Plot` at column width, then its caption (from what the plot draws)."""
    from IPython.display import Image

    from repro import sections

    models = sections.model_names(plot.datasets, setup.profile, setup.model_overrides, setup.backbones) if plot.datasets else ""
    _show(Image(data=png(plot.figure), format="png"))
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
