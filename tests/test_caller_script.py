"""Scripts that start process jobs: the fork server re-creates the caller's ``__main__`` so its
functions resolve by name in workers, and must never run the script's own work a second time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _run(tmp_path: Path, source: str, *args: str, module: bool = False) -> dict[str, object]:
    """Run ``source`` as a script (or with ``-m``) in a fresh interpreter; return the JSON it
    prints last."""
    script = tmp_path / "caller_script.py"
    script.write_text(textwrap.dedent(source))
    env = {
        **os.environ,
        "ASJOB_STORE": str(tmp_path / "store" / "jobs.db"),
        "ASJOB_CONTEXT_FILE": str(tmp_path / "context.json"),
        "PYTHONPATH": str(tmp_path),
    }
    target = ["-m", "caller_script"] if module else [str(script)]
    done = subprocess.run(
        [sys.executable, *target, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


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
