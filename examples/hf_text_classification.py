"""Record a Hugging Face Trainer run with dyn: a tiny BERT on a synthetic sentiment task.

Nothing is downloaded: the model is built from a `BertConfig` (2 layers, width 32) with random
initial weights, and the "text" is generated here: sentences of 12 words from a 24-word
vocabulary, labelled positive when they hold more "good" words than "bad" ones. dyn's
RecordEMACallback keeps an EMA network per decay and records SGD and every EMA network on val
and test at epoch 0 and every epoch end; with `train_labels=` and dyn's RecordingTrainer (a
Trainer that hands the callback each training batch's logits) it also records every training
example's correctness, probability and margin from the training forward pass
(`train-presented`). The Trainer saves `checkpoint-N/` folders as usual, which
`dyn import checkpoints` reads as a run of their own:

    python examples/hf_text_classification.py --out runs/hf.h5 --output-dir runs/hf-trainer/
    dyn analyze report runs/hf.h5 --out-dir report/
    dyn import checkpoints runs/hf-trainer/ --sgd-key model --ema-key ema-0.99 --out runs/hf-ck.h5
    python examples/hf_text_classification.py --out runs/hf.h5 --output-dir runs/hf-trainer/ --resume  # after a kill

Needs `pip install dyn-ema[train,hf]`. About 30 s on 2 CPU cores, most of it imports.
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

from dyn.train.hf import RecordEMACallback, RecordingTrainer

GOOD = ["good", "great", "fine", "nice", "superb", "lovely"]
BAD = ["bad", "awful", "poor", "nasty", "dire", "grim"]
NEUTRAL = ["the", "a", "film", "plot", "was", "and", "it", "very", "actor", "scene", "music", "end"]
VOCAB = ["[PAD]", "[CLS]", *GOOD, *BAD, *NEUTRAL]
LENGTH = 12


def sentences(n, seed):
    """(input_ids (n, 1 + LENGTH), labels (n,)): [CLS] + 12 words; label 1 iff more GOOD than BAD."""
    g = torch.Generator().manual_seed(seed)
    sentiment = torch.randint(0, 2, (n, LENGTH), generator=g) * 2 - 1  # +1 good, -1 bad, where used
    used = torch.rand(n, LENGTH, generator=g) < 0.4
    used[:, 0] = True  # at least one sentiment word...
    odd = used.sum(1) % 2 == 0  # ...and an odd number of them: no ties
    used[odd, 1] = ~used[odd, 1]
    word = torch.randint(0, len(GOOD), (n, LENGTH), generator=g)
    neutral = torch.randint(0, len(NEUTRAL), (n, LENGTH), generator=g)
    ids = torch.where(used, torch.where(sentiment > 0, 2 + word, 2 + len(GOOD) + word), 2 + 2 * len(GOOD) + neutral)
    labels = ((sentiment * used).sum(1) > 0).long()
    return torch.cat([torch.ones(n, 1, dtype=torch.long), ids], 1), labels


class Sentences(torch.utils.data.Dataset):
    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def features(ids):
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def main(argv=None, callbacks=()):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/hf-text.h5"), help="run file to write (replaced unless --resume)")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="the Trainer's output_dir, where it saves checkpoint-N/ (default: <out>.trainer/)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--decays", default="0.9,0.99", help="comma list: one EMA network per decay")
    p.add_argument("--accumulate", type=int, default=1, help="gradient_accumulation_steps")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint-N/ in --output-dir (and --out) after a kill")
    args = p.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))

    train, val, test = sentences(640, 0), sentences(200, 1), sentences(200, 2)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=LENGTH + 1, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    record = RecordEMACallback(args.out, decays=[float(d) for d in args.decays.split(",")],
                               val=(features(val[0]), val[1]), test=(features(test[0]), test[1]),
                               num_classes=2, overwrite=not args.resume, train_labels=train[1])
    targs = TrainingArguments(
        output_dir=str(args.output_dir or args.out.with_suffix(".trainer")), num_train_epochs=args.epochs,
        per_device_train_batch_size=32, gradient_accumulation_steps=args.accumulate, learning_rate=3e-3,
        warmup_steps=0, weight_decay=0.0, save_strategy="epoch", eval_strategy="no", logging_strategy="no",
        report_to=[], use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0)
    trainer = RecordingTrainer(model=model, args=targs, train_dataset=Sentences(*train),
                               callbacks=[record, *callbacks])
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    print(f"wrote {args.out} and {targs.output_dir}/checkpoint-N/\nAnalyse them:\n  dyn inspect {args.out}\n"
          f"  dyn analyze report {args.out} --out-dir report/\n"
          f"  dyn import checkpoints {targs.output_dir} --sgd-key model --ema-key {record.ema.names[-1]} "
          "--out checkpoints.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
