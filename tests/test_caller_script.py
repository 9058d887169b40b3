"""Scripts that start process jobs: the fork server re-creates the caller's ``__main__`` so its
functions resolve by name in workers, and must never run the script's own work a second time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any


def _completed(
    tmp_path: Path,
    source: str,
    *args: str,
    module: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a script (or with ``-m``) in a fresh interpreter, successfully."""
    script = tmp_path / "caller_script.py"
    script.write_text(textwrap.dedent(source))
    environment = {
        **os.environ,
        "ASJOB_STORE": str(tmp_path / "store" / "jobs.db"),
        "ASJOB_CONTEXT_FILE": str(tmp_path / "context.json"),
        "PYTHONPATH": str(tmp_path),
        **(env or {}),
    }
    target = ["-m", "caller_script"] if module else [str(script)]
    done = subprocess.run(
        [sys.executable, *target, *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    return done


def _run(tmp_path: Path, source: str, *args: str, **options: Any) -> Any:
    """The JSON the script prints last (see _completed)."""
    return json.loads(_completed(tmp_path, source, *args, **options).stdout.splitlines()[-1])


_UNGUARDED = """
    import json, os, sys
    import asjob

    TALLY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tally.txt")

    def record_run(tag):
        with open(TALLY, "a") as f:
            f.write(tag + "\\n")
        return sys.argv[1:]

    seen_argv = asjob.start_job(record_run, "job").receive(wait=True)
    with open(TALLY) as f:
        runs = f.read().split()
    print(json.dumps({"runs": runs, "argv": seen_argv}))
"""


def test_a_script_without_a_main_guard_runs_its_job_once(tmp_path: Path) -> None:
    result = _run(tmp_path, _UNGUARDED, "--flag", "value")
    assert result["runs"] == ["job"]
    # The job sees the caller's command line, as in a forked multiprocessing child.
    assert result["argv"] == ["--flag", "value"]


def test_a_module_run_with_dash_m_without_a_guard_runs_its_job_once(tmp_path: Path) -> None:
    result = _run(tmp_path, _UNGUARDED, "x", module=True)
    assert result == {"runs": ["job"], "argv": ["x"]}


def test_a_function_defined_after_the_first_start_fails_its_job_with_the_reason(
    tmp_path: Path,
) -> None:
    result = _run(
        tmp_path,
        """
        import json
        import asjob

        def early():
            return "early"

        first = asjob.start_job(early).receive(wait=True)

        def late():
            return "late"

        try:
            second = asjob.start_job(late).receive(wait=True)
        except AttributeError as exc:
            second = str(exc)
        print(json.dumps({"first": first, "second": second}))
        """,
    )
    assert result["first"] == "early"
    second = str(result["second"])
    assert "'late'" in second
    assert 'if __name__ == "__main__":' in second
    assert "caller_script.py, line 8" in second


def test_a_script_that_fails_when_re_run_names_its_error(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        import json
        import asjob

        if __name__ != "__main__":
            raise RuntimeError("run me as a script")

        def job():
            return "ran"

        if __name__ == "__main__":
            try:
                outcome = asjob.start_job(job).receive(wait=True)
            except AttributeError as exc:
                outcome = str(exc)
            print(json.dumps({"outcome": outcome}))
        """,
    )
    outcome = str(result["outcome"])
    assert "'job'" in outcome
    assert "RuntimeError: run me as a script" in outcome
    assert "caller_script.py, line 6" in outcome


_MAIN_SCRIPT = """
    import dataclasses
    import json

    from asjob import start_job, wait_job


    @dataclasses.dataclass
    class Point:
        x: int


    class MainError(Exception):
        pass


    def make_point(x):
        return Point(x)


    def points(n):
        yield from (Point(i) for i in range(n))


    def fail():
        raise MainError("from main")


    def outcome(job):
        try:
            value = job.receive()
        except MainError as exc:
            return f"MainError: {exc}"
        except Exception as exc:
            return f"unexpected {type(exc).__name__}: {exc}"
        items = value if isinstance(value, list) else [value]
        return [repr(item) if type(item) is Point else f"not a Point: {item!r}" for item in items]


    if __name__ == "__main__":
        jobs = [start_job(make_point, 3), start_job(points, 2), start_job(fail)]
        wait_job(jobs)
        print(json.dumps([outcome(job) for job in jobs] + [type(jobs[2].reason).__name__]))
"""


def test_classes_of_the_callers_main_script_come_back_as_themselves(tmp_path: Path) -> None:
    assert _run(tmp_path, _MAIN_SCRIPT) == [
        ["Point(x=3)"],
        ["Point(x=0)", "Point(x=1)"],
        "MainError: from main",
        "MainError",
    ]


def test_a_module_that_starts_a_job_when_imported_gets_a_clear_failure(tmp_path: Path) -> None:
    # Loading the job's function imports the module again in its worker, where it would start
    # the job again (and, in the fork server, a server that starts a server...).
    (tmp_path / "starts_at_import.py").write_text(
        textwrap.dedent("""
            from asjob import as_job

            @as_job
            def work(x):
                return x * 2

            first = work(1)
        """)
    )
    result = _run(
        tmp_path,
        """
        import json
        import asjob
        import starts_at_import

        if __name__ == "__main__":
            try:
                outcome = starts_at_import.first.receive(wait=True)
            except asjob.StartRefusedError as exc:
                outcome = str(exc)
            print(json.dumps({"outcome": outcome}))
        """,
    )
    assert "a module that starts jobs when it is imported" in result["outcome"]


def test_a_top_level_that_blocks_when_re_run_does_not_block_the_start(tmp_path: Path) -> None:
    # Single-instance scripts lock a file at the top: the caller holds it while the fork server
    # re-runs the script, which would wait on it for ever.
    result = _run(
        tmp_path,
        """
        import fcntl, json, os
        import asjob

        def work():
            return "ran"

        lock = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.lock"), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)

        def defined_after_the_lock():
            return "unreachable"

        first = asjob.start_job(work).receive(wait=True)
        try:
            second = asjob.start_job(defined_after_the_lock).receive(wait=True)
        except AttributeError as exc:
            second = str(exc)
        print(json.dumps({"first": first, "second": second}))
        """,
        env={"ASJOB_SCRIPT_RERUN_LIMIT": "1"},
    )
    assert result["first"] == "ran"
    assert "was still running its top level after 1 s" in result["second"]
    assert "caller_script.py, line 9" in result["second"]  # the flock


def test_a_module_that_blocks_when_imported_again_does_not_block_the_start(
    tmp_path: Path,
) -> None:
    # A module that locks a file when imported: the caller holds the lock while the fork server
    # imports the caller's modules, which would wait on it for ever.
    (tmp_path / "single_instance.py").write_text(
        textwrap.dedent("""
            import fcntl, os
            lock = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.lock"), "w")
            fcntl.flock(lock, fcntl.LOCK_EX)
        """)
    )
    result = _run(
        tmp_path,
        """
        import json
        import asjob
        import single_instance

        def work():
            return "ran"

        if __name__ == "__main__":
            try:
                result = asjob.start_job(work).receive(wait=True)
            except AttributeError as exc:
                result = str(exc)
            print(json.dumps({"result": result}))
        """,
        env={"ASJOB_SCRIPT_RERUN_LIMIT": "1"},
    )
    # The start returns; the job cannot have what the blocked import holds up, and says why.
    assert "caller_script.py, line 4: waiting on something?" in result["result"]


def test_a_function_defined_under_the_main_guard_fails_saying_why(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        import json
        import asjob

        if __name__ == "__main__":
            def helper():
                return "unreachable"

            try:
                result = asjob.start_job(helper).receive(wait=True)
            except AttributeError as exc:
                result = str(exc)
            print(json.dumps({"result": result}))
        """,
    )
    assert "Can't get attribute 'helper'" in result["result"]
    assert 'defined under `if __name__ == "__main__":`' in result["result"]


def test_a_function_of_a_packages_main_is_refused_at_the_call(tmp_path: Path) -> None:
    package = tmp_path / "app_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        textwrap.dedent("""
            import json
            import asjob

            def work():
                return "ran"

            if __name__ == "__main__":
                try:
                    asjob.start_job(work)
                    outcome = "started"
                except TypeError as exc:
                    outcome = str(exc)
                print(json.dumps({"outcome": outcome}))
        """)
    )
    env = {**os.environ, "ASJOB_STORE": str(tmp_path / "jobs.db"), "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "app_package"], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)["outcome"]
    assert "defined in app_package.__main__, which worker processes cannot import" in outcome


def test_a_script_whose_first_job_starts_in_a_thread_prints_no_error(tmp_path: Path) -> None:
    done = _completed(
        tmp_path,
        """
        import json, logging, threading
        import asjob

        logging.basicConfig(filename="caller.log")  # a handler each worker drops and closes

        def work():
            return "ran"

        results = []
        receive = lambda: results.append(asjob.start_job(work).receive(wait=True))
        runner = threading.Thread(target=receive)
        runner.start()
        runner.join()
        print(json.dumps({"results": results}))
        """,
    )
    assert json.loads(done.stdout) == {"results": ["ran"]}
    # In the fork server the thread stops where it starts the job: no traceback of that, and
    # no ResourceWarning for the log file the re-run opened.
    assert done.stderr == ""
