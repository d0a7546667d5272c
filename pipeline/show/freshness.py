"""What `outdated` and `lock --upgrade` print: newer packages in images, newer releases of
pinned inputs, and the pins moved."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .out import lines

if TYPE_CHECKING:
    from ..orchestrate.freshness import Freshness, UpgradeReport
    from ..outdated import OutdatedReport
    from ..upstream import InputsReport


def outdated(report: Freshness) -> None:
    """The images, then the pinned inputs."""
    if report.images is not None:
        outdated_images(report.images)
    if report.inputs is not None:
        outdated_inputs(report.inputs)


def outdated_images(report: OutdatedReport) -> None:
    """One line per image, then one per package with a newer version."""
    for image in report.images:
        count = f": {len(image.upgrades)} package(s) with a newer version"
        detail = count if image.upgrades else (f": {image.note}" if image.note else "")
        lines([f"{image.runtime}/{image.arch}\t{image.state}{detail}"])
        lines([f"  {u.line()}" for u in image.upgrades])


def _runtimes(names: Sequence[str]) -> str:
    return ", ".join(names)


def outdated_inputs(report: InputsReport) -> None:
    """``inputs`` and how many pins are behind, one line per pin with a newer release
    (``name  pinned → newest  (registry: runtimes)``); then one line per registry that did
    not answer, and one per host whose releases are not read here."""
    checked = [i for i in report.inputs if i.state != "not checked"]
    behind = report.outdated
    state = f"outdated: {len(behind)} of {len(checked)}" if behind else f"current: {len(checked)}"
    out = [f"inputs\t{state} pinned input(s) checked against their registry"]
    for item in behind:
        bound = f", below {item.below}" if item.below else ""
        out.append(
            f"  {item.name}\t{item.pinned} → {item.newest}\t"
            f"({item.registry}{bound}: {_runtimes(item.runtimes)})"
        )
    for why, names in report.unreachable.items():
        out.append(f"inputs\tnot checked: {why}: {', '.join(names)}; checked where it answers")
    for item in report.inputs:
        if item.state == "not checked" and not any(
            item.name in n for n in report.unreachable.values()
        ):
            out.append(f"inputs\tnot checked: {item.name}: {item.note}")
    for package, runtimes in report.unlocked.items():
        out.append(
            f"inputs\tnot checked: {package} for {_runtimes(runtimes)}: the lock pins it there "
            "once `lambda-images lock` runs"
        )
    for host in report.unwatched:
        out.append(
            f"inputs\tnot watched: {', '.join(host.inputs)} ({host.host}: no release listing "
            "is read there)"
        )
    lines(out)


def upgrade(report: UpgradeReport) -> None:
    """One line per pin moved (``name  old → new  (registry: runtimes)``), then the files."""
    from ..versions import REGISTRY_NAMES

    out = [
        f"{m.name}\t{m.old} → {m.new}\t({REGISTRY_NAMES[m.kind]}: {_runtimes(m.runtimes)})"
        for m in report.moved
    ]
    out += [f"{name}\tnot checked: {why}" for name, why in report.not_checked.items()]
    if report.moved:
        out += [f"written: {name}" for name in report.written]
    else:
        out += [
            f"every pin is at its newest release: nothing written ({len(report.current)} current)"
        ]
    lines(out)
