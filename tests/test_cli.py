import json

import pytest
from commands import donet, one_line_error


def test_synth_then_stats_and_refusal_to_overwrite(tmp_path):
    out = tmp_path / "synth [red] :x:"  # printed as it is: no rich markup, no emoji
    made = donet("synth", out, "--n", 4, "--size", 128, 192, "--seed", 7, "--cells", 3, 5)
    assert made.returncode == 0, made.stderr
    assert f"wrote 4 images to {out}" in made.stderr.splitlines()
    assert "[red] :x:" in " ".join(donet("data", "stats", out).stdout.split())
    assert len(list((out / "images").glob("*.png"))) == 4
    figures = json.loads(donet("data", "stats", out, "--json").stdout)
    assert figures["images"] == 4 and 12 <= figures["cytoplasm_instances"] <= 20
    assert figures["image_sizes"] == ["192x128"]
    before = (out / "annotations.json").read_bytes()
    again = donet("synth", out, "--n", 2)
    one_line_error(again, str(out), "already exists")
    assert (out / "annotations.json").read_bytes() == before


def test_cluster_augmentor_offline_from_a_dataset(tmp_path):
    assert donet("synth", tmp_path / "src", "--n", 3, "--size", 160, 160).returncode == 0
    made = donet("synth", tmp_path / "aug", "--from", tmp_path / "src", "--n", 3, "--size", 200, 240,
                 "--cells", 4, 4, "--overlap", 0.1, 0.2)
    assert made.returncode == 0, made.stderr
    figures = json.loads(donet("data", "stats", tmp_path / "aug", "--json").stdout)
    # --overlap 0.1-0.2 is obeyed (the default goes up to 0.3).
    assert figures["cytoplasm_instances"] == 12 and 0.05 < figures["overlap_share"] < 0.2


def test_failure_mid_way_leaves_no_partial_output(tmp_path):
    assert donet("synth", tmp_path / "src", "--n", 3, "--size", 128, 128).returncode == 0
    broken = sorted((tmp_path / "src" / "images").glob("*.png"))[2]
    broken.write_bytes(broken.read_bytes()[:100])
    result = donet("synth", tmp_path / "aug", "--from", tmp_path / "src", "--n", 2)
    one_line_error(result, broken.name, "not a readable image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("split, gt, images, cells", [
    ("isbi2014_train", "isbi_train_GT.mat", 45, 270),
    ("isbi2014_test", "isbi_test90_GT.mat", 90, 540),
])
def test_stats_on_both_isbi_layouts(isbi, split, gt, images, cells):
    for args in ([isbi / split], [isbi / "challenge_mat" / gt, "--images", isbi / split / "orig"]):
        result = donet("data", "stats", *args, "--json")
        assert result.returncode == 0, result.stderr
        figures = json.loads(result.stdout)
        assert (figures["images"], figures["cytoplasm_instances"]) == (images, cells)


def test_bad_paths_give_one_line_errors(tmp_path):
    one_line_error(donet("data", "stats", tmp_path / "nothing"), "nothing", "no such file")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(donet("data", "stats", tmp_path / "notes.txt"), "unrecognised dataset layout")
    (tmp_path / "broken.json").write_text("{ not json")
    one_line_error(donet("data", "stats", tmp_path / "broken.json"), "broken.json", "not valid JSON")
    # A bad training set is refused before the run folder exists, so the corrected command works.
    one_line_error(donet("train", "--train", tmp_path / "missing", "--out", tmp_path / "run"), "missing")
    assert not (tmp_path / "run").exists()
    # Names (and other programs' errors) in brackets are printed as they are, not read as markup.
    (tmp_path / "[red] notes.txt").write_text("hello")
    one_line_error(donet("data", "stats", tmp_path / "[red] notes.txt"), "[red] notes.txt")


def test_every_inference_setting_is_a_predict_option_passed_on_with_its_default(tmp_path, monkeypatch):
    from typer.main import get_command
    from typer.testing import CliRunner

    from donet.cli import app
    from donet.inference import InferenceSettings

    options = {param.name: param for param in get_command(app).commands["predict"].params}
    for name, field in InferenceSettings.model_fields.items():
        assert name in options, f"InferenceSettings.{name} has no donet predict option"
        assert options[name].help == field.description, name
        assert options[name].default in (None, field.default), name

    given = {}

    def capture(cls, **options):
        given.update(options)
        raise SystemExit(0)

    monkeypatch.setattr(InferenceSettings, "of", classmethod(capture))
    CliRunner().invoke(app, ["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")])
    assert set(given) == set(InferenceSettings.model_fields)
