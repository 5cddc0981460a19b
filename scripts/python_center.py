"""Serves the ORIGINAL Isek Center: the Flask blueprint of isek 0.2.1, unchanged.

Usage: python python_center.py   (run by the isek-cli test `python_center`, in the
virtualenv scripts/python-center.sh makes)

Loads `isek.isek_center` from the installed isek 0.2.1 package without running the
package's heavy `__init__` (agents, LLM adapters). The module imports `uvicorn` for
its `main()`, which runs Flask under an ASGI server bound to 0.0.0.0:8088; this script
does what `main()` does instead (the blueprint on a Flask app, the expiry thread) and
serves it with waitress, a WSGI server, on 127.0.0.1 and a port chosen by the OS.
Prints `original isek center listening on http://127.0.0.1:PORT`, then serves until
killed.
"""

import importlib.util
import logging
import os
import sys
import threading
import types

# Locate the installed package without running its __init__.
BASE = importlib.util.find_spec("isek").submodule_search_locations[0]


def stub_package(name, path=None):
    module = types.ModuleType(name)
    if path is not None:
        module.__path__ = [path]
    sys.modules[name] = module
    return module


stub_package("isek", BASE)
stub_package("isek.utils", os.path.join(BASE, "utils"))
# The module's logger (isek.utils.log needs `rich`): a plain one on stderr.
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
stub_package("isek.utils.log").team_log = logging.getLogger("isek.center")
# Imported by the module for its main() only, which this script does not call.
stub_package("uvicorn")

from flask import Flask  # noqa: E402
import waitress  # noqa: E402

from isek import isek_center  # noqa: E402

app = Flask("isek_center")
app.register_blueprint(isek_center.isek_center_blueprint)
threading.Thread(target=isek_center.cleanup_expired_nodes, daemon=True).start()

server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
print(f"original isek center listening on http://127.0.0.1:{server.effective_port}", flush=True)
server.run()
