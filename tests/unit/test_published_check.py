"""Whether a cell counts as published (``build --registry``): a registry that cannot be read is
no agreement, so the cell is built, and a warning says why (a CI cell holds no registry
credentials)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.errors import RegistryError
from pipeline.matrix import Matrix
from pipeline.oci.registry import Registry, RegistryRef
from pipeline.orchestrate import Run
from pipeline.orchestrate.cells import _is_published
from pipeline.records import CellInputs
from pipeline.settings import Settings
from pipeline.workdir import WorkDir


def unreadable(ref: RegistryRef) -> Registry:
    raise RegistryError("no AWS credentials for ECR Public")


def test_an_unreadable_registry_alone_builds_the_cell(
    matrix: Matrix, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dataclasses.replace(Settings.from_environ({}), work=tmp_path)
    run = Run(settings=settings, matrix=matrix, work=WorkDir(tmp_path), connect_registry=unreadable)
    (target,) = matrix.targets([matrix.runtime("provided.debian12")], ["arm64"])
    inputs = CellInputs(
        runtime=target.runtime.id, arch="arm64", digest="sha256:" + "a" * 64, parts={}
    )
    ref = RegistryRef.parse("public.ecr.aws/lambda")
    assert _is_published(run, target, inputs, None, ref) is False
    warning = " ".join(capsys.readouterr().err.split())
    assert warning == (
        "warning: provided.debian12/arm64: public.ecr.aws/lambda cannot be read "
        "(no AWS credentials for ECR Public); building it"
    )
