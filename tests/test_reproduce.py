"""Paper presets and `omnimeta reproduce`: complete presets, a tiny real reproduction, resuming, plugin presets."""
import dataclasses
import json

import pytest

from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError, OmnimetaError
from l2l_omniglot.presets import PRESETS, RUN_MECHANICS, Setting, get_preset, parse_preset
from l2l_omniglot.reproduce import reproduce, seed_folder, seed_request
from l2l_omniglot.solvers import SOLVERS, make_solver, resolve_config
from l2l_omniglot.verdict import VERDICT_RULE, seed_interval, t_quantile_975, verdict
from tests.conftest import REPO, StopAtIteration, invoke, ok, omnimeta

PAPER_PRESETS = ["finn2017-20w1s", "finn2017-5w1s", "nichol2018-fomaml-20w1s", "nichol2018-fomaml-5w1s",
                 "raghu2020-anil-20w1s", "snell2017-20w1s", "snell2017-5w1s"]


def test_every_paper_preset_loads_and_sets_every_setting_of_its_solver_with_a_source():
    assert [name for name in PRESETS if PRESETS[name].package == "omnimeta"] == PAPER_PRESETS
    for name in PAPER_PRESETS:
        preset = get_preset(name)
        options = {spec.name for spec in SOLVERS[preset.solver].Options.specs()}
        shared = set(RunConfig.shared_names()) - set(RUN_MECHANICS)
        assert set(preset.settings) == shared | options, name
        assert all(setting.source.strip() for setting in preset.settings.values()), name
        assert preset.accuracy_source and preset.plus_minus_meaning and preset.budget_source
        config = preset.config(1.0, seed=3)
        assert config.split == "vinyals" and config.iterations == preset.iterations and config.seed == 3
        assert config.ways == int(name.split("-")[-1].split("w")[0])  # the row's way, e.g. 20 in ...-20w1s
        for key, setting in preset.settings.items():  # every value reaches the run's config as written
            assert (config.options[key] if key in options else getattr(config, key)) == setting.value, (name, key)


def test_the_presets_hold_the_papers_numbers_and_settings():
    finn = get_preset("finn2017-5w1s")
    assert (finn.accuracy, finn.plus_minus, finn.solver) == (0.987, 0.004, "maml")
    assert "95% confidence interval over 600 test tasks" in finn.plus_minus_meaning
    assert {k: finn.settings[k].value for k in ("meta_batch", "inner_lr", "train_inner_steps", "test_inner_steps",
                                                 "zero_head")} == {"meta_batch": 32, "inner_lr": 0.4,
                                                                   "train_inner_steps": 1, "test_inner_steps": 3,
                                                                   "zero_head": False}
    snell = get_preset("snell2017-20w1s")
    assert snell.settings["train_ways"].value == 60 and snell.settings["lr_halve_every"].value == 2000
    assert get_preset("nichol2018-fomaml-20w1s").accuracy == 0.894
    assert get_preset("raghu2020-anil-20w1s").solver == "anil"


def preset_text(name: str) -> str:
    return (REPO / "l2l_omniglot" / "presets" / f"{name}.toml").read_text()


def without_line(text: str, start: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(start))


@pytest.mark.parametrize("edit, refusal", [
    (lambda text: text.replace("inner_lr = {", "step_size = {"), "sets what its solver lacks: step_size"),
    (lambda text: without_line(text, "test_inner_steps"), "lacks: test_inner_steps"),
    (lambda text: without_line(text, "meta_batch") + '\n', None),
])
def test_an_incomplete_or_unsourced_preset_is_refused_by_name(edit, refusal):
    text = edit(preset_text("finn2017-5w1s"))
    if refusal is None:  # put meta_batch back, with a blank source
        text = text.replace("[settings]", '[settings]\nmeta_batch = { value = 32, source = " " }')
        refusal = "gives no source for: meta_batch"
    with pytest.raises(ConfigError, match=refusal):
        parse_preset(text, "edited.toml", "tests").check()
    with pytest.raises(ConfigError, match="malformed"):
        parse_preset(text.replace("[budget]", "[budgets]"), "edited.toml", "tests")


def test_snells_halving_schedule_is_a_protonet_option_that_needs_a_constant_schedule():
    solver = make_solver(resolve_config("protonet", lr_halve_every=2, lr_schedule="constant", meta_lr=0.01))
    for _ in range(5):
        solver.optimizer.step()  # no gradients: Adam leaves the weights, the schedule still counts the step
    assert solver.optimizer.adam.param_groups[0]["lr"] == pytest.approx(0.0025)
    with pytest.raises(ConfigError, match="--lr-schedule constant"):
        make_solver(resolve_config("protonet", lr_halve_every=2, lr_schedule="cosine"))
    default = make_solver(resolve_config("protonet", iterations=4))
    assert default.options.lr_halve_every == 0  # today's behaviour unchanged: cosine only
    for _ in range(2):
        default.optimizer.step()
    assert default.optimizer.adam.param_groups[0]["lr"] == pytest.approx(0.003 * 0.5)


def test_the_interval_and_the_verdict_follow_the_written_rule():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile_975(29) == pytest.approx(2.045, abs=1e-3)
    low, high, how = seed_interval([0.97, 0.98, 0.99], [0.001] * 3)
    assert (low, high) == pytest.approx((0.98 - 4.303 * 0.01 / 3 ** 0.5, 0.98 + 4.303 * 0.01 / 3 ** 0.5), abs=1e-4)
    assert "3 seeds" in how and "Student's t" in how
    low, high, how = seed_interval([0.95], [0.01])
    assert (low, high) == pytest.approx((0.94, 0.96)) and "over its test tasks" in how
    assert verdict(0.95, 0.94, 0.96, 1.0)[0] == "matches"
    assert verdict(0.93, 0.94, 0.96, 1.0)[0] == "above"
    assert verdict(0.97, 0.94, 0.96, 1.0)[0] == "below"
    word, reason = verdict(0.95, 0.94, 0.96, 0.25)
    assert word == "not comparable" and "25% of the paper's budget" in reason
    assert "not comparable" in VERDICT_RULE and "inside our 95% interval" in VERDICT_RULE


def test_reproduce_on_a_tiny_budget_writes_a_not_comparable_verdict_with_the_budget_fraction(data_root, tmp_path):
    out = tmp_path / "snell"
    mechanics = ["--val-tasks", "10", "--out", out, "--device", "cpu", "--data-root", data_root]  # 10: cheaper
    result = invoke("reproduce", "snell2017-5w1s", "--budget", "0.0005", *mechanics)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "reproduce.json").read_text())
    assert summary["verdict"] == "not comparable"
    assert summary["budget_fraction_run"] == pytest.approx(10 / 20000)
    assert summary["iterations_run"] == 10 and summary["paper_accuracy"] == 0.988
    (seed,) = summary["seeds"]
    assert seed["test_tasks"] == 600 and seed["iterations"] == 10 and seed["validation_curve"]
    assert summary["interval95"][0] < seed["test_accuracy"] < summary["interval95"][1]
    assert "one seed" in summary["interval_method"]
    written = json.loads((out / "seed-0" / "config.json").read_text())
    assert written["options"]["train_ways"] == 60 and written["val_tasks"] == 10
    markdown = (out / "reproduce.md").read_text()
    assert "**Verdict: not comparable**" in markdown and VERDICT_RULE in markdown and "0.05%" in markdown
    assert "| lr_halve_every | 2000 |" in markdown
    again = invoke("reproduce", "snell2017-5w1s", "--budget", "0.0005", *mechanics)
    assert again.exit_code == 0 and "seed 0: skipped" in again.output
    other = invoke("reproduce", "snell2017-5w1s", "--budget", "0.001", *mechanics)
    assert other.exit_code == 2 and "holds a run of other settings" in other.output


def small(name: str) -> "object":
    """The preset with a short budget and few test tasks, so that a test can afford two seeds."""
    preset = get_preset(name)
    settings = {**preset.settings, "eval_tasks": Setting(20, "test"), "train_ways": Setting(10, "test")}
    return dataclasses.replace(preset, settings=settings, iterations=12)


def test_an_interrupted_reproduce_continues_where_it_stopped(data_root, tmp_path):
    preset, out = small("snell2017-5w1s"), tmp_path / "stopped"
    with pytest.raises(OmnimetaError, match="interrupted.*same `omnimeta reproduce` command"):
        reproduce(preset, out, seeds=2, device="cpu", data_root=str(data_root), val_tasks=5,
                  callbacks=lambda seed: StopAtIteration(7) if seed == 1 else None)
    assert (seed_folder(out, 0) / "result.json").is_file() and not (seed_folder(out, 1) / "result.json").exists()
    assert not (out / "reproduce.json").exists()
    events = []
    summary = reproduce(preset, out, seeds=2, device="cpu", data_root=str(data_root), val_tasks=5,
                        on_seed=lambda seed, state: events.append((seed, state)))
    assert events == [(0, "skipped"), (1, "resumed")]
    lines = (seed_folder(out, 1) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == list(range(1, 13))
    # The resumed seed ends as a seed that was never stopped does.
    straight = reproduce(preset, tmp_path / "straight", seeds=2, device="cpu", data_root=str(data_root), val_tasks=5)
    assert [s["test_accuracy"] for s in summary["seeds"]] == [s["test_accuracy"] for s in straight["seeds"]]
    assert "2 seeds" in summary["interval_method"] and summary["budget_fraction_run"] == 1.0
    assert summary["verdict"] in ("matches", "above", "below")  # the whole (shortened) budget ran


@pytest.mark.slow
def test_a_plugin_preset_is_listed_with_the_papers_presets(installed_plugin, data_root):
    listed = json.loads(ok(omnimeta("reproduce", "--list", "--json", "--timed-steps", "0", data_root=data_root)))
    by_name = {row["name"]: row for row in listed}
    assert list(by_name)[:7] == PAPER_PRESETS
    assert by_name["centroid-example-5w1s"]["package"] == "omnimeta-centroid"
    assert by_name["centroid-example-5w1s"]["settings"]["normalize"] == {
        "value": True, "source": "the plugin's default (cosine similarity)"}


def test_list_json_gives_the_seven_presets_with_numbers_sources_and_estimated_times(data_root):
    result = invoke("reproduce", "--list", "--json", "--timed-steps", "1", "--data-root", data_root)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("["):])
    assert [row["name"] for row in rows] == PAPER_PRESETS
    for row in rows:
        assert 0.85 < row["paper_accuracy"] < 1 and row["paper_accuracy_source"] and row["budget_source"]
        assert all(s["source"] for s in row["settings"].values())
        estimate = row["estimate"]
        assert set(estimate) >= {"step_seconds", "predict_seconds_per_task", "total_seconds"}  # values: bench/


def test_a_seed_folder_of_other_settings_or_a_torn_record_is_refused_in_one_line_naming_what_differs(tmp_path):
    preset = get_preset("snell2017-5w1s")
    folder = seed_folder(tmp_path, 0)
    folder.mkdir()
    # A start killed before its first state.pt, at another budget: neither replaced nor blamed on --resume
    (folder / "config.json").write_text(json.dumps(preset.config(0.002, seed=0, device="cpu").to_dict()))
    with pytest.raises(ConfigError, match=r"holds a run of other settings \(iterations: 40 there, 20 now; "):
        seed_request(preset, tmp_path, 0, 0.001, "cpu", 1, None)
    assert seed_request(preset, tmp_path, 0, 0.002, "cpu", 1, None).force  # its own first files: started again
    (folder / "config.json").write_text('{"solver": "proto')
    with pytest.raises(ConfigError, match="config.json cannot be read"):
        seed_request(preset, tmp_path, 0, 0.002, "cpu", 1, None)
    (tmp_path / "reproduce.json").write_text("[]")
    with pytest.raises(ConfigError, match="reproduce.json is not a JSON object"):
        reproduce(preset, tmp_path, budget=0.002, device="cpu")
