"""Text-only contrastive fine-tuning of TARA: triplets with hard negatives, InfoNCE, Ray Train.

May import: `errors`, `io/`, `models/`, `config`, `cluster`. Only loop.py imports Ray (Train and Data).

    triplets/   make-triplets: generators per kind of hard negative, the chiral lexicon, tables, the command
    config.py   TrainConfig (the paper's hyperparameters as defaults)
    data.py     reading and mixing triplet files once; the deterministic batch schedule (exact resume)
    model.py    the LLM of a checkpoint only, pooling as inference does, merging the trained LLM back
    loss.py     one-directional InfoNCE over the all-gathered batch (the loss owns the gather)
    loop.py     the Ray Train worker loop and the driver (fit, then merge into a complete checkpoint)
"""
