"""The resumable-shard skeleton shared by synthesize, mine and weak (no Ray: the shard maker
here is a plain function, as each stage's is apart from its Ray work)."""

import json

import pytest

from embedforge.config import ConfigModel
from embedforge.synthesis.resume import Shard, check_plan, total_counts, write_shards
from embedforge.session import RayConfig
from embedforge.synthesis.shards import read_pairs, read_rejected


class ToyConfig(ConfigModel):
    words: int = 3
    ray: RayConfig = RayConfig()


def toy_shards(pending: dict[int, list[str]], calls: list[list[int]]):
    calls.append(sorted(pending))
    for index, items in reversed(pending.items()):  # any order: the skeleton writes each as it comes
        pairs = [{"id": item, "query": f"q {item}", "positive": f"p {item}"} for item in items if item != "bad"]
        rejected = [{"id": item, "stage": "toy", "reason": "toy:bad"} for item in items if item == "bad"]
        yield Shard(index, pairs, rejected, {"attempted": len(items), "rejected": {"toy:bad": len(rejected)} if rejected else {}})


def killed_after(count: int, shards):
    for made, shard in enumerate(shards):
        if made == count:
            raise KeyboardInterrupt("killed")
        yield shard


def test_a_killed_run_resumes_with_the_unfinished_shards_only(tmp_path, capsys):
    shards = [["a", "b"], ["bad", "c"], ["d"]]
    check_plan(tmp_path, "toy", ToyConfig(), ["a", "b", "bad", "c", "d"], records=5, shards=3)
    calls: list[list[int]] = []
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path, shards, lambda pending: killed_after(2, toy_shards(pending, calls)), "toy: 5 items")
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["shard-00001.json", "shard-00002.json"]

    counts = write_shards(tmp_path, shards, lambda pending: toy_shards(pending, calls), "toy: 5 items")
    assert calls == [[0, 1, 2], [0]]
    assert "toy: 5 items in 3 shards; 2 already done, 1 to run" in capsys.readouterr().out
    assert counts == [{"attempted": 2, "rejected": {}}, {"attempted": 2, "rejected": {"toy:bad": 1}}, {"attempted": 1, "rejected": {}}]
    assert read_pairs(tmp_path).column("id").to_pylist() == ["a", "b", "c", "d"]
    assert read_rejected(tmp_path).column("reason").to_pylist() == ["toy:bad"]

    again = write_shards(tmp_path, shards, lambda pending: toy_shards(pending, calls), "toy: 5 items")
    assert again == counts and calls == [[0, 1, 2], [0]]  # nothing pending: the maker is not called


def test_check_plan_refuses_a_changed_plan_but_not_a_changed_scale(tmp_path):
    check_plan(tmp_path, "toy", ToyConfig(), ["a", "b"], records=2)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stage"] == "toy" and manifest["records"] == 2
    check_plan(tmp_path, "toy", ToyConfig(ray=RayConfig(num_cpus=1)), ["a", "b"], records=2)
    with pytest.raises(ValueError, match="manifest.json: this output folder holds a run with a different plan"):
        check_plan(tmp_path, "toy", ToyConfig(), ["a", "c"], records=2)
    with pytest.raises(ValueError, match="different plan"):
        check_plan(tmp_path, "toy", ToyConfig(words=4), ["a", "b"], records=2)


def test_total_counts_adds_numbers_and_merges_nested_counts_in_first_seen_order():
    totals = total_counts([{"accepted": 2, "rejected": {"b": 1}}, {"accepted": 0, "zero": 0, "rejected": {"a": 2, "b": 1}}])
    assert totals == {"accepted": 2, "rejected": {"b": 2, "a": 2}, "zero": 0}
    assert list(totals) == ["accepted", "rejected", "zero"] and list(totals["rejected"]) == ["b", "a"]
    assert totals["attempted"] == 0 and total_counts([]) == {}
