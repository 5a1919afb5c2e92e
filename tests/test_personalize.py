"""Personalization on the real stack: merge search, privacy penalty, the pipeline, its guards."""

import hashlib
import subprocess
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from assistant import adapters
from assistant.engine import AdapterUse, SamplingParams
from assistant.errors import MynaError
from assistant.settings import Settings
from merger.data.examples import Example
from merger.formats import gguf_lora
from merger.formats.lora import random_lora
from merger.formats.publish import publish
from merger.nightly import runs
from merger.nightly.config import PersonalizeConfig
from merger.nightly.personalize import personalize
from merger.search import evolution as search
from merger.search import scoring
from merger.search.merge import merge_elementwise, merge_updates

pytestmark = pytest.mark.real
QUESTIONS = [
    "Tell me about the sea.",
    "What is your favourite food?",
    "Describe a city at night.",
    "Why do cats purr?",
    "Give advice for a job interview.",
    "What is a good weekend plan?",
    "Explain rain.",
    "Write about a forest.",
    "What makes a good friend?",
    "How do planes fly?",
    "Describe winter.",
    "What is music?",
    "Why is the sky blue?",
    "What is a good breakfast?",
    "How do I learn to swim?",
    "Describe a market.",
    "What is a library for?",
    "Tell me about trains.",
    "Why do we sleep?",
    "What is a volcano?",
    "Describe autumn leaves.",
    "How do bees live?",
    "What is chess?",
    "Tell me about the moon.",
]


@pytest.fixture(scope="module")
def community(base_arch):
    return [random_lora(base_arch, rank=4, seed=10 + i, std=1.0, modules=("attn_q", "attn_v")) for i in range(3)]


def outputs_of(engine, lora, arch, questions, tokens=32):
    folder = Path(tempfile.mkdtemp())
    engine.set_adapters([AdapterUse(gguf_lora.write(lora, folder / "writer.gguf", arch))])
    params = SamplingParams(max_tokens=tokens, temperature=0)
    texts = [
        engine.generate(engine.tokenize_chat([{"role": "user", "content": q}]), params, lambda p: None).text
        for q in questions
    ]
    engine.set_adapters([])
    return [Example(q, t, "chat") for q, t in zip(questions, texts)]


def test_the_three_backends_agree(clean_engine, torch_base, base_arch, community, tmp_path):
    data = outputs_of(clean_engine, community[0], base_arch, QUESTIONS[:6])
    scoring_set = scoring.prepare(clean_engine, data, "", probes=0)
    weights = np.array([0.8, -0.4, 0.3])
    values = {}
    for backend in (
        scoring.TorchBackend(torch_base, community, merge="updates"),
        scoring.LlamaFileBackend(clean_engine, community, base_arch, tmp_path, merge="updates"),
        scoring.LlamaScalesBackend(
            clean_engine,
            [gguf_lora.write(lora, tmp_path / f"c{i}.gguf", base_arch) for i, lora in enumerate(community)],
        ),
    ):
        backend.apply(weights)
        values[backend.name] = backend.mean_logprob(scoring_set)
        backend.close()
    spread = max(values.values()) - min(values.values())
    assert spread < 0.05, values


def test_each_example_scored_in_a_padded_batch_scores_as_it_does_alone(torch_base, community):
    """The membership attack scores examples in batches: padding must not change any one.

    In float32 a masking mistake cannot hide: the batch must match to 1e-3. In bfloat16 (used
    where the CPU has it) the kernels accumulate in a different order for a different batch
    shape, which moves a loss by up to about 0.5 % (measured 0.031 of 6.03 on an AMX CPU)."""
    answers = [
        "Yes.",
        "Salt water, waves and a long horizon where the light changes every hour.",
        "Bread.",
        "Lights in windows, wet streets, a late bus and someone laughing far away.",
        "Purring calms them.",
    ]
    data = [Example(q, a, "chat") for q, a in zip(QUESTIONS, answers)]
    scoring_set = scoring.prepare(torch_base, data, "", probes=0)
    backend = scoring.TorchBackend(torch_base, community[:1], batch_size=8)
    precisions = [False, True] if backend.bf16 else [False]
    try:
        backend.apply(np.ones(1))
        for bf16 in precisions:
            backend.bf16 = bf16
            together = backend.example_nll(scoring_set.encoded)
            alone = [backend.example_nll([e])[0] for e in scoring_set.encoded]
            mean = backend.mean_logprob(scoring_set)
            tolerance = {"rtol": 0.01, "atol": 0.01} if bf16 else {"rtol": 0.0, "atol": 1e-3}
            assert np.allclose(together, alone, **tolerance), (bf16, together, alone)
            assert max(together) - min(together) > 0.5, "different examples, different losses"
            counts = [sum(label != -100 for label in e.labels[1:]) for e in scoring_set.encoded]
            assert np.average(together, weights=counts) == pytest.approx(-mean, abs=0.02 if bf16 else 1e-3)
    finally:
        backend.close()


def test_search_recovers_planted_weights(clean_engine, torch_base, base_arch, community):
    planted = np.array([1.0, -0.6, 0.3])
    data = outputs_of(clean_engine, merge_updates(community, planted), base_arch, QUESTIONS[:12])
    scoring_set = scoring.prepare(torch_base, data, "", probes=0)
    backend = scoring.TorchBackend(torch_base, community, merge="updates")
    try:
        result = search.evolve(scoring.Evaluator(backend, scoring_set, []), 3, budget=40, optimizer="NGOpt")
    finally:
        backend.close()
    assert len(result.trials) == 40 and result.trials[0].weights == (0.0, 0.0, 0.0), "the base model is tried first"
    assert np.abs(np.array(result.best.weights) - planted).max() < 0.15, result.best.weights
    assert result.best.fitness > result.trials[0].fitness + 1.0


def test_privacy_penalty_lowers_similarity_to_the_imitated_sharer(clean_engine, torch_base, base_arch, community):
    """A user whose history reads exactly like sharer 0: without the penalty the search finds
    sharer 0 itself; with it, the merge keeps its distance and pays for it in utility."""
    sharers_loras = community[:2]
    data = outputs_of(clean_engine, sharers_loras[0], base_arch, QUESTIONS[:8], tokens=16)
    scoring_set = scoring.prepare(torch_base, data, "", probes=2, probe_tokens=12)
    backend = scoring.TorchBackend(torch_base, sharers_loras, merge="elementwise")
    try:
        # One evaluator for both searches: a point both propose is evaluated once.
        evaluate = scoring.Evaluator(backend, scoring_set, scoring.sharer_outputs(backend, scoring_set, 2))
        free = search.evolve(evaluate, 2, budget=16, alpha=0.0, optimizer="NGOpt")
        private = search.evolve(evaluate, 2, budget=16, alpha=4.0, optimizer="NGOpt")
    finally:
        backend.close()
    assert np.allclose(free.best.weights, (1.0, 0.0), atol=0.05), "without a penalty: sharer 0 itself"
    assert free.best.similarity >= 0.5
    assert private.best.similarity <= free.best.similarity - 0.3
    assert private.best.utility < free.best.utility, "privacy costs some utility"


def test_the_published_objective_on_the_real_model(torch_base, community):
    """PriME's objective with torch, on a history sharer 0 wrote: sharer 0 itself scores what
    its answers score against themselves, above the base model, and its privacy term is the
    mean of its answers' similarity to each sharer's."""
    questions = [Example(q, "", "chat") for q in QUESTIONS[:3]]
    backend = scoring.TorchBackend(torch_base, community[:2], merge="elementwise")
    try:
        asked = scoring.prepare(torch_base, questions, "", probes=0, answer_tokens=8)
        sharers = scoring.sharer_outputs(backend, asked, 2, "mean")
        history = [Example(q.input, answer, "chat") for q, answer in zip(questions, sharers.answers[0])]
        scoring_set = scoring.prepare(torch_base, history, "", probes=0, answer_tokens=8)
        backend.apply(np.array([1.0, 0.0]))
        value, similarity = scoring.judge(backend, scoring_set, sharers, scoring.PUBLISHED)
        backend.apply(np.zeros(2))
        base_value, _ = scoring.judge(backend, scoring_set, sharers, scoring.PUBLISHED)
    finally:
        backend.close()
    # An empty answer has no ROUGE, even against itself.
    own = sharers.answers[0]
    assert value == pytest.approx(scoring.mean_similarity(own, [own])) and value > 0
    assert base_value < value
    assert similarity == pytest.approx(scoring.mean_similarity(own, sharers.answers))


def test_the_likelihood_term_on_the_real_model(torch_base, community):
    """Sharer 0's adapter finds its own answers far likelier than the base model does, so its
    likelihood term is well above zero; half of it (a quarter of its update) less so; the base
    model's is zero."""
    questions = [Example(q, "", "chat") for q in QUESTIONS[:3]]
    backend = scoring.TorchBackend(torch_base, community[:2], merge="elementwise")
    try:
        asked = scoring.prepare(torch_base, questions, "", probes=3, probe_tokens=12)
        sharers = scoring.sharer_outputs(backend, asked, 2, "likelihood")
        terms = {}
        for weights in [(1.0, 0.0), (0.5, 0.0), (0.0, 0.0)]:
            backend.apply(np.array(weights))
            terms[weights] = scoring.likelihood_lift(backend, sharers)
    finally:
        backend.close()
    assert len(sharers.own) == 2 and all(len(s.encoded) == 3 for s in sharers.own)
    assert terms[(0.0, 0.0)] < 0.01, terms
    # Measured here: 0.73, 0.25 and 0.
    assert terms[(1.0, 0.0)] > terms[(0.5, 0.0)] + 0.2 and terms[(1.0, 0.0)] > 0.4, terms


def test_racing_on_the_real_model(torch_base, community):
    """Task-metric fitness raced on the real model: on a history sharer 0 wrote, sharer 0 is
    judged on all 20 examples, and the base model, behind it on the first 16, stops there."""
    questions = [Example(q, "", "chat") for q in QUESTIONS[:20]]
    backend = scoring.TorchBackend(torch_base, community[:2], merge="elementwise")
    try:
        asked = scoring.prepare(torch_base, questions, "", probes=0, answer_tokens=8)
        written = scoring.sharer_outputs(backend, asked, 2, "mean").answers[0]
        history = [Example(q.input, answer, "chat") for q, answer in zip(questions, written)]
        evaluate = scoring.Evaluator(
            backend, scoring.prepare(torch_base, history, "", probes=0, answer_tokens=8), [], scoring.PUBLISHED, 0.0
        )
        assert evaluate.steps == [16, 20]
        own, _, own_complete = evaluate([1.0, 0.0])
        base, _, base_complete = evaluate([0.0, 0.0])
    finally:
        backend.close()
    # Sharer 0 says again what it wrote (an empty answer scores nothing, even against itself);
    # batches of 16 and 4 pad differently from one of 20, which may change a word in bfloat16.
    assert own_complete and own == pytest.approx(scoring.mean_similarity(written, [written]), abs=0.2)
    assert not base_complete and base < own and evaluate.stopped == 1
    assert evaluate.best(0.0).weights == (1.0, 0.0)


def test_the_check_asks_the_held_out_inputs_as_myna_ask_does(db, clean_engine, tmp_path):
    """With check_memory, each held-out headline is asked with what recall finds for it among
    the other articles (never its own, which holds the answer), laid out as `myna ask` lays it
    out, and decoded with the user's copy bias towards those notes; the probes the sharers
    answered stay as they were."""
    import json

    from assistant import replies
    from assistant.memory import ingest
    from assistant.tasks import prompt
    from merger.data import examples
    from merger.nightly import served

    topics = ["Storm", "Harvest", "Election", "Bridge", "Vaccine", "Marathon", "Flood", "Museum"]
    profile = [
        {
            "id": str(i),
            "title": f"{topic} news {i} from the coast",
            "text": f"The {topic.lower()} of day {i} moved the coast town.",
        }
        for i, topic in enumerate(topics)
    ]
    (tmp_path / "q.json").write_text(json.dumps([{"id": "1", "input": prompt("LaMP_4", text="x"), "profile": profile}]))
    ingest.import_paths(db, [tmp_path / "q.json"])
    settings = replace(USER, retrieval_top_k=2, memory_min_relevance=0.0, memory_margin=1.0)
    held_out = examples.from_store(db, held_out_fraction=0.5).held_out
    plain = scoring.prepare(clean_engine, held_out, settings.system_prompt, max_length=96, probes=2)
    backend = scoring.LlamaBackend(clean_engine)
    checked = served.as_served(db, clean_engine, settings, plain, backend)
    assert checked.probes == plain.probes and checked.examples == plain.examples
    assert backend.copy_bias == settings.memory_copy_bias > 0 and "copy bias" in backend.decoding
    assert held_out
    for example, asked, before in zip(held_out, checked.encoded, plain.encoded):
        text = clean_engine.text_of(asked.prompt)
        others = [item["title"] for item in profile if item["title"] != example.output]
        assert example.output not in text, "its own article (and headline) is never its memory"
        assert any(title in text for title in others), "other articles are given, as demonstrations"
        assert asked.output == before.output and len(asked.prompt) > len(before.prompt)
        grounded = replies.with_memory(db, clean_engine, settings, example.input, exclude=example.own)
        # The prompt and the favoured words (none here: headlines of other articles are shown as
        # earlier turns, not quoted as notes) of `myna ask`'s one-shot answer.
        assert (asked.prompt, backend.favoured[tuple(asked.prompt)]) == replies.one_shot(
            clean_engine, grounded, checked.answer_tokens
        )
    off = scoring.LlamaBackend(clean_engine)
    assert served.as_served(db, clean_engine, replace(settings, memory="off"), plain, off) is plain
    assert off.copy_bias == 0 and off.decoding == ""


# -- the pipeline ----------------------------------------------------------------------------------


def plant_history(db, examples):
    from assistant.store import conversations as convs

    for example in examples:
        cid = convs.create_conversation(db)
        convs.add_message(db, cid, "user", example.input)
        reply = convs.add_message(db, cid, "assistant", example.output)
        convs.set_feedback(db, reply, rating=1)


def install_community(db, loras, arch):
    for number, lora in enumerate(loras):
        publish(
            db,
            lora,
            arch,
            stem=f"sharer{number}",
            kind="community",
            card={"profile_vector": [1.0] + [0.0] * 383},
            activate=False,
        )


# Merge alone unless a test asks for more: training on top of the merge costs a minute and a half.
QUICK = PersonalizeConfig(
    budget=6, probes=2, probe_tokens=8, held_out=6, max_length=96, train_own=False, min_examples=len(QUESTIONS)
)
USER = Settings(system_prompt="", context_size=2048, threads=2)  # the default model, as the real engine


def test_personalize_publishes_a_better_adapter_and_records_the_run(
    db, shared_base, clean_engine, base_arch, community, monkeypatch
):
    """The shipped run, OPPU on top of PriME: the best merge is the starting point, the user's
    own history trains it further, and that personal adapter is checked and published. Each
    sharer answers once, in the search's backend; the check in llama.cpp reuses the answers."""
    assert PersonalizeConfig().train_own, "this test runs what ships"
    asked, sharer_outputs = [], scoring.sharer_outputs

    def spy(backend, scoring_set, count, privacy="closest", made=None):
        asked.append((type(backend.backend).__name__, made is None))  # the backend behind the kept answers
        return sharer_outputs(backend, scoring_set, count, privacy, made)

    monkeypatch.setattr(scoring, "sharer_outputs", spy)
    planted = np.array([1.2, 0.0, 0.0])
    plant_history(db, outputs_of(clean_engine, merge_elementwise(community, planted), base_arch, QUESTIONS, tokens=24))
    install_community(db, community, base_arch)
    seen = []
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        outcome = personalize(
            db, USER, replace(QUICK, train_own=True), on_progress=lambda phase, d, t: seen.append(phase)
        )
    assert outcome.status == "published", outcome.message
    # Training wraps a model the search's LoRA layers have left (PEFT warns of a second wrap).
    assert not [w for w in warned if "PEFT for a second time" in str(w.message)]
    assert outcome.fitness_after > outcome.fitness_before
    active = adapters.active(db)
    assert active.name == "personal" and active.kind == "personal"
    assert active.card["merge"]["adapters"] == outcome.adapters and len(outcome.weights) == 3
    assert "own adapter (OPPU)" in active.card["method"] and "training" in active.card["data"]["used_for"]
    merged = merge_elementwise(community, np.asarray(outcome.weights))
    trained = gguf_lora.read(active.gguf, base_arch)
    moved = max(float(np.abs(trained.weights[k][1] - merged.weights[k][1]).max()) for k in merged.weights)
    assert moved > 1e-3, "the published adapter is the merge trained further, not the merge itself"
    run = runs.latest(db)
    assert (run.status, run.published, run.adapters) == ("published", "personal", outcome.adapters)
    assert run.fitness_after == pytest.approx(outcome.fitness_after) and run.similarity_after is not None
    assert asked == [("TorchBackend", True), ("LlamaFileBackend", False)]
    assert set(run.phase_seconds) == set(seen) and run.phase_seconds["searching merge weights"] > 0
    assert sum(run.phase_seconds.values()) == pytest.approx(run.seconds, abs=1.0), "every second is in a phase"
    assert {
        "choosing community adapters",
        "loading the models",
        "searching merge weights",
        "training your own adapter on top of the merge",
        "checking the winner in llama.cpp",
    } <= set(seen)
    # The next night, nothing has changed: the run it would do ends where this one did.
    again = personalize(db, USER, replace(QUICK, train_own=True))
    assert again.status == "skipped" and "nothing changed since" in again.message and "--again" in again.message
    assert adapters.active(db).name == "personal" and runs.latest(db).status == "skipped"


def test_the_own_adapter_alone_is_judged_beside_the_one_on_the_merge(
    db, shared_base, clean_engine, base_arch, community, monkeypatch
):
    """With own_alone, the user's adapter is trained twice, on the best merge and alone; both
    are judged in llama.cpp and whichever answers the held-out inputs better is published, with
    both fitnesses on its card, and `--last` says the run was sized so."""
    from merger.nightly import personalize as pipeline

    trained, train_own = {}, pipeline._train_own

    def spy(*args, on_top=True, **kwargs):
        result = train_own(*args, on_top=on_top, **kwargs)
        trained["on merge" if on_top else "alone"] = result.lora
        return result

    monkeypatch.setattr(pipeline, "_train_own", spy)
    writer = random_lora(base_arch, rank=4, seed=7, std=1.0, modules=("attn_q", "attn_v"))
    plant_history(db, outputs_of(clean_engine, writer, base_arch, QUESTIONS, tokens=24))
    install_community(db, community, base_arch)
    seen = []
    config = replace(QUICK, budget=3, train_own=True, own_alone=True)
    outcome = personalize(db, USER, config, on_progress=lambda phase, d, t: seen.append(phase))
    assert outcome.status == "published", outcome.message
    assert set(trained) == {"on merge", "alone"} and "training your own adapter alone" in seen
    card = adapters.active(db).card
    on_merge, alone = card["metrics"]["fitness_own_on_merge"], card["metrics"]["fitness_own_alone"]
    assert outcome.fitness_after == pytest.approx(max(on_merge, alone))
    kept = "alone" if alone > on_merge else "on merge"
    assert card["merge"]["used"] == (kept == "on merge")
    assert ("answered better alone" in card["method"]) == (kept == "alone")
    published = gguf_lora.read(adapters.active(db).gguf, base_arch)
    for name, lora in trained.items():
        gap = max(float(np.abs(published.delta(k) - lora.delta(k)).max()) for k in lora.weights)
        assert (gap < 1e-3) == (name == kept), f"the published adapter is the one {kept}"
    assert "and alone, keeping whichever answers better" in runs.latest(db).search()


def test_the_weights_term_asks_no_sharer_and_the_gate_reads_the_current_adapter_s_own(
    db, shared_base, clean_engine, base_arch, community, monkeypatch
):
    """`--privacy weights`: no sharer adapter is asked anything; the winner pays alpha times
    the L1 norm of its merge weights, recorded with the run; the next run's gate charges the
    current adapter the same, so judged again it scores what it scored when published."""
    generated, generate = [], scoring.TorchBackend.generate

    def spy(backend, prompts, max_tokens):
        generated.append(len(prompts))
        return generate(backend, prompts, max_tokens)

    monkeypatch.setattr(scoring.TorchBackend, "generate", spy)
    uniform = np.full(3, 1 / 3)
    plant_history(db, outputs_of(clean_engine, merge_elementwise(community, uniform), base_arch, QUESTIONS, tokens=24))
    install_community(db, community, base_arch)
    config = replace(QUICK, privacy="weights", alpha=0.05, budget=2)  # the base model, then the uniform average
    outcome = personalize(db, USER, config)
    assert outcome.status == "published", outcome.message
    assert generated == [], "the search generated nothing: no probe, no sharer answer"
    assert outcome.similarity_before == 0  # the card keeps the weights to 4 decimals:
    assert outcome.similarity_after == pytest.approx(np.abs(outcome.weights).sum(), abs=1e-3)
    assert "weight on the sharers 0.00 → 1.00" in runs.latest(db).figures()
    again = personalize(db, USER, config, again=True)
    assert again.similarity_before == pytest.approx(outcome.similarity_after)
    assert again.fitness_before == pytest.approx(outcome.fitness_after, abs=1e-6)


def test_one_weight_per_adapter_and_layer(db, shared_base, clean_engine, base_arch, community):
    """PriME's per-layer option: the search runs over adapters x layers, the uniform average
    (what the history was written by here) is among its points, and the card keeps the matrix
    the published adapter was merged with."""
    uniform = np.full(3, 1 / 3)
    plant_history(db, outputs_of(clean_engine, merge_elementwise(community, uniform), base_arch, QUESTIONS, tokens=24))
    install_community(db, community, base_arch)
    outcome = personalize(db, USER, replace(QUICK, per_layer=True, budget=2))  # the base, then the uniform
    assert outcome.status == "published", outcome.message
    card = adapters.active(db).card["merge"]
    matrix = np.array(card["weights_by_layer"])
    assert matrix.shape == (3, base_arch.n_layers) and card["weights"] == outcome.weights
    assert np.allclose(outcome.weights, matrix.mean(axis=1), atol=1e-4)
    published = gguf_lora.read(adapters.active(db).gguf, base_arch)
    expected = merge_elementwise(community, matrix)
    assert max(float(np.abs(published.delta(k) - expected.delta(k)).max()) for k in expected.weights) < 1e-3
    with pytest.raises(MynaError, match="weigh whole adapters"):
        personalize(db, USER, replace(QUICK, per_layer=True, backend="scales", merge="updates"))


def test_nothing_better_keeps_the_current_adapter(db, shared_base, clean_engine, base_arch, community, monkeypatch):
    """The current adapter stays; the next night is skipped; a run asked for again anyway
    starts its search from the last one's weights and reuses what the sharers and the current
    adapter answered the night before."""
    from merger.nightly import personalize as pipeline
    from merger.search.answer_cache import AnswerCache

    writer = random_lora(base_arch, rank=4, seed=99, std=1.0, modules=("attn_q", "attn_v"))
    plant_history(db, outputs_of(clean_engine, writer, base_arch, QUESTIONS, tokens=24))
    publish(db, writer, base_arch, stem="mine", kind="personal", card={}, activate=True)
    install_community(db, community, base_arch)
    digest = hashlib.sha256(adapters.active(db).gguf.read_bytes()).hexdigest()
    nights, save = [], AnswerCache.save

    def saved(cache):
        nights.append((cache.made, cache.reused))
        save(cache)

    monkeypatch.setattr(AnswerCache, "save", saved)
    outcome = personalize(db, USER, QUICK)
    assert outcome.status == "no-improvement" and outcome.published is None
    assert adapters.active(db).name == "mine"
    assert hashlib.sha256(adapters.active(db).gguf.read_bytes()).hexdigest() == digest
    assert runs.latest(db).status == "no-improvement"
    # Nothing changed: the next run is skipped before it loads a model, and says so.
    seen = []
    skipped = personalize(db, USER, QUICK, on_progress=lambda phase, d, t: seen.append(phase))
    assert skipped.status == "skipped" and "nothing changed since" in skipped.message
    assert "loading the models" not in seen and skipped.seconds < outcome.seconds / 5
    assert runs.latest(db).nothing_changed, "F4 offers to run again (test_tui)"
    starts, evolve = [], pipeline.evolve

    def spy(*args, **kwargs):
        starts.append([list(start) for start in kwargs["starts"]])
        return evolve(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evolve", spy)
    repeated = personalize(db, USER, QUICK, again=True)
    assert repeated.status == "no-improvement" and adapters.active(db).name == "mine"
    assert repeated.fitness_before == pytest.approx(outcome.fitness_before, abs=1e-9)
    # The search starts from the uniform average, then from the weights the last search chose.
    assert starts == [[[1 / 3] * 3, pytest.approx(outcome.weights)]]
    # Each sharer's probe answers (3 x 2) and the current adapter's answers and probes (6 + 2)
    # are kept from the first night; only a winner other than the first night's is asked.
    (first_made, first_reused), (made, reused) = nights
    assert first_reused == 0 and reused >= 3 * 2 + 6 + 2 and made <= 6 + 2


@pytest.mark.parametrize("change", ["a new rating", "other options", "another active adapter", "asked again"])
def test_a_change_since_the_last_run_means_a_new_search(db, base_arch, community, monkeypatch, change):
    """Whatever the result depends on, changed, sends the run on past the skip to load the
    models (stopped there: what follows is tested above)."""
    from merger.nightly import personalize as pipeline

    plant_history(db, [Example(q, f"Answer {number}.", "chat") for number, q in enumerate(QUESTIONS)])
    install_community(db, community, base_arch)
    config = QUICK
    digest = pipeline._inputs(base_arch, USER, "", config, *_chosen(db, config), adapters.active(db))
    runs.finish(db, runs.start(db, {}), "no-improvement", inputs=digest)
    assert personalize(db, USER, config).status == "skipped"

    class WentOn(Exception):
        pass

    def loading(*args, **kwargs):
        raise WentOn

    monkeypatch.setattr(pipeline.Engine, "from_settings", loading)
    again = False
    if change == "a new rating":
        plant_history(db, [Example("Why do owls hoot?", "To talk.", "chat")])
    elif change == "other options":
        config = replace(config, alpha=1.0)
    elif change == "another active adapter":
        publish(db, community[0], base_arch, stem="mine", kind="personal", card={}, activate=True)
    else:
        again = True
    with pytest.raises(WentOn):
        personalize(db, USER, config, again=again)


def _chosen(db, config):
    from merger.data import examples
    from merger.nightly import personalize as pipeline

    community = [a for a in adapters.listing(db) if a.kind == "community"]
    chosen, task = pipeline._choose(db, community, config.max_adapters)
    return examples.from_store(db), chosen, task


def test_what_personalize_needs_is_said(db, clean_engine, base_arch, community):
    with pytest.raises(MynaError, match="held out for scoring"):  # asked to run below the cold-start minimum
        personalize(db, USER, replace(QUICK, min_examples=0))
    plant_history(db, [Example(q, "An answer.", "chat") for q in QUESTIONS])
    with pytest.raises(MynaError, match="No community adapters"):
        personalize(db, USER, QUICK)
    assert runs.latest(db).status == "failed"


def test_a_small_history_gets_no_adapter_work_and_is_told_why(db, clean_engine, base_arch):
    """The cold-start policy: below the shipped minimum the run does nothing, not even look for
    community adapters (there are none here), and says why; the run is recorded as skipped."""
    assert len(QUESTIONS) < PersonalizeConfig().min_examples
    plant_history(db, [Example(q, "An answer.", "chat") for q in QUESTIONS])
    outcome = personalize(db, USER, PersonalizeConfig())
    assert outcome.status == "skipped" and outcome.published is None and adapters.active(db) is None
    assert f"your history gives {len(QUESTIONS)} examples; below {PersonalizeConfig().min_examples}" in outcome.message
    assert "no adapter work was done" in outcome.message
    run = runs.latest(db)
    assert (run.status, run.fitness_after, run.figures()) == ("skipped", None, "")


CATS = "A cat sleeps in the sun by the window and purrs softly when someone strokes its warm fur."
TRAINS = "The night train leaves the station at ten, rolls past sleeping towns and reaches the coast by dawn."


def test_a_task_adapted_hub_from_build_to_llama_cpp(db, shared_base, torch_base, clean_engine, base_arch, tmp_path):
    """PriME's task-adapted base, end to end: `hub build` trains a task adapter on every
    author's texts and each author's adapter on top of it (leaving the caller's base model as
    it was); pulling an author over HTTP brings the task adapter along, verified the same way;
    a merge on top of it scores the same in torch and in llama.cpp (one folded file, or the
    adapters at once with scales), and differs from the merge without it; and a nightly run
    merges on top of it and says so on the card."""
    from merger.hub import build as hub_build
    from merger.hub import client as hub
    from merger.hub.server import make_server, serve_in_background
    from merger.search.merge import on_top_of
    from merger.training.train import TrainConfig

    texts = {"cats": CATS, "trains": TRAINS}
    authors = {
        name: [("note", None, f"# {name.title()} {i}\n{i} times: {text}") for i in range(10)]
        for name, text in texts.items()
    }
    layer = torch_base.model.model.layers[3].self_attn.q_proj.weight
    before = layer.detach().clone()
    config = TrainConfig(epochs=1, max_length=64, rank=4, alpha=4.0, targets=("attn_q", "attn_v"), learning_rate=1e-3)
    entries = hub_build.build(tmp_path / "hub", authors, base=torch_base, arch=base_arch, system="", config=config)
    assert float((layer - before).abs().max()) < 1e-5, "the base model is given back as it was"
    kinds = {e.name: (e.kind, e.task_adapter) for e in entries}
    assert kinds == {
        "task-adapter": ("task", None),
        "cats": ("community", "task-adapter"),
        "trains": ("community", "task-adapter"),
    }

    server = make_server(tmp_path / "hub")
    serve_in_background(server)
    try:
        source = hub.open_hub(f"http://127.0.0.1:{server.server_port}")
        cats = hub.pull(db, source, "cats", base_arch)
        trains = hub.pull(db, source, "trains", base_arch)
    finally:
        server.shutdown()
        server.server_close()
    task_adapter = hub.task_adapter(db, source.find("task-adapter").sha256)
    assert task_adapter is not None and [a.kind for a in adapters.listing(db)].count("task") == 1
    assert cats.card["task_adapter"] == trains.card["task_adapter"] == "task-adapter"
    with pytest.raises(MynaError, match="remove them first"):
        hub.remove(db, task_adapter.name)

    loras = [gguf_lora.read(a.gguf, base_arch) for a in (cats, trains)]
    task = gguf_lora.read(task_adapter.gguf, base_arch)
    history = [Example(f"Write a note titled: Cats {i}", f"{i} times: {CATS}", "note") for i in range(24)]
    scoring_set = scoring.prepare(clean_engine, history[:6], "", probes=0)
    weights = np.array([0.7, 0.4])
    values = {}
    for name, make in (  # one at a time: two torch backends cannot share the base model
        ("torch", lambda: scoring.TorchBackend(torch_base, loras, merge="updates", task=task)),
        (
            "file",
            lambda: scoring.LlamaFileBackend(clean_engine, loras, base_arch, tmp_path, merge="updates", task=task),
        ),
        ("scales", lambda: scoring.LlamaScalesBackend(clean_engine, [cats.gguf, trains.gguf], task_adapter.gguf)),
        ("without the task adapter", lambda: scoring.TorchBackend(torch_base, loras, merge="updates")),
    ):
        backend = make()
        backend.apply(weights)
        values[name] = backend.mean_logprob(scoring_set)
        backend.close()
    alone = {k: v for k, v in values.items() if k != "without the task adapter"}
    assert max(alone.values()) - min(alone.values()) < 0.05, values
    assert values["torch"] - values["without the task adapter"] > 0.05, "the task adapter is applied"
    folded = on_top_of(task, scoring.combine(loras, weights, "updates"))
    assert folded.rank == task.rank + 2 * 4

    plant_history(db, history)
    outcome = personalize(db, USER, QUICK)
    assert outcome.status in ("published", "no-improvement"), outcome.message
    assert sorted(outcome.adapters) == ["cats", "trains"]
    if outcome.status == "published":
        assert adapters.active(db).card["merge"]["on_top_of_task_adapter"] == task_adapter.name


@pytest.mark.parametrize("how", ["an error", "Ctrl-C"])
def test_a_run_stopped_mid_way_leaves_no_temporary_files(
    db, shared_base, clean_engine, base_arch, community, tmp_path, monkeypatch, how
):
    """The search's candidate files and checkpoints live in a temporary folder that goes
    away on every path out of a run, and the run is recorded as it ended."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    plant_history(db, outputs_of(clean_engine, community[0], base_arch, QUESTIONS, tokens=12))
    install_community(db, community, base_arch)
    searching, seen = [], set()

    def on_progress(phase, done, total):
        seen.update(p.name for p in temporary.iterdir())
        if phase == "searching merge weights":
            searching.append(done)
            if how == "an error" and done >= 2:
                raise RuntimeError("the disk went away")

    with pytest.raises(RuntimeError if how == "an error" else KeyboardInterrupt):
        personalize(
            db, USER, QUICK, on_progress=on_progress, should_stop=lambda: how == "Ctrl-C" and len(searching) >= 2
        )
    assert len(searching) >= 2 and any(name.startswith("myna-personalize-") for name in seen)
    # torch keeps caches of its own there (torchinductor_*); what Myna made must all be gone.
    assert [p.name for p in temporary.iterdir() if p.name.startswith("myna-")] == []
    assert runs.latest(db).status == ("failed" if how == "an error" else "cancelled")


def test_one_run_at_a_time(db, clean_engine):
    with runs.exclusive():
        with pytest.raises(MynaError, match="Another personalization run is in progress"):
            personalize(db, USER, QUICK)


def test_if_idle_skips_a_busy_machine(db, monkeypatch):
    from click.testing import CliRunner

    from merger.nightly import schedule
    from tui.cli.main import cli

    monkeypatch.setattr(schedule, "machine_busy", lambda: "the machine is on battery (40 %)")
    result = CliRunner().invoke(cli, ["personalize", "--if-idle"])
    assert result.exit_code == 0 and "Skipped: the machine is on battery" in result.stdout
    assert runs.latest(db).status == "skipped"
    assert "skipped" in CliRunner().invoke(cli, ["personalize", "--last"]).stdout
    # A run that started (a cold start here) shows the options that size its search, the CLI's defaults
    # being PersonalizeConfig's: the one place they are set.
    assert CliRunner().invoke(cli, ["personalize"]).exit_code == 0
    shipped = PersonalizeConfig()
    assert (
        f"search: {shipped.budget} candidates from up to {shipped.max_adapters} community adapters, privacy weight "
        f"{shipped.alpha}, then your own adapter on top" in CliRunner().invoke(cli, ["personalize", "--last"]).stdout
    )


def test_schedule_install_status_remove_with_the_real_crontab(myna_home, monkeypatch):
    from assistant import scheduler
    from merger.nightly import schedule

    monkeypatch.setattr(scheduler, "systemd_available", lambda: False)  # no user session here: cron it is
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    try:
        described = schedule.install(4, 15)
        assert "crontab" in described
        line = schedule.status()
        assert line.startswith("crontab: 15 4 * * * MYNA_HOME=") and str(myna_home) in line
        assert "personalize --if-idle" in line
        schedule.install(5, 0)  # reinstalling replaces, never duplicates
        ours = [
            line
            for line in subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout.splitlines()
            if line.endswith(schedule.job(myna_home).marker)
        ]
        assert len(ours) == 1 and ours[0].startswith("0 5 ")
        assert schedule.remove() == "crontab line"
        assert schedule.status() is None
    finally:
        after = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        assert [line for line in after.splitlines() if str(myna_home) not in line] == [
            line for line in before.splitlines() if str(myna_home) not in line
        ], "other crontab lines are untouched"


def test_systemd_units_name_the_data_folder(tmp_path):
    from merger.nightly import schedule

    units = schedule.job(tmp_path, 3, 30).unit_files()
    timer = next(text for name, text in units.items() if name.endswith(".timer"))
    service = next(text for name, text in units.items() if name.endswith(".service"))
    assert "OnCalendar=*-*-* 03:30:00" in timer and "Persistent=true" in timer
    assert f"MYNA_HOME={tmp_path}" in service and "personalize --if-idle" in service
