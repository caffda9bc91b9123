"""The code execnet runs inside a backend's worker process.

It is sent as source by `runner.py` (execnet's `remote_exec`), so it imports
crossbn only after the first message has put the project root on sys.path:
a worker under another interpreter needs NumPy and its framework, not an
installed crossbn. Every request gets a reply; an exception in the framework
becomes an "error" reply with its traceback, never a dead worker. Only a real
crash (segfault, abort, OOM kill) ends the process, and the runner sees that.
The frameworks' own log lines are kept out of the output unless asked for (quiet.py).
"""


def resident_bytes():
    """This process's resident memory now (Linux /proc), else its peak (getrusage)."""
    import os
    import sys

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def serve(channel):
    import sys
    import time
    import traceback

    root, spec = channel.receive()
    if root not in sys.path:
        sys.path.insert(0, root)
    from crossbn.execution.quiet import quiet_worker

    quiet_worker()  # before any framework loads: its log lines and warnings only with CROSSBN_VERBOSE
    from crossbn.backends import Unsupported, load
    from crossbn.execution import wire
    from crossbn.spec.case import Case

    backend = load(spec)
    for request in channel:
        op = request.get("op")
        start = time.perf_counter()
        try:
            if op == "describe":
                missing = backend.available()  # this interpreter's packages decide
                reply = (
                    {"status": "unsupported", "message": missing}
                    if missing
                    else {"status": "ok", "describe": {**backend.describe(), "python": sys.version.split()[0]}}
                )
            elif op == "run":
                case = Case.from_dict(request["case"])
                backend.run_info = {}
                observed = backend.run(case, wire.decode(request["inputs"]), request["device"])
                reply = {"status": "ok", "observables": wire.encode(observed), "info": dict(backend.run_info)}
            elif op == "run_model":  # the models suite: every layer's hidden state
                from crossbn.spec.network_case import ModelCase

                backend.run_info = {}
                observed = backend.run_model(
                    ModelCase.from_dict(request["case"]), wire.decode(request["inputs"]), request["device"]
                )
                reply = {"status": "ok", "observables": wire.encode(observed), "info": dict(backend.run_info)}
            else:
                reply = {"status": "error", "message": f"unknown request {op!r}"}
        except Unsupported as e:
            reply = {"status": "unsupported", "message": str(e)}
        except Exception as e:  # the framework raised: report it, keep serving
            reply = {"status": "error", "message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        reply["seconds"] = time.perf_counter() - start
        reply["rss"] = resident_bytes()  # the runner recycles a worker grown past --crossbn-worker-max-mb
        channel.send(reply)


if __name__ == "__channelexec__":
    serve(channel)  # noqa: F821 - execnet injects `channel`
