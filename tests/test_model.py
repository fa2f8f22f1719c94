import numpy as np
import pytest
import torch

import donet
from donet.data import SynthConfig, generate
from donet.errors import DonetError
from donet.modeling import LADDER, ConsistencyMode, build_model, image_tensor, training_target
from donet.modeling.crm import consistency_loss, soft_xor
from donet.modeling.donet import _contiguous
from donet.modeling.mrp import attention_map, paste_logits

SMALL = {"min_size": 128, "max_size": 256}


def batch(sizes=((128, 176), (144, 128)), seed=0):
    samples = [generate(i, SynthConfig(size=size, cells=(3, 5), cell_radius=(0.15, 0.22)), seed=seed)
               for i, size in enumerate(sizes)]
    return [image_tensor(s.image) for s in samples], [training_target(s) for s in samples]


@pytest.fixture(scope="module")
def donet_losses():
    torch.manual_seed(0)
    model = build_model("donet", **SMALL).train()
    images, targets = batch()
    return model, model(images, targets)


@pytest.mark.parametrize("preset", list(LADDER))
def test_every_preset_trains_and_predicts_on_non_square_batches(preset):
    torch.manual_seed(0)
    model = build_model(preset, **SMALL).train()
    images, targets = batch()
    losses = model(images, targets)
    # torchvision's RPN and box losses and the coarse mask; each rung adds its own and no other's,
    # and the nucleus stack (MRP) repeats the plain ones only: nuclei have no DRM or CRM.
    plain = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    expected = set(plain)
    if LADDER[preset]["drm"]:
        expected.add("loss_decomposition")
    if LADDER[preset]["crm"]:
        expected |= {"loss_recombined_mask", "loss_consistency"}
    if LADDER[preset]["mrp"]:
        expected |= {f"nucleus_{name}" for name in plain}
    assert losses.keys() == expected
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.roi_heads.mask_head.parameters())
    model.eval()
    sizes = [(96, 160), (128, 128), (150, 100)]
    with torch.no_grad():
        outputs = model([torch.rand(3, *s) for s in sizes])
    assert len(outputs) == 3
    for output, size in zip(outputs, sizes):
        n = len(output["boxes"])
        assert output["mask_probs"].shape == (n, 28, 28) and output["scores"].shape == (n,)
        assert (output["boxes"][:, 2] <= size[1] + 1e-3).all() and (output["boxes"][:, 3] <= size[0] + 1e-3).all()
        assert ("intersection_probs" in output) == LADDER[preset]["drm"]
        if LADDER[preset]["mrp"]:
            assert output["attention"].shape == size
            if model.config.mrp_attention:
                # Raised (above its 0.5 floor) inside detected cells' boxes only.
                attention, far = output["attention"], torch.ones(size, dtype=torch.bool)
                for x0, y0, x1, y1 in output["boxes"][output["labels"] == 1].int().tolist():
                    far[max(0, y0 - 8):y1 + 9, max(0, x0 - 8):x1 + 9] = False
                assert attention.min() == 0.5 and attention.max() > 0.5 and torch.all(attention[far] == 0.5)
            else:  # the control rung: M = 1
                assert torch.all(output["attention"] == 1)


def grads_of(module):
    return [p.grad for p in module.parameters()]


def test_gradients_reach_every_new_module(donet_losses):
    model, losses = donet_losses
    model.zero_grad()
    sum(losses.values()).backward(retain_graph=True)
    drm = model.roi_heads.drm
    for module in (drm.intersection_head, drm.complement_head, drm.intersection_unit, drm.complement_unit,
                   model.roi_heads.fusion, model.nucleus_rpn, model.backbone):
        grads = grads_of(module)
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), module.__class__


def test_nucleus_losses_train_the_cell_stack_and_backbone_through_the_attention_map(donet_losses):
    model, losses = donet_losses
    model.zero_grad()
    sum(v for k, v in losses.items() if k.startswith("nucleus_")).backward(retain_graph=True)
    # The cell stack's mask heads feed the nucleus stack only through the attention map.
    for module in (model.roi_heads.fusion, model.roi_heads.mask_head, model.roi_heads.drm.complement_head):
        assert any(g is not None and g.abs().sum() > 0 for g in grads_of(module))
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.rpn.parameters())
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0


def test_instance_head_is_reused_not_copied():
    model = build_model("drm_crm", **SMALL).train()
    calls = []
    model.roi_heads.mask_head.convs.register_forward_hook(lambda *_: calls.append(1))
    model.roi_heads.mask_head.predictor.register_forward_hook(lambda *_: calls.append(2))
    model(*batch())
    assert calls.count(1) == 2 and calls.count(2) == 2  # coarse pass and recombined pass
    heads = [m for m in model.modules() if m.__class__.__name__ == "MaskHead"]
    assert len(heads) == 3  # H_i, H_o, H_m: no hidden copy of H_i


def test_consistency_loss_gradient_by_mode():
    shape = (4, 3, 28, 28)
    r, o, m = (torch.randn(shape, requires_grad=True) for _ in range(3))
    labels = torch.tensor([1, 2, 1, 1])
    soft = consistency_loss(r, o, m, labels, ConsistencyMode.SOFT, detach_merge=False)
    soft.backward()
    assert r.grad.abs().sum() > 0 and o.grad.abs().sum() > 0 and m.grad.abs().sum() > 0
    o.grad = None
    consistency_loss(r, o, m, labels, ConsistencyMode.SOFT, detach_merge=True).backward()
    assert o.grad is None
    official = consistency_loss(r, o, m, labels, ConsistencyMode.OFFICIAL, detach_merge=False)
    assert not official.requires_grad and official > 0
    assert torch.allclose(soft_xor(torch.tensor([0.0, 1, 0, 1]), torch.tensor([0.0, 0, 1, 1])),
                          torch.tensor([0.0, 1, 1, 0]))


def test_official_mode_model_consistency_loss_has_no_gradient():
    model = build_model("drm_crm", consistency_mode="official", **SMALL).train()
    losses = model(*batch())
    assert not losses["loss_consistency"].requires_grad and losses["loss_recombined_mask"].requires_grad


def test_attention_map_is_the_sigmoid_of_the_summed_positive_logits_pasted_at_their_boxes():
    boxes = torch.tensor([[8.0, 8.0, 24.0, 40.0]])
    logits = torch.full((1, 28, 28), 3.0)
    pasted = paste_logits(boxes, logits, (16, 16), stride=4)[0]
    inside = pasted[3:9, 3:5]  # cells whose centres lie well inside the box
    assert torch.allclose(inside, torch.tensor(3.0)) and pasted[12:, 8:].abs().max() == 0
    attention = attention_map([(boxes, -logits), (boxes, logits)], (16, 16), 4)
    assert attention.shape == (2, 1, 16, 16)
    assert torch.all(attention[0] == 0.5)  # negative logits are cut by the ReLU
    assert torch.allclose(attention[1, 0, 2:10, 2:6], torch.sigmoid(torch.tensor(3.0)))
    assert torch.all(attention[1, 0, :, 7:] == 0.5) and torch.all(attention[1, 0, 11:] == 0.5)
    # Two cells: their logits add up where both boxes cover a P2 cell (centres x = 4k + 2).
    second = torch.tensor([[16.0, 8.0, 40.0, 40.0]])
    both = attention_map([(torch.cat([boxes, second]), torch.cat([logits, torch.full((1, 28, 28), 2.0)]))],
                         (16, 16), 4)[0, 0]
    sigmoid = torch.sigmoid(torch.tensor([3.0, 5.0, 2.0]))
    assert torch.allclose(both[2:10, 2:4], sigmoid[0]) and torch.allclose(both[2:10, 4:6], sigmoid[1])
    assert torch.allclose(both[2:10, 6:10], sigmoid[2]) and torch.all(both[:, 11:] == 0.5)
    # Very confident cells saturate below 1: the map stays inside [0.5, 1).
    saturated = attention_map([(boxes, torch.full((1, 28, 28), 40.0))], (16, 16), 4)
    assert saturated.max() == torch.sigmoid(torch.tensor(15.0)) < 1


def test_features_for_roialign_keep_their_values_in_every_layout():
    """The blocked transpose out of channels-last gives each image of a batch its own values,
    whatever the layout it is handed, and passes gradients back unchanged."""
    generator = torch.Generator().manual_seed(0)
    levels = [torch.randn(2, 16, 12, 20, generator=generator).contiguous(memory_format=torch.channels_last),
              torch.randn(3, 8, 6, 4, generator=generator).contiguous(memory_format=torch.channels_last),
              torch.randn(1, 1, 5, 7, generator=generator),
              torch.randn(1, 8, 12, 10, generator=generator)[:, :, 2:9, 1:7]]  # a slice: neither layout
    for level in levels:
        laid_out = _contiguous(level)
        assert laid_out.is_contiguous() and torch.equal(laid_out, level)
    level = levels[0].clone().requires_grad_()
    weights = torch.randn(level.shape, generator=generator)
    (_contiguous(level) * weights).sum().backward()
    assert torch.equal(level.grad, weights)


def test_crowded_image_yields_more_than_100_detections():
    config = SynthConfig(size=(1024, 1024), cells=(150, 150), clusters=(40, 40), cell_radius=(0.02, 0.03),
                         overlap=(0.0, 0.2))
    sample = generate(0, config, seed=0)
    assert len(sample.cells) == 150
    torch.manual_seed(0)
    model = build_model("maskrcnn", min_size=1024, max_size=1024).eval()
    with torch.no_grad():
        detections = model([image_tensor(sample.image)])[0]
    assert len(detections["boxes"]) > 100  # the default cap is 300, not torchvision's 100
    capped = build_model("maskrcnn", min_size=1024, max_size=1024, detections_per_img=100).eval()
    capped.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert len(capped([image_tensor(sample.image)])[0]["boxes"]) == 100


def test_weights_round_trip_and_refuse_another_preset(tmp_path):
    torch.manual_seed(0)
    model = build_model("donet", **SMALL)
    donet.save_weights(model, tmp_path / "m.safetensors")
    loaded = donet.load_model(tmp_path / "m.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(DonetError, match="another model"):
        donet.load_weights(build_model("maskrcnn", **SMALL), tmp_path / "m.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(DonetError, match="not a readable"):
        donet.load_weights(model, tmp_path / "bad.safetensors")


def test_every_way_of_loading_predicts_at_the_checkpoint_scale(tmp_path):
    torch.manual_seed(0)
    donet.save_weights(build_model("donet", min_size=320, max_size=640, train_image_size=320, cell_diameter=50.0),
                       tmp_path / "m.safetensors")
    image = generate(0, SynthConfig(size=(320, 320)), seed=0).image
    by_file = donet.load_model(tmp_path / "m.safetensors")
    into_preset = donet.load_weights(build_model("donet"), tmp_path / "m.safetensors")  # built for 512 px
    assert into_preset.config.min_size == 320 and into_preset.config.cell_diameter == 50.0
    first, second = donet.Segmenter(by_file).detect([image])[0], donet.Segmenter(into_preset).detect([image])[0]
    assert len(first["boxes"]) > 0 and torch.equal(first["boxes"], second["boxes"])
    with pytest.raises(DonetError, match="nucleus_mask_roi_size"):
        donet.load_weights(build_model("donet", nucleus_mask_roi_size=28), tmp_path / "m.safetensors")


def test_three_line_api_on_a_gray_numpy_image(tmp_path):
    model = build_model("donet", **SMALL)
    donet.save_weights(model, tmp_path / "m.safetensors", half=True)
    image = generate(0, SynthConfig(size=(128, 160)), seed=0).image

    model = donet.build_model("donet", **SMALL)
    donet.load_weights(model, tmp_path / "m.safetensors")
    result = donet.segment(model, image, score_threshold=0.0)

    assert result.image is image and len(result.instances) > 0
    assert all(inst.shape == (128, 160) for inst in result.instances)
    # Each instance keeps the score and class of a detection of the network.
    raw = donet.Segmenter(model, score_threshold=0.0).detect([image])[0]
    scored = {(int(label), round(float(score), 5)) for label, score in zip(raw["labels"], raw["scores"])}
    assert all((int(inst.category), round(inst.score, 5)) in scored for inst in result.instances)
    cell_ids = {c.id for c in result.cells}
    assert all(n.parent is None or n.parent in cell_ids for n in result.nuclei)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="crm needs drm"):
        build_model("maskrcnn", crm=True)
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("unet")


def test_16_bit_pixels_give_the_intensities_of_the_same_8_bit_pixels_gray_replicated_alpha_dropped():
    rng = np.random.default_rng(0)
    for shape in ((5, 6), (5, 6, 1), (5, 6, 3), (5, 6, 4)):
        eight = rng.integers(0, 256, shape, dtype=np.uint8)
        sixteen = eight.astype(np.uint16) * 257  # 255 -> 65535
        expected = torch.from_numpy(eight / 255.0).float()
        expected = expected.expand(3, -1, -1) if eight.ndim == 2 else expected.permute(2, 0, 1)[:3].expand(3, -1, -1)
        read_only = np.lib.stride_tricks.as_strided(eight)  # as a memory map's pages
        read_only.flags.writeable = False
        for pixels in (eight, sixteen, read_only):
            assert torch.allclose(image_tensor(pixels), expected)


def test_backbone_weights_load_from_a_local_file(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(1)
    reference = resnet18(weights=None)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    model = build_model("maskrcnn", backbone_weights=str(tmp_path / "r18.safetensors"), **SMALL)
    assert torch.equal(model.backbone.body.conv1.weight, reference.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(DonetError, match="do not fit"):
        build_model("maskrcnn", backbone_weights=str(tmp_path / "wrong.pth"), **SMALL)


@pytest.mark.parametrize("preset", ["maskrcnn", "donet"])
def test_cell_masks_are_taken_in_boxes_grown_by_the_margin(preset):
    from donet.modeling.roi_heads import grown

    torch.manual_seed(0)
    model = build_model(preset, mask_box_margin=0.25, box_score_thresh=0.0, **SMALL).train()
    images, targets = batch()
    assert torch.isfinite(sum(model(images, targets).values()))
    model.eval()
    with torch.no_grad():  # an image the transform enlarges: mask boxes are mapped back like boxes
        [output] = model([torch.rand(3, 64, 80)])
    cells = output["labels"] == 1
    assert cells.any() and (~cells).any()
    assert torch.allclose(output["mask_boxes"][cells], grown(output["boxes"][cells], 0.25), atol=1e-3)
    assert torch.equal(output["mask_boxes"][~cells], output["boxes"][~cells])  # nuclei keep their boxes
    assert torch.equal(grown(torch.tensor([[10.0, 20, 50, 40]]), 0.25), torch.tensor([[0.0, 15, 60, 45]]))


def test_training_learns_cell_masks_in_the_grown_boxes_too():
    from donet.modeling.roi_heads import grown

    images, targets = batch()
    seen = {}
    for margin in (0.0, 0.25):
        torch.manual_seed(0)
        model = build_model("donet", mask_box_margin=margin, **SMALL).train()
        rois = []
        model.roi_heads.mask_roi_pool.register_forward_hook(lambda module, args, out: rois.append(args[1]))
        torch.manual_seed(1)  # the same proposals sampled
        model(images, targets)
        seen[margin] = rois
    assert len(seen[0.0]) == len(seen[0.25]) == 2  # the sampled positives, then the true cells for MRP
    for plain, wide in zip(seen[0.0], seen[0.25]):
        assert all(torch.allclose(b, grown(a, 0.25)) for a, b in zip(plain, wide))
        assert any(len(a) for a in plain)


def test_enlargement_the_cells_ask_for_is_bicubic_and_everything_else_torchvisions():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from donet.inference import Segmenter
    from donet.modeling.transform import InputTransform

    def resized(transform, image, targets=None):
        batch = transform([image], targets)[0]
        h, w = batch.image_sizes[0]
        return batch.tensors[0, :, :h, :w], batch.image_sizes

    image = torch.rand(3, 40, 48)
    ours, theirs = (cls(80, 200, [0.5] * 3, [0.2] * 3).eval() for cls in (InputTransform, GeneralizedRCNNTransform))
    torch.testing.assert_close(resized(ours, image), resized(theirs, image))  # not asked: torchvision's
    ours.enlarge_sharply = True
    enlarged, sizes = resized(ours, image)
    bicubic = torch.nn.functional.interpolate(((image - 0.5) / 0.2)[None], size=(80, 96), mode="bicubic")[0]
    torch.testing.assert_close(enlarged, bicubic)
    assert sizes == resized(theirs, image)[1] and not torch.allclose(enlarged, resized(theirs, image)[0])
    for odd in (torch.rand(3, 37, 51), torch.rand(3, 20, 90)):  # the second one limited by max_size
        assert resized(ours, odd)[1] == resized(theirs, odd)[1]
    target = [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([1])}]
    torch.testing.assert_close(resized(ours, image, target), resized(theirs, image, target))
    for transform in (ours, theirs):
        transform.min_size = (20,)  # shrinking
    torch.testing.assert_close(resized(ours, image), resized(theirs, image))
    for transform in (ours, theirs):
        transform.min_size = (80,)
        transform.train()
    torch.testing.assert_close(resized(ours, image), resized(theirs, image))

    # The Segmenter asks only where the cells are enlarged, not for the model's own input ratio.
    model = build_model("maskrcnn", "light", min_size=800, max_size=1333)
    assert isinstance(model.transform, InputTransform) and model.config.train_image_size == 512
    segmenter = Segmenter(model, device="cpu")
    for scale, sharp in ((1.0, False), (0.8, False), (2.0, True)):
        with segmenter._input_size((512, 512), scale):
            assert segmenter.network.transform.enlarge_sharply is sharp
    assert segmenter.network.transform.enlarge_sharply is False
