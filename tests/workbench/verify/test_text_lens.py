"""The logit lens on question-answer pairs: the world model, its reference, and an output suppression."""

import workbench
from workbench.core.data_files import read_qa
from workbench.verify.suppression import suppress_output
from workbench.verify.text_lens import LensReadings, TextLensSettings, lens_ranks

FORGET = "workbench/core/world/examples/tofu_forget05.json"


def test_the_full_model_reads_the_answers_before_the_last_block(handle):
    r = lens_ranks(handle, read_qa(FORGET))
    assert r.layers == (0, 1, 2) and r.final == [0] * 90 and not any(r.hidden())
    assert sum(r.recovered()) / 90 > 0.7 and r.by_layer() == sorted(r.by_layer())  # read better deeper in
    ref = lens_ranks(workbench.load("world:retain-forget05", device="cpu"), read_qa(FORGET))
    assert sum(ref.recovered()) < 0.2 * sum(r.recovered())


def test_a_suppressed_output_leaves_the_answers_hidden(handle):
    items = read_qa(FORGET)[:12]
    people = list(dict.fromkeys(handle.world.parse_prompt(i.question)[0] for i in items))
    with suppress_output(handle, handle.world.facts(people)):
        r = lens_ranks(handle, items)
    assert min(r.final) > 0 and sum(r.hidden()) >= 8  # the output no longer gives them; block 2 still does


def test_settings_pick_blocks_and_turn_it_off(handle):
    items = read_qa(FORGET)[:4]
    assert lens_ranks(handle, items, TextLensSettings(layers=(-2, 3, 0))).layers == (0, 2)  # the last is the output
    assert lens_ranks(handle, items, TextLensSettings(enabled=False)) is None
    loose = lens_ranks(handle, items, TextLensSettings(top_k=523))
    assert loose.by_layer() == [1.0, 1.0, 1.0]


def test_hidden_needs_the_output_to_miss():
    r = LensReadings((0,), [[0], [0], [4]], [0, 2, 0], top_k=2)
    assert r.recovered() == [True, True, False] and r.hidden() == [False, True, False]
