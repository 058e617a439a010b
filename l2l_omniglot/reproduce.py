"""Reproduce a paper's row: run its preset's seeds as ordinary run folders, then judge ours against the paper.

:func:`reproduce` runs seed ``k`` of a preset (:mod:`l2l_omniglot.presets`)
in ``OUT/seed-k`` through the same lifecycle as ``omnimeta run``
(:func:`~l2l_omniglot.launch.run_training`): a finished seed is kept, a
stopped one continues from its ``state.pt``, a missing one starts. Then it
writes ``OUT/reproduce.json`` and ``OUT/reproduce.md``: each seed's test
accuracy and validation curve, the 95% interval across seeds (or over tasks
for one seed), the paper's number, the fraction of the paper's budget run and
the verdict (:mod:`l2l_omniglot.verdict`), with its rule.

:func:`estimate_seconds` times a few meta-training steps and predictions of a
preset on this machine and scales them to the paper's budget.

Example::

    from l2l_omniglot.reproduce import reproduce
    summary = reproduce("snell2017-5w1s", "runs/snell", seeds=3, budget=0.1)
    print(summary["verdict"], summary["verdict_reason"])
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Optional

from l2l_omniglot.atomic import check_output_folder, read_json_object, write_json, write_text
from l2l_omniglot.compare import curves, read_result
from l2l_omniglot.config import RunConfig, resolve_device
from l2l_omniglot.errors import ConfigError, describe_differences, first_line
from l2l_omniglot.precision import computing_in
from l2l_omniglot.presets import PRESETS, Preset, check_budget, get_preset
from l2l_omniglot.solvers import make_solver
from l2l_omniglot.launch import RunRequest, run_training
from l2l_omniglot.run_folder import Interrupted
from l2l_omniglot.run_state import load_saved_state
from l2l_omniglot.run_tasks import RunTasks
from l2l_omniglot.verdict import VERDICT_RULE, seed_interval, verdict

MAX_SEEDS = 100
SUMMARY_FILES = ("reproduce.json", "reproduce.md")


def seed_folder(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / f"seed-{seed}"


def _settings(config: RunConfig) -> dict:
    """What makes a seed folder's run the one this command would run: every setting but the device."""
    return {**config.to_dict(), "device": None}


def _refuse_other(folder: Path, saved, wanted) -> None:
    if _settings(saved) != _settings(wanted):
        differs = describe_differences(_settings(saved), _settings(wanted), "there", "now")
        raise ConfigError(f"{folder} holds a run of other settings ({differs}); rerun with the --budget and "
                          f"--val-tasks it was started with, or choose another --out")


def _read_record(path: Path) -> dict:
    """A JSON record this command wrote earlier (config.json, reproduce.json), or one line saying it is damaged."""
    return read_json_object(path, "move it away (or choose another --out) and run the command again", ConfigError)


def _saved_config(folder: Path) -> RunConfig:
    record = folder / "config.json"
    try:
        return RunConfig.from_dict(_read_record(record))
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(f"{record} is not a run's config ({first_line(error, 80)}); move the folder away (or "
                          f"choose another --out)") from None


def seed_request(preset: Preset, out_dir: Path, seed: int, budget: float, device: str, nproc: int,
                 data_root: Optional[str], val_tasks: int = 100) -> Optional[RunRequest]:
    """How seed ``seed`` continues: None when it is finished, else a new or resuming :class:`RunRequest`."""
    folder = seed_folder(out_dir, seed)
    wanted = preset.config(budget, seed=seed, device=device, val_tasks=val_tasks)
    if (folder / "result.json").is_file():
        _refuse_other(folder, _saved_config(folder), wanted)
        return None
    if (folder / "state.pt").is_file():
        saved, _ = load_saved_state(folder)
        _refuse_other(folder, saved, wanted)
        return RunRequest(folder, resume=True, nproc=nproc, data_root=data_root)
    # A start killed before its first state was saved left only its first files: it starts again.
    force = (folder / "config.json").is_file()
    if force:
        _refuse_other(folder, _saved_config(folder), wanted)
    return RunRequest(folder, wanted, force=force, nproc=nproc, data_root=data_root)


def reproduce(preset, out_dir, seeds: int = 1, budget: float = 1.0, device: str = "auto", nproc: int = 1,
              data_root: Optional[str] = None, callbacks: Optional[Callable] = None,
              on_seed: Optional[Callable] = None, val_tasks: int = 100) -> dict:
    """Run (or continue) ``seeds`` seeds of ``preset`` at ``budget``, then write and return the summary.

    ``val_tasks`` is omnimeta's own run mechanics (the fixed validation tasks
    that choose the best state), not a paper setting.

    ``callbacks(seed)`` gives the :class:`~l2l_omniglot.training.RunCallbacks`
    of one seed's run; ``on_seed(seed, state)`` hears ``"skipped"``,
    ``"started"`` or ``"resumed"`` before each seed.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset.check()
    check_budget(budget)
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds must be between 1 and {MAX_SEEDS} (got {seeds})")
    out_dir = Path(out_dir)
    check_output_folder(out_dir, True, "--out", SUMMARY_FILES)  # rewritten: they describe every seed
    if (out_dir / "config.json").exists():
        raise ConfigError(f"--out {out_dir} holds an ordinary run; reproduce writes seed-K folders into a folder of "
                          f"its own: choose another --out")
    summary_path = out_dir / "reproduce.json"
    if summary_path.is_file():
        preset_record = _read_record(summary_path).get("preset")
        earlier = preset_record.get("name") if isinstance(preset_record, dict) else None
        if earlier != preset.name:
            raise ConfigError(f"--out {out_dir} holds the reproduction of {earlier}; choose another --out")
    requests = [seed_request(preset, out_dir, k, budget, device, nproc, data_root, val_tasks)
                for k in range(seeds)]
    out_dir.mkdir(parents=True, exist_ok=True)
    for seed, request in enumerate(requests):
        if on_seed is not None:
            on_seed(seed, "skipped" if request is None else "resumed" if request.resume else "started")
        if request is None:
            continue
        try:
            run_training(request, callbacks(seed) if callbacks is not None else None)
        except Interrupted as stop:
            raise Interrupted(f"{stop} (or run the same `omnimeta reproduce` command again: it continues every "
                              f"seed)", stop.exit_code - 128) from None
    summary = summarise(preset, [seed_folder(out_dir, k) for k in range(seeds)])
    write_json(out_dir / "reproduce.json", summary)
    write_text(out_dir / "reproduce.md", summary_markdown(summary))
    return summary


def summarise(preset: Preset, folders: list) -> dict:
    """The reproduction's numbers from finished seed folders: per seed, across seeds, the verdict."""
    seeds = []
    for folder in folders:
        result = read_result(folder)
        if not result:
            raise ConfigError(f"{folder} has no result.json yet; finish it with the same `omnimeta reproduce` command")
        curve = curves(folder)
        seeds.append({"seed": result["seed"], "folder": str(folder), "test_accuracy": result["test_accuracy"],
                      "test_ci95": result["test_ci95"], "test_tasks": result["test_tasks"],
                      "iterations": result["iterations"], "best_iteration": result["best_iteration"],
                      "val_accuracy": result["val_accuracy"], "train_seconds": result["train_seconds"],
                      "validation_curve": [list(p) for p in zip(curve["iterations"], curve["val_accuracy"])]})
    accuracies = [s["test_accuracy"] for s in seeds]
    low, high, how = seed_interval(accuracies, [s["test_ci95"] for s in seeds])
    fraction = min(s["iterations"] for s in seeds) / preset.iterations
    word, reason = verdict(preset.accuracy, low, high, fraction)
    return {"preset": preset.describe(), "seeds": seeds, "mean_test_accuracy": sum(accuracies) / len(accuracies),
            "interval95": [low, high], "interval_method": how, "paper_accuracy": preset.accuracy,
            "budget_fraction_run": fraction, "iterations_run": min(s["iterations"] for s in seeds),
            "paper_iterations": preset.iterations, "verdict": word, "verdict_reason": reason,
            "verdict_rule": VERDICT_RULE, "train_seconds": sum(s["train_seconds"] for s in seeds)}


def summary_markdown(summary: dict) -> str:
    """reproduce.md: the verdict, the rule, each seed, and the preset's settings with their sources."""
    preset = summary["preset"]
    low, high = summary["interval95"]
    plus_minus = (f" ± {preset['paper_plus_minus']:.3f} ({preset['paper_plus_minus_meaning']})"
                  if preset["paper_plus_minus"] else f" ({preset['paper_plus_minus_meaning']})")
    lines = [f"# Reproduction of {preset['name']}: {preset['row']}", "", f"{preset['paper']}.", "",
             f"**Verdict: {summary['verdict']}**: {summary['verdict_reason']}.", "",
             f"Rule: {summary['verdict_rule']}", "",
             "| | accuracy |", "|---|---|",
             f"| paper ({preset['paper_accuracy_source']}) | {preset['paper_accuracy']:.4f}{plus_minus} |",
             f"| ours, mean of {len(summary['seeds'])} seed(s) | {summary['mean_test_accuracy']:.4f}, 95% interval "
             f"[{low:.4f}, {high:.4f}] |", "",
             f"Interval: {summary['interval_method']}.", "",
             f"Budget: {summary['iterations_run']} of the paper's {summary['paper_iterations']} {preset['budget_unit']} "
             f"({summary['budget_fraction_run'] * 100:.3g}%); {preset['budget_source']}.", "",
             "| seed | test accuracy (95% CI over tasks) | test tasks | iterations | best iteration | val accuracy | "
             "train time | validation curve (iteration: accuracy) |", "|---|---|---|---|---|---|---|---|"]
    for seed in summary["seeds"]:
        curve = ", ".join(f"{i}: {a:.3f}" for i, a in seed["validation_curve"])
        lines.append(f"| {seed['seed']} | {seed['test_accuracy']:.4f} ± {seed['test_ci95']:.4f} | {seed['test_tasks']} "
                     f"| {seed['iterations']} | {seed['best_iteration']} | {seed['val_accuracy']:.4f} | "
                     f"{seed['train_seconds']:.0f} s | {curve} |")
    lines += ["", "## Settings", "", "| setting | value | source |", "|---|---|---|"]
    lines += [f"| {name} | {s['value']} | {s['source']} |" for name, s in preset["settings"].items()]
    if preset["deviations"]:
        lines += ["", "## Where omnimeta differs from the paper", "", "| what | paper | ours |", "|---|---|---|"]
        lines += [f"| {d['what']} | {d['paper']} | {d['ours']} |" for d in preset["deviations"]]
    if preset["notes"]:
        lines += ["", preset["notes"]]
    return "\n".join(lines) + "\n"


def estimate_seconds(preset: Preset, omniglot, timed_steps: int = 2, device: str = "cpu",
                     probe_tasks: int = 2) -> dict:
    """This machine's time for the paper's budget, from ``timed_steps`` timed steps (after one untimed) and predictions.

    A step is timed on at most ``probe_tasks`` tasks and scaled to the
    preset's meta-batch (a step's cost grows with its tasks, one after another
    on a thread). Returns ``step_seconds``, ``predict_seconds_per_task`` and
    ``total_seconds`` (training steps, the validations, and the test).
    """
    if timed_steps < 1:
        raise ConfigError(f"timed steps must be at least 1 (got {timed_steps})")
    config = preset.config(1.0, device=device)
    tasks = min(config.meta_batch, probe_tasks)
    probe = dataclasses.replace(config, val_tasks=4, meta_batch=tasks)
    tasks_of_run = RunTasks.build(probe, omniglot, phases=("train", "val"))
    solver = make_solver(probe, tasks_of_run.num_train_classes, resolve_device(device))
    sampler = tasks_of_run.samplers["train"]
    with computing_in(config.precision, resolve_device(device)):
        solver.meta_train_step(sampler.sample(config.seed, 1, tasks))  # warm-up: allocation, first calls
        start = time.perf_counter()
        for iteration in range(2, timed_steps + 2):
            solver.meta_train_step(sampler.sample(config.seed, iteration, tasks))
        step = (time.perf_counter() - start) / timed_steps * config.meta_batch / tasks
        start = time.perf_counter()
        solver.predict(tasks_of_run.val_tasks)
        per_task = (time.perf_counter() - start) / len(tasks_of_run.val_tasks)
    scored_tasks = (config.iterations // config.val_every) * config.val_tasks + config.eval_tasks
    return {"step_seconds": step, "predict_seconds_per_task": per_task,
            "total_seconds": step * config.iterations + per_task * scored_tasks}


def describe_presets(omniglot=None, timed_steps: int = 0, device: str = "cpu",
                     progress: Optional[Callable] = None) -> list:
    """Every preset as plain data (:meth:`Preset.describe`), each checked; with ``timed_steps`` and ``omniglot``
    also ``estimate`` (:func:`estimate_seconds`); ``progress()`` is called after each timed preset."""
    rows = []
    for name in PRESETS:
        preset = PRESETS[name]
        row = preset.describe()
        if timed_steps:
            row["estimate"] = estimate_seconds(preset, omniglot, timed_steps, device)
            if progress is not None:
                progress()
        rows.append(row)
    return rows
