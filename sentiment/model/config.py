"""Every option of a run in one place: :class:`Config`, its defaults, the presets.

The defaults are the tutorial's; ``presets/*.json`` name other sets of
options; the options are saved as JSON beside each model (``model_paths``).
"""
import dataclasses
import json
import os

from sentiment.common.errors import DataError, one_line

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATASET = os.path.join("data", "imdb.pkl")
TUTORIAL_OPTIMIZERS = ("adadelta", "rmsprop", "sgd")
OPTIMIZERS = TUTORIAL_OPTIMIZERS + ("adam", "adamw", "nesterov", "adagrad")
# Optimizers whose step follows lrate; AdaDelta's and RMSProp's follow adaptive_lrate.
LRATE_OPTIMIZERS = ("sgd", "adam", "adamw", "nesterov", "adagrad")
ADAMW_DECAY = 0.01  # adamw's weight_decay when none is given (torch.optim.AdamW's)
LSTM_IMPLS = ("fused", "scan")
DEVICES = ("cpu", "gpu")
POOLINGS = ("mean", "last", "max", "meanmax")
ADV_DIRECTIONS = ("gradient", "random")
SIDES = ("pre", "post")
PRESET_DIR = os.path.join(HERE, "presets")


@dataclasses.dataclass
class Config:
    """Options of one training run (the tutorial's ``train_lstm`` arguments).

    The defaults are what the tutorial's ``python lstm.py`` ran:
    ``train_lstm(max_epochs=100, test_size=500)`` with every other default.
    Names are the tutorial's (``validFreq``, ``dim_proj``, ...). The options
    are saved as JSON beside each model; unknown keys are rejected.
    """

    dim_proj: int = 128  # word embedding dimension and LSTM hidden units
    patience: int = 10  # validations without progress before early stop
    max_epochs: int = 100  # the tutorial's __main__ (train_lstm: 5000)
    dispFreq: int = 10  # print the cost every N updates
    decay_c: float = 0.0  # weight decay on the classifier weights U
    lrate: float = 0.0001  # learning rate (SGD, Adam, ...; AdaDelta and RMSProp ignore it)
    adaptive_lrate: float = 0.0  # > 0: AdaDelta's step factor (tutorial 1) / RMSProp's step (1e-4)
    n_words: int = 10000  # vocabulary size; rarer words map to 1 (unknown)
    optimizer: str = "adadelta"  # adadelta, rmsprop, sgd, adam, adamw, nesterov or adagrad
    saveto: str = "lstm_model.npz"  # the best model is saved there
    validFreq: int = 370  # validate every N updates (-1: once per epoch)
    saveFreq: int = 1110  # save every N updates (-1: once per epoch)
    maxlen: int = 100  # training reviews of maxlen tokens or more are dropped
    batch_size: int = 16  # training minibatch size
    valid_batch_size: int = 64  # minibatch size for evaluation
    dataset: str = DEFAULT_DATASET  # the preprocessed corpus (imdb.pkl)
    use_dropout: bool = True  # dropout on the pooled hidden state
    reload_model: str = ""  # start from the parameters saved in this .npz
    test_size: int = 500  # keep this many random test reviews (<= 0: all)
    valid_portion: float = 0.05  # share of the training set held out
    valid_block: int = 0  # > 0: hold out random runs of N consecutive reviews (see docs/results.md)
    sort_by_len: bool = True  # sort each split by length (less padding)
    seed: int = 123  # the tutorial's SEED; every random stream derives from it
    mode: str = "CVM"  # PyTensor compile mode (see docs/speed.md)
    lstm_impl: str = "fused"  # "fused" (sentiment/kernels/fused_lstm.py) or "scan" (the tutorial)
    device: str = "cpu"  # "cpu" (the C backend) or "gpu" (PyTensor's JAX backend: sentiment/kernels/device.py)
    # -- variants (the defaults are the tutorial's model) --------------------
    dim_emb: int = 0  # word embedding size (0: dim_proj, as the tutorial)
    bigram_buckets: int = 0  # > 0: add a hashed embedding of each (previous, current) word pair
    layers: int = 1  # stacked LSTM layers
    bidirectional: bool = False  # each layer also reads the review backwards
    conv_filters: int = 0  # > 0: a convolution over time (ReLU) before the LSTM
    conv_width: int = 3  # the convolution's width in tokens ("same" padding)
    pool: int = 2  # max-pooling over time after the convolution (size = stride)
    pooling: str = "mean"  # hidden states -> one vector: mean, last or max (masked)
    pool_embeddings: bool = False  # also pool the (word + bigram) embeddings: a bag-of-n-grams path
    pad_to: int = 0  # > 0: pad/truncate every review to this many tokens (Keras)
    padding: str = "pre"  # with pad_to: pad before (pre) or after (post) the words
    truncating: str = "pre"  # with pad_to: cut the beginning (pre) or the end (post)
    embeddings: str = ""  # pre-trained vectors (.vec / GloVe text, gzip too) for Wemb
    freeze_embeddings: bool = False  # do not train Wemb
    bucket: int = 0  # > 0: minibatches of similar length, from pools of bucket batches
    forget_bias: float = 0.0  # initial forget-gate bias (tutorial 0; Keras 1)
    lrate_decay: float = 1.0  # the learning rate of epoch e (from 0) is lrate * lrate_decay**e
    clip_c: float = 0.0  # > 0: rescale the gradients so their global L2 norm is at most this
    word_dropout: float = 0.0  # training: zero each token's embedding with this probability
    u_dropout: float = 0.0  # training: DropConnect on each LSTM's U (AWD-LSTM's weight drop)
    adv_eps: float = 0.0  # > 0: adversarial perturbation of the embeddings of this L2 norm (Miyato)
    adv_direction: str = "gradient"  # adv_eps's move: the loss gradient's, or random (the control)
    ema: float = 0.0  # > 0: validate and save a moving average of the weights (e.g. 0.999)
    weight_decay: float = 0.0  # adam(w): decoupled decay of the weight matrices (adamw: 0 -> 0.01)
    monitor: str = "train,test"  # splits evaluated with valid at each validation ("": none)
    ydim: int = 0  # number of classes; set from the data (max label + 1)
    dict_sha256: str = ""  # set from the data: digest of the dictionary's first n_words
    dataset_sha256: str = ""  # set from the data: SHA-256 of the dataset file

    @property
    def emb_dim(self):
        """The word embedding size (``dim_emb``, or ``dim_proj`` when 0)."""
        return self.dim_emb or self.dim_proj

    @classmethod
    def from_dict(cls, values):
        """Build a Config from a dict, rejecting unknown keys and wrong types."""
        types = {f.name: type(f.default) for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError("unknown option(s): %s" % ", ".join(map(repr, unknown)))
        for name, value in values.items():
            want = types[name]
            ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))
                  or want is float and isinstance(value, int) and not isinstance(value, bool))
            if not ok:
                raise ValueError("option %s must be %s, not %r" % (name, want.__name__, value))
        try:
            return cls(**{k: float(v) if types[k] is float else v for k, v in values.items()})
        except OverflowError:
            raise ValueError("a float option is out of range") from None

    def optimizer_lrate(self):
        """The learning rate the optimizer runs with: ``lrate``, or for AdaDelta
        and RMSProp ``adaptive_lrate`` (0: the tutorial's 1 and 1e-4)."""
        if self.optimizer in LRATE_OPTIMIZERS:
            return self.lrate
        return self.adaptive_lrate or {"adadelta": 1.0, "rmsprop": 1e-4}[self.optimizer]

    def monitored(self):
        """The splits evaluated besides valid at each validation (``monitor``)."""
        return [name for name in self.monitor.replace(" ", "").split(",") if name]

    def validate(self):
        """Raise ValueError on an option no run could use."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError("optimizer must be one of %s, not %r"
                             % (", ".join(OPTIMIZERS), self.optimizer))
        if self.lstm_impl not in LSTM_IMPLS:
            raise ValueError("lstm_impl must be one of %s, not %r"
                             % (", ".join(LSTM_IMPLS), self.lstm_impl))
        if self.device not in DEVICES:
            raise ValueError("device must be one of %s, not %r"
                             % (", ".join(DEVICES), self.device))
        for name in ("dim_proj", "batch_size", "valid_batch_size", "dispFreq", "layers",
                     "conv_width", "pool"):
            if getattr(self, name) < 1:
                raise ValueError("%s must be at least 1" % name)
        for name in ("dim_emb", "conv_filters", "pad_to", "bucket", "valid_block",
                     "bigram_buckets"):
            if getattr(self, name) < 0:
                raise ValueError("%s must be 0 or more" % name)
        for name, allowed in (("pooling", POOLINGS), ("padding", SIDES),
                              ("truncating", SIDES)):
            if getattr(self, name) not in allowed:
                raise ValueError("%s must be one of %s, not %r"
                                 % (name, ", ".join(allowed), getattr(self, name)))
        if self.freeze_embeddings and not self.embeddings and not self.reload_model:
            raise ValueError("freeze_embeddings needs embeddings (or reload_model): "
                             "frozen random vectors would never learn")
        if not 0.0 < self.lrate_decay <= 1.0:
            raise ValueError("lrate_decay must be in (0, 1]")
        if self.clip_c < 0:
            raise ValueError("clip_c must be 0 (no clipping) or more")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError("word_dropout must be in [0, 1)")
        if not 0.0 <= self.u_dropout < 1.0:
            raise ValueError("u_dropout must be in [0, 1)")
        if self.adv_eps < 0:
            raise ValueError("adv_eps must be 0 (none) or more")
        if self.adv_direction not in ADV_DIRECTIONS:
            raise ValueError("adv_direction must be one of %s, not %r"
                             % (", ".join(ADV_DIRECTIONS), self.adv_direction))
        if self.adv_direction != "gradient" and not self.adv_eps:
            raise ValueError("adv_direction random needs adv_eps > 0 (the norm of the move)")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be 0 (none) or more")
        if self.weight_decay and self.optimizer not in ("adam", "adamw"):
            raise ValueError("weight_decay is Adam's decoupled decay (AdamW): "
                             "use it with optimizer adam or adamw")
        if self.adaptive_lrate < 0:
            raise ValueError("adaptive_lrate must be 0 (the tutorial's rules) or more")
        if self.adaptive_lrate and self.optimizer not in ("adadelta", "rmsprop"):
            raise ValueError("adaptive_lrate is AdaDelta's and RMSProp's learning rate: "
                             "use lrate with optimizer %s" % self.optimizer)
        if self.lrate <= 0:
            raise ValueError("lrate must be positive")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError("ema must be in [0, 1) (0: no averaging)")
        bad = sorted(set(self.monitored()) - {"train", "test"})
        if bad:
            raise ValueError("monitor takes train and/or test (comma-separated), not %s"
                             % ", ".join(map(repr, bad)))
        if self.n_words < 2:
            raise ValueError("n_words must be at least 2 (0 = padding, 1 = unknown)")
        if not 0.0 <= self.valid_portion < 1.0:
            raise ValueError("valid_portion must be in [0, 1)")
        if self.validFreq == 0 or self.saveFreq == 0:
            raise ValueError("validFreq and saveFreq must be positive or -1")
        return self


def _model_base(saveto):
    """``lstm_model.npz`` -> ``lstm_model``: the stem of the files beside a model."""
    return saveto[:-4] if saveto.endswith(".npz") else saveto


def model_paths(saveto):
    """The files written beside a model: ``(options_json, log_jsonl)``."""
    base = _model_base(saveto)
    return base + ".json", base + ".log.jsonl"


def checkpoint_path(saveto):
    """The checkpoint written beside the model ``saveto``."""
    return _model_base(saveto) + ".ckpt.npz"


def preset_names():
    """The presets shipped in ``presets/`` (``tutorial``, ``keras-imdb``, ...)."""
    return sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".json"))


def read_config_file(path):
    """The options in a JSON config file (a preset): a dict of Config fields.

    A ``"description"`` string is allowed and dropped; any other unknown key,
    or a value of the wrong type, is an error naming the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        values.pop("description", None)
        Config.from_dict(values).validate()
    except FileNotFoundError:
        raise DataError("%s: no such config file" % path) from None
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise DataError("%s: bad config file (%s)"
                        % (path, one_line(exc))) from None
    return values
