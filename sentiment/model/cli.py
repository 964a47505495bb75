"""The command line of ``lstm.py``: one flag per :class:`~sentiment.model.config.Config`
field, ``--preset`` and ``--config``, and the run's own flags."""
import argparse
import os

from sentiment.model.config import (ADV_DIRECTIONS, DEVICES, LSTM_IMPLS, OPTIMIZERS, POOLINGS,
                                    PRESET_DIR, SIDES, Config, preset_names, read_config_file)


def add_training_args(parser, exclude=(), title="training options"):
    """Add a flag for each training option (a :class:`Config` field) to ``parser``.

    ``exclude`` names Config fields (``"optimizer"``, ``"seed"``, ...) to leave
    out, for a script that sets them itself. Returns the argument group.
    """
    d = Config()
    group = parser.add_argument_group(title)

    def a(flag, **kw):
        dest = kw.get("dest", flag[2:].replace("-", "_"))
        if dest not in exclude:
            group.add_argument(flag, **kw)

    a("--dim-proj", type=int, default=d.dim_proj,
      help="number of LSTM hidden units (and the word embedding size, unless --dim-emb)")
    a("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
      help="update rule: the tutorial's adadelta, rmsprop and sgd; adam, adamw (Adam "
           "with decoupled weight decay), nesterov (SGD with Nesterov momentum 0.9), "
           "adagrad (adadelta and rmsprop ignore --lrate: see --adaptive-lrate)")
    a("--lrate", type=float, default=d.lrate,
      help="learning rate for sgd, adam, adamw, nesterov and adagrad (adam's usual "
           "value: 0.001)")
    a("--adaptive-lrate", type=float, default=d.adaptive_lrate,
      help="> 0: a learning rate for adadelta (a factor on its step, as "
           "torch.optim.Adadelta's lr; the tutorial's rule: 1) or rmsprop (its step; "
           "the tutorial's: 1e-4); 0: the tutorial's rules")
    a("--max-epochs", type=int, default=d.max_epochs,
      help="maximum number of passes over the training set")
    a("--patience", type=int, default=d.patience,
      help="early stop after this many validations without progress")
    a("--maxlen", type=int, default=d.maxlen,
      help="drop training reviews of this many tokens or more (0: keep all)")
    a("--batch-size", type=int, default=d.batch_size, help="training minibatch size")
    a("--valid-batch-size", type=int, default=d.valid_batch_size,
      help="minibatch size when computing errors")
    a("--valid-freq", dest="validFreq", type=int, default=d.validFreq,
      help="compute train/valid/test errors every N updates (-1: every epoch)")
    a("--save-freq", dest="saveFreq", type=int, default=d.saveFreq,
      help="save the best model every N updates (-1: every epoch)")
    a("--disp-freq", dest="dispFreq", type=int, default=d.dispFreq,
      help="print the training cost every N updates")
    a("--decay-c", type=float, default=d.decay_c,
      help="weight decay (L2) on the classifier weights U")
    a("--no-dropout", dest="use_dropout", action="store_false",
      help="train without dropout on the pooled hidden state")
    a("--n-words", type=int, default=d.n_words,
      help="vocabulary size: word ids >= N become 1 (unknown)")
    a("--valid-portion", type=float, default=d.valid_portion,
      help="share of the training set held out for validation")
    a("--valid-block", type=int, default=d.valid_block, metavar="N",
      help="> 0: the validation split is random runs of N consecutive reviews (file "
           "order) instead of random reviews; aclImdb's reviews of one movie are "
           "consecutive, so the held-out movies are mostly unseen, as in the test set")
    a("--no-sort-by-len", dest="sort_by_len", action="store_false",
      help="do not sort the splits by review length")
    a("--test-size", type=int, default=d.test_size,
      help="evaluate on this many random test reviews (0 or less: all)")
    a("--saveto", default=d.saveto,
      help="model file (.npz); its options go to .json and its log to .log.jsonl "
           "beside it ('' saves nothing)")
    a("--reload-model", default=d.reload_model, metavar="PATH",
      help="start from the parameters saved in this .npz model")
    a("--dataset", default=d.dataset, metavar="PATH",
      help="preprocessed corpus (imdb.pkl); built from --source if missing")
    a("--source", default=None, metavar="PATH",
      help="raw aclImdb folder or .tar.gz to build a missing --dataset from "
           "(default: $IMDB_SOURCE, then data/aclImdb_v1.tar.gz, then download)")
    a("--seed", type=int, default=d.seed,
      help="seed of every random stream (init, split, test subset, shuffle, dropout)")
    a("--mode", default=d.mode,
      help="PyTensor compile mode: CVM (C backend, default), NUMBA, FAST_COMPILE, ...")
    a("--lstm-impl", dest="lstm_impl", default=d.lstm_impl, choices=LSTM_IMPLS,
      help="the LSTM recurrence: fused (sentiment/kernels/fused_lstm.py's Ops, fast) or scan (the "
           "tutorial's formulation, the reference); the same function")
    a("--device", default=d.device, choices=DEVICES,
      help="cpu: PyTensor's C backend; gpu: the same model compiled by PyTensor's JAX "
           "backend, on the GPU (JAX on the CPU when there is none; needs "
           "requirements-gpu.txt); a resumed run goes on on the device given here")
    a("--dim-emb", type=int, default=d.dim_emb,
      help="word embedding size (0: --dim-proj, as the tutorial)")
    a("--bigram-buckets", type=int, default=d.bigram_buckets,
      help="> 0: add to each word's vector a learned vector of its (previous word, word) "
           "pair, hashed into this many buckets (0: none, as the tutorial)")
    a("--pool-embeddings", action="store_true",
      help="also feed the classifier the mean of the (word + bigram) embeddings over the "
           "review's tokens, beside the pooled LSTM states (a bag-of-n-grams path)")
    a("--layers", type=int, default=d.layers, help="number of stacked LSTM layers")
    a("--bidirectional", action="store_true",
      help="each LSTM layer also reads the review backwards (outputs concatenated)")
    a("--conv-filters", type=int, default=d.conv_filters,
      help="> 0: a convolution over time with this many filters (ReLU) before the LSTM")
    a("--conv-width", type=int, default=d.conv_width,
      help="the convolution's width in tokens ('same' padding)")
    a("--pool", type=int, default=d.pool,
      help="max-pooling over time after the convolution: window = stride = P steps")
    a("--pooling", choices=POOLINGS, default=d.pooling,
      help="hidden states -> one vector per review: mean (the tutorial), last (the "
           "state after the last real token), max, or meanmax (mean and max "
           "concatenated), over real tokens only")
    a("--pad-to", type=int, default=d.pad_to,
      help="> 0: pad/truncate every review to N tokens (Keras's pad_sequences) "
           "instead of dropping long reviews; use with --maxlen 0")
    a("--padding", choices=SIDES, default=d.padding,
      help="with --pad-to: pad before (pre) or after (post) the words")
    a("--truncating", choices=SIDES, default=d.truncating,
      help="with --pad-to: cut a long review's beginning (pre) or end (post)")
    a("--embeddings", default=d.embeddings, metavar="FILE",
      help="initialise Wemb from pre-trained vectors: word2vec/fastText .vec or GloVe "
           "text format, gzip too; coverage is reported")
    a("--freeze-embeddings", action="store_true",
      help="do not train Wemb (with --embeddings or --reload-model)")
    a("--forget-bias", type=float, default=d.forget_bias,
      help="initial bias of the LSTM forget gates (the tutorial: 0; Keras: 1)")
    a("--lrate-decay", type=float, default=d.lrate_decay,
      help="multiply the learning rate (sgd, adam) by this after each epoch (1: constant, "
           "as the tutorial)")
    a("--clip-c", type=float, default=d.clip_c,
      help="> 0: rescale the gradients when their global L2 norm exceeds this "
           "(0: no clipping, as the tutorial)")
    a("--ema", type=float, default=d.ema,
      help="> 0: keep an exponential moving average of the weights with this decay "
           "(e.g. 0.999) and validate, keep and save it instead of the raw weights "
           "(0: none, as the tutorial)")
    a("--weight-decay", type=float, default=d.weight_decay,
      help="adam and adamw: decoupled weight decay of the weight matrices, "
           "p -= lrate * weight_decay * p at each update (adam: 0 = none; adamw: 0 = "
           "torch.optim.AdamW's 0.01)")
    a("--word-dropout", type=float, default=d.word_dropout,
      help="training only: zero each token's embedding with this probability (word "
           "dropout; the tutorial: 0)")
    a("--u-dropout", type=float, default=d.u_dropout,
      help="training only: DropConnect on each LSTM's recurrent matrix U, one mask "
           "per minibatch, kept weights scaled by 1/(1 - p) (AWD-LSTM's weight drop, "
           "Merity et al. 2018; 0: none)")
    a("--adv-eps", type=float, default=d.adv_eps,
      help="> 0: adversarial training (Miyato et al. 2017): also train on each "
           "review's embeddings moved by this L2 norm along its loss gradient "
           "(about twice the time per update; 0: none)")
    a("--adv-direction", choices=ADV_DIRECTIONS, default=d.adv_direction,
      help="with --adv-eps: move the embeddings along the loss gradient (adversarial "
           "training) or in a random Gaussian direction of the same norm (the control "
           "of Miyato et al.: is it the worst move that helps, or any noise?)")
    a("--monitor", default=d.monitor,
      help="splits whose errors are computed, besides valid, at each validation "
           "(comma-separated: train,test; '' for none, faster); the final errors of "
           "the best model are always computed")
    a("--bucket", type=int, default=d.bucket, metavar="POOL",
      help="> 0: minibatches of reviews of similar length (each epoch's shuffled order "
           "is cut into pools of POOL minibatches, each sorted by length), so less "
           "padding is computed")
    return group



def add_config_args(parser):
    """``--preset NAME`` and ``--config FILE`` (read by :func:`parse_with_config`)."""
    parser.add_argument(
        "--preset", default=None, metavar="NAME",
        help="start from a named set of options, presets/NAME.json (%s); flags given "
             "on the command line win" % ", ".join(preset_names()))
    parser.add_argument(
        "--config", default=None, metavar="FILE",
        help="start from the options in this JSON file (e.g. a copy of a preset); "
             "applied after --preset, before the command-line flags")


def parse_with_config(parser, argv=None):
    """Parse ``argv`` with the options of ``--preset`` and ``--config`` as defaults:
    defaults < preset < config file < flags. Raises DataError on a bad file."""
    first, _ = parser.parse_known_args(argv)
    defaults = {}
    if first.preset:
        if first.preset not in preset_names():
            parser.error("unknown preset %r (choose from %s)"
                         % (first.preset, ", ".join(preset_names())))
        defaults.update(read_config_file(os.path.join(PRESET_DIR, first.preset + ".json")))
    if first.config:
        defaults.update(read_config_file(first.config))
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def build_parser():
    """The command line of ``lstm.py`` (``lstm.py predict`` has its own)."""
    p = argparse.ArgumentParser(
        description="Train the deeplearning.net tutorial's LSTM sentiment "
                    "classifier on IMDB (or a corpus made by imdb_preprocess.py). "
                    "With no option it runs the tutorial: train_lstm(max_epochs=100, "
                    "test_size=500). Also: 'lstm.py predict' classifies raw text with "
                    "a saved model; 'lstm.py evaluate' gives its accuracy, confusion "
                    "matrix and accuracy by review length (each has --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    add_config_args(p)
    add_training_args(p)
    a("--resume", default=None, metavar="CHECKPOINT",
      help="continue a run exactly from its checkpoint (<model>.ckpt.npz, written every "
           "--save-freq updates and on Ctrl-C); the checkpoint's options are used and "
           "the other options are ignored")
    a("--summary", action="store_true",
      help="print the model's layers, output shapes and parameter counts, then exit")
    a("--debug", action="store_true", help="show tracebacks on errors")
    return p


def parse_options(argv=None):
    """Parse ``lstm.py``'s command line: defaults < ``--preset`` < ``--config``
    < flags. Returns ``(parser, args)``; raises DataError on a bad config file."""
    parser = build_parser()
    return parser, parse_with_config(parser, argv)

