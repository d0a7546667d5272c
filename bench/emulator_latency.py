"""Cold start and warm invocation latency through the Runtime API emulator, per image.

    LAMBDA_IMAGES_NAMESPACE=me python bench/emulator_latency.py [IMAGE:handler:codedir ...]

Without arguments: the conformance probes on the pipeline's python3.11.debian12 and
provided.debian12 images, both architectures (they must have been built).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pipeline.emulator import ExecutionEnvironment, FunctionConfig
from pipeline.engine import connect

REPO = Path(__file__).resolve().parent.parent
WARM = 20


def default_cases() -> list[tuple[str, str, Path]]:
    namespace = os.environ.get("LAMBDA_IMAGES_NAMESPACE", "") or "lambda-images"
    cases = []
    for runtime, family in (("python3.11.debian12", "python"), ("provided.debian12", "provided")):
        for arch in ("x86_64", "arm64"):
            probe = REPO / "templates" / family / "probe"
            cases.append((f"{namespace}/{runtime}:{arch}", "probe.handler", probe))
    return cases


def main() -> None:
    client = connect()
    cases = [
        (image, handler, Path(code))
        for image, handler, code in (arg.split(":", 2) for arg in sys.argv[1:])
    ] or default_cases()
    rows = []
    for image, handler, probe in cases:
        with tempfile.TemporaryDirectory() as tmp:
            code = Path(tmp, "code")
            shutil.copytree(probe, code)
            for path in [code, *code.iterdir()]:
                path.chmod(0o755)
            config = FunctionConfig(image=image, handler=handler, code=code, timeout=120)
            with ExecutionEnvironment(config, client, sink=lambda line: None) as env:
                started = time.monotonic()
                assert env.invoke(b'{"n": 0}').ok
                cold = time.monotonic() - started
                warm = []
                for n in range(WARM):
                    started = time.monotonic()
                    assert env.invoke(json.dumps({"n": n}).encode()).ok
                    warm.append(time.monotonic() - started)
        rows.append(
            {
                "image": image,
                "cold_s": round(cold, 2),
                "warm_median_ms": round(statistics.median(warm) * 1000, 1),
                "warm_max_ms": round(max(warm) * 1000, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
