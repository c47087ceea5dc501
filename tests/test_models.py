import pytest
import torch

from repro import models

OFFLINE_BUILDABLE = ["cnn-small", "bert-micro", "resnet18", "resnet50", "minilm"]


def _batch(name: str, n: int = 3):
    if not models.is_text(name):
        return torch.randn(n, 3, 32, 32)
    ids = torch.randint(1000, 2000, (n, 12))
    mask = torch.ones(n, 12, dtype=torch.long)
    mask[0, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros(n, 12, dtype=torch.long)}


@pytest.mark.parametrize("name", OFFLINE_BUILDABLE)
def test_forward_is_head_of_features(name):
    torch.manual_seed(0)
    model = models.build(name, n_classes=3, pretrained=name == "minilm").eval()
    x = _batch(name)
    with torch.no_grad():
        f = model.features(x)
        logits = model(x)
    assert f.shape == (3, model.head.in_features) and isinstance(model.head, torch.nn.Linear)
    assert logits.shape == (3, 3)
    torch.testing.assert_close(logits, model.head(f))


def test_cnn_small_dims():
    model = models.build("cnn-small", 2, False)
    assert model.head.in_features == 128
    assert models.build("cnn-small", 2, False, widths=(8, 16)).head.in_features == 16


def test_text_padding_is_trimmed_and_ignored():
    torch.manual_seed(0)
    model = models.build("bert-micro", 2, False).eval()
    x = _batch("bert-micro")
    padded = {k: torch.cat([v, torch.zeros(3, 20, dtype=torch.long)], 1) for k, v in x.items()}
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.features(padded))


def test_minilm_is_pretrained_offline():
    model = models.build("minilm", 2, pretrained=True)
    tok = models.tokenizer("minilm")
    assert model.backbone.bert.config.hidden_size == 384 and tok.vocab_size == 30522
    assert models.tokenizer("bert-micro").vocab_size == 30522


def test_paper_berts_from_random_weights_tokenize_offline():
    """Built from the package's configs without network access, they read MiniLM's tokenizer (the same uncased
    WordPiece vocabulary); pretrained ones their own."""
    assert models.tokenizer_id("bert-base", pretrained=False) == models.tokenizer_id("minilm")
    assert models.tokenizer("bert-tiny", pretrained=False).vocab_size == 30522
    assert models.tokenizer_id("bert-base") == "bert-base-uncased"


def test_errors():
    with pytest.raises(ValueError, match="cnn-small"):
        models.build("vgg", 2, False)
    with pytest.raises(ValueError, match="pretrained=False"):
        models.build("bert-micro", 2, True)
    with pytest.raises(ValueError, match="no tokenizer"):
        models.tokenizer("cnn-small")


def test_missing_resnet_weights_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(RuntimeError, match=r"resnet18.*hub/checkpoints/resnet18-"):
        models.build("resnet18", 2, pretrained=True)
