"""Bad inputs of the experiments (experiments.common, experiments.evaluate and the CLIs
``python -m experiments.<name>``): rows of docs/errors.md (see tests/errors/__init__.py).
"""

import os
import subprocess
import sys

from experiments import common, evaluate

from . import DOMAIN, DTYPE, EMPTY, ENV, MISSING, ROOT, TYPO, UNKNOWN, CliError, raises


class _Cli:
    """``python -m module *flags`` as a user runs it. The runner calls ``start()`` on every CLI row before the
    first case, so these interpreters start up beside the in-process cases; calling waits for the exit and
    raises :class:`CliError` with the last line of stderr on a non-zero status.
    """

    def __init__(self, module: str, *flags: str):
        self.argv = [sys.executable, "-m", module, *flags]
        self._proc = None

    def start(self) -> None:
        if self._proc is None:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **ENV},
            )

    def __call__(self) -> str:
        self.start()
        proc, self._proc = self._proc, None
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        if proc.returncode == 0:
            return stdout
        lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("Pass --help")]
        raise CliError(proc.returncode, lines[-1] if lines else "")


SFT, RL = "configs/sft/arith.py:smoke", "configs/rl/arith.py:smoke"
MATH = "configs/sft/math.py:passn_warmup,smoke"
NOWHERE = "--workdir=/tmp/never_written"

# fmt: off
CASES = [
    raises("experiments.common.load_config", TYPO, '{"opt.learning_rate": 1.0}',
           lambda: common.load_config(SFT, {"opt.learning_rate": 1.0}),
           r"config has no field 'opt\.learning_rate'; valid fields here: \['accum_steps', 'clip_norm'",
           exc=KeyError),
    raises("experiments.common.load_config", UNKNOWN, '"configs/sft/arith.py:passn3"',
           lambda: common.load_config("configs/sft/arith.py:passn3"),
           r"unknown phase 'passn3'; valid phases:"),
    raises("experiments.common.load_config", UNKNOWN, '"configs/rl/arith.py:maj"',
           lambda: common.load_config("configs/rl/arith.py:maj"),
           r"unknown variant 'maj'"),
    raises("experiments.common.load_config", MISSING, '"configs/sft/nope.py"',
           lambda: common.load_config("configs/sft/nope.py"),
           r"config file 'configs/sft/nope\.py' does not exist", exc=FileNotFoundError),
    raises("experiments.common.load_config", TYPO, '{"optim.lr": 1.0} (a parent that does not exist)',
           lambda: common.load_config(SFT, {"optim.lr": 1.0}),
           r"optim.*Did you mean \"opt\"", exc=KeyError),
    raises("experiments.common.parse_schedule", DOMAIN, '"5:4" (does not start at 0)',
           lambda: common.parse_schedule("5:4", 1),
           r"schedule must start at step 0, got '5:4'"),
    raises("experiments.common.parse_schedule", DTYPE, '"0-4"', lambda: common.parse_schedule("0-4", 1),
           r"schedule must look like '0:4,100:16' \(step:value, \.\.\.\), got '0-4'"),
    raises("experiments.common.load_params", MISSING, 'init_from="no/such/run"',
           lambda: common.load_params("no/such/run", {}),
           r"init_from='no/such/run' has no params/ \(run that phase to the end first\)",
           exc=FileNotFoundError),
    raises("experiments.common.task_data", UNKNOWN, 'task.name="division"',
           lambda: common.task_data(common.load_config(SFT, {"task.name": "division"}).task),
           r"task\.name must be one of .*got 'division'"),
    raises("experiments.common.policy_and_data", MISSING, 'model.checkpoint="no/such/model"',
           lambda: common.policy_and_data(common.load_config(MATH, {"model.checkpoint": "no/such/model"})),
           r"model\.checkpoint='no/such/model' is not a Hugging Face checkpoint directory \(no config\.json",
           exc=FileNotFoundError),
    raises("experiments.common.policy_and_data", MISSING, 'task.name="math" with model.checkpoint=""',
           lambda: common.policy_and_data(common.load_config(MATH)),
           r"task\.name='math' needs a pretrained policy: set model\.checkpoint"),
    raises("python -m experiments.sft", UNKNOWN, "--config=configs/sft/math.py:table9",
           _Cli("experiments.sft", "--config=configs/sft/math.py:table9", NOWHERE),
           r"unknown phase 'table9'; valid phases:", exc=CliError),
    raises("experiments.evaluate.parse_runs", DTYPE, '"ce:/tmp/x"', lambda: evaluate.parse_runs("ce:/tmp/x"),
           r"runs must look like 'name=workdir,name=workdir', got item 'ce:/tmp/x'"),
    raises("experiments.evaluate.parse_runs", EMPTY, '""', lambda: evaluate.parse_runs(""),
           r"runs is empty: give at least one 'name=workdir'"),
    raises("python -m experiments.rl", TYPO, "--config.mesh.device=0",
           _Cli("experiments.rl", f"--config={RL}", NOWHERE, "--config.mesh.device=0"),
           r"config has no field 'mesh\.device'; valid fields of 'mesh': \['devices', 'fsdp'\]",
           exc=CliError),
    raises("python -m experiments.rl", MISSING, "--workdir omitted",
           _Cli("experiments.rl", f"--config={RL}"),
           r"Flag --workdir must have a value other than None", exc=CliError),
    raises("python -m experiments.sft", MISSING, "--config=configs/sft/nope.py",
           _Cli("experiments.sft", "--config=configs/sft/nope.py", NOWHERE),
           r"No such file or directory: 'configs/sft/nope\.py'", exc=CliError),
    raises("python -m experiments.sft", TYPO, "--config.opt.learning_rate=1",
           _Cli("experiments.sft", f"--config={SFT}", NOWHERE, "--config.opt.learning_rate=1"),
           r"config has no field 'opt\.learning_rate'; valid fields of 'opt': \['accum_steps'", exc=CliError),
]
# fmt: on
