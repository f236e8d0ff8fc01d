"""A tiny detoxify checkpoint with random weights, built locally: a BERT sequence classifier
with detoxify's Jigsaw label names, saved in detoxify's checkpoint format (config +
state_dict), and the Hugging Face config + tokenizer dir it loads offline.

The scores it gives are whatever the random model computes; tests use it to drive the
real detoxify loading code, not to judge toxicity."""

from __future__ import annotations

from pathlib import Path

# The Jigsaw class names of detoxify's `original` model, before detoxify renames them.
CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
WORDS = (
    "you are a the an idiot stupid nice day have hate kill good great thanks for help "
    "weather today is sunny cloudy and it will rain tomorrow please go away"
).split()


def build(directory: Path, *, hidden: int = 16, layers: int = 1, max_len: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """(checkpoint path, HF config dir). One token per word of WORDS, so chunk boundaries
    fall on known words."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    hf = directory / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=max_len, num_labels=len(CLASSES),
        # Wide initial weights, so different texts get visibly different random scores.
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    config.save_pretrained(hf)
    # Positional: the vocab file is `vocab_file` in transformers 4 and `vocab` in 5.
    BertTokenizer(str(hf / "vocab.txt"), model_max_length=max_len).save_pretrained(hf)
    checkpoint = directory / "tiny-detoxify.ckpt"
    torch.save(
        {
            "config": {
                "arch": {"args": {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
                                  "tokenizer_name": "BertTokenizer", "num_classes": len(CLASSES)}},
                "dataset": {"args": {"classes": CLASSES}},
            },
            "state_dict": model.state_dict(),
        },
        checkpoint,
    )
    return checkpoint, hf
