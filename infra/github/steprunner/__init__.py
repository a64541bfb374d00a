"""A small local step runner: runs the generated workflows' and composite actions' ``run:`` steps here.

It exists so that the generated automation is executed for real, not only linted: the same YAML that GitHub
runs is read and its shell steps run on this machine, with the files GitHub provides.

What it supports (the subset the generators emit; anything else is refused with a message, never skipped):

* **Jobs** run one at a time in the workflow's order: topologically by ``needs:``, ties in file order (GitHub
  may run independent jobs in parallel; a sequential order is one of the orders it may choose). A job's
  ``if:`` is evaluated with the ``needs`` context (direct needs' ``result`` and ``outputs``); without a status
  function ``success()`` is implied. Job-level ``success()`` is true when every direct need succeeded,
  ``failure()`` when any job it needs, directly or through others, failed; ``cancelled()`` is always false
  (nothing is cancelled here) and ``always()`` true. ``outputs:``, ``env:``, ``timeout-minutes:`` and
  ``environment:`` (evaluated and recorded; there are no approvals here) are honoured. ``strategy.matrix``,
  ``services:``, ``container:`` and reusable workflows are not supported. ``permissions``, ``concurrency``,
  ``runs-on`` and ``run-name`` only mean something to GitHub and are not read.
* **Steps**: ``run:`` with ``shell: bash`` (``bash --noprofile --norc -eo pipefail``, as GitHub runs it) or
  ``sh``; ``id``, ``if``, ``env``, ``working-directory``, ``continue-on-error``, ``timeout-minutes``.
  Step-level ``success()``/``failure()`` look at the earlier steps of the same job.
* **Files**: every step gets fresh ``GITHUB_OUTPUT``, ``GITHUB_ENV``, ``GITHUB_PATH`` and
  ``GITHUB_STEP_SUMMARY`` files (``name=value`` and ``name<<DELIMITER`` forms); outputs become
  ``steps.<id>.outputs``, env and path entries apply to the later steps of the job, summaries are collected
  per job. ``::add-mask::VALUE`` lines mask VALUE in every log from then on, as do the secrets given.
* **Local actions** (``uses: ./actions/x``, found under ``GITHUB_WORKSPACE`` as on GitHub) are expanded from
  ``x/action.yml`` (``runs.using: composite``):
  ``with:`` is checked against the declared inputs (unknown or missing required inputs are errors), defaults
  apply, and the action's steps run with their own ``inputs`` and ``steps`` contexts. The ``env:`` of the step
  that uses the action reaches the action's steps (their own ``env:`` wins), as GitHub's runner does it.
* **Third-party actions** must be pinned to a full commit SHA; the pinned ones the generators use have local
  equivalents instead of being downloaded:

  - ``actions/checkout``: of the workflow's own repository, the working copy is the checkout (at ``path:`` when
    the runner's ``workdir`` holds it there); of another (``repository:``), a clone from the runner's ``remote``
    template (e.g. bare repositories in tests) into ``path:`` at ``ref:``. No credentials are written.
  - ``actions/setup-python``: the Python running this runner (with ws installed in it) stands for the one
    setup-python installs: its folder goes first on PATH, and ``python-version`` is its version. The pip
    download cache it would restore is not used.
  - ``actions/cache``: nothing is stored; ``cache-hit`` is ``'true'`` when every listed path already exists
    in the working copy (a local working copy keeps what a cache would bring back), else ``'false'``.
* **Expressions** ``${{ }}``: literals (``'string'`` with ``''`` escapes, numbers, ``true``, ``false``,
  ``null``), context properties (``inputs``, ``needs``, ``steps``, ``secrets``, ``vars``, ``env``, ``github``,
  ``runner``, ``job``, ``matrix``), ``!``, ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``&&``, ``||``
  (returning operand values, as GitHub does), parentheses, and the functions ``success``, ``failure``,
  ``cancelled``, ``always``, ``contains``, ``startsWith``, ``endsWith``, ``format``, ``toJSON`` and
  ``hashFiles``. Comparisons follow GitHub: strings case-insensitively, mixed types as numbers.

Processes a step leaves running (the local runtime's services) keep running, as they must for the later jobs
that test them; step output goes to a file, never a pipe, so such processes cannot hold a step open.

Modules: :mod:`.expressions` (``${{ }}`` and ``if:``), :mod:`.commandfiles` (GITHUB_OUTPUT and friends),
:mod:`.equivalents` (the third-party actions' local stand-ins), :mod:`.runner` (jobs, steps, composite actions),
:mod:`.results` (what a run produced) and ``__main__`` (``python -m infra.github.steprunner``).
"""

from infra.github.steprunner.commandfiles import parse_command_file
from infra.github.steprunner.equivalents import LOCAL_EQUIVALENTS
from infra.github.steprunner.expressions import (
    ExpressionScope,
    RunnerError,
    Status,
    condition,
    evaluate,
    hash_files,
    interpolate,
    to_text,
    truthy,
)
from infra.github.steprunner.results import JobResult, RunResult, StepRun
from infra.github.steprunner.runner import LocalRunner

__all__ = [
    "LOCAL_EQUIVALENTS",
    "ExpressionScope",
    "JobResult",
    "LocalRunner",
    "RunResult",
    "RunnerError",
    "Status",
    "StepRun",
    "condition",
    "evaluate",
    "hash_files",
    "interpolate",
    "parse_command_file",
    "to_text",
    "truthy",
]
