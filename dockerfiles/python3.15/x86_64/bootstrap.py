"""Start the Python runtime the way AWS's Python runtimes start it.

/var/runtime/bootstrap runs ``pythonX.Y /var/runtime/bootstrap.py`` (through the function's
wrapper script if it has one). Before the runtime interface client imports the handler's module:

- the task root comes first on ``sys.path``, then a layer's
  ``/opt/python/lib/pythonX.Y/site-packages``, then a layer's ``/opt/python``, unless the
  function sets ``PYTHONPATH`` itself (then that path is the function's choice);
- ``.pth`` files in those folders are processed (``site.addsitedir``), so a package installed
  into the task root with a ``.pth`` file (namespace packages, editable paths) imports;
- ``PYTHONPATH`` defaults to the runtime folder, for child Python processes.

Layer paths: https://docs.aws.amazon.com/lambda/latest/dg/python-layers.html.
"""

import os
import site
import sys

# Imported before the task root goes on sys.path: a function's own copy cannot replace it.
from awslambdaric import __main__ as runtime_interface_client


def search_path():
    """The folders to put first on sys.path, in order."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    if "PYTHONPATH" in os.environ:
        return [task_root]
    version = "%d.%d" % sys.version_info[:2]
    return [task_root, "/opt/python/lib/python%s/site-packages" % version, "/opt/python"]


def main():
    folders = search_path()
    sys.path[:0] = [folder for folder in folders if folder not in sys.path]
    for folder in folders:
        site.addsitedir(folder)
    os.environ.setdefault("PYTHONPATH", os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime"))
    runtime_interface_client.main([folders[0], os.environ["_HANDLER"]])


if __name__ == "__main__":
    main()
