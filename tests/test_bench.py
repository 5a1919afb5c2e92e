"""The personalization benchmark: its datasets, its attack, and a --quick run end to end."""

import json
import sys

import numpy as np
import pytest

from bench import datasets
from bench.lamp.scores import rank_correlation
from merger.data.membership import auroc, chance_spread
from tests.conftest import run_watched
from tests.lamp_pairs import lamp3_pair

pytestmark = pytest.mark.real


def check_lamp_files(questions_path, outputs_path, task):
    questions = json.loads(questions_path.read_text())
    outputs = json.loads(outputs_path.read_text())
    assert outputs["task"] == task
    assert {g["id"] for g in outputs["golds"]} == {q["id"] for q in questions}
    for q in questions:
        assert set(q) == {"id", "input", "profile"} and isinstance(q["profile"], list) and q["profile"]
        assert all("id" in item for item in q["profile"])


def check_time_split(dataset, profile_text):
    for user in dataset.users():
        questions = dataset.of(user)
        profile = questions[0].profile
        assert all(q.profile == profile for q in questions), "one profile per user"
        latest_profile = max(item["date"] for item in profile)
        asked = dataset.manifest["users"][user]["question_dates"]
        assert latest_profile < asked[0], f"{user}: profile must be older than every question"
        texts = {profile_text(item) for item in profile}
        assert not any(q.output in texts for q in questions), f"{user}: a question's answer is in the profile"


@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory):
    import os

    from bench.common import RESULTS

    os.environ.setdefault("MYNA_CORPUS_CACHE", str(RESULTS / "cache"))


def test_lamp4_builder(tmp_path, corpus_cache):
    built = datasets.build_lamp4(users=3, questions=4, profile=10)
    assert built.users() == sorted(built.users()) and len(built.users()) == 3
    assert all(len(built.of(u)) == 4 for u in built.users())
    assert all(q.input.startswith("Generate a headline for the following article: ") for q in built.questions)
    check_time_split(built, lambda item: item["title"])
    check_lamp_files(*built.write(tmp_path), "LaMP_4")
    assert built.manifest["users"][built.users()[0]]["profile"] <= 10


def test_lamp7_builder(tmp_path, corpus_cache):
    from merger.data import corpora

    built = datasets.build_lamp7(users=2, questions=3, profile=20)
    assert 1 <= len(built.users()) <= 2
    by_account = corpora.authors("tweets")
    for q in built.questions:
        other = q.input.removeprefix("Paraphrase the following tweet without any explanation before or after it: ")
        assert other not in {t.text for t in by_account[q.user]}, "the input is another account's tweet"
        assert q.output in {t.text for t in by_account[q.user]}, "the answer is this account's own tweet"
    check_time_split(built, lambda item: item["text"])
    check_lamp_files(*built.write(tmp_path), "LaMP_7")


def test_a_real_lamp_pair_loads_by_path(tmp_path):
    (tmp_path / "q.json").write_text(
        json.dumps(
            [
                {
                    "id": "310",
                    "input": "What is the score of the following review ...",
                    "profile": [{"id": "1", "text": "ok", "score": "3"}],
                },
                {"id": "311", "input": "What is the score ...", "profile": [{"id": "2", "text": "bad", "score": "1"}]},
            ]
        )
    )
    (tmp_path / "o.json").write_text(
        json.dumps({"task": "LaMP_3", "golds": [{"id": "310", "output": "4"}, {"id": "311", "output": "2"}]})
    )
    loaded = datasets.load(tmp_path / "q.json", tmp_path / "o.json")
    assert loaded.task == "LaMP_3" and len(loaded.users()) == 2
    assert [q.output for q in loaded.questions] == ["4", "2"]


def test_a_sample_of_users_is_the_same_every_time_and_says_what_it_covers(tmp_path):
    from bench.lamp import report

    whole = datasets.load(*lamp3_pair(tmp_path, 40))
    one, again, other = whole.sample(5, 1), whole.sample(5, 1), whole.sample(5, 2)
    assert one.users() == again.users() and one.users() != other.users() and len(one.users()) == 5
    assert set(one.users()) < set(whole.users()) and all(q.user in one.users() for q in one.questions)
    assert one.manifest["sample"] == {"users": 5, "of_users": 40, "of_questions": 40, "seed": 1}
    assert whole.sample(40, 1) is whole and whole.sample(99, 1) is whole
    names = report._names(whole.users())
    assert names.endswith("and 28 more") and names.count(",") == 11


def test_small_histories_keep_each_user_s_newest_items_in_turn(tmp_path):
    import subprocess

    from tests.lamp_pairs import six_item_pair

    whole = datasets.load(*six_item_pair(tmp_path))
    small = whole.with_histories((2, 5))
    sizes = {q.user: len(q.profile) for q in small.questions}
    assert sizes == dict(zip(whole.users(), (2, 5, 2))) and small.manifest["histories"] == sizes
    for cut in small.questions:
        [before] = [q for q in whole.questions if q.id == cut.id]
        newest = sorted(before.profile, key=lambda item: str(item.get("date", "")))[-len(cut.profile) :]
        assert cut.profile == newest and cut.output == before.output
    refused = subprocess.run(
        [sys.executable, "-m", "bench", "lamp", "--quick", "--histories", "6,x"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "give item counts separated by commas" in refused.stderr


@pytest.mark.real
def test_a_sampled_lamp_run_answers_only_its_users(tmp_path, bench_home):
    from bench.common import RESULTS
    from bench.lamp.cache import run_name
    from bench.lamp.plan import QUICK

    pair = lamp3_pair(tmp_path, 6)
    command = [sys.executable, "-m", "bench", "lamp", "--quick", "--lamp", *map(str, pair)]
    done = run_watched([*command, "--users", "2", "--seed", "4", "--methods", "^RAG bm25 k=1$"], text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = RESULTS / (run_name(QUICK.quick, pair) + "-users2-seed4") / "some-methods" / "LaMP_3"
    summary = json.loads((folder / "results.json").read_text())["tasks"]["LaMP_3"]
    expected = datasets.load(*pair).sample(2, 4).users()
    assert summary["users"] == expected and summary["questions"] == 2
    assert all(len(row["answers"]) == 2 for row in summary["methods"].values())
    assert "A sample (seed 4) of 2 users of 6, with their 2 of the 6 questions." in (folder / "results.md").read_text()
    refused = run_watched([*command, "--users", "0"], text=True)
    assert refused.returncode != 0 and "at least one user" in refused.stderr


def test_auroc_by_hand():
    assert auroc([3, 4, 5], [0, 1, 2]) == 1.0
    assert auroc([0, 1], [2, 3]) == 0.0
    assert auroc([1, 2], [1, 2]) == 0.5  # 4 pairs: one win, one loss, two ties
    assert auroc([2.0, 0.5], [1.0]) == 0.5


def test_rank_correlation_by_hand():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)  # order, not values
    assert rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (0.5, 0.5, 2) against (0, 1, 2) give 1.5 / sqrt(1.5 * 2)
    assert rank_correlation([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / 3**0.5)


def test_the_paired_gain_interval_sees_a_difference_the_two_intervals_hide():
    from bench.lamp.scores import bootstrap, paired_gains

    rng = np.random.default_rng(1)
    words = "storm rates court vaccine election market strike flood summit budget".split()
    golds = [" ".join(rng.choice(words, 6)) for _ in range(30)]
    # The baseline gets 0 to 5 of 6 words right at random; the method one word more on a
    # third of the questions: a small, reliable gain inside a wide spread.
    base = [" ".join(g.split()[: rng.integers(0, 6)] + ["x"] * 3) for g in golds]
    better = [
        " ".join(b.split()[:-1] + [g.split()[-1]]) if i % 3 == 0 else b for i, (b, g) in enumerate(zip(base, golds))
    ]
    intervals = paired_gains("LaMP_4", {"better": better, "same": base}, base, golds)
    low, high = intervals["better"]
    assert 0 < low <= high, "the same or better on every question is a reliable gain"
    base_high = bootstrap("LaMP_4", base, golds)["ROUGE-1"][1]
    better_low = bootstrap("LaMP_4", better, golds)["ROUGE-1"][0]
    assert better_low < base_high, "while the two methods' own intervals overlap"
    assert intervals["same"] == [0, 0]


def test_one_merge_is_compared_with_another_question_by_question():
    from bench.lamp.scores import difference, paired_differences

    golds = ["storm hits the coast", "rates rise again", "court backs the law", "flood closes roads"] * 5
    half = [" ".join(g.split()[:2]) for g in golds]  # two of the words: ROUGE-1 below 1
    scores = paired_differences("LaMP_4", {"whole": golds, "half": half}, half, golds)
    assert scores["half"] == [0, 0]
    # Whole answers against two of their words: better on every question, so on every draw.
    assert 0 < scores["whole"][0] <= scores["whole"][1] < 1
    # Lower is better for LaMP_3's MAE: a smaller error is a positive difference.
    assert difference("LaMP_3", 0.5, 1.0) == 0.5 and difference("LaMP_4", 0.2, 0.3) == pytest.approx(-0.1)
    off_by_one = paired_differences("LaMP_3", {"exact": ["3"] * 8}, ["4"] * 8, ["3"] * 8)
    assert off_by_one["exact"] == [1.0, 1.0]


def test_the_privacy_goal_reads_each_penalized_merge_against_its_reference_and_its_unpenalized_search():
    from bench.lamp.summary import detectable, privacy_goal

    # A 95 % interval of +-0.0196 is a standard error of 0.01: 2.80 of them are found four times in five.
    assert detectable([-0.0196, 0.0196]) == pytest.approx(0.028, abs=1e-4)
    merges = {"PriME (alpha 0.5)": "prime-a0.5", "PriME (no privacy penalty)": "prime-a0", "uniform": "uniform"}
    table = {
        "PriME (alpha 0.5)": {"overall": {"ROUGE-1": 0.29}},
        "PriME (no privacy penalty)": {"overall": {"ROUGE-1": 0.30}},
        "uniform": {"overall": {"ROUGE-1": 0.30}},
    }

    def attacked(aurocs):
        return {f"u{i}": {"auroc_mean": a, "reference": 0.58} for i, a in enumerate(aurocs)}

    privacy = {"merged": {"prime-a0.5": attacked([0.59, 0.60, 0.58]), "prime-a0": attacked([0.70, 0.66, 0.68])}}
    privacy["merged"]["uniform"] = attacked([0.70, 0.70, 0.70])
    goals = {g["row"]: g for g in privacy_goal("LaMP_7", table, privacy, merges)}
    assert goals["PriME (no privacy penalty)"]["loss"] == 0 and not goals["PriME (no privacy penalty)"]["met"]
    assert goals["uniform"]["without_penalty"] == "PriME (no privacy penalty)" and not goals["uniform"]["shipped"]
    goal = goals["PriME (alpha 0.5)"]
    assert goal["shipped"] and goal["users"] == 3
    assert goal["excess"] == pytest.approx(0.01) and goal["excess_ci95"][0] < 0.01 < goal["excess_ci95"][1]
    assert goal["loss"] == pytest.approx(1 / 30) and goal["met"]
    # Half again above the reference: not met, however little it costs.
    privacy["merged"]["prime-a0.5"] = attacked([0.62, 0.61, 0.60])
    assert not {g["row"]: g for g in privacy_goal("LaMP_7", table, privacy, merges)}["PriME (alpha 0.5)"]["met"]
    assert privacy_goal("LaMP_7", table, None, merges) == []


def test_objectives_are_compared_paired_and_user_by_user():
    from bench.personalize import paired_difference

    rng = np.random.default_rng(0)
    first, second = rng.uniform(0, 1, 30), rng.uniform(0, 1, 10)
    same = paired_difference([(first, first), (second, second)])
    assert same == {"mean": 0.0, "low": 0.0, "high": 0.0}
    # 0.1 better on each of the first user's 30 inputs, the same on the second's 10: each draw
    # keeps 30 and 10 inputs per user, so the interval is the mean itself, 0.1 x 30 / 40.
    better = paired_difference([(first, first + 0.1), (second, second)])
    assert better["mean"] == pytest.approx(0.075)
    assert better["low"] == pytest.approx(0.075) and better["high"] == pytest.approx(0.075)
    # Wide scores, a small gain on a third of the inputs: the paired interval sees it.
    noisy = paired_difference([(first, first + 0.05 * (np.arange(30) % 3 == 0))])
    assert 0 < noisy["low"] < noisy["mean"] < noisy["high"]


def test_a_personalize_benchmark_removes_every_folder_it_made_however_it_ends(monkeypatch, tmp_path):
    """Each user's folder holds a torch copy of the model (over half a GB) and a run makes
    several: none outlives the run, finished or failed. The nights themselves are scripted."""
    from types import SimpleNamespace

    from bench import personalize

    homes = []

    def user_home(hub, count, held_out, user, work):
        homes.append(work / f"{user}-{len(homes)}")
        (homes[-1] / "adapters").mkdir(parents=True)
        return {"MYNA_HOME": str(homes[-1])}

    night = SimpleNamespace(
        status="published", fitness_before=1.0, fitness_after=1.1, similarity_before=None, similarity_after=None,
        adapters=["a"], weights=[1.0], phase_seconds={}, search=lambda: "1 candidates from up to 2 community adapters",
    )  # fmt: skip
    monkeypatch.setenv("MYNA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(personalize, "ensure_hub", lambda env, count: tmp_path / "hub")
    monkeypatch.setattr(personalize, "user_home", user_home)
    monkeypatch.setattr(personalize, "_night", lambda env, command: ({"wall_s": 1, "peak_mib": 1, "stdout": ""}, night))
    monkeypatch.setattr(personalize, "served_scores", lambda home, held_out: [0.5, 0.25])
    figures = personalize.run(1, 2, 2, ["shipped", "published"], ["reuters_health", "NBChealth"], rates=False)
    assert len(homes) == 4 and not any(home.exists() for home in homes)
    assert not homes[0].parent.exists(), "the run's own folder goes too"
    runs = [once for user in figures["users"].values() for once in user.values()]
    assert len(runs) == 4 and all("home" not in once and once["held_out_scores"] == [0.5, 0.25] for once in runs)
    assert all(once["search"] == "1 candidates from up to 2 community adapters" for once in runs), "as --last says"

    def crash(home, held_out):
        raise RuntimeError("the check crashed")

    monkeypatch.setattr(personalize, "served_scores", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        personalize.run(1, 2, 2, ["shipped"], ["reuters_health"], rates=False)
    assert len(homes) == 5 and not homes[-1].parent.exists()


def test_some_methods_are_chosen_by_name_with_the_baseline():
    from bench.lamp.plan import Plan, methods_for
    from bench.lamp.run import chosen

    table = methods_for(Plan(), True)
    assert chosen(table, None) == table
    assert set(chosen(table, "^OPPU$|^RAG bm25 k=1")) == {"non-personalized", "OPPU", "RAG bm25 k=1"}
    with pytest.raises(SystemExit, match="matches no method"):
        chosen(table, "^nothing")
    with pytest.raises(SystemExit, match="not a regular expression"):
        chosen(table, "RAG(")


def planning_only(monkeypatch):
    """bench.lamp.run with its run stopped at the plan: (the module, the plans it reached)."""
    from bench.lamp import run as module

    planned = []

    def stop(plan, *args, **kwargs):
        planned.append(plan)
        raise SystemExit("planned")

    monkeypatch.setattr(module, "run", stop)
    return module, planned


def test_more_questions_per_user_is_a_plan_of_its_own(monkeypatch, tmp_path):
    module, planned = planning_only(monkeypatch)
    with pytest.raises(SystemExit, match="planned"):
        module.main(False, ["LaMP_4"], None, questions=24)
    assert planned[0].questions == 24 and planned[0].tasks == ("LaMP_4",)
    assert planned[0].key() != module.Plan(tasks=("LaMP_4",)).key(), "its stages are cached apart"
    with pytest.raises(SystemExit, match="at least one question"):
        module.main(False, None, None, questions=0)
    with pytest.raises(SystemExit, match="built-in datasets"):
        module.main(False, None, (tmp_path / "q.json", tmp_path / "o.json"), questions=8)
    assert len(planned) == 1, "a bad count stops before any work"


def test_more_built_users_is_a_plan_of_its_own(monkeypatch, tmp_path):
    from bench import datasets

    module, planned = planning_only(monkeypatch)
    with pytest.raises(SystemExit, match="planned"):
        module.main(False, ["LaMP_4"], None, built_users=8)
    assert planned[0].users == 8 and planned[0].key() != module.Plan(tasks=("LaMP_4",)).key()
    with pytest.raises(SystemExit, match="give 2 or more"):
        module.main(False, None, None, built_users=1)
    with pytest.raises(SystemExit, match="built-in datasets"):
        module.main(False, None, (tmp_path / "q.json", tmp_path / "o.json"), built_users=8)
    assert len(planned) == 1, "a bad count stops before any work"
    # The real corpus has the users the option promises (LaMP_4's nine outlets).
    built = datasets.build_lamp4(users=planned[0].users, questions=1, profile=4)
    assert len(built.users()) == 8


def test_each_merge_label_is_found_in_its_family():
    from bench.lamp.models import UserModels
    from bench.lamp.plan import family_of
    from bench.lamp.records import Merge, Merges

    labels = ("prime-a0.5", "published-a0", "excess-a1", "likely-a0.5", "uniform", "lorahub")
    assert [family_of(x) for x in labels] == ["merged", "published", "excess", "likelihood", None, None]

    def merges(*labels):
        return Merges(
            adapters=["v"], by_label={x: Merge(path=x, weights=[1.0], utility=0.0, similarity=None) for x in labels}
        )

    models = UserModels(merges=merges("prime-a0", "uniform"), published={"excess": merges("excess-a0.5")})
    assert models.record("excess-a0.5").path == "excess-a0.5" and models.record("uniform").path == "uniform"
    assert models.record("published-a0") is None and models.record("oppu") is None
    assert [family for family, _ in models.families()] == ["merged", "excess"]


def test_chance_spread_of_the_auroc():
    assert chance_spread(1) == 0.5  # one member, one non-member, coin flip: 0 or 1
    assert chance_spread(16) == pytest.approx((33 / 3072) ** 0.5)
    rng = np.random.default_rng(0)  # and it is what random scores give
    draws = [auroc(list(rng.normal(size=8)), list(rng.normal(size=8))) for _ in range(4000)]
    assert np.std(draws) == pytest.approx(chance_spread(8), rel=0.05)


def test_the_attack_finds_obvious_membership(torch_base, tmp_path):
    """An adapter trained hard on 8 examples: the attack must tell them from unseen ones of
    the same kind; the base model itself gives nothing away."""
    from types import SimpleNamespace

    from bench.lamp.privacy import membership
    from merger.data.examples import Example, split
    from merger.training import train as trainer

    rng = np.random.default_rng(0)
    words = "river stone lamp orchard violin harbor pepper comet saddle tulip anchor maple".split()

    def made(i):
        return Example(f"Write line {i}.", " ".join(rng.choice(words, 8)), "note")

    members, others = [made(i) for i in range(8)], [made(100 + i) for i in range(8)]
    result = trainer.train(
        torch_base,
        split(members, held_out_fraction=0.0),
        trainer.TrainConfig(rank=8, epochs=12, learning_rate=3e-3, max_length=48, batch_size=4),
        system="",
        workdir=tmp_path,
        min_examples=8,
    )
    bench = SimpleNamespace(
        base=torch_base, settings=SimpleNamespace(system_prompt=""), plan=SimpleNamespace(max_length=48, mia_examples=8)
    )
    assert membership(bench, result.lora, members, others) > 0.9
    silent = result.lora.__class__(
        rank=8, alpha=16, weights={k: (a, 0 * b) for k, (a, b) in result.lora.weights.items()}
    )
    assert membership(bench, silent, members, others) == 0.5


def test_quick_benchmark_runs_every_method_end_to_end(bench_home):
    """`python -m bench lamp --quick` on LaMP_7: every method, metrics, privacy, plots. LaMP_4
    runs end to end in the six-item pair's test below (the two tasks share every stage; running
    both here was half of this test's ten minutes)."""
    from bench.common import RESULTS

    done = run_watched([sys.executable, "-m", "bench", "lamp", "--quick", "--tasks", "LaMP_7"], text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = RESULTS / "lamp-quick"
    results = json.loads((folder / "results.json").read_text())
    assert set(results["tasks"]) == {"LaMP_7"}
    for task in ("LaMP_7",):
        summary = results["tasks"][task]
        methods = summary["methods"]
        expected = {
            "non-personalized",
            "OPPU",
            "PriME (alpha 0.5)",
            "PriME (no privacy penalty)",
            "uniform average of community adapters",
            "best single community adapter",
            "LoraHub (likelihood + L1)",
            "OPPU + RAG hybrid k=4",
            "RAG hybrid k=4, system layout",
            "PriME published fitness, excess privacy term (alpha 0.5)",
        } | {f"RAG {m} k={k}" for m in ("bm25", "hybrid") for k in (1, 4)}
        assert expected <= set(methods)
        assert any(m.startswith("PriME (alpha 0.5) + RAG") for m in methods)
        for row in methods.values():
            low, high = row["ci95"]["ROUGE-1"]
            assert 0 <= low <= row["overall"]["ROUGE-1"] <= high <= 1
            assert np.isfinite(row["gain"])
            assert row["gain_ci95"][0] <= row["gain"] <= row["gain_ci95"][1]
            assert len(row["answers"]) == summary["questions"]
        assert methods["non-personalized"]["gain"] == 0 and methods["non-personalized"]["gain_ci95"] == [0, 0]
        assert (
            summary["default_method"] == "RAG hybrid k=4"
            and "**RAG hybrid k=4** (Myna's default)" in (folder / "results.md").read_text()
        )
        assert methods["OPPU"]["adapter_bytes_per_user"] > 0 and methods["OPPU"]["model_seconds_per_user"] > 0
        privacy = summary["privacy"]
        assert all(0 <= v <= 1 for v in privacy["oppu"].values())
        assert {"prime-a0", "prime-a0.5", "uniform", "lorahub", "best-single"} <= set(privacy["merged"])
        # The excess-term merges (alpha 0.5: the quick plan sweeps no alpha), attacked on their sharers' data.
        assert {"excess-a0.5"} == set(privacy["excess"]) and not privacy["published"]
        assert privacy["canaries"]["owner's adapter (exported)"]["recovered"] >= 0
        # Each figure has its reference: the same attack with an adapter that never saw the items.
        assert set(privacy["oppu_reference"]) == set(privacy["oppu"])
        assert all(0 <= v <= 1 for v in privacy["oppu_reference"].values())
        assert all(0 <= entry["reference"] <= 1 for entry in privacy["merged"]["uniform"].values())
        assert "which never saw them" in (folder / "results.md").read_text()
        # Every merge beside the uniform average and the best single adapter, question by question.
        against = methods["PriME (alpha 0.5)"]["against"]
        assert set(against) == {"uniform average of community adapters", "best single community adapter"}
        for entry in against.values():
            assert entry["ci95"][0] <= entry["difference"] <= entry["ci95"][1]
        assert set(methods["uniform average of community adapters"]["against"]) == {"best single community adapter"}
        assert "against" not in methods["OPPU"] and "against" not in methods["PriME (alpha 0.5) + RAG hybrid k=4"]
        assert "questions resampled together for both" in (folder / "results.md").read_text()
        assert "this run would have found four times in five" in (folder / "results.md").read_text() or (
            "Separated" in (folder / "results.md").read_text()
        )
        # The privacy goal of the penalized merge, against its reference and the search without the penalty.
        goal = {g["row"]: g for g in summary["privacy_goal"]}
        assert {"PriME (alpha 0.5)", "uniform average of community adapters", "LoraHub (likelihood + L1)"} <= set(goal)
        assert goal["PriME (alpha 0.5)"]["without_penalty"] == "PriME (no privacy penalty)"
        assert goal["PriME (alpha 0.5)"]["shipped"]
        assert goal["PriME (alpha 0.5)"]["users"] == len(privacy["merged"]["prime-a0.5"])
        assert "The privacy goal" in (folder / "results.md").read_text()
        assert (folder / "plots" / f"{task}-privacy-goal.png").stat().st_size > 5000
        # Myna's nightly as shipped: the quick users' 24 items are below the cold-start threshold,
        # so `myna personalize` itself skipped each (its own message) and memory answers them.
        nightly = summary["nightly"]
        assert set(nightly) == set(summary["users"]) and {r["status"] for r in nightly.values()} == {"skipped"}
        assert all("no adapter work was done" in r["message"] for r in nightly.values())
        assert methods["Myna's nightly, as shipped"]["answers"] == methods["RAG hybrid k=4"]["answers"]
        step = methods["Myna's nightly, as shipped"]["steps"]["RAG hybrid k=4"]
        assert step["difference"] == 0 and step["ci95"] == [0, 0]
        report_text = (folder / "results.md").read_text()
        assert "**Myna's nightly, as shipped** (Myna's default after a nightly run)" in report_text
        assert f"skipped (too little history: a cold start) for {len(summary['users'])}" in report_text
        assert "What each step adds" in report_text
        diagnostics = summary["diagnostics"]
        assert set(diagnostics["rag"]) == {m for m in methods if "RAG" in m} | {"Myna's nightly, as shipped"}
        for row in diagnostics["rag"].values():
            assert 0 <= row["answer_words_found_in_a_snippet"] <= 1 and row["context_words"] > 0
        likelihood = diagnostics["held_out_loglik_per_token"]
        assert {"base (no adapter)", "OPPU", "prime-a0", "uniform"} <= set(likelihood)
        assert all(value < 0 for value in likelihood.values())
        assert (folder / "plots" / f"{task}-utility.png").stat().st_size > 5000
        assert (folder / "plots" / f"{task}-gain-vs-data.png").exists()
    assert "### LaMP_7" in (folder / "results.md").read_text()

    # Scored again from the stored answers alone (no stage runs): the same numbers, a comparison
    # removed from the file comes back, and what was measured rather than scored stays.
    stored = json.loads((folder / "results.json").read_text())
    for row in stored["tasks"]["LaMP_7"]["methods"].values():
        row.pop("against", None)
        row["overall"]["ROUGE-1"] = -1.0
    (folder / "results.json").write_text(json.dumps(stored))
    done = run_watched([sys.executable, "-m", "bench", "lamp", "--quick", "--tasks", "LaMP_7", "--rescore"], text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ": dataset" not in done.stdout and "questions resampled together for both" in done.stdout
    again = json.loads((folder / "results.json").read_text())
    assert again["tasks"]["LaMP_7"]["methods"] == results["tasks"]["LaMP_7"]["methods"]
    assert again["wall_seconds"] == results["wall_seconds"]
    done = run_watched([sys.executable, "-m", "bench", "lamp", "--quick", "--tasks", "LaMP_4", "--rescore"], text=True)
    assert done.returncode != 0 and "with other settings than these options give" in done.stderr

    # Some methods only, from the same cache: the same answers, no stage of the others.
    done = run_watched(
        [sys.executable, "-m", "bench", "lamp", "--quick", "--tasks", "LaMP_7", "--methods", "^RAG bm25"], text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OPPU adapter" not in done.stdout and ": privacy" not in done.stdout
    some = json.loads((RESULTS / "lamp-quick" / "some-methods" / "LaMP_7" / "results.json").read_text())["tasks"][
        "LaMP_7"
    ]
    assert set(some["methods"]) == {"non-personalized", "RAG bm25 k=1", "RAG bm25 k=4"}
    assert some["privacy"] is None and set(some["diagnostics"]["rag"]) == {"RAG bm25 k=1", "RAG bm25 k=4"}
    whole = results["tasks"]["LaMP_7"]["methods"]
    assert all(row["answers"] == whole[method]["answers"] for method, row in some["methods"].items())

    # The nightly run with other options beside the shipped one, from the same cache: here with
    # no cold-start threshold, so `myna personalize` itself does adapter work for these users.
    variant = "min_examples=0,budget=2,train_own=false"
    own = {path: path.stat().st_mtime_ns for path in (RESULTS / "cache").glob("lamp-quick-*/LaMP_7/*/oppu.json")}
    assert own, "the users' own adapters of the run above"
    done = run_watched(
        [sys.executable, "-m", "bench", "lamp", "--quick", "--tasks", "LaMP_7", "--methods", "nightly"]
        + ["--nightly-variant", variant],
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in own} == own, "the users' own adapters come from the cache"
    # A folder of its own, named by the options: never in place of the shipped rows' report.
    varied = RESULTS / "lamp-quick-nightly-min_examples=0-budget=2-train_own=false" / "some-methods" / "LaMP_7"
    some = json.loads((varied / "results.json").read_text())["tasks"]["LaMP_7"]
    row = "Myna's nightly, min_examples 0, budget 2, train_own False"
    assert set(some["methods"]) == {"non-personalized", "Myna's nightly, as shipped", row}
    runs = some["nightly_variants"][row]
    assert set(runs) == set(some["users"]) and set(some["nightly"]) == set(some["users"])
    assert {r["status"] for r in runs.values()} <= {"published", "no-improvement"}, "its options took effect"
    others = len(some["users"]) - 1  # each user's community: the others' own adapters
    assert all(r["fitness_after"] is not None and len(r["adapters"]) == others for r in runs.values())
    assert set(some["methods"][row]["steps"]) == {"Myna's nightly, as shipped"}, "no OPPU or RAG row in this run"
    assert f"{row}: `myna personalize` with these options" in (varied / "results.md").read_text()


def test_a_lamp_pair_with_six_item_users_runs_to_the_end(six_item_run):
    """Held-out LaMP data: one user per question, histories from 6 items up. Users too small
    to train an adapter are answered with memory alone, and the report says so. The pair is
    LaMP_4's (articles and their headlines), so that task's data, metric and report run too.
    The rows are SIX_ITEM_ROWS; the privacy and amount-of-data stages, the same code for every
    task, run in the LaMP_7 test above (running them here too cost a minute and a half)."""
    folder, results = six_item_run
    summary = results["tasks"]["LaMP_4"]
    assert set(summary["cold_start"]) == {"300", "301"} and summary["users"] == ["300", "301", "302"]
    methods = summary["methods"]
    assert methods["OPPU"]["overall"]["ROUGE-1"] > 0
    for user in ("300", "301"):  # a cold start gets the default memory answer wherever it has no adapter
        assert methods["OPPU"]["per_user"][user] == methods["RAG hybrid k=4"]["per_user"][user]
    assert any(m.startswith("PriME") for m in methods), "the cold users still merge the one trained user's adapter"
    assert "2 of 3 users had too little history to train an adapter" in (folder / "results.md").read_text()
    assert set(methods) == {"non-personalized", "OPPU", "RAG hybrid k=4", "PriME (alpha 0.5)"}
    for row in methods.values():
        assert len(row["answers"]) == summary["questions"] and np.isfinite(row["gain"])


def test_the_recall_benchmarks_default_row_is_what_myna_ships():
    from assistant.settings import Settings
    from bench.recall import VARIANTS

    shipped, row = Settings(), VARIANTS["default"]
    assert (row.layout, row.k, row.min_relevance, row.margin, row.copy_bias, row.mode) == (
        shipped.memory_layout,
        shipped.retrieval_top_k,
        shipped.memory_min_relevance,
        shipped.memory_margin,
        shipped.memory_copy_bias,
        shipped.retrieval_mode,
    )


def test_quick_recall_benchmark_answers_from_planted_notes():
    """`python -m bench recall --quick`, as CI runs it: planted facts among real text, asked
    through `myna ask`'s code path, three layouts side by side."""
    from bench.common import RESULTS

    done = run_watched([sys.executable, "-m", "bench", "recall", "--quick"], text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((RESULTS / "recall-quick.json").read_text())
    assert results["snippets"] >= 2000 and results["facts"] == 16
    assert results["retrieval"]["recall@4"] >= 0.9, "the planted notes are found among the real text"
    rows = results["models"]["bare model"]
    assert set(rows) == {"system", "user", "default"}
    for row in rows.values():
        assert len(row["answers"]) == 16 and 0 <= row["wrong_source_rate"] <= 1
    # What the layouts are for: the default answers from the note where the first layout does not.
    assert rows["default"]["accuracy"] >= 0.7 and rows["default"]["accuracy"] > rows["system"]["accuracy"]
    assert rows["default"]["unrelated_with_sources"] < rows["system"]["unrelated_with_sources"] == 1
    assert "| bare model | demos, k=4, cut-off 0.45" in (RESULTS / "recall-quick.md").read_text()


def test_the_conversation_benchmarks_default_row_is_what_myna_ships():
    """Its default row changes nothing: every choice is the shipped one (Settings, the rules)."""
    from assistant.settings import Settings
    from bench.conversation import VARIANTS, Plan, Variant, settings_for

    assert VARIANTS["default"] == Variant()
    assert settings_for(VARIANTS["default"], Plan(seed=Settings().seed)) == Settings()


@pytest.mark.real
def test_quick_conversation_benchmark_remembers_what_was_said():
    """`python -m bench conversation --quick`, as CI runs it: two people chat through `myna
    ask`'s code path with the default model, then are asked about it; Myna as shipped against
    main before conversation memory."""
    from bench.common import RESULTS

    done = run_watched([sys.executable, "-m", "bench", "conversation", "--quick"], text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((RESULTS / "conversation-quick.json").read_text())
    before, shipped = results["rows"]["before"]["all"], results["rows"]["default"]["all"]
    from bench.conversation import QUICK, load

    assert shipped["people"] == ["Ana", "Lukas"]
    assert shipped["questions"] == sum(len(person["questions"]) for person in load(QUICK))
    assert shipped["extraction_precision"] >= 0.9 and shipped["extraction_recall"] >= 0.9
    assert before["extraction_recall"] < 0.6, "main kept a mixed message whole or not at all"
    assert shipped["updates_recall"] >= 0.75 and before["updates_recall"] == 0
    assert shipped["retrieval_recall"] > before["retrieval_recall"] + 0.3
    assert shipped["abstention_recall"] >= 0.8 and before["abstention_recall"] == 0
    assert shipped["false_abstentions"] <= 0.15
    assert shipped["accuracy_passing_and_said"] > before["accuracy_passing_and_said"]
    assert "| **default** |" in (RESULTS / "conversation-quick.md").read_text()


def test_stage_records_read_the_files_a_stopped_run_left(tmp_path):
    """A stage's record is saved as JSON and read back typed; a file written before a field
    existed, or with fields no longer kept, still resumes the run."""
    from bench.lamp.cache import cached
    from bench.lamp.records import Adapter, Answers, Merge, Merges

    old = {
        "adapters": ["a", "b"],
        "uniform": {"path": "u.gguf", "weights": [0.5, 0.5], "seconds": 0.0, "utility": -2.5, "similarity": 0.7},
        "best-single": {
            "path": "b.gguf",
            "weights": [0, 1],
            "seconds": 3.0,
            "utility": -2.4,
            "similarity": 1.0,
            "chosen": "b",
            "bytes": 9,
        },
        "seconds": 60.0,
        "peak_mib": 2048.0,
    }
    (tmp_path / "merges.json").write_text(json.dumps(old))
    merges = cached(tmp_path / "merges.json", lambda: pytest.fail("a saved stage is not computed again"), Merges)
    assert merges.adapters == ["a", "b"] and set(merges.by_label) == {"uniform", "best-single"}
    assert merges.by_label["best-single"].chosen == "b" and merges.by_label["uniform"].chosen is None
    assert merges.by_label["uniform"].peak_mib == 2048.0  # a merge's memory is its stage's
    again = Merges.from_json(merges.to_json())
    assert again == merges

    cold = cached(tmp_path / "oppu.json", lambda: Adapter(path=None, examples=5, cold_start=True), Adapter)
    assert cold.path is None and cold.examples == 5 and cold.seconds is not None and cold.peak_mib > 0
    saved = json.loads((tmp_path / "oppu.json").read_text())
    assert saved["path"] is None and saved["cold_start"] is True
    assert Adapter.from_json({**saved, "retired_field": 1}) == cold

    answers = Answers.from_json({"predictions": {"q1": "hi"}, "seconds": 1.0})  # before contexts were kept
    assert answers.contexts == {} and answers.predictions == {"q1": "hi"}
    assert isinstance(merges.by_label["uniform"], Merge)


def test_the_rows_marked_as_defaults_are_what_myna_ships():
    """The new user's row is memory alone with the shipped settings; the row after a nightly
    run is `myna personalize` itself (bench.lamp.nightly calls the function the command calls;
    the quick run's test above sees its own messages) with memory by the shipped settings,
    with or without merges in the run."""
    from bench.lamp.plan import NIGHTLY_ROW, Plan, default_method, default_rag, methods_for, nightly_method, steps

    table = methods_for(Plan(), with_merges=True)
    new_user, nightly = table[default_method(table)], table[nightly_method(table)]
    assert new_user.model is None and new_user.rag == default_rag() and new_user.layout is None
    assert nightly_method(table) == NIGHTLY_ROW and nightly.model == "nightly"
    assert nightly.rag == default_rag() and nightly.layout is None
    assert nightly_method(methods_for(Plan(), with_merges=False)) == NIGHTLY_ROW
    # Each step of the pipeline is measured against the pipeline without it, all with memory.
    pairs = steps(table, 0.5)
    assert (NIGHTLY_ROW, default_method(table)) in pairs and ("OPPU + RAG hybrid k=4", default_method(table)) in pairs
    assert (NIGHTLY_ROW, "OPPU + RAG hybrid k=4") in pairs, "what the search and the gate add to the own adapter"


def test_a_nightly_variant_is_the_shipped_run_with_its_own_options():
    """`--nightly-variant budget=12,...`: a row beside the shipped nightly run, its options
    typed as PersonalizeConfig's fields, its files named by them, compared with the shipped
    run and the own adapter alone, never taken for a merge; bad options refused in one sentence."""
    from bench.lamp import nightly
    from bench.lamp.models import UserModels, merge_rows
    from bench.lamp.plan import NIGHTLY_ROW, Plan, methods_for, nightly_model, nightly_options, steps
    from bench.lamp.records import Nightly
    from merger.nightly.config import PersonalizeConfig

    model = nightly_model("budget=12,max-adapters=3,train_own=false,alpha=1")
    assert nightly_options(model) == {"budget": 12, "max_adapters": 3, "train_own": False, "alpha": 1.0}
    assert nightly.config(model).budget == 12 and nightly.config(model).min_examples == 48
    assert nightly.stem(model) == "nightly-budget=12-max-adapters=3-train_own=false-alpha=1"
    table = methods_for(Plan(nightly_variants=("budget=12",)), with_merges=True)
    row = "Myna's nightly, budget 12"
    assert table[row].model == "nightly:budget=12" and table[row].rag == table[NIGHTLY_ROW].rag
    assert row not in merge_rows(table)
    assert {(row, "RAG hybrid k=4"), (row, NIGHTLY_ROW), (row, "OPPU + RAG hybrid k=4")} <= set(steps(table, 0.5))
    assert Plan(nightly_variants=("budget=12",)).key() == Plan().key(), "its files carry the options"
    two = methods_for(Plan(nightly_variants=("budget=12", "budget=12,max_adapters=3")), with_merges=False)
    smaller = "Myna's nightly, budget 12, max_adapters 3"
    assert (smaller, row) in steps(two, 0.5) and (row, smaller) not in steps(two, 0.5), "what the smaller pool changes"
    models = UserModels(nightly_variants={"nightly:budget=12": Nightly(path="v.gguf", examples=60, status="published")})
    assert models.record("nightly:budget=12").path == "v.gguf" and models.record("nightly") is None
    for bad, said in (
        ("budgt=12", "is not OPTION=VALUE with an option of the nightly run"),
        ("budget=twelve", rf"budget=twelve should be a whole number \(its default is {PersonalizeConfig().budget}\)"),
        ("train_own=maybe", "should be true or false"),
        ("budget=1", "The budget must be at least 2"),
    ):
        with pytest.raises(SystemExit, match=said):
            nightly.config(nightly_model(bad))


def test_rows_of_another_run_join_only_when_the_common_rows_answered_alike(tmp_path):
    """`--rescore --join`: another run's rows (another code version) stand beside this run's
    only if every row both have answered every question alike; the report says where they came from."""
    from bench.lamp.run import join

    def run(rows: dict, code: str) -> dict:
        return {"code": code, "tasks": {"LaMP_7": {"methods": {m: {"answers": a} for m, a in rows.items()}}}}

    theirs = tmp_path / "results.json"
    theirs.write_text(json.dumps(run({"RAG": {"q1": "a", "q2": "b"}, "shipped": {"q1": "c", "q2": "d"}}, "old")))
    ours = run({"RAG": {"q1": "a", "q2": "b"}, "variant": {"q1": "e", "q2": "f"}}, "new")
    join(ours, theirs)
    found = ours["tasks"]["LaMP_7"]
    assert set(found["methods"]) == {"RAG", "variant", "shipped"}
    assert found["joined"] == [{"from": str(theirs), "code": "old", "rows": ["shipped"], "alike": ["RAG"]}]
    join(ours, theirs)  # again (a report rescored twice): nothing new, said once
    assert len(found["joined"]) == 1 and set(found["methods"]) == {"RAG", "variant", "shipped"}
    different = run({"RAG": {"q1": "a", "q2": "B"}, "variant": {"q1": "e", "q2": "f"}}, "new")
    with pytest.raises(SystemExit, match="its rows RAG answered otherwise"):
        join(different, theirs)
    with pytest.raises(SystemExit, match="no row answered alike in both"):
        join(run({"other": {"q1": "a", "q2": "b"}}, "new"), theirs)


def test_a_killed_benchmark_still_removes_its_folders(tmp_path):
    """`timeout` and CI stop a benchmark with SIGTERM (`timeout` twice: the command, then its
    process group); it must pass through `finally` as on Ctrl-C, which is what removes the
    folders a run made, and the second signal must not cut that short."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, tempfile, shutil, time\n"
        "from bench.common import end_on_kill_as_on_ctrl_c\n"
        "end_on_kill_as_on_ctrl_c()\n"
        f"work = tempfile.mkdtemp(dir={str(tmp_path)!r})\n"
        "try:\n"
        "    print(work, flush=True)\n"
        "    time.sleep(60)\n"
        "finally:\n"
        "    print('cleaning', flush=True)\n"
        "    time.sleep(1)\n"
        "    shutil.rmtree(work)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    work = Path(process.stdout.readline().strip())
    assert work.is_dir()
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "cleaning"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert not work.exists()


def test_a_contention_benchmark_whose_setup_fails_leaves_no_folder(monkeypatch, tmp_path):
    """Its user's folder (over half a GB once set up) goes even when the setup itself fails."""
    from bench import contention, personalize

    made = []

    def user_home(hub, count, held_out, user, work):
        made.append(work)
        raise RuntimeError("the import failed")

    monkeypatch.setattr(personalize, "ensure_hub", lambda env, count: tmp_path / "hub")
    monkeypatch.setattr(personalize, "user_home", user_home)
    with pytest.raises(RuntimeError, match="import failed"):
        contention.run(1, [{"role": "user", "content": "hi"}])
    assert len(made) == 1 and made[0].name.startswith("myna-bench-contention-") and not made[0].exists()


def test_a_lamp_run_s_cache_is_named_by_the_code_that_fills_it(tmp_path):
    """A run resumed after the code changed must not read stages the old code computed."""
    from bench.lamp.cache import code_digest

    (tmp_path / "merger").mkdir()
    (tmp_path / "merger" / "search.py").write_text("FITNESS = 1\\n")
    (tmp_path / "merger" / "notes.md").write_text("not code")
    roots = ("merger",)
    before = code_digest(tmp_path, roots)
    (tmp_path / "merger" / "notes.md").write_text("still not code")
    assert code_digest(tmp_path, roots) == before
    (tmp_path / "merger" / "search.py").write_text("FITNESS = 2\\n")
    assert code_digest(tmp_path, roots) != before
    assert len(code_digest()) == 10, "the checkout's own digest"


def test_the_benchmark_hub_offered_by_many_units_at_once_stays_whole(db, base_arch, adapter_files, tmp_path):
    """On Ray every user's nightly unit offers the same hub at once (bench.lamp.nightly.offer):
    a reader must never meet another unit's half-copied adapter, and the hub ends whole."""
    import threading
    from types import SimpleNamespace

    from assistant.hashing import sha256_file
    from bench.lamp import nightly
    from merger.formats import gguf_lora
    from merger.hub import client

    space = SimpleNamespace(work=tmp_path, arch=base_arch)
    adapters = {"ann": str(adapter_files[0]), "bo": str(adapter_files[1])}
    stores = {"ann": db, "bo": db}  # an empty memory: no author profile, as a cold start has
    failures = []

    def offer_and_read():
        try:
            for _ in range(3):
                hub = nightly.offer(space, "LaMP_7", adapters, stores)
                (tmp_path / "LaMP_7" / "hub" / client.INDEX).unlink(missing_ok=True)  # each round copies again
                for user in adapters:
                    gguf_lora.read(hub / "adapters" / f"{nightly.hub_name(user)}.gguf", base_arch)
        except Exception as exc:  # noqa: BLE001 - reported below, with what it was
            failures.append(exc)

    threads = [threading.Thread(target=offer_and_read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    hub = nightly.offer(space, "LaMP_7", adapters, stores)
    entries = client.open_hub(str(hub)).entries
    assert {e.name for e in entries} == {nightly.hub_name(u) for u in adapters}
    assert all(sha256_file(hub / e.file) == e.sha256 for e in entries)
    assert not list((hub / "adapters").glob("*.partial")), "no temporary file is left"
