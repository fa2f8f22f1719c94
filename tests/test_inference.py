"""The inference engine: batched pasting, batching across images and read-ahead change
nothing; the command line answers without torch; settings are refused in one line."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection.roi_heads import paste_masks_in_image

import donet
from donet.data import CellClass
from donet.errors import DonetError
from donet.evaluation import model_predictions
from donet.io import read_predictions
from donet.modeling import image_tensor
from donet.inference import Exports, InferenceSettings, Segmenter, segment_files
from donet.inference.paste import paste_thresholded
from donet.inference.settings import GPU_BATCH_SIZE
from donet.io import open_dataset


def torchvision_paste(prob, box, threshold, spare=64):
    """One detection as torchvision pastes it, cut to a canvas 2 pixels wider than its box.
    It is pasted with `spare` pixels more above and to the left, so that its widened box's
    corners are positive, as they are in an image (torchvision truncates them to integers)."""
    left, top = int(torch.floor(box[0])) - 2, int(torch.floor(box[1])) - 2
    local = box - torch.tensor([left - spare, top - spare] * 2, dtype=box.dtype)
    size = (int(torch.ceil(local[3])) + 3, int(torch.ceil(local[2])) + 3)
    pasted = paste_masks_in_image(prob[None, None], local[None], size, padding=1)[0, 0, spare:, spare:]
    return top, left, (pasted >= threshold).numpy()


def test_batched_paste_matches_torchvision_detection_by_detection():
    generator = torch.Generator().manual_seed(0)
    for size in (28, 56):
        # Smooth masks, as a mask head gives: a blurred random field.
        probs = torch.nn.functional.avg_pool2d(torch.rand(120, 1, size + 6, size + 6, generator=generator), 7,
                                               stride=1)[:, 0]
        corner = torch.rand(120, 2, generator=generator) * 3000 - 100
        extent = torch.rand(120, 2, generator=generator) ** 2 * 400 + 0.5
        boxes = torch.cat([corner, corner + extent], dim=1)
        thresholds = torch.where(torch.arange(120) % 2 == 0, 0.5, 0.45)
        pasted = paste_thresholded(probs, boxes, thresholds)
        differing = total = 0
        for k, (top, left, mask) in enumerate(pasted):
            expected_top, expected_left, expected = torchvision_paste(probs[k], boxes[k], float(thresholds[k]))
            assert (top, left, mask.shape) == (expected_top, expected_left, expected.shape)
            differing += int((mask != expected).sum())
            total += mask.size
        # float rounding may flip a pixel lying exactly at the threshold, nothing more
        assert differing <= total * 1e-5


@pytest.fixture(scope="module")
def model():
    return donet.load_model()


@pytest.fixture(scope="module")
def fields(isbi):
    """Three real 512 x 512 train45 images and one wider one made of two (two tiles of 512)."""
    samples = open_dataset(isbi / "isbi2014_train")
    images = [samples[i].image for i in (0, 7, 44)]
    return images[:2] + [np.concatenate([images[0], images[2]], axis=1)] + images[2:]


def same_instances(first, second):
    assert [(i.id, i.category, i.parent) for i in first] == [(i.id, i.category, i.parent) for i in second]
    assert [i.rle["counts"] for i in first] == [i.rle["counts"] for i in second]
    assert np.allclose([i.score for i in first], [i.score for i in second], atol=1e-5)


def test_batch_size_and_readers_change_nothing(model, fields):
    settings = {"device": "cpu", "tile": 512, "overlap": 160}
    alone = [Segmenter(model, **settings, batch_size=1, workers=0).segment(image) for image in fields]
    assert sum(len(r.cells) for r in alone) >= 20
    for batch_size, workers in ((3, 0), (2, 2), (4, 1)):
        segmenter = Segmenter(model, **settings, batch_size=batch_size, workers=workers)
        results = list(segmenter.segment_many(fields))
        assert [r.name for r in results] == ["image"] * len(fields) and all(r.problem is None for r in results)
        for expected, done in zip(alone, results):
            same_instances(expected.instances, done.instances)
    # Only an image that is one tile keeps its raw detection (for the heatmaps).
    assert [done.detection is not None for done in results] == [True, True, False, True]


def test_the_cpu_engine_detects_what_the_model_itself_detects(model, fields):
    """The engine's CPU copy (BatchNorm folded, channels-last, its own layout changes for
    RoIAlign) computes the model's numbers within float rounding."""
    segmenter = Segmenter(model, device="cpu")
    images = [fields[0], fields[1], fields[3]]
    with torch.inference_mode():
        expected = model.eval()([image_tensor(image) for image in images])
    assert sum(len(e["boxes"]) for e in expected) >= 15
    for image, wanted in zip(images, expected):
        found = segmenter.detect([image])[0]
        assert found.keys() == wanted.keys()
        assert torch.equal(found["labels"], wanted["labels"])
        for key in wanted.keys() - {"labels"}:  # every output: masks, heatmaps and attention map too
            tolerance = 1e-3 if key.endswith("boxes") else 1e-4
            assert torch.allclose(found[key], wanted[key], atol=tolerance), (key, (found[key] - wanted[key]).abs().max())


def test_one_batch_through_the_network_gives_each_image_what_it_gives_alone(model, fields):
    """The GPU's path, a batch in one forward pass, run here on the CPU through the same code:
    each image's cells and nuclei as when it is detected alone."""
    segmenter = Segmenter(model, device="cpu", tile=512)
    images = [fields[0], fields[1], fields[3]]
    with torch.inference_mode(), segmenter._input_size(images[0].shape[:2], 1.0):
        together = segmenter._forward_together(images)
    alone = [segmenter.detect([image])[0] for image in images]
    assert sum(len(d["boxes"]) for d in alone) >= 15
    for image, found, expected in zip(images, together, alone):
        assert torch.equal(found["labels"], expected["labels"])
        assert all(found[key].dtype == expected[key].dtype for key in expected)
        same_instances(segmenter._segment_at(image, "image", 1.0, detection=expected)[0].instances,
                       segmenter._segment_at(image, "image", 1.0, detection=found)[0].instances)


def test_a_gpu_steps_through_a_larger_batch_unless_one_is_given():
    unset = InferenceSettings.of(batch_size=None)  # as the command line passes an option left out
    assert unset.on_device("cpu").batch_size == 2
    assert unset.on_device("cuda").batch_size == unset.on_device("mps").batch_size == GPU_BATCH_SIZE > 2
    given = InferenceSettings.of(batch_size=2)
    assert given.on_device("cuda").batch_size == 2 and given.on_device("cuda").model_dump() == given.model_dump()


def test_a_batch_of_mixed_sizes_gives_each_image_what_it_gives_alone(model, fields):
    """Images of different sizes in one call run a size at a time (the network's input size is
    set per size) and come back in order; on the CPU, two at once in two threads."""
    segmenter = Segmenter(model, device="cpu")
    images = [fields[0], fields[1][:300, :400], fields[1], fields[3][100:, :], fields[3]]  # three of 512 x 512
    together = segmenter.detect(images)
    assert len(together) == len(images)
    for image, found in zip(images, together):
        alone = segmenter.detect([image])[0]
        assert found.keys() == alone.keys() and len(alone["boxes"]) > 0
        assert all(torch.equal(found[key], alone[key]) for key in alone), image.shape


def test_images_detected_from_the_image_workers_themselves_run_there(model, fields):
    """A `detect` called on the CPU workers (two at once, as a user's callback might) runs its
    images in place: waiting on the same two workers would never end."""
    from donet.inference.segmenter import _image_threads

    segmenter = Segmenter(model, device="cpu")
    pair = [fields[0], fields[1]]
    expected = segmenter.detect(pair)
    calls = [_image_threads().submit(segmenter.detect, pair) for _ in range(2)]
    for call in calls:
        found = call.result(timeout=300)
        assert all(torch.equal(f["scores"], e["scores"]) for f, e in zip(found, expected))


def test_files_are_reported_in_order_with_the_problem_of_a_bad_one(model, fields, tmp_path):
    paths = []
    for k, image in enumerate(fields[:2]):
        paths.append(tmp_path / f"f{k}.png")
        Image.fromarray(image).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths.insert(1, tmp_path / "broken.png")
    out = tmp_path / "out"
    out.mkdir()
    heard = []
    report = segment_files(Segmenter(model, device="cpu", batch_size=2), paths, out, Exports(geojson=True),
                           on_input=heard.append)
    assert [item.name for item in report.inputs] == ["f0", "broken", "f1"] == [item.name for item in heard]
    assert [item.problem is None for item in report.inputs] == [True, False, True]
    assert "not a readable image" in report.inputs[1].problem
    for item in (report.inputs[0], report.inputs[2]):
        assert item.outputs == [f"{item.name}.geojson"] and (out / item.outputs[0]).is_file()
        assert item.cells >= 1 and item.seconds > 0
    assert report.outputs == ["settings.json", "predictions.json"]
    # The counts are those of the predictions written.
    written = read_predictions(out / "predictions.json")
    for item in (report.inputs[0], report.inputs[2]):
        assert sum(i.category is CellClass.CYTOPLASM for i in written[f"../{item.name}.png"]) == item.cells


def test_reduced_precision_needs_cuda(model):
    with pytest.raises(DonetError, match="precision bf16 needs a CUDA device"):
        Segmenter(model, device="cpu", precision="bf16")
    with pytest.raises(DonetError, match="bad setting precision"):
        Segmenter(model, precision="fp8")


@pytest.mark.parametrize("arguments", [["--help"], ["--version"], ["predict", "--help"], ["predict"]])
def test_the_command_line_answers_without_torch(arguments):
    probe = ("import sys\nfrom donet.cli import main\nsys.argv = ['donet', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch loaded:', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, *arguments], capture_output=True, text=True, timeout=120)
    assert "torch loaded: False" in done.stdout, done.stdout + done.stderr
    if arguments == ["--version"]:
        assert done.stdout.startswith(f"donet {donet.__version__}")


def test_an_unreadable_dataset_image_is_one_clear_error(model, tmp_path):
    class Broken(list):
        def __getitem__(self, index):
            raise DonetError(tmp_path / "bad.png", "not a readable image")

    with pytest.raises(DonetError) as error:
        model_predictions(model, Broken([None]), device="cpu")
    assert str(error.value) == f"{tmp_path / 'bad.png'}: not a readable image"
