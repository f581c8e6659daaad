"""Command line of the benchmarks (``keras-newton-bench``, ``python -m keras_newton.bench``).

Subcommands:

* ``sort``      ranking supervision (NeuralSort / SoftSort / sorting networks);
* ``path``      shortest-path supervision (relaxed Bellman-Ford, smoothing,
                perturbed optimizer + Fenchel-Young);
* ``classify``  M1–M5 with softmax cross-entropy;
* ``grid``      several methods of one task × Newton variants × seeds;
* ``study``     the efficacy study of the sorting methods: λ sweep, gain vs
                training length, diagnostics, and the learning-rate control
                (``--parts lr``; :mod:`.study`, :mod:`.lr_control`);
* ``overhead``  step-time ratios Newton / regular, measured side by side.

Every run subcommand trains each Newton variant (``--newton``) for each seed
(``--seeds``), prints a Markdown table (mean ± std) and writes ``.md``,
``.csv``, ``.json`` and ``.png`` files to ``--output-dir``. Without
``--quick`` the paper's settings are used; any flag overrides them.

Example:
  $ keras-newton-bench grid --quick                 # the main job
  $ keras-newton-bench sort --sorter diff_sort --relaxation cauchy --steps 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Sequence

from keras_newton.bench import presets
from keras_newton.bench.arguments import (  # noqa: F401 (build_parser is public here too)
    COMMON_FLAGS,
    DEFAULT_OVERHEAD_NEWTON,
    HESSIAN_FLAGS,
    TASK_FLAGS,
    build_parser,
)
from keras_newton.bench.task import NEWTON_CHOICES, hessian_estimate

def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def parse_method(spec: str) -> dict:
    """``"sorter=diff_sort,relaxation=cauchy"`` → ``{"sorter": ..., ...}``."""
    out = {}
    for item in filter(None, spec.split(",")):
        if "=" not in item:
            raise ValueError(f"method entries must be key=value, got {item!r} in {spec!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return out


def task_config(args: argparse.Namespace, task: str) -> dict:
    """Quick preset (if asked) overridden by every flag given."""
    config = dict(presets.QUICK[task]) if args.quick else {}
    for key in COMMON_FLAGS + TASK_FLAGS[task]:
        value = getattr(args, key, None)
        if value is not None:
            config[key] = value
    if task == "path" and "epochs" in config and args.steps is None:
        config.pop("steps", None)
        config.pop("eval_every", None)
    return config


def _dampings(args: argparse.Namespace, task: str) -> dict:
    if args.damping is not None:
        return {name: args.damping for name in NEWTON_CHOICES}
    return dict(presets.DAMPINGS[task])


def hessian_options(args: argparse.Namespace) -> dict:
    """The affordable-Hessian options given (``{}`` for none).

    Raises:
      ValueError: when options are given but no variant uses the empirical
        Hessian, or an option is not a positive int.
    """
    given = {key: getattr(args, key) for key in HESSIAN_FLAGS
             if getattr(args, key, None) is not None}
    newton = args.newton or (DEFAULT_OVERHEAD_NEWTON if args.command == "overhead"
                             else presets.GRID_NEWTON[_task_name(args)])
    if given and "hessian" not in newton:
        flags = " ".join("--" + key.replace("_", "-") for key in given)
        raise ValueError(f"{flags} apply to the Newton-Hessian variant; add hessian to "
                         f"--newton (got {' '.join(newton)})")
    hessian_estimate(**given)  # the library's checks, errors named as the options
    return given


def _task_name(args: argparse.Namespace) -> str:
    if args.command == "study":
        return "sort"
    return args.task if args.command == "grid" else args.command


def _method_configs(args: argparse.Namespace) -> list[dict]:
    if args.command == "grid":
        if args.methods:
            return [parse_method(spec) for spec in args.methods]
        # The quick sorting grid (the main job) gives each method its own
        # variants, seeds and λ, unless flags say otherwise.
        methods = presets.GRID_METHODS[args.task]
        if args.quick and args.task in presets.QUICK_GRID_METHODS:
            methods = presets.QUICK_GRID_METHODS[args.task]
        return [_drop_overridden_plan(dict(m), args) for m in methods]
    if args.command == "study":
        return ([parse_method(spec) for spec in args.methods] if args.methods
                else [dict(m) for m in presets.STUDY_METHODS])
    return [{}]


def _drop_overridden_plan(method: dict, args: argparse.Namespace) -> dict:
    """A preset method's own variants / seeds / λ / rates yield to the flags.

    ``--newton``, ``--seeds``, ``--damping`` and ``--learning-rate`` replace
    the method's ``newton``, ``seeds``, ``dampings`` and ``learning_rates``.
    """
    for flag, key in (("newton", "newton"), ("seeds", "seeds"), ("damping", "dampings"),
                      ("learning_rate", "learning_rates")):
        if getattr(args, flag) is not None:
            method.pop(key, None)
    return method


def check_args(args: argparse.Namespace) -> None:
    """Rejects, before anything is built, combinations that cannot run.

    Raises:
      ValueError: with the reason and the way out.
    """
    from keras_newton.bench.path_task import check_hessian_options, check_xla_support

    options = hessian_options(args)
    if args.command == "overhead":
        newton = args.newton or DEFAULT_OVERHEAD_NEWTON
        configs = ([dict(presets.QUICK["path"], **task_config(args, "path"))]
                   if "path" in args.tasks else [])
    elif _task_name(args) == "path":
        newton = args.newton or presets.GRID_NEWTON["path"]
        configs = [dict(task_config(args, "path"), **method)
                   for method in _method_configs(args)]
    else:
        return
    for config in configs:
        check_xla_support(config, newton, not args.no_xla, options)
        if options:
            check_hessian_options(config, options)


def _seeds(args: argparse.Namespace) -> list[int]:
    if args.seeds is not None:
        return list(args.seeds)
    return list(presets.QUICK_SEEDS) if args.quick else [0]


def _output_dir(args: argparse.Namespace, task: str) -> str:
    return args.output_dir or os.path.join(
        "bench_results", f"{args.command}_{task}" + ("_quick" if args.quick else ""))


def _workers(args: argparse.Namespace) -> int:
    if not hasattr(args, "workers"):
        # Only grid and study take --workers (and the --shard their workers
        # get): sort, path and classify always run in this process.
        return 1
    workers = args.workers
    if workers is not None:
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        return workers
    return presets.QUICK_WORKERS.get(_task_name(args), 1) if args.quick else 1


def _in_parallel(args: argparse.Namespace, argv: Sequence[str], output_dir: str,
                 run: Callable[[tuple[int, int] | None], dict]) -> dict:
    """Runs ``run(shard)``: the worker's shard, or all shards then the results files."""
    from keras_newton.bench.grid import parse_shard
    from keras_newton.bench.workers import run_sharded

    shard = getattr(args, "shard", None)
    if shard is not None:
        return run(parse_shard(shard))
    workers = _workers(args)
    if workers > 1:
        run_sharded(argv, workers, output_dir, run)
    return run(None)


def _report(out: dict, started: float, cpu_started: float) -> None:
    print()
    print(out["table"])
    for kind, path in out["paths"].items():
        print(f"{kind:>8}: {path}")
    # CPU time (this process, all threads) next to wall time: on a shared
    # machine the wall time says little; workers' CPU time is not included.
    print(f"wall time: {time.perf_counter() - started:.1f} s, "
          f"CPU time: {time.process_time() - cpu_started:.1f} s")


def _run_grid(args: argparse.Namespace, task: str, methods: list[dict],
              argv: Sequence[str] = ()) -> dict:
    from keras_newton.bench.grid import run_grid

    output_dir = _output_dir(args, task)
    newton = args.newton or list(presets.GRID_NEWTON[task])
    started, cpu_started = time.perf_counter(), time.process_time()

    def run(shard):
        return run_grid(task, methods, newton, _seeds(args), output_dir,
                        base_config=task_config(args, task), dampings=_dampings(args, task),
                        hessian_options=hessian_options(args), name=args.name,
                        verbose=(args.verbose if args.verbose is not None else "auto")
                        if shard is None or shard[0] == 0 else 2,
                        jit_compile=not args.no_xla, shard=shard)

    out = _in_parallel(args, argv, output_dir, run)
    if getattr(args, "shard", None) is None:
        _report(out, started, cpu_started)
    return out


def _run_study(args: argparse.Namespace, argv: Sequence[str] = ()) -> dict:
    from keras_newton.bench import study

    output_dir = _output_dir(args, "sort")
    config = task_config(args, "sort")
    if args.quick:
        config = dict(presets.STUDY_QUICK, **{k: v for k, v in config.items()
                                               if getattr(args, k, None) is not None})
    dampings = args.dampings or study.damping_grid(args.damping_min, args.damping_max,
                                                   args.per_decade)
    budgets = args.budgets or (presets.STUDY_QUICK_BUDGETS if args.quick
                               else [int(config.get("steps", 100_000))])
    newton = args.newton or list(presets.STUDY_NEWTON)
    seeds = args.seeds if args.seeds is not None else list(
        presets.STUDY_QUICK_SEEDS if args.quick else [0, 1, 2])
    started, cpu_started = time.perf_counter(), time.process_time()
    out: dict = {}
    for part in args.parts:
        def run(shard, part=part):
            return study.run_study(
                _method_configs(args), newton, dampings, seeds, output_dir, base_config=config,
                budgets=budgets, length_seeds=args.length_seeds, parts=[part],
                learning_rates=args.learning_rates or list(presets.LR_CONTROL_LEARNING_RATES),
                shard=shard,
                verbose=0 if args.verbose == 1 else args.verbose or "auto",
                jit_compile=not args.no_xla)

        out[part] = _in_parallel(args, list(argv) + ["--parts", part], output_dir, run)
    if args.shard is None:
        tables = "\n".join(o["tables"].get(p, "") for p, o in out.items())
        paths = {k: v for o in out.values() for k, v in _flat(o["paths"]).items()}
        _report({"table": tables, "paths": paths}, started, cpu_started)
    return out


def _flat(paths: dict) -> dict:
    flat = {}
    for key, value in paths.items():
        if isinstance(value, dict):
            flat.update({f"{key} {k}": v for k, v in _flat(value).items()})
        else:
            flat[key] = value
    return flat


def _run_overhead(args: argparse.Namespace) -> dict:
    from keras_newton.bench import overhead
    from keras_newton.bench.grid import TASKS

    newton = args.newton or list(DEFAULT_OVERHEAD_NEWTON)
    lines, measured = [overhead.OVERHEAD_HEADER], {}
    for task in args.tasks:
        make_task, describe, _ = TASKS[task]
        config = dict(presets.QUICK[task], **task_config(args, task))
        the_task = make_task(config)
        dampings = _dampings(args, task)
        variants = [v for v in newton if v == "none" or v in dampings]
        result = overhead.measure_overhead(
            the_task, variants, rounds=args.rounds, dampings=dampings,
            hessian_options=hessian_options(args), jit_compile=not args.no_xla)
        label = describe(the_task.config)
        measured[label] = result
        lines.append(overhead.overhead_table(label, result))
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    if args.output_dir:
        from keras_newton.bench import results

        results.atomic_write_text(os.path.join(args.output_dir, f"{args.name}_overhead.md"),
                                  table)
        results.atomic_write_json(os.path.join(args.output_dir, f"{args.name}_overhead.json"),
                                  {"measured": measured, "versions": results.library_versions(),
                                   "config": vars(args)})
    return measured


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        if args.command in ("grid", "study"):
            _workers(args)
    except ValueError as error:
        parser.error(str(error))  # Exits with status 2 and the usage line.
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "overhead":
        _run_overhead(args)
    elif args.command == "study":
        _run_study(args, argv)
    else:
        _run_grid(args, _task_name(args), _method_configs(args), argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["build_parser", "check_args", "hessian_options", "main", "parse_method",
           "task_config"]
